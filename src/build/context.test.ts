import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BuildContext, componentRegex, globMatch, matchPaths } from './context.js';

const dir = mkdtempSync(join(tmpdir(), 'polyarch-context-test-'));
const state = mkdtempSync(join(tmpdir(), 'polyarch-context-state-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(state, { recursive: true, force: true });
});
const files: Record<string, string> = {
  'a.txt': 'a',
  'b.txt': 'b',
  'src/main.c': 'int main',
  'src/util.c': 'util',
  'src/util.h': 'h',
  'node_modules/x/index.js': 'x',
  'docs/keep.md': 'keep',
  'docs/drop.md': 'drop',
};
for (const [f, data] of Object.entries(files)) {
  mkdirSync(join(dir, f, '..'), { recursive: true });
  writeFileSync(join(dir, f), data);
}
writeFileSync(join(dir, '.dockerignore'), 'node_modules\ndocs/*.md\n!docs/keep.md\n');

test('componentRegex: Go filepath.Match per component', () => {
  const cases: [string, string, boolean][] = [
    ['*.c', 'main.c', true],
    ['*.c', 'main.h', false],
    ['?.txt', 'a.txt', true],
    ['?.txt', 'ab.txt', false],
    ['[ab].txt', 'b.txt', true],
    ['[^ab].txt', 'b.txt', false],
    ['\\*', '*', true],
    ['a.b', 'aXb', false],
  ];
  for (const [p, s, want] of cases) assert.equal(componentRegex(p).test(s), want, `${p} ~ ${s}`);
});

test('globMatch: whole paths, ** and directory prefixes', () => {
  assert.equal(globMatch('src/*.c', 'src/main.c'), true);
  assert.equal(globMatch('*.c', 'src/main.c'), false);
  assert.equal(globMatch('**/*.h', 'src/util.h'), true);
  assert.equal(globMatch('src', 'src/util.h'), true);
});

test('matchPaths expands wildcards against the tree, sorted', async () => {
  assert.deepEqual(await matchPaths(dir, 'src/*.c'), ['src/main.c', 'src/util.c']);
  assert.deepEqual(await matchPaths(dir, '*.txt'), ['a.txt', 'b.txt']);
  assert.deepEqual(await matchPaths(dir, 'nope*'), []);
});

test('BuildContext: .dockerignore with exceptions, not-found errors, content checksums with a memo', async () => {
  const ctx = await BuildContext.open({ dir, stateRoot: state });
  assert.deepEqual(await ctx.match('docs/*.md'), ['docs/keep.md']);
  await assert.rejects(ctx.match('node_modules'), /"\/node_modules": not found/);
  await assert.rejects(ctx.match('missing.txt'), /"\/missing\.txt": not found/);
  const all = await ctx.walk('');
  assert.ok(all.includes('docs/keep.md'));
  assert.ok(!all.includes('docs/drop.md'));
  assert.ok(!all.some((p) => p.startsWith('node_modules')));
  assert.deepEqual(await ctx.match('src/*.c', ['src/util.*']), ['src/main.c']);
  // --exclude patterns also match from the copied source (`COPY --exclude=*.h src /dst`).
  assert.equal(ctx.excluded('src/util.h', ['*.h'], 'src'), true);
  assert.equal(ctx.excluded('src/util.c', ['*.h'], 'src'), false);
  assert.deepEqual(await ctx.walk('src', ['*.h']), ['src', 'src/main.c', 'src/util.c']);

  const before = await ctx.checksum(['src']);
  // A new mtime with the same content keeps the checksum; new content changes it.
  utimesSync(join(dir, 'src/main.c'), new Date(1000), new Date(1000));
  assert.equal(await ctx.checksum(['src']), before);
  writeFileSync(join(dir, 'src/main.c'), 'int main2');
  const after1 = await ctx.checksum(['src']);
  assert.notEqual(after1, before);
  // Excluded files do not count.
  writeFileSync(join(dir, 'docs/drop.md'), 'changed');
  const docs = await ctx.checksum(['docs']);
  writeFileSync(join(dir, 'docs/drop.md'), 'changed again');
  assert.equal(await ctx.checksum(['docs']), docs);
  await ctx.save();
  // The memo persists: a fresh context answers from it.
  const again = await BuildContext.open({ dir, stateRoot: state });
  assert.equal(await again.checksum(['src']), after1);
});

test('links: matched and walked inside the context, never out of it', async () => {
  const d = mkdtempSync(join(tmpdir(), 'polyarch-context-links-'));
  const hostDir = mkdtempSync(join(tmpdir(), 'polyarch-context-host-'));
  try {
    mkdirSync(join(d, 'real'));
    writeFileSync(join(d, 'real/f.txt'), 'in');
    writeFileSync(join(d, 'secret.txt'), 'ignored');
    writeFileSync(join(d, '.dockerignore'), 'secret.txt\n');
    writeFileSync(join(hostDir, 'h.txt'), 'host');
    symlinkSync('real', join(d, 'rel'));
    symlinkSync('/real', join(d, 'abs'));
    symlinkSync('../../../../../..', join(d, 'up'));
    symlinkSync(hostDir, join(d, 'host'));
    symlinkSync('secret.txt', join(d, 'to-ignored'));
    const ctx = await BuildContext.open({ dir: d, stateRoot: state });
    assert.deepEqual(await matchPaths(d, 'rel/*.txt'), ['rel/f.txt']);
    assert.deepEqual(await matchPaths(d, 'abs/f.txt'), ['abs/f.txt']);
    assert.deepEqual(await matchPaths(d, 'up/real/f.txt'), ['up/real/f.txt']);
    assert.deepEqual(await matchPaths(d, 'host/*'), []);
    assert.deepEqual(await matchPaths(d, 'host/h.txt'), []);
    assert.deepEqual(await ctx.match('host'), ['host'], 'the link itself is there');
    await assert.rejects(ctx.match('host/h.txt'), /"\/host\/h\.txt": not found/);
    await assert.rejects(ctx.match('to-ignored'), /not found/);
    // Walked under the real names; the same content whichever way it is named.
    assert.deepEqual(await ctx.walk('abs'), ['real', 'real/f.txt']);
    assert.equal(await ctx.checksum(['rel']), await ctx.checksum(['real']));
    assert.deepEqual(await ctx.walk('host'), ['host']);
  } finally {
    rmSync(d, { recursive: true, force: true });
    rmSync(hostDir, { recursive: true, force: true });
  }
});
