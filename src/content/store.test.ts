import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { type Descriptor, MediaType, REF_NAME_ANNOTATION, sha256Digest } from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';
import { acquireLock, processStartTime, selfOwner } from '../util/lock.js';
import {
  ContentStore,
  diskUsage,
  familiarName,
  listImages,
  normalizeName,
  removeImages,
  tagImage,
  stateRoot,
  storeDir,
} from './index.js';

const scratch = mkdtempSync(join(tmpdir(), 'polyarch-content-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const freshDir = () => join(scratch, `s${n++}`);
const moduleUrl = new URL('./index.js', import.meta.url).href;

/** Runs a small ES module in a child node process with the store module's URL as argv[2]. */
function runChild(code: string, args: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const script = join(scratch, `child-${n++}.mjs`);
  writeFileSync(script, code);
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script, moduleUrl, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stderr }));
  });
}

function deterministic(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

function chunked(data: Buffer, chunk: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) parts.push(data.subarray(i, i + chunk));
  return Readable.from(parts);
}

function ingestDirEntries(dir: string): string[] {
  return readdirSync(join(dir, 'ingest'));
}

async function rejectsCode(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof PolyarchError, `expected a PolyarchError, got ${err}`);
    assert.equal(err.code, code);
    assert.match(err.message, re);
    return true;
  });
}

test('stateRoot and storeDir follow POLYARCH_ROOT, then root, then XDG_DATA_HOME', () => {
  assert.equal(stateRoot({ POLYARCH_ROOT: '/x/y' }), '/x/y');
  assert.equal(storeDir({ POLYARCH_ROOT: '/x/y' }), '/x/y/store');
  const asRoot = process.getuid?.() === 0;
  assert.equal(stateRoot({ XDG_DATA_HOME: '/d', HOME: '/h' }), asRoot ? '/var/lib/polyarch' : '/d/polyarch');
  if (!asRoot) assert.equal(stateRoot({ HOME: '/h' }), '/h/.local/share/polyarch');
});

test('open creates a valid empty OCI image layout and reopens it', async () => {
  const dir = freshDir();
  await ContentStore.open(dir);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'oci-layout'), 'utf8')), {
    imageLayoutVersion: '1.0.0',
  });
  const idx = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  assert.equal(idx.schemaVersion, 2);
  assert.deepEqual(idx.manifests, []);
  assert.ok(statSync(join(dir, 'blobs', 'sha256')).isDirectory());
  const again = await ContentStore.open(dir);
  assert.deepEqual(await again.refs(), []);
});

test('open refuses an unknown layout version, naming the file', async () => {
  const dir = freshDir();
  await ContentStore.open(dir);
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"9.9"}');
  await rejectsCode(ContentStore.open(dir), 'UNSUPPORTED', /oci-layout: imageLayoutVersion "9.9"/);
});

test('ingest streams, verifies and stores a blob; reads it back', async () => {
  const dir = freshDir();
  const store = await ContentStore.open(dir);
  const data = deterministic(3_000_000, 1);
  const digest = sha256Digest(data);
  const got = await store.ingest(chunked(data, 65536), { digest, size: data.length });
  assert.deepEqual(got, { digest, size: data.length });
  assert.equal(store.blobPath(digest), join(dir, 'blobs', 'sha256', digest.slice(7)));
  assert.ok(await store.has(digest));
  assert.equal(await store.size(digest), data.length);
  assert.ok(data.equals(await store.readBlob(digest)));
  const parts: Buffer[] = [];
  for await (const c of store.openRead(digest, 1000)) parts.push(c as Buffer);
  assert.ok(Buffer.concat(parts).equals(data.subarray(1000)));
  await store.verifyBlob(digest, data.length);
  assert.deepEqual(ingestDirEntries(dir), []);
});

test('ingest without expectations computes digest and size', async () => {
  const store = await ContentStore.open(freshDir());
  const got = await store.ingest(Readable.from([Buffer.from('hello '), Buffer.from('world')]));
  assert.deepEqual(got, { digest: sha256Digest('hello world'), size: 11 });
});

test('a digest mismatch never lands and names expected and actual', async () => {
  const dir = freshDir();
  const store = await ContentStore.open(dir);
  const data = Buffer.from('the real content');
  const wrong = sha256Digest('something else');
  await rejectsCode(
    store.ingest(chunked(data, 4), { digest: wrong, what: 'layer x' }),
    'DIGEST_MISMATCH',
    new RegExp(`digest mismatch writing layer x: expected ${wrong}, got ${sha256Digest(data)}`),
  );
  assert.equal(await store.has(wrong), false);
  assert.equal(await store.has(sha256Digest(data)), false);
  assert.deepEqual(ingestDirEntries(dir), []);
  await rejectsCode(store.writeBlob(data, { digest: wrong }), 'DIGEST_MISMATCH', /expected sha256:/);
  assert.equal(await store.has(sha256Digest(data)), false);
});

test('a size mismatch never lands: too short and too long', async () => {
  const dir = freshDir();
  const store = await ContentStore.open(dir);
  const data = Buffer.from('0123456789');
  const digest = sha256Digest(data);
  const cases = [
    { name: 'short', size: 11, re: /expected 11 bytes, got 10/ },
    { name: 'long', size: 9, re: /expected 9 bytes, got more than 9/ },
  ];
  for (const c of cases) {
    await rejectsCode(store.ingest(chunked(data, 3), { digest, size: c.size }), 'SIZE_MISMATCH', c.re);
    assert.equal(await store.has(digest), false, c.name);
    assert.deepEqual(ingestDirEntries(dir), [], c.name);
  }
});

test('ingesting the same blob twice succeeds and keeps one file', async () => {
  const dir = freshDir();
  const store = await ContentStore.open(dir);
  const data = deterministic(100_000, 2);
  const a = await store.ingest(chunked(data, 4096));
  const b = await store.ingest(chunked(data, 1000), { digest: a.digest, size: a.size });
  const c = await store.writeBlob(data);
  assert.deepEqual(a, b);
  assert.deepEqual(a, c);
  assert.deepEqual(readdirSync(join(dir, 'blobs', 'sha256')), [a.digest.slice(7)]);
  assert.deepEqual(ingestDirEntries(dir), []);
});

test('writer reports its offset and abort leaves nothing', async () => {
  const dir = freshDir();
  const store = await ContentStore.open(dir);
  const w = await store.writer();
  await w.write(Buffer.from('abc'));
  await w.write(Buffer.from('de'));
  assert.equal(w.offset, 5);
  assert.equal(ingestDirEntries(dir).length, 1);
  await w.abort();
  await w.abort();
  assert.deepEqual(ingestDirEntries(dir), []);
  assert.equal(await store.has(sha256Digest('abcde')), false);
});

test('missing blobs are NOT_FOUND errors naming the digest', async () => {
  const store = await ContentStore.open(freshDir());
  const d = sha256Digest('absent');
  await rejectsCode(store.readBlob(d), 'NOT_FOUND', new RegExp(`blob ${d} not found`));
  await rejectsCode(
    (async () => {
      for await (const _ of store.openRead(d));
    })(),
    'NOT_FOUND',
    new RegExp(d),
  );
  assert.equal(await store.size(d), undefined);
  await store.deleteBlob(d); // deleting an absent blob is fine
});

test('readBlob refuses a blob too large to hold in memory', async () => {
  const store = await ContentStore.open(freshDir());
  const d = sha256Digest('pretend this is a big layer');
  writeFileSync(store.blobPath(d), '');
  truncateSync(store.blobPath(d), 65 << 20); // sparse: no disk used
  await rejectsCode(store.readBlob(d), 'INVALID_ARGUMENT', /is 68157440 bytes, too large to read whole/);
});

test('a corrupted blob is detected on read', async () => {
  const store = await ContentStore.open(freshDir());
  const { digest } = await store.writeBlob(Buffer.from('{"a":1}'));
  writeFileSync(store.blobPath(digest), '{"a":2}');
  await rejectsCode(store.readBlob(digest), 'DIGEST_MISMATCH', /is corrupt/);
  await rejectsCode(store.verifyBlob(digest), 'DIGEST_MISMATCH', /is corrupt/);
});

test('two processes ingesting the same blob at once both succeed and leave one correct blob', async () => {
  const dir = freshDir();
  await ContentStore.open(dir);
  const size = 4 * 1024 * 1024;
  const data = deterministic(size, 3);
  const digest = sha256Digest(data);
  const child = `
const { ContentStore } = await import(process.argv[2]);
const [dir, digest, size] = process.argv.slice(3);
const store = await ContentStore.open(dir);
const data = Buffer.alloc(Number(size));
for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 3 * 7 + (i >> 9)) & 0xff;
const w = await store.writer({ digest, size: Number(size) });
for (let i = 0; i < data.length; i += 65536) {
  await w.write(data.subarray(i, i + 65536));
  if (i % (1 << 20) === 0) await new Promise((r) => setTimeout(r, 5));
}
await w.commit();
`;
  const results = await Promise.all([0, 1].map(() => runChild(child, [dir, digest, String(size)])));
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  const store = await ContentStore.open(dir);
  await store.verifyBlob(digest, size);
  assert.deepEqual(readdirSync(join(dir, 'blobs', 'sha256')), [digest.slice(7)]);
  assert.deepEqual(ingestDirEntries(dir), []);
});

async function smallManifest(store: ContentStore, arch: string, layerText: string): Promise<Descriptor> {
  const layer = await store.writeBlob(Buffer.from(layerText));
  const config = await store.writeJson(
    { architecture: arch, os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } },
    MediaType.OciConfig,
  );
  return store.writeJson(
    {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config,
      layers: [{ mediaType: MediaType.OciLayerGzip, ...layer }],
    },
    MediaType.OciManifest,
  );
}

test('tag, resolve, retag, refs and untag', async () => {
  const store = await ContentStore.open(freshDir());
  const m1 = await smallManifest(store, 'amd64', 'one');
  const m2 = await smallManifest(store, 'arm64', 'two');
  await store.tag('docker.io/library/app:1', m1);
  await store.tag('plain', m2);
  const r = await store.resolve('docker.io/library/app:1');
  assert.equal(r?.digest, m1.digest);
  assert.equal(r?.annotations?.[REF_NAME_ANNOTATION], 'docker.io/library/app:1');
  assert.equal(r?.annotations?.['io.containerd.image.name'], 'docker.io/library/app:1');
  await store.tag('docker.io/library/app:1', m2); // replaces, does not duplicate
  assert.equal((await store.resolve('docker.io/library/app:1'))?.digest, m2.digest);
  assert.deepEqual(
    (await store.refs()).map((x) => [x.name, x.descriptor.digest]),
    [
      ['plain', m2.digest],
      ['docker.io/library/app:1', m2.digest],
    ],
  );
  assert.equal(await store.untag('plain'), true);
  assert.equal(await store.untag('plain'), false);
  assert.equal(await store.resolve('plain'), undefined);
  assert.deepEqual(
    (await store.refs()).map((x) => x.name),
    ['docker.io/library/app:1'],
  );
});

test('tag rejects bad names and absent blobs, naming them', async () => {
  const store = await ContentStore.open(freshDir());
  const m = await smallManifest(store, 'amd64', 'x');
  for (const bad of ['', 'a b', '-x', 'x/', 'x::y/']) {
    await rejectsCode(store.tag(bad, m), 'INVALID_ARGUMENT', new RegExp(`invalid reference name "${bad}"`));
  }
  const absent = { ...m, digest: sha256Digest('nope') };
  await rejectsCode(store.tag('x', absent), 'NOT_FOUND', /cannot tag "x": blob sha256:/);
  assert.deepEqual(await store.refs(), []);
});

test('concurrent tagging from several processes loses no ref, past a stale lock', async () => {
  const dir = freshDir();
  const store = await ContentStore.open(dir);
  const m = await smallManifest(store, 'amd64', 'shared');
  // A writer killed while holding the lock: the tagging processes must break it, once.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  writeFileSync(join(dir, 'index.json.lock'), `${dead}-0-${selfOwner().host} feed\n`);
  const child = `
const { ContentStore } = await import(process.argv[2]);
const [dir, who, desc] = process.argv.slice(3);
const store = await ContentStore.open(dir);
for (let i = 0; i < 15; i++) await store.tag('p' + who + '-' + i, JSON.parse(desc));
`;
  const procs = Promise.all(
    [0, 1, 2, 3].map((who) => runChild(child, [dir, String(who), JSON.stringify(m)])),
  );
  // Meanwhile, readers never see a partial index.json (each read parses and validates it).
  let done = false;
  let reads = 0;
  void procs.finally(() => (done = true));
  while (!done) {
    await store.refs();
    reads++;
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(reads > 10, `only ${reads} reads overlapped the writers`);
  for (const r of await procs) assert.equal(r.code, 0, r.stderr);
  const names = (await store.refs()).map((r) => r.name).sort();
  assert.equal(names.length, 60);
  assert.ok(!existsSync(join(dir, 'index.json.lock')));
  assert.deepEqual(ingestDirEntries(dir), []);
});

test('gc keeps what refs reach (even with a platform missing) and removes the rest', async () => {
  const dir = freshDir();
  const store = await ContentStore.open(dir);
  const amd = await smallManifest(store, 'amd64', 'amd layer');
  const arm = await smallManifest(store, 'arm64', 'arm layer');
  const index = await store.writeJson(
    {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        { ...amd, platform: { os: 'linux', architecture: 'amd64' } },
        { ...arm, platform: { os: 'linux', architecture: 'arm64' } },
      ],
    },
    MediaType.OciIndex,
  );
  // As after a single-platform pull: the arm64 manifest and its blobs are not local.
  const armChildren = await store.children(arm);
  await store.deleteBlob(arm.digest);
  for (const c of armChildren) await store.deleteBlob(c.digest);
  const loose = await store.writeBlob(Buffer.from('nobody needs me'));
  const kept = await store.writeBlob(Buffer.from('kept by caller'));
  await store.tag('app:multi', index);

  assert.deepEqual(
    (await store.children(index)).map((d) => d.digest),
    [amd.digest, arm.digest],
  );
  assert.deepEqual(await store.children(arm), []); // missing locally: no known children
  const amdChildren = await store.children(amd);
  assert.equal(amdChildren.length, 2);

  const rows = await listImages(store);
  assert.deepEqual(
    rows.map((r) => [r.repository, r.tag, r.platform, r.id]),
    [['docker.io/library/app', 'multi', 'linux/amd64', index.digest.slice(7, 19)]].map(([, t, p, i]) => [
      'app',
      t,
      p,
      i,
    ]),
  );
  assert.equal(rows[0]!.size, amdChildren[0]!.size + amdChildren[1]!.size);

  const res = await store.gc([{ mediaType: 'application/octet-stream', ...kept }]);
  assert.deepEqual(res, { removed: 1, bytes: loose.size, kept: 0, keptBytes: 0 });
  assert.equal(await store.has(loose.digest), false);
  for (const d of [index, amd, ...amdChildren, kept]) assert.ok(await store.has(d.digest), d.digest);

  const usage = await diskUsage(store);
  assert.equal(usage.blobs, 5);
  assert.deepEqual(usage.unreferenced, { blobs: 1, bytes: kept.size });
  assert.equal(usage.refs[0]?.blobs, 4);

  await store.untag('app:multi');
  const all = await store.gc();
  assert.equal(all.removed, 5);
  assert.deepEqual(readdirSync(join(dir, 'blobs', 'sha256')), []);
});

test('removeImages checks every ref first, then untags and collects', async () => {
  const store = await ContentStore.open(freshDir());
  const m = await smallManifest(store, 'amd64', 'rm me');
  await store.tag('docker.io/library/busybox:latest', m);
  await rejectsCode(removeImages(store, ['busybox', 'nope']), 'NOT_FOUND', /no such image "nope"/);
  assert.equal((await store.refs()).length, 1);
  const { untagged, freed } = await removeImages(store, ['busybox']);
  assert.deepEqual(
    untagged.map((u) => u.name),
    ['docker.io/library/busybox:latest'],
  );
  assert.equal(freed.removed, 3);
});

test('image IDs name images for tag and rmi; several names need force', async () => {
  const store = await ContentStore.open(freshDir());
  const m = await smallManifest(store, 'amd64', 'by id');
  await store.tag('docker.io/library/a:1', m);
  const id = m.digest.slice(7, 19);
  const tagged = await tagImage(store, id, 'b');
  assert.deepEqual([tagged.source, tagged.target], ['docker.io/library/a:1', 'docker.io/library/b:latest']);
  await rejectsCode(removeImages(store, [id]), 'INVALID_ARGUMENT', /referenced by 2 names .*--force/);
  await rejectsCode(removeImages(store, ['ffff0000']), 'NOT_FOUND', /no such image "ffff0000"/);
  assert.equal((await store.refs()).length, 2);
  const { untagged, freed } = await removeImages(store, [`sha256:${id}`], { force: true });
  assert.equal(untagged.length, 2);
  assert.equal(freed.removed, 3);
});

test('temp files of dead writers are removed on open; live ones are kept', async () => {
  const dir = freshDir();
  await ContentStore.open(dir);
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  const ppidStart = processStartTime(process.ppid);
  const here = selfOwner().host;
  const files = [
    { name: `${dead}-0-${here}-deadbeef`, kept: false },
    { name: `${process.pid}-${selfOwner().start}-${here}-cafe`, kept: true },
    { name: `${process.ppid}-${ppidStart}-${here}-cafe`, kept: true },
    // The parent's pid with another start time: a writer that died and whose pid was reused.
    { name: `${process.ppid}-1-${here}-cafe`, kept: false },
    // A dead pid, but written from another host or pid namespace: not judged, and fresh.
    { name: `${dead}-0-00000000-cafe`, kept: true },
    // Not named by polyarch, and fresh: left alone for a day.
    { name: 'other-tool.tmp', kept: true },
  ];
  for (const f of files) writeFileSync(join(dir, 'ingest', f.name), 'partial');
  await ContentStore.open(dir);
  for (const f of files) assert.equal(existsSync(join(dir, 'ingest', f.name)), f.kept, f.name);
});

test('a lock held by a dead pid is broken; a live holder makes waiting fail with a clear error', async () => {
  const dir = freshDir();
  const lock = join(dir, 'x.lock');
  await ContentStore.open(dir);
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  writeFileSync(lock, `${dead}-0-${selfOwner().host} 0123\n`);
  const release = await acquireLock(lock, { timeoutMs: 1000 });
  assert.match(readFileSync(lock, 'utf8'), new RegExp(`^${process.pid}-`));
  const t0 = Date.now();
  await rejectsCode(
    acquireLock(lock, { timeoutMs: 300 }),
    'IO',
    new RegExp(`waiting for lock .*x\\.lock held by pid ${process.pid}`),
  );
  assert.ok(Date.now() - t0 >= 250);
  await release();
  assert.equal(existsSync(lock), false);
  (await acquireLock(lock))();
  // A live pid with another start time is a recycled pid: its lock is stale too.
  writeFileSync(lock, `${process.ppid}-1-${selfOwner().host} 0123\n`);
  await (await acquireLock(lock, { timeoutMs: 1000 }))();
  assert.equal(existsSync(lock), false);
  // A holder in another pid namespace is never judged dead from here.
  writeFileSync(lock, `${dead}-0-00000000 0123\n`);
  await rejectsCode(
    acquireLock(lock, { timeoutMs: 100 }),
    'IO',
    /held by pid \d+ on another host or pid namespace/,
  );
});

test('normalizeName and familiarName (temporary local normaliser)', () => {
  const cases: Array<[string, string]> = [
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['user/app', 'docker.io/user/app:latest'],
    ['127.0.0.1:5000/app', '127.0.0.1:5000/app:latest'],
    ['localhost/app:2', 'localhost/app:2'],
    ['reg.example.com/a/b:c', 'reg.example.com/a/b:c'],
    [`app@${sha256Digest('x')}`, `docker.io/library/app@${sha256Digest('x')}`],
  ];
  for (const [input, want] of cases) assert.equal(normalizeName(input), want, input);
  assert.deepEqual(familiarName('docker.io/library/busybox:latest'), {
    repository: 'busybox',
    tag: 'latest',
  });
  assert.deepEqual(familiarName('docker.io/user/app:1'), { repository: 'user/app', tag: '1' });
  assert.deepEqual(familiarName('127.0.0.1:5000/app:1'), { repository: '127.0.0.1:5000/app', tag: '1' });
  assert.deepEqual(familiarName('plain'), { repository: 'plain', tag: '<none>' });
});
