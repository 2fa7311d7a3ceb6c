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
import { gcBlobs, listContext, materialise, missingBlobs, putBlob, syncContext } from './context.js';

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

  test('a kept tree is brought up to date: unchanged files stay, the rest follows', async () => {
    const ctx = join(dir, 'ctx3');
    mkdirSync(join(ctx, 'd'), { recursive: true });
    writeFileSync(join(ctx, 'a'), 'a1');
    writeFileSync(join(ctx, 'b'), 'b1');
    writeFileSync(join(ctx, 'd', 'c'), 'c1');
    const cache = join(dir, 'cache3');
    const memo = join(dir, 'memo3.json');
    const put = async (entries: Awaited<ReturnType<typeof listContext>>) => {
      for (const d of await missingBlobs(cache, entries)) {
        const e = entries.find((x) => x.digest === d)!;
        await putBlob(cache, d, once(readFileSync(join(ctx, e.path), 'utf8')));
      }
      return entries;
    };
    const tree = join(dir, 'tree3');
    const index = join(dir, 'tree3.json');
    assert.equal(
      await syncContext(cache, await put(await listContext(ctx, undefined, memo)), tree, index),
      3,
    );
    // Change one file, remove a directory, turn a file into a directory.
    writeFileSync(join(ctx, 'b'), 'b2');
    rmSync(join(ctx, 'd'), { recursive: true });
    rmSync(join(ctx, 'a'));
    writeFileSync(join(ctx, 'a'), 'a1');
    utimesSync(join(ctx, 'a'), 5, 5);
    mkdirSync(join(ctx, 'e'));
    const entries = await put(await listContext(ctx, undefined, memo));
    assert.equal(await syncContext(cache, entries, tree, index), 2);
    assert.equal(lstatSync(join(tree, 'a')).mtimeMs, 5000);
    assert.deepEqual(readdirSync(tree).sort(), ['a', 'b', 'e']);
    assert.equal(readFileSync(join(tree, 'b'), 'utf8'), 'b2');
    // Nothing changed: nothing written, inodes kept.
    const inoB = lstatSync(join(tree, 'b')).ino;
    assert.equal(await syncContext(cache, await listContext(ctx, undefined, memo), tree, index), 0);
    assert.equal(lstatSync(join(tree, 'b')).ino, inoB);
    // A lost index means a full sync, not a wrong tree.
    rmSync(index);
    writeFileSync(join(tree, 'junk'), 'x');
    assert.equal(await syncContext(cache, entries, tree, index), 2);
    assert.deepEqual(readdirSync(tree).sort(), ['a', 'b', 'e']);
  });

  test('the client memo: an unchanged file is not read again, a changed one is', async () => {
    const ctx = join(dir, 'ctx4');
    mkdirSync(ctx);
    writeFileSync(join(ctx, 'f'), 'one');
    const memo = join(dir, 'memo4.json');
    const [first] = await listContext(ctx, undefined, memo);
    assert.equal(first!.digest, sha('one'));
    // A memo entry that matches the file's stat is trusted (here: deliberately wrong).
    const m = JSON.parse(readFileSync(memo, 'utf8'));
    m[join(ctx, 'f')].digest = sha('from-memo');
    writeFileSync(memo, JSON.stringify(m));
    assert.equal((await listContext(ctx, undefined, memo))[0]!.digest, sha('from-memo'));
    writeFileSync(join(ctx, 'f'), 'two!');
    assert.equal((await listContext(ctx, undefined, memo))[0]!.digest, sha('two!'));
  });

  test('files no build used for a while leave the cache; a use keeps them', async () => {
    const cache = join(dir, 'cache5');
    await putBlob(cache, sha('old'), once('old'));
    await putBlob(cache, sha('used'), once('used'));
    const p = (s: string) => join(cache, 'sha256', sha(s).slice(7));
    utimesSync(p('old'), 1000, 1000);
    utimesSync(p('used'), 1000, 1000);
    // A build listing 'used' touches it.
    assert.deepEqual(
      await missingBlobs(cache, [
        { path: 'u', type: 'file', mode: 0o644, mtimeMs: 0, digest: sha('used'), size: 4 },
      ]),
      [],
    );
    assert.equal(await gcBlobs(cache, 3600_000), 1);
    assert.deepEqual(readdirSync(join(cache, 'sha256')), [sha('used').slice(7)]);
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
