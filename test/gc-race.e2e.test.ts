/**
 * Garbage collection racing running operations, through bin/polyarch processes sharing one
 * temp POLYARCH_ROOT: `prune --all` and `rmi` while a `pull`, `build` or `run` is in flight
 * must not take what that operation uses (src/content/leases.ts). Each case is repeated and
 * must pass every time; each also checks that the race really happened (a GC ran while the
 * operation did, and said it kept what was in use). Last, a holder killed with -9: its lease
 * protects nothing once it is dead.
 *
 * The pull goes through a small reverse proxy that holds back large blobs (the layers) for a
 * while, so a prune surely runs after the small blobs (configs) are stored and before the
 * image is tagged: without leases, that prune deletes the configs and the pull fails.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ContentStore, storeDir } from '../src/content/index.js';
import { cleanupStale } from '../src/exec/index.js';
import { type Descriptor, isIndexType, parseImageDocument } from '../src/oci/index.js';
import { hostPlatform } from '../src/platform/index.js';
import { Snapshotter } from '../src/snapshot/index.js';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-gc-race-'));
const work = mkdtempSync(join(tmpdir(), 'polyarch-gc-race-ctx-'));
const ITERATIONS = 5;
/** How long the proxy holds back each large blob: the pull's window for a prune. */
const HOLD_MS = 2000;
const host = `linux/${hostPlatform().architecture}`;
// A second platform for multi-platform builds and matrix runs (the test environment registers QEMU).
const other = host === 'linux/arm64' ? 'linux/amd64' : 'linux/arm64';

let proxyHost = '';
let closeProxy: () => Promise<void> = async () => undefined;
const env: NodeJS.ProcessEnv = { ...process.env, POLYARCH_ROOT: root, POLYARCH_PROGRESS: 'plain' };

before(async () => {
  const [uh, up] = tenv.registry.split(':') as [string, string];
  const server = createServer((req, res) => {
    const up2 = request(
      { host: uh, port: Number(up), path: req.url, method: req.method, headers: req.headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        const big = req.method === 'GET' && Number(ur.headers['content-length'] ?? 0) > 64 * 1024;
        if (big) setTimeout(() => ur.pipe(res), HOLD_MS);
        else ur.pipe(res);
      },
    );
    up2.on('error', () => res.destroy());
    req.pipe(up2);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxyHost = `127.0.0.1:${(server.address() as { port: number }).port}`;
  closeProxy = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  const config = join(work, 'registries.toml');
  writeFileSync(config, `${readFileSync(tenv.config, 'utf8')}\n[registry."${proxyHost}"]\nhttp = true\n`);
  env.POLYARCH_CONFIG = config;
});

after(async () => {
  await closeProxy();
  await cleanupStale(root).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

interface Done {
  status: number | null;
  stdout: string;
  stderr: string;
}

function start(...args: string[]): { child: ChildProcess; done: Promise<Done> } {
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const done = new Promise<Done>((res) => child.on('close', (status) => res({ status, stdout, stderr })));
  const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
  void done.then(() => clearTimeout(timer));
  return { child, done };
}

const polyarch = (...args: string[]): Promise<Done> => start(...args).done;

async function ok(...args: string[]): Promise<Done> {
  const r = await polyarch(...args);
  assert.equal(r.status, 0, `polyarch ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/**
 * Runs `gc(n)` (n = 0, 1, …) one after another until `op` ends; returns the op's result and
 * every GC's output, including those that ran while the op did.
 */
async function race(
  op: Promise<Done>,
  gc: (n: number) => Promise<Done>,
  ready?: () => Promise<boolean>,
): Promise<{ op: Done; gcs: Done[] }> {
  let ended = false;
  const r = op.then((d) => {
    ended = true;
    return d;
  });
  while (ready && !ended && !(await ready())) await new Promise((res) => setTimeout(res, 50));
  const gcs: Done[] = [];
  while (!ended) gcs.push(await gc(gcs.length));
  return { op: await r, gcs };
}

/** Every blob `name` needs for `platforms` is in the store and verifies. */
async function assertComplete(name: string, platforms: string[]): Promise<void> {
  const store = await ContentStore.open(storeDir(env));
  const rootDesc = await store.resolve(name);
  assert.ok(rootDesc, `${name} is tagged`);
  assert.ok(isIndexType(rootDesc.mediaType));
  const doc = parseImageDocument(await store.readBlob(rootDesc.digest), name);
  assert.equal(doc.kind, 'index');
  if (doc.kind !== 'index') return;
  for (const p of platforms) {
    const [os, architecture] = p.split('/');
    const m = doc.index.manifests.find(
      (d) => d.platform?.os === os && d.platform?.architecture === architecture,
    ) as Descriptor;
    assert.ok(m, `${name} has ${p}`);
    for (const d of [m, ...(await store.children(m))]) await store.verifyBlob(d.digest, d.size);
  }
}

const kept = (gcs: Done[]): boolean =>
  gcs.some((g) => /Kept \d+ (blobs|build cache records) in use by running operations/.test(g.stdout));

async function emptyStore(): Promise<void> {
  for (const r of [tenv.busybox, `${proxyHost}/library/busybox:latest`]) await polyarch('rmi', r);
  await ok('prune', '--all');
}

test('pull racing prune --all: the pull succeeds and its image is complete, every time', async () => {
  const name = `${proxyHost}/library/busybox:latest`;
  for (let i = 0; i < ITERATIONS; i++) {
    await emptyStore();
    const { op, gcs } = await race(polyarch('pull', '--platform', `${host},${other}`, name), () =>
      polyarch('prune', '--all'),
    );
    assert.equal(op.status, 0, `iteration ${i}: ${op.stderr}`);
    for (const g of gcs) assert.equal(g.status, 0, g.stderr);
    assert.ok(
      kept(gcs),
      `iteration ${i}: a prune kept the pull's blobs: ${gcs.map((g) => g.stdout).join('\n')}`,
    );
    await assertComplete(name, [host, other]);
  }
});

test('build (FROM busybox + RUN + COPY, multi-platform) racing rmi busybox and prune --all succeeds every time', async () => {
  const ctx = join(work, 'build');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(join(ctx, 'Dockerfile'), `FROM ${tenv.busybox}\nARG N\nRUN echo "run $N" > /r\nCOPY f /f\n`);
  for (let i = 0; i < ITERATIONS; i++) {
    await emptyStore();
    await ok('pull', '--platform', `${host},${other}`, tenv.busybox);
    writeFileSync(join(ctx, 'f'), `file ${i}\n`);
    const tag = `gcrace:${i}`;
    const build = polyarch(
      'build',
      '--platform',
      `${host},${other}`,
      '--build-arg',
      `N=${i}-${process.pid}`,
      '--load',
      '-t',
      tag,
      ctx,
    );
    const { op, gcs } = await race(build, (n) =>
      n % 2 === 0 ? polyarch('rmi', tenv.busybox) : polyarch('prune', '--all'),
    );
    assert.equal(op.status, 0, `iteration ${i}: ${op.stderr}`);
    assert.ok(
      gcs.some((g) => g.stdout.includes(`Untagged: ${tenv.busybox}`)),
      `iteration ${i}: rmi removed busybox while the build ran`,
    );
    assert.ok(kept(gcs), `iteration ${i}: a GC kept what the build uses`);
    for (const p of [host, other]) {
      const r = await ok('run', '--rm', '--pull', 'never', '--platform', p, tag, 'cat', '/r', '/f');
      assert.equal(r.stdout, `run ${i}-${process.pid}\nfile ${i}\n`);
    }
    await ok('rmi', tag);
  }
});

test('run (a matrix of two platforms) racing rmi and prune --all succeeds every time', async () => {
  for (let i = 0; i < ITERATIONS; i++) {
    await emptyStore();
    await ok('pull', '--platform', `${host},${other}`, tenv.busybox);
    // The second platform unpacks only after the first container ran for a second: without a
    // lease, its blobs are gone by then.
    const run = polyarch(
      'run',
      '--rm',
      '--platform',
      `${host},${other}`,
      tenv.busybox,
      'sh',
      '-c',
      'sleep 1; echo ok',
    );
    // GC starts once the first container runs: the image is resolved, the second platform
    // is not unpacked yet.
    const snaps = await Snapshotter.open({ root });
    const { op, gcs } = await race(
      run,
      (n) => (n % 2 === 0 ? polyarch('rmi', tenv.busybox) : polyarch('prune', '--all')),
      async () => (await snaps.list()).some((s) => s.key.startsWith('run:')),
    );
    assert.equal(op.status, 0, `iteration ${i}: ${op.stdout}${op.stderr}`);
    assert.match(op.stdout, new RegExp(`^${host} \\| ok$`, 'm'));
    assert.match(op.stdout, new RegExp(`^${other} \\| ok$`, 'm'));
    assert.ok(
      gcs.some((g) => g.stdout.includes(`Untagged: ${tenv.busybox}`)),
      `iteration ${i}: rmi removed busybox while the run ran`,
    );
    assert.ok(kept(gcs), `iteration ${i}: a GC kept what the run uses`);
  }
});

test('a build killed with -9: its lease protects nothing once it is dead', async () => {
  await emptyStore();
  const blobs = () => readdirSync(join(storeDir(env), 'blobs', 'sha256'));
  assert.deepEqual(blobs(), []);
  await ok('pull', '--platform', host, tenv.busybox);
  const ctx = join(work, 'killed');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(join(ctx, 'Dockerfile'), `FROM ${tenv.busybox}\nRUN sleep 3 && echo late > /late\n`);
  const b = start('build', '--platform', host, '--no-cache', ctx);
  const snaps = await Snapshotter.open({ root });
  const deadline = Date.now() + 60_000;
  while (!(await snaps.list()).some((s) => s.kind === 'active')) {
    assert.ok(Date.now() < deadline, 'the RUN step never started');
    await new Promise((r) => setTimeout(r, 100));
  }
  const leases = join(storeDir(env), 'leases');
  const leaseFiles = () => readdirSync(leases).filter((n) => n.endsWith('.json'));
  assert.equal(leaseFiles().length, 1, 'the build holds one lease');
  const before = blobs().length;
  assert.equal(before, 4, 'index, manifest, config, layer');

  // While it lives, rmi untags busybox but keeps the blobs the build uses.
  const rmi = await ok('rmi', tenv.busybox);
  assert.match(rmi.stdout, /Kept \d+ blobs in use by running operations/);
  assert.equal(blobs().length, before);
  const du = await ok('du');
  assert.match(
    du.stdout,
    new RegExp(`^Unreferenced:\\s+${before} blobs, .* \\(${before} in use by running operations\\)$`, 'm'),
  );

  b.child.kill('SIGKILL');
  await b.done;
  // Dead: the next GC ignores (and removes) its lease and collects the blobs.
  const p = await ok('prune', '--all');
  assert.doesNotMatch(p.stdout, /Kept \d+ blobs/);
  assert.match(p.stdout, new RegExp(`Deleted blobs: ${before}\\n`));
  assert.deepEqual(blobs(), []);
  assert.deepEqual(leaseFiles(), []);

  // What the dead build left mounted comes off (as the next build would do), then nothing is left.
  await new Promise((r) => setTimeout(r, 3500)); // its container ends by itself
  await cleanupStale(root);
  await ok('prune', '--all');
  const left = (await snaps.list()).map((s) => s.key);
  // The dead build's active snapshot goes with the next build's orphan sweep or prune.
  assert.deepEqual(left, []);
  assert.equal(existsSync(join(storeDir(env), 'index.json')), true);
});
