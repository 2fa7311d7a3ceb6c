import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { listContext, materialise, missingBlobs, putBlob } from './context.js';

const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
async function* once(s: string) {
  yield Buffer.from(s);
}

describe('ssh node context by content', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sshdriver-ctx-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('listed through .dockerignore, sent only when missing, laid out with modes and times', async () => {
    const ctx = join(dir, 'ctx');
    mkdirSync(join(ctx, 'src', 'deep'), { recursive: true });
    mkdirSync(join(ctx, 'logs'));
    writeFileSync(join(ctx, '.dockerignore'), 'logs\n*.tmp\n!keep.tmp\n');
    writeFileSync(join(ctx, 'src', 'a.txt'), 'same\n');
    writeFileSync(join(ctx, 'src', 'deep', 'b.sh'), 'same\n', { mode: 0o755 });
    writeFileSync(join(ctx, 'logs', 'x.log'), 'no\n');
    writeFileSync(join(ctx, 'junk.tmp'), 'no\n');
    writeFileSync(join(ctx, 'keep.tmp'), 'yes\n');
    symlinkSync('src/a.txt', join(ctx, 'link'));
    utimesSync(join(ctx, 'src', 'a.txt'), 1_000_000, 1_000_000);
    const entries = await listContext(ctx);
    assert.deepEqual(
      entries.map((e) => `${e.type}:${e.path}`),
      [
        'file:.dockerignore',
        'file:keep.tmp',
        'symlink:link',
        'dir:src',
        'file:src/a.txt',
        'dir:src/deep',
        'file:src/deep/b.sh',
      ],
    );
    const cache = join(dir, 'cache');
    // Two files with the same bytes are one blob.
    const missing = await missingBlobs(cache, entries);
    assert.equal(missing.length, 3);
    assert.ok(missing.includes(sha('same\n')));
    for (const d of missing) {
      const e = entries.find((x) => x.digest === d)!;
      await putBlob(cache, d, once(readFileSync(join(ctx, e.path), 'utf8')));
    }
    assert.deepEqual(await missingBlobs(cache, entries), []);
    writeFileSync(join(ctx, 'src', 'a.txt'), 'changed\n');
    assert.deepEqual(await missingBlobs(cache, await listContext(ctx)), [sha('changed\n')]);
    const out = join(dir, 'out');
    await materialise(cache, entries, out);
    assert.equal(readFileSync(join(out, 'src', 'a.txt'), 'utf8'), 'same\n');
    assert.equal(lstatSync(join(out, 'src', 'a.txt')).mtimeMs, 1_000_000_000);
    assert.equal(lstatSync(join(out, 'src', 'deep', 'b.sh')).mode & 0o777, 0o755);
    assert.equal(readlinkSync(join(out, 'link')), 'src/a.txt');
    assert.ok(!readdirSync(out).includes('logs'));
  });

  test('bytes that do not match their digest never enter the cache', async () => {
    const cache = join(dir, 'cache2');
    await assert.rejects(putBlob(cache, sha('right'), once('wrong')), /do not match/);
    assert.deepEqual(readdirSync(join(cache, 'sha256')), []);
  });

  test('paths that would leave the build directory are refused', async () => {
    for (const path of ['../x', '/etc/passwd', 'a/../../x', 'a//b', '.'])
      await assert.rejects(
        materialise(join(dir, 'cache'), [{ path, type: 'dir', mode: 0o755, mtimeMs: 0 }], join(dir, 'evil')),
        /invalid context path/,
      );
    await assert.rejects(
      materialise(
        join(dir, 'cache'),
        [{ path: 'f', type: 'file', mode: 0o644, mtimeMs: 0, digest: 'sha256:../../etc' }],
        join(dir, 'evil2'),
      ),
      /invalid context digest/,
    );
    await assert.rejects(
      materialise(
        join(dir, 'cache'),
        [
          { path: 'l', type: 'symlink', mode: 0o777, mtimeMs: 0, target: '/tmp' },
          { path: 'l/x', type: 'dir', mode: 0o755, mtimeMs: 0 },
        ],
        join(dir, 'evil3'),
      ),
      /is under a symlink/,
    );
  });
});
