import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ImageRow } from '../content/index.js';
import { filterImages, globRegExp, parseImageFilters } from './list.js';

test('reference patterns are Go path.Match globs', () => {
  const cases: Array<[string, string, boolean]> = [
    ['busy*:*libc', 'busybox:uclibc', true],
    ['busy*:*libc', 'busybox:musl', false],
    ['busybox', 'busybox', true],
    ['*', 'localhost:5000/app', false], // * stays within a path element
    ['localhost:5000/*', 'localhost:5000/app', true],
    ['app:[0-9]', 'app:1', true],
    ['app:[!0-9]', 'app:1', false],
    ['a?c', 'abc', true],
    ['a.c', 'abc', false],
  ];
  for (const [pattern, name, want] of cases)
    assert.equal(globRegExp(pattern).test(name), want, `${pattern} ~ ${name}`);
});

test('filters: reference (any), dangling, platform; bad ones are usage errors', () => {
  const row = (repository: string, tag: string, platform: string) =>
    ({
      repository,
      tag,
      platform,
      name: '',
      id: '',
      digest: 'sha256:x',
      manifestDigest: undefined,
      size: 0,
    }) as ImageRow;
  const rows = [
    row('busybox', 'latest', 'linux/arm64/v8'),
    row('busybox', 'uclibc', 'linux/amd64'),
    row('<none>', '<none>', 'linux/amd64'),
    row('localhost:5000/app', '1', 'linux/arm/v7'),
  ];
  const pick = (...f: string[]) =>
    filterImages(rows, parseImageFilters(f)).map((r) => `${r.repository}:${r.tag}`);
  assert.deepEqual(pick('reference=busybox'), ['busybox:latest', 'busybox:uclibc']);
  assert.deepEqual(pick('reference=busy*:*libc', 'reference=localhost:5000/app'), [
    'busybox:uclibc',
    'localhost:5000/app:1',
  ]);
  assert.deepEqual(pick('dangling=true'), ['<none>:<none>']);
  assert.equal(pick('dangling=false').length, 3);
  assert.deepEqual(pick('platform=linux/arm64'), ['busybox:latest']);
  assert.deepEqual(pick('platform=linux/arm'), ['localhost:5000/app:1']);
  assert.deepEqual(pick('platform=linux/amd64', 'reference=busybox'), ['busybox:uclibc']);
  assert.deepEqual(pick('reference=busybox,platform=linux/amd64,linux/arm/v7'), ['busybox:uclibc']);
  assert.deepEqual(pick('platform=linux/amd64,linux/arm/v7', 'dangling=false'), [
    'busybox:uclibc',
    'localhost:5000/app:1',
  ]);
  for (const [f, msg] of [
    ['color=red', /unknown filter "color"/],
    ['dangling=maybe', /dangling takes true or false/],
    ['reference', /expected name=value/],
    ['platform=linux/nope', /invalid --filter "platform=linux\/nope"/],
  ] as const)
    assert.throws(
      () => parseImageFilters([f]),
      (err: Error & { exitCode?: number }) => {
        assert.match(err.message, msg);
        assert.equal(err.exitCode, 2);
        return true;
      },
    );
});
