// biome-ignore-all lint/suspicious/noTemplateCurlyInString: compose interpolation text, not templates
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { interpolate, interpolateTree, parseDotEnv } from './interpolate.js';

const vars: Record<string, string> = { SET: 'value', EMPTY: '', TAG: '1.2', NESTED: 'inner' };
const lookup = (n: string) => vars[n];

// [name, input, expected output or an error RegExp]
const cases: [string, string, string | RegExp][] = [
  ['plain text', 'hello', 'hello'],
  ['bare variable', '$SET', 'value'],
  ['braced variable', '${SET}', 'value'],
  ['variable inside text', 'img:${TAG}-x', 'img:1.2-x'],
  ['bare name stops at a non-name char', '$SET.txt', 'value.txt'],
  ['unset is empty', 'a${UNSET}b', 'ab'],
  ['$$ escapes', 'cost $$5 and $${SET}', 'cost $5 and ${SET}'],
  [':- on unset', '${UNSET:-dflt}', 'dflt'],
  [':- on empty', '${EMPTY:-dflt}', 'dflt'],
  [':- on set', '${SET:-dflt}', 'value'],
  ['- on unset', '${UNSET-dflt}', 'dflt'],
  ['- on empty keeps empty', '${EMPTY-dflt}', ''],
  ['empty default', '${UNSET:-}', ''],
  ['default with spaces and colons', '${UNSET:-a b:c}', 'a b:c'],
  ['nested default', '${UNSET:-${NESTED}}', 'inner'],
  ['doubly nested default', '${UNSET:-${ALSO_UNSET:-deep}}', 'deep'],
  [':+ on set', '${SET:+alt}', 'alt'],
  [':+ on empty', '${EMPTY:+alt}', ''],
  ['+ on empty', '${EMPTY+alt}', 'alt'],
  [':? on set', '${SET:?must}', 'value'],
  [':? on unset', '${UNSET:?must be set}', /^required variable UNSET is missing a value: must be set$/],
  [':? on empty', '${EMPTY:?no empty}', /^required variable EMPTY is missing a value: no empty$/],
  ['? on empty is fine', '${EMPTY?x}', ''],
  ['? on unset', '${UNSET?x}', /^required variable UNSET is missing a value: x$/],
  ['? without a message', '${UNSET?}', /^required variable UNSET is missing a value$/],
  ['unused required default is not checked', '${SET:-${UNSET:?boom}}', 'value'],
  ['missing close brace', '${SET', /invalid interpolation format for "\$\{SET": missing "}"/],
  ['empty braces', '${}', /invalid interpolation format.*variable name/],
  ['bad operator', '${SET:=x}', /invalid interpolation format.*unexpected ":="/],
  ['dollar before a digit', 'a $1', /invalid interpolation format.*"\$" must be followed/],
  ['trailing dollar', 'cost $', /invalid interpolation format/],
];

for (const [name, input, want] of cases)
  test(`interpolate: ${name}`, () => {
    if (typeof want === 'string') assert.equal(interpolate(input, { lookup }), want);
    else assert.throws(() => interpolate(input, { lookup }), { message: want });
  });

test('interpolate warns once per use of an unset variable without a default', () => {
  const warnings: string[] = [];
  assert.equal(interpolate('${UNSET}/${UNSET:-x}', { lookup, warn: (m) => warnings.push(m) }), '/x');
  assert.deepEqual(warnings, ['The "UNSET" variable is not set. Defaulting to a blank string.']);
});

test('interpolateTree: values only, errors name the file and the path', () => {
  const doc = { services: { web: { image: 'app:${TAG}', build: { args: ['V=${SET}'] } } }, '${SET}': 1 };
  assert.deepEqual(interpolateTree(doc, { lookup, file: 'compose.yaml' }), {
    services: { web: { image: 'app:1.2', build: { args: ['V=value'] } } },
    '${SET}': 1,
  });
  assert.throws(
    () =>
      interpolateTree(
        { services: { web: { build: { args: ['A=${X:?need X}'] } } } },
        { lookup, file: 'c.yml' },
      ),
    { message: /^c\.yml: services\.web\.build\.args\.0: required variable X is missing a value: need X$/ },
  );
});

test('parseDotEnv: quoting, comments, export, interpolation of earlier keys', () => {
  const text = [
    '# comment',
    '',
    'A=plain value  # trailing comment',
    'export B=b',
    "C='literal ${A} # not a comment'",
    'D="line\\nbreak ${B}"',
    'E=${A}-x',
    'F=',
    'G="multi',
    'line"',
    'FROM_ENV',
    'H=a#b',
  ].join('\n');
  assert.deepEqual(parseDotEnv(text, { lookup: (n) => (n === 'FROM_ENV' ? 'env' : undefined) }), {
    A: 'plain value',
    B: 'b',
    C: 'literal ${A} # not a comment',
    D: 'line\nbreak b',
    E: 'plain value-x',
    F: '',
    G: 'multi\nline',
    FROM_ENV: 'env',
    H: 'a#b',
  });
  assert.throws(() => parseDotEnv('1BAD=x', { lookup, file: '.env' }), {
    message: /^\.env:1: invalid variable name "1BAD"$/,
  });
  assert.throws(() => parseDotEnv("A='open", { lookup }), /unterminated single quote/);
});
