/**
 * Leases against the content store's gc, in this process and in child processes (one of them
 * killed with -9): leased blobs are kept and counted, what a leased index reaches is kept,
 * released or dead holders' leases protect nothing, and lease writes wait for a GC in progress.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Descriptor, MediaType } from '../oci/index.js';
import { formatOwner, selfOwner } from '../util/lock.js';
import { heldLease, leasesDir, readLeases, takeLease, withGcLock } from './leases.js';
import { ContentStore } from './store.js';

const tmp = mkdtempSync(join(tmpdir(), 'polyarch-leases-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(tmp, `s${n++}`, 'store');
const leaseFiles = (dir: string) => readdirSync(leasesDir(dir)).filter((f) => f.endsWith('.json'));

test('a blob written under a lease survives gc until the lease is released', async () => {
  const store = await ContentStore.open(fresh());
  const h = await store.lease('pull');
  const b = await store.writeBlob(Buffer.from('loose'));
  const r = await store.gc();
  assert.deepEqual(r, { removed: 0, bytes: 0, kept: 1, keptBytes: 5 });
  assert.ok(await store.has(b.digest));
  await h.release();
  assert.equal(heldLease(store.dir), undefined);
  assert.deepEqual(leaseFiles(store.dir), []);
  assert.deepEqual(await store.gc(), { removed: 1, bytes: 5, kept: 0, keptBytes: 0 });
});

test('holds of one process share one lease; it goes with the last', async () => {
  const store = await ContentStore.open(fresh());
  const a = await takeLease(store.dir, 'build');
  const b = await takeLease(store.dir, 'pull');
  assert.equal(a.lease, b.lease);
  assert.equal(leaseFiles(store.dir).length, 1);
  assert.deepEqual([...(await readLeases(store.dir)).kinds].sort(), ['build', 'pull']);
  await a.release();
  await a.release(); // idempotent
  assert.equal(leaseFiles(store.dir).length, 1);
  await b.release();
  assert.deepEqual(leaseFiles(store.dir), []);
});

test('what a leased index reaches is kept with it', async () => {
  const store = await ContentStore.open(fresh());
  const layer = await store.writeBlob(Buffer.from('layer bytes'));
  const config = await store.writeJson({ architecture: 'amd64', os: 'linux' }, MediaType.OciConfig);
  const m = await store.writeJson(
    {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config,
      layers: [{ mediaType: MediaType.OciLayerGzip, ...layer }],
    },
    MediaType.OciManifest,
  );
  const index = await store.writeJson(
    { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [m] as Descriptor[] },
    MediaType.OciIndex,
  );
  const other = await store.writeBlob(Buffer.from('unrelated'));
  const h = await store.lease('run');
  try {
    // Only the index is named: the manifest, config and layer are reached from it.
    await h.lease.protectContent([index.digest]);
    const r = await store.gc();
    assert.equal(r.removed, 1);
    assert.equal(r.kept, 4);
    assert.equal(await store.has(other.digest), false);
    for (const d of [index, m, config, layer]) assert.ok(await store.has(d.digest));
  } finally {
    await h.release();
  }
});

const here = dirname(fileURLToPath(import.meta.url));
const holderScript = `
  const { ContentStore } = await import(${JSON.stringify(join(here, 'store.js'))});
  const store = await ContentStore.open(process.argv[1]);
  const h = await store.lease('pull');
  const b = await store.writeBlob(Buffer.from('held by a child'));
  process.stdout.write(b.digest + '\\n');
  setInterval(() => {}, 1000);
`;

test('a holder killed with -9: its lease is stale, gc collects what it held and removes the lease', async () => {
  const dir = fresh();
  const store = await ContentStore.open(dir);
  const child = spawn(process.execPath, ['--input-type=module', '-e', holderScript, dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((r) => child.on('exit', r));
  const digest = await new Promise<string>((res, rej) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) res(out.trim());
    });
    child.on('exit', () => rej(new Error('the holder exited early')));
  });
  try {
    assert.equal((await store.gc()).kept, 1, 'a live holder keeps its blob');
    assert.deepEqual([...(await readLeases(dir)).holders], [child.pid]);
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  assert.deepEqual(await store.gc(), { removed: 1, bytes: 15, kept: 0, keptBytes: 0 });
  assert.equal(await store.has(digest as Descriptor['digest']), false);
  assert.deepEqual(leaseFiles(dir), []);
});

test('a lease write waits for a GC in progress, so a look after it sees what GC left', async () => {
  const store = await ContentStore.open(fresh());
  const b = await store.writeBlob(Buffer.from('going'));
  const h = await store.lease('build');
  try {
    let added = false;
    let p: Promise<void> | undefined;
    await withGcLock(store.dir, async () => {
      p = h.lease.protectContent([b.digest]).then(() => {
        added = true;
      });
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(added, false, 'blocked while GC holds the lock');
      await store.deleteBlob(b.digest); // what the sweep would do
    });
    await p;
    assert.equal(added, true);
    assert.equal(await store.has(b.digest), false);
  } finally {
    await h.release();
  }
});

test('a lease line still being written protects nothing yet; a damaged lease keeps everything', async () => {
  const store = await ContentStore.open(fresh());
  const b = await store.writeBlob(Buffer.from('maybe'));
  const dir = leasesDir(store.dir);
  mkdirSync(dir, { recursive: true });
  // A live owner (this process), as another process's lease file would name it.
  const path = join(dir, `${formatOwner(selfOwner())}-00000000.json`);
  writeFileSync(path, `{"owner":"x","created":0}\n{"c":["${b.digest}"]}`);
  assert.equal((await readLeases(store.dir)).content.size, 0, 'no newline: not there yet');
  writeFileSync(path, `{"owner":"x","created":0}\n{"c":["${b.digest}"]}\n`);
  assert.deepEqual([...(await readLeases(store.dir)).content], [b.digest]);
  writeFileSync(path, '{"owner":"x","created":0}\n{"c":[\n');
  const r = await store.gc();
  assert.deepEqual(r, { removed: 0, bytes: 0, kept: 1, keptBytes: 5 }, 'unreadable: keep all');
  unlinkSync(path);
  assert.equal((await store.gc()).removed, 1);
});
