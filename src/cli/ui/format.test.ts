import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatLogTime, formatProgress, sanitizeLine, truncate } from './format.js';
import { goTime } from './rawjson.js';
import { formatWarnings } from './summary.js';

test('formatBytes: BuildKit units (decimal, bytes without decimals)', () => {
  const cases: Array<[number, string]> = [
    [0, '0B'],
    [581, '581B'],
    [999, '999B'],
    [1000, '1.00kB'],
    [1420, '1.42kB'],
    [1_048_576, '1.05MB'],
    [5_242_880, '5.24MB'],
    [28_570_000, '28.57MB'],
    [1e9, '1.00GB'],
    [2.5e12, '2.50TB'],
    [-1500, '-1.50kB'],
    [Number.NaN, '0B'],
  ];
  for (const [n, want] of cases) assert.equal(formatBytes(n), want, `${n}`);
});

test('formatProgress: current / total, current alone, or nothing', () => {
  assert.equal(formatProgress(1_048_576, 5_242_880), '1.05MB / 5.24MB');
  assert.equal(formatProgress(0, 581), '0B / 581B');
  assert.equal(formatProgress(2048, undefined), '2.05kB');
  assert.equal(formatProgress(0, 0), '');
});

test('formatLogTime: 3 decimals under 10s, 2 under 100s, 1 beyond', () => {
  const cases: Array<[number, string]> = [
    [0, '0.000'],
    [312, '0.312'],
    [9999, '9.999'],
    [12_340, '12.34'],
    [123_400, '123.4'],
  ];
  for (const [ms, want] of cases) assert.equal(formatLogTime(ms), want, `${ms}`);
});

test('sanitizeLine: what a step prints cannot drive the terminal', () => {
  const cases: Array<[string, string, string]> = [
    ['plain text', 'hello', 'hello'],
    ['CRLF', 'hello\r', 'hello'],
    ['progress bar keeps the last frame', ' 10%\r 50%\r100%', '100%'],
    ['colours stripped', '\x1b[31mred\x1b[0m', 'red'],
    ['cursor movement stripped', '\x1b[5A\x1b[2Kx', 'x'],
    ['OSC title stripped', '\x1b]0;title\x07after', 'after'],
    ['tabs become spaces', 'a\tb', 'a    b'],
    ['other controls dropped', 'a\x07b\x00c', 'abc'],
  ];
  for (const [name, input, want] of cases) assert.equal(sanitizeLine(input), want, name);
});

test('truncate counts code points', () => {
  assert.equal(truncate('héllo wörld', 5), 'héllo');
  assert.equal(truncate('short', 10), 'short');
  assert.equal(truncate('x', 0), '');
});

test('goTime: Go RFC 3339 with trailing zeros of the fraction trimmed', () => {
  assert.equal(goTime(Date.UTC(2026, 0, 1)), '2026-01-01T00:00:00Z');
  assert.equal(goTime(Date.UTC(2026, 0, 1, 0, 0, 0, 120)), '2026-01-01T00:00:00.12Z');
  assert.equal(goTime(Date.UTC(2026, 0, 1, 0, 0, 0, 5)), '2026-01-01T00:00:00.005Z');
});

test('formatWarnings: buildx summary; verbose adds detail, URL and location', () => {
  assert.equal(formatWarnings([]), '');
  const w = {
    vertex: 'v',
    level: 1,
    short: 'FromAsCasing: mismatch (line 1)',
    detail: ["'as' and 'FROM' keywords' casing do not match"],
    url: 'https://docs.docker.com/go/dockerfile/rule/from-as-casing/',
    sourceInfo: { filename: 'Dockerfile' },
    range: [{ start: { line: 1, character: 0 }, end: { line: 1, character: 20 } }],
  };
  assert.equal(
    formatWarnings([w, w]),
    '\n 2 warnings found:\n - FromAsCasing: mismatch (line 1)\n - FromAsCasing: mismatch (line 1)\n',
  );
  assert.equal(
    formatWarnings([w], { verbose: true }),
    "\n 1 warning found:\n - FromAsCasing: mismatch (line 1)\n'as' and 'FROM' keywords' casing do not match\n" +
      'More info: https://docs.docker.com/go/dockerfile/rule/from-as-casing/\nDockerfile:1\n',
  );
});
