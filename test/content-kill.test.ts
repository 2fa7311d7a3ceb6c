/**
 * A writer killed mid-blob leaves no blob under its final name, the store still opens, and
 * the dead writer's temp file is removed by the next open (and gc); writing the same content
 * afresh then succeeds.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Digest } from '../src/oci/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const contentModule = pathToFileURL(join(repo, 'dist', 'src', 'content', 'index.js')).href;
const scratch = mkdtempSync(join(tmpdir(), 'polyarch-kill-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

const CHUNK = 256 * 1024;
const CHUNKS = 200; // 50 MiB

// The same generator runs in the child (as source) and here.
const chunkSource = `function chunk(i) {
  const b = Buffer.alloc(${CHUNK}, (i * 7 + 3) & 0xff);
  b.writeUInt32BE(i, 0);
  return b;
}`;
const chunk = new Function(`${chunkSource}; return chunk;`)() as (i: number) => Buffer;

function* allChunks(): Generator<Buffer> {
  for (let i = 0; i < CHUNKS; i++) yield chunk(i);
}

test('a writer SIGKILLed halfway through a 50 MiB blob leaves the store clean', async () => {
  const dir = join(scratch, 'store');
  const hash = createHash('sha256');
  for (const c of allChunks()) hash.update(c);
  const digest = `sha256:${hash.digest('hex')}` as Digest;
  const size = CHUNK * CHUNKS;

  const script = join(scratch, 'slow-writer.mjs');
  writeFileSync(
    script,
    `${chunkSource}
const { ContentStore } = await import(${JSON.stringify(contentModule)});
const [dir, digest, size] = process.argv.slice(2);
const store = await ContentStore.open(dir);
const w = await store.writer({ digest, size: Number(size) });
for (let i = 0; i < ${CHUNKS}; i++) {
  await w.write(chunk(i));
  process.stdout.write(w.offset + '\\n');
  await new Promise((r) => setTimeout(r, 10));
}
await w.commit();
`,
  );
  const child = spawn(process.execPath, [script, dir, digest, String(size)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<NodeJS.Signals | null>((res) => child.on('exit', (_code, sig) => res(sig)));
  // Kill once it is past half way.
  await new Promise<void>((res, rej) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      const last = Number(lines[lines.length - 2] ?? 0);
      if (last >= size / 2) {
        child.kill('SIGKILL');
        res();
      }
    });
    child.on('exit', () => rej(new Error(`writer ended before being killed: ${stderr}`)));
  });
  assert.equal(await exited, 'SIGKILL');

  const { ContentStore } = (await import(contentModule)) as typeof import('../src/content/index.js');
  const blobPath = join(dir, 'blobs', 'sha256', digest.slice(7));
  assert.equal(existsSync(blobPath), false, 'no blob under its final name');
  const temps = readdirSync(join(dir, 'ingest'));
  assert.deepEqual(
    temps,
    temps.filter((t) => t.startsWith(`${child.pid}-`)),
  );
  assert.equal(temps.length, 1, 'the killed writer left its temp file');
  const partial = statSync(join(dir, 'ingest', temps[0]!)).size;
  assert.ok(partial >= size / 2 && partial < size, `partial temp of ${partial} bytes`);

  // The next open cleans it; the store is usable and the same blob ingests fine.
  const store = await ContentStore.open(dir);
  assert.deepEqual(readdirSync(join(dir, 'ingest')), []);
  assert.deepEqual(await store.refs(), []);
  assert.equal(await store.has(digest), false);
  const got = await store.ingest(allChunks(), { digest, size });
  assert.deepEqual(got, { digest, size });
  await store.verifyBlob(digest, size);
  assert.deepEqual(readdirSync(join(dir, 'ingest')), []);
});

test('gc also removes a dead writer temp file, never a live one', async () => {
  const dir = join(scratch, 'gc-store');
  const { ContentStore } = (await import(contentModule)) as typeof import('../src/content/index.js');
  const store = await ContentStore.open(dir);
  const live = await store.writer();
  await live.write(Buffer.from('still writing'));
  // A child that starts a write and is killed while the store stays open here.
  const script = join(scratch, 'start-writer.mjs');
  writeFileSync(
    script,
    `const { ContentStore } = await import(${JSON.stringify(contentModule)});
const store = await ContentStore.open(process.argv[2]);
const w = await store.writer();
await w.write(Buffer.from('half'));
globalThis.writer = w; // keep its file handle open until killed
process.stdout.write('ready\\n');
setInterval(() => {}, 1000);
`,
  );
  const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => child.stdout.once('data', () => res()));
  assert.equal(readdirSync(join(dir, 'ingest')).length, 2);
  await store.gc(); // child alive: its temp stays
  assert.equal(readdirSync(join(dir, 'ingest')).length, 2);
  const exited = new Promise((res) => child.on('exit', res));
  child.kill('SIGKILL');
  await exited;
  await store.gc();
  const left = readdirSync(join(dir, 'ingest'));
  assert.equal(left.length, 1);
  assert.ok(left[0]!.startsWith(`${process.pid}-`));
  const info = await live.commit();
  assert.equal(info.size, 13);
  assert.deepEqual(readdirSync(join(dir, 'ingest')), []);
});
