import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Digest } from '../../oci/index.js';
import { LayerMemo, type MemoEntry, memoKey } from './layers.js';

const entry = (n: number): MemoEntry => ({
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}` as Digest,
  size: n,
  diffId: `sha256:${'f'.repeat(64)}` as Digest,
  compression: 'gzip',
  uncompressedSize: n * 2,
});

describe('LayerMemo', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const root = async () => {
    const d = await mkdtemp(join(tmpdir(), 'polyarch-memo-'));
    dirs.push(d);
    return d;
  };

  it('keeps entries across opens, keyed by every input that changes the bytes', async () => {
    const r = await root();
    const a = await LayerMemo.open(r);
    const k1 = memoKey('snap', '2026-01-01T00:00:00Z', 'gzip', 6, 0);
    await a.put(k1, entry(1));
    const b = await LayerMemo.open(r);
    assert.deepEqual(b.get(k1), entry(1));
    for (const other of [
      memoKey('snap', '2026-01-02T00:00:00Z', 'gzip', 6, 0),
      memoKey('snap', '2026-01-01T00:00:00Z', 'zstd', 6, 0),
      memoKey('snap', '2026-01-01T00:00:00Z', 'gzip', 9, 0),
      memoKey('snap', '2026-01-01T00:00:00Z', 'gzip', 6, 1),
      memoKey('snap', '2026-01-01T00:00:00Z', 'gzip', 6),
    ])
      assert.equal(b.get(other), undefined, other);
  });

  it('loses no entry when two memos write in turn', async () => {
    const r = await root();
    const a = await LayerMemo.open(r);
    const b = await LayerMemo.open(r);
    await Promise.all([a.put('a', entry(1)), b.put('b', entry(2))]);
    const c = await LayerMemo.open(r);
    assert.equal(c.size, 2);
  });

  it('treats a damaged file as empty and rewrites it', async () => {
    const r = await root();
    const a = await LayerMemo.open(r);
    await writeFile(a.path, '{not json');
    const b = await LayerMemo.open(r);
    assert.equal(b.size, 0);
    await b.put('x', entry(3));
    assert.equal(JSON.parse(await readFile(b.path, 'utf8')).version, 1);
  });

  it('prunes entries whose blob is gone', async () => {
    const r = await root();
    const a = await LayerMemo.open(r);
    await a.put('keep', entry(1));
    await a.put('gone', entry(2));
    const dropped = await a.prune(async (d) => d === entry(1).digest);
    assert.equal(dropped, 1);
    const b = await LayerMemo.open(r);
    assert.deepEqual(b.get('keep'), entry(1));
    assert.equal(b.get('gone'), undefined);
  });
});
