// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile and shell text, not templates
/**
 * Word expansion table: cases from BuildKit's shell lexer tests (envVarTest data and
 * TestProcessWithMatches), expected values as BuildKit produces them.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  MAX_EXPANSION_DEPTH,
  patternToRegex,
  processWord,
  processWords,
  reversePattern,
  ShellError,
} from './shell.js';

const ENV = { PWD: '/home', SHELL: 'bash', KOREAN: '한국어', NULL: '' };
const ERR = Symbol('error');

type Case = [name: string, input: string, expected: string | typeof ERR, env?: Record<string, string>];

const cases: Case[] = [
  ['plain word', 'hello', 'hello'],
  ['single quotes in word', "he'll'o", 'hello'],
  ['unterminated single quote', "he'llo", ERR],
  ['escaped single quote', "he\\'llo", "he'llo"],
  ['escaped backslash then open quote', "he\\\\'llo", ERR],
  ['escape of ordinary char', 'abc\\tdef', 'abctdef'],
  ['backslash kept in double quotes', '"abc\\tdef"', 'abc\\tdef'],
  ['escaped backslash in double quotes', '"abc\\\\tdef"', 'abc\\tdef'],
  ['backslash literal in single quotes', "'abc\\tdef'", 'abc\\tdef'],
  ['trailing escape dropped', 'hello\\', 'hello'],
  ['trailing escaped backslash', 'hello\\\\', 'hello\\'],
  ['unterminated double quote', '"hello', ERR],
  ['escaped closing double quote', '"hello\\"', ERR],
  ['single quote inside double', '"hel\'lo"', "hel'lo"],
  ['unterminated single', "'hello", ERR],
  ['backslash before closing single quote', "'hello\\'", 'hello\\'],
  ['backslash t in single quotes', "'hello\\there'", 'hello\\there'],
  ['double backslash in single quotes', "'hello\\\\there'", 'hello\\\\there'],
  ['two single quotes in double', '"\'\'"', "''"],
  ['dollar then dot', '$.', '$.'],
  ['positional parameter', 'he$1x', 'hex'],
  ['dollar dot inside word', 'he$.x', 'he$.x'],
  ['unset lower-case var', 'he$pwd.', 'he.'],
  ['simple $VAR', 'he$PWD', 'he/home'],
  ['escaped dollar', 'he\\$PWD', 'he$PWD'],
  ['escaped backslash then var', 'he\\\\$PWD', 'he\\/home'],
  ['escaped dollar in double quotes', '"he\\$PWD"', 'he$PWD'],
  ['escaped backslash in double quotes then var', '"he\\\\$PWD"', 'he\\/home'],
  ['escaped ${}', '\\${}', '${}'],
  ['escaped ${} then text', '\\${}aaa', '${}aaa'],
  ['word then escaped ${}', 'he\\${}', 'he${}'],
  ['word, escaped ${}, word', 'he\\${}xx', 'he${}xx'],
  ['empty ${}', '${}', ERR],
  ['empty ${} then text', '${}aaa', ERR],
  ['word then empty ${}', 'he${}', ERR],
  ['empty ${} in the middle', 'he${}xx', ERR],
  ['unset ${hi}', 'he${hi}', 'he'],
  ['unset ${hi} in the middle', 'he${hi}xx', 'hexx'],
  ['braced var', 'he${PWD}', 'he/home'],
  ['bad name ${.}', 'he${.}', ERR],
  [':- on unset', 'he${XXX:-000}xx', 'he000xx'],
  [':- on set', 'he${PWD:-000}xx', 'he/homexx'],
  [':- with var word', 'he${XXX:-$PWD}xx', 'he/homexx'],
  [':- nested set', 'he${XXX:-${PWD:-yyy}}xx', 'he/homexx'],
  [':- nested unset', 'he${XXX:-${YYY:-yyy}}xx', 'heyyyxx'],
  ['unknown modifier :Y', 'he${XXX:YYY}', ERR],
  ['? on unset, no message', 'he${XXX?}', ERR],
  [':? on unset, no message', 'he${XXX:?}', ERR],
  ['? on set', 'he${PWD?}', 'he/home'],
  [':? on set', 'he${PWD:?}', 'he/home'],
  ['? on empty', 'he${NULL?}', 'he'],
  [':? on empty', 'he${NULL:?}', ERR],
  [':+ on unset', 'he${XXX:+${PWD}}xx', 'hexx'],
  [':+ on set with unset word', 'he${PWD:+${XXX}}xx', 'hexx'],
  [':+ on set with var word', 'he${PWD:+${SHELL}}xx', 'hebashxx'],
  [':+ on unset literal', 'he${XXX:+000}xx', 'hexx'],
  [':+ on set literal', 'he${PWD:+000}xx', 'he000xx'],
  ['no expansion in single quotes', "'he${XX}'", 'he${XX}'],
  ['expansion in double quotes', '"he${PWD}"', 'he/home'],
  ['single quotes kept inside double', '"he\'$PWD\'"', "he'/home'"],
  ['quoted var', '"$PWD"', '/home'],
  ['single-quoted var', "'$PWD'", '$PWD'],
  ['single-quoted escaped var', "'\\$PWD'", '\\$PWD'],
  ['double quotes inside single', '\'"hello"\'', '"hello"'],
  ['unterminated ${', 'he${PWD', ERR],
  ['assign modifier := unsupported', 'he${PWD:=000}xx', ERR],
  [':+ word ending with colon', 'he${PWD:+${PWD}:}xx', 'he/home:xx'],
  ['escaped $ in default word', 'he${XXX:-\\$PWD:}xx', 'he$PWD:xx'],
  ['escaped ${ in default word stops at first }', 'he${XXX:-\\${PWD}z}xx', 'he${PWDz}xx'],
  ['unicode plain', '안녕하세요', '안녕하세요'],
  ['unicode quoted part', "안'녕'하세요", '안녕하세요'],
  ['unicode unterminated', "안'녕하세요", ERR],
  ['unicode var value', 'he$KOREAN', 'he한국어'],
  ['- on set', '${PWD-aaa}', '/home'],
  ['- on empty keeps empty', 'x${NULL-bbb}y', 'xy'],
  ['- on unset', '${BAZ-ccc}', 'ccc'],
  ['+ on empty', '${NULL+bbb}', 'bbb'],
  [':+ on empty', 'x${NULL:+bbb}y', 'xy'],
  [':? custom message', '${NULL:?must be set}', ERR],
  ['# shortest prefix', '${FOO#*x*y}', 'y', { FOO: 'xxyy' }],
  ['# star alone', '${FOO#*}', 'xxyy', { FOO: 'xxyy' }],
  ['# with var pattern', '${FOO#$BAR}', 'xyy', { FOO: 'xxyy', BAR: 'x' }],
  ['# with empty var pattern', '${FOO#$BAR}', 'xxyy', { FOO: 'xxyy', BAR: '' }],
  ['# empty pattern', '${FOO#}', 'xxyy', { FOO: 'xxyy' }],
  ['## longest prefix', '${FOO##*x}', 'yy', { FOO: 'xxyy' }],
  ['## empty pattern', '${FOO##}', 'xxyy', { FOO: 'xxyy' }],
  ['# ? and escaped ?', '${FOO#?\\?}', '?y', { FOO: '???y' }],
  ['% around unset defaults', '${ABC:-.}${FOO%x}${ABC:-.}', '.xxyy.', { FOO: 'xxyy' }],
  ['%% escaped stars', '${FOO%%\\**\\*}', 'a', { FOO: 'a***yy*' }],
  ['%% escaped star then star', '${FOO%%\\**}', 'xx', { FOO: 'xx**' }],
  ['% empty pattern', '${FOO%}', 'xxyy', { FOO: 'xxyy' }],
  ['%% with empty var', '${FOO%%$BAR}', 'xxyy', { FOO: 'xxyy', BAR: '' }],
  ['% shortest suffix', '${FOO%.*}', 'archive.tar', { FOO: 'archive.tar.gz' }],
  ['%% longest suffix', '${FOO%%.*}', 'archive', { FOO: 'archive.tar.gz' }],
  ['# regex specials literal', '${FOO#()[]{\\}^$.\\*\\?|\\\\}', 'x', { FOO: '()[]{}^$.*?|\\x' }],
  [
    '/ first wildcard match',
    '${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}',
    '/foo.*/*.txt - /foo..*.txt',
    {
      FOO: '/foo*/*/*.txt',
      NEEDLE: '\\*/',
    },
  ],
  [
    '/ pattern with slash',
    '${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}',
    '/tmp/bar.txt - /bar.txt',
    {
      FOO: '/tmp/tmp/bar.txt',
      NEEDLE: '/tmp',
    },
  ],
  [
    '/ ? wildcard',
    '${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}',
    '/foo/b/c.txt - /foo/c.txt',
    {
      FOO: '/a/foo/b/c.txt',
      NEEDLE: '/?/',
      R: '/',
    },
  ],
  [
    '/ url scheme',
    '${FOO/$N/$R}',
    'https://google.de',
    { FOO: 'http://google.de', N: 'http://', R: 'https://' },
  ],
  ['// escaped separators', '${FOO//\\//\\/}', '\\/tmp\\/foo.txt', { FOO: '/tmp/foo.txt' }],
  ['/ empty pattern inserts', '${FOO/$BAR/ww}', 'wwxxyy', { FOO: 'xxyy', BAR: '' }],
  ['// missing replacement separator', '${FOO//ww}', ERR, { FOO: 'xxyy' }],
  ['// nothing', '${FOO//}', ERR, { FOO: 'xxyy' }],
  ['/// empty pattern and replacement', '${FOO///}', 'xxyy', { FOO: 'xxyy' }],
  ['/// on unset', '${FOO///}', '', {}],
  ['= modifier unsupported', '${FOO=aaa}', ERR, { FOO: 'xxx' }],
  [
    'release file name',
    'x-${V}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tgz',
    'x-1.linux-arm-v7.tgz',
    {
      V: '1',
      TARGETOS: 'linux',
      TARGETARCH: 'arm',
      TARGETVARIANT: 'v7',
    },
  ],
  [
    'release file name without variant',
    'x-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}',
    'x-amd64',
    {
      TARGETARCH: 'amd64',
      TARGETVARIANT: '',
    },
  ],
  ['$ at end', 'cost$', 'cost$'],
  ['special param $@ is a name', 'a$@b', 'ab'],
  ['digits name stops at non-digit', '$12abc', 'abc'],
  ['underscore names', '${_A_1}', 'v', { _A_1: 'v' }],
  ['dollar before quote', '$"x"', '$x'],
];

describe('processWord (BuildKit lexer cases)', () => {
  for (const [name, input, expected, env] of cases) {
    test(name, () => {
      const e = env ?? ENV;
      if (expected === ERR) {
        assert.throws(() => processWord(input, e), ShellError);
        return;
      }
      assert.equal(processWord(input, e).result, expected);
    });
  }
});

test('there are at least 80 expansion cases', () => {
  assert.ok(cases.length >= 80, String(cases.length));
});

describe('error messages', () => {
  test(':? names the variable and the message', () => {
    assert.throws(
      () => processWord('${VAR:?message here$ARG}', { VAR: '', ARG: 'x' }),
      /failed to process "\$\{VAR:\?message here\$ARG\}": VAR: message herex/,
    );
  });
  test('? without message on unset', () => {
    assert.throws(() => processWord('${VAR?}', {}), /VAR: is not allowed to be unset/);
  });
  test(':? without message on empty', () => {
    assert.throws(() => processWord('${VAR:?}', { VAR: '' }), /VAR: is not allowed to be empty/);
  });
  test('bad substitution', () => {
    assert.throws(() => processWord('${:x}', {}), /bad substitution/);
  });
  test('missing brace', () => {
    assert.throws(() => processWord('${X:-a', {}), /missing '}'/);
  });
  const nested = (n: number, open = '${a:-', close = '}') => `${open.repeat(n)}x${close.repeat(n)}`;
  test(`\${…} nests up to ${MAX_EXPANSION_DEPTH} levels, in quotes and patterns too`, () => {
    assert.equal(processWord(nested(MAX_EXPANSION_DEPTH), {}).result, 'x');
    assert.equal(processWord(nested(MAX_EXPANSION_DEPTH, '"${a:-', '}"'), {}).result, 'x');
    assert.equal(processWord(nested(MAX_EXPANSION_DEPTH, '${a/', '/y}'), {}).result, 'y');
  });
  test('deeper nesting is one clear error naming the start of the word, never a stack overflow', () => {
    for (const w of [nested(MAX_EXPANSION_DEPTH + 1), nested(10_000), nested(100_000, '"${a:-', '}"')])
      assert.throws(
        () => processWord(w, {}),
        (e: Error) =>
          e instanceof ShellError &&
          /^failed to process "(\\")?\$\{a:-.+…": \$\{…\} nested more than 1000 levels deep$/.test(
            e.message,
          ) &&
          e.message.length < 300,
      );
  });
});

describe('matches', () => {
  test('matched and unmatched names', () => {
    const r = processWord('${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}', { FOO: 'xxx', BAR: '' });
    assert.equal(r.result, 'xxx  ccc');
    assert.deepEqual([...r.matched].sort(), ['BAR', 'FOO']);
    assert.deepEqual([...r.unmatched], ['BAZ']);
  });
  test('skipUnsetEnv keeps unset references', () => {
    const r = processWord('$A ${B} ${C:-x} ${D/a/b}', { A: '1' }, { skipUnsetEnv: true });
    assert.equal(r.result, '1 ${B} ${C:-x} ${D/a/b}');
  });
});

describe('words', () => {
  const w = (s: string, env: Record<string, string> = {}) => processWords(s, env);
  test('split on spaces', () => assert.deepEqual(w('a b  c'), ['a', 'b', 'c']));
  test('quotes keep spaces', () => assert.deepEqual(w('"a b" c'), ['a b', 'c']));
  test('expanded values are split', () => assert.deepEqual(w('x $V', { V: 'a b' }), ['x', 'a', 'b']));
  test('quoted expanded values are not split', () => assert.deepEqual(w('"$V"', { V: 'a b' }), ['a b']));
  test('escaped space joins', () => assert.deepEqual(w('a\\ b'), ['a b']));
  test('empty quotes make a word', () => assert.deepEqual(w('a "" b'), ['a', 'b']));
});

describe('escape token', () => {
  test('backtick escapes with # escape=`', () => {
    assert.equal(processWord('a`$b c:\\x', { b: 'B' }, { escape: '`' }).result, 'a$b c:\\x');
  });
});

describe('patterns', () => {
  test('regex conversion', () => {
    assert.equal(patternToRegex('*', true, true).source, '^.*');
    assert.equal(patternToRegex('?', true, true).source, '^.');
    assert.equal(patternToRegex('\\*', true, true).source, '^\\*');
    assert.throws(() => patternToRegex('\\x', true, true));
    assert.throws(() => patternToRegex('\\', true, true));
  });
  test('reversePattern keeps escapes', () => {
    assert.equal(reversePattern('a\\*c'), 'c\\*a');
    assert.equal(reversePattern('\\\\\\ab'), 'b\\a\\\\');
    assert.equal(reversePattern('\\\\b'), 'b\\\\');
  });
});
