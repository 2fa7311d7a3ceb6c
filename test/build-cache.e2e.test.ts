/**
 * The build cache through bin/polyarch (`du`, `prune`), with real builds from `FROM busybox`
 * (the test registry's mirror through $POLYARCH_TEST_CONFIG) in a private state root: du lists
 * the records with sizes; prune's filters (until, keep-storage, --all) remove what they should
 * and a rebuild re-runs exactly the pruned steps; images in the store still run; an active
 * snapshot, what it stacks on, and what a running build used are never removed; no mounts stay.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { holdBuildLease, markUsed } from '../src/build/index.js';
import { Snapshotter } from '../src/snapshot/index.js';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-cache-e2e-'));
const work = mkdtempSync(join(tmpdir(), 'polyarch-cache-ctx-'));
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});
const env = { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: tenv.config, POLYARCH_PROGRESS: 'plain' };

function polyarch(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { env, encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function context(name: string, dockerfile: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

const ctxA = context(
  'a',
  'FROM busybox\nRUN echo one > /one && dd if=/dev/zero of=/big bs=1024 count=256 2>/dev/null\nRUN echo two > /two\n',
);
const ctxB = context('b', 'FROM busybox\nRUN echo b > /b\n');
const ctxSlow = context('slow', 'FROM busybox\nRUN echo first > /first\nRUN sleep 4 && echo slow > /slow\n');
// A COPY, so the context checksum memo is written too.
const ctxM = context(
  'm',
  'FROM busybox\nCOPY Dockerfile /Dockerfile.copy\nRUN --mount=type=cache,target=/c echo m > /c/m && cat /c/m > /m\n',
);

/** Status of each RUN step of a plain-progress build: 'CACHED' or 'DONE'. */
function runSteps(stderr: string): string[] {
  const names = new Map<string, string>();
  const status = new Map<string, string>();
  for (const line of stderr.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const [, id, rest] = m as unknown as [string, string, string];
    if (!names.has(id)) names.set(id, rest);
    else if (rest === 'CACHED' || rest.startsWith('DONE'))
      status.set(id, rest === 'CACHED' ? 'CACHED' : 'DONE');
  }
  return [...names].filter(([, n]) => / RUN /.test(n)).map(([id]) => status.get(id) ?? 'NONE');
}

function buildOk(dir: string, tag: string): string[] {
  const r = polyarch('build', '--load', '-t', tag, dir);
  assert.equal(r.status, 0, r.stderr);
  return runSteps(r.stderr);
}

interface JsonRecord {
  id: string;
  key: string;
  type: string;
  size: number;
  inUse: boolean;
  shared: boolean;
}
function records(): JsonRecord[] {
  const r = polyarch('du', '--format', 'json');
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { buildCache: { records: JsonRecord[] } }).buildCache.records;
}
const keysOf = (rs: JsonRecord[], type?: string) =>
  rs
    .filter((r) => type === undefined || r.type === type)
    .map((r) => r.key)
    .sort();

function assertNoMounts(): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.includes(root));
  assert.deepEqual(mounts, [], 'mounts left under the state root');
}

test('du lists the records of a build; prune --filter until=1h right after removes nothing', () => {
  assert.deepEqual(buildOk(ctxA, 'cachetest:a'), ['DONE', 'DONE']);
  const recs = records();
  const regular = recs.filter((r) => r.type === 'regular');
  assert.equal(regular.length, 2, JSON.stringify(recs));
  assert.ok(
    regular.some((r) => r.size >= 256 * 1024),
    'the step that wrote 256 KiB is at least that big',
  );
  // busybox's layer, needed by cachetest:a (and busybox) in the store: shared.
  const base = recs.filter((r) => r.type === 'source.image');
  assert.ok(base.length >= 1 && base.every((r) => r.shared), JSON.stringify(base));

  const table = polyarch('du');
  assert.equal(table.status, 0, table.stderr);
  assert.match(table.stdout, /^ID\s+RECLAIMABLE\s+SIZE\s+LAST ACCESSED$/m);
  for (const r of recs) assert.match(table.stdout, new RegExp(`^${r.id}\\s+true\\s+\\S+\\s+.* ago$`, 'm'));
  for (const l of ['Shared:', 'Private:', 'Reclaimable:'])
    assert.match(table.stdout, new RegExp(`^${l}\\s+\\S+$`, 'm'));
  assert.match(table.stdout, /^Total:\s+\d[\d.]*[kMG]?B$/m);
  assert.match(table.stdout, /^Total:\s+\d+ blobs, /m, 'the store report is still there');
  const verbose = polyarch('du', '--verbose');
  assert.match(verbose.stdout, /^Type:\s+regular$/m);
  assert.match(verbose.stdout, /^Key:\s+build:[0-9a-f]+$/m);

  const p = polyarch('prune', '--filter', 'until=1h');
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /^Total:\s+0B$/m);
  assert.doesNotMatch(p.stdout, /^ID/m);
  assert.deepEqual(keysOf(records()), keysOf(recs));
  assert.deepEqual(buildOk(ctxA, 'cachetest:a'), ['CACHED', 'CACHED']);
  assertNoMounts();
});

test('--keep-storage keeps the most recently used; the pruned steps run again', () => {
  assert.deepEqual(buildOk(ctxB, 'cachetest:b'), ['DONE']);
  const recs = records();
  assert.equal(keysOf(recs, 'regular').length, 3);
  // Keep room for the base layers and the newest record (B's) only.
  const newest = recs.find((r) => r.type === 'regular')!; // du lists most recently used first
  const keep = recs.filter((r) => r.type !== 'regular').reduce((n, r) => n + r.size, 0) + newest.size;
  const p = polyarch('prune', '--keep-storage', String(keep), '--verbose');
  assert.equal(p.status, 0, p.stderr);
  assert.equal((p.stdout.match(/^Type:\s+regular$/gm) ?? []).length, 2, p.stdout);
  assert.match(p.stdout, /^Total:\s+[1-9][\d.]*[kMG]?B$/m);
  assert.deepEqual(keysOf(records(), 'regular'), [newest.key]);

  assert.deepEqual(buildOk(ctxB, 'cachetest:b'), ['CACHED']);
  assert.deepEqual(buildOk(ctxA, 'cachetest:a'), ['DONE', 'DONE']);
  const run = polyarch('run', '--rm', 'cachetest:a', 'cat', '/two');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'two\n');
  assertNoMounts();
});

test('default prune keeps shared layers and cache mounts; --all removes them; images still run', () => {
  assert.deepEqual(buildOk(ctxM, 'cachetest:m'), ['DONE']);
  const mountsDir = join(root, 'build', 'cache-mounts');
  assert.equal(readdirSync(mountsDir).length, 1);
  const kept = polyarch('run', 'cachetest:b', 'true'); // kept as container:<id>
  assert.equal(kept.status, 0, kept.stderr);
  assert.ok(keysOf(records(), 'container').length === 1);

  assert.deepEqual(keysOf(records(), 'source.local'), ['context-index']);
  let p = polyarch('prune', '-f');
  assert.equal(p.status, 0, p.stderr);
  let recs = records();
  assert.deepEqual(keysOf(recs, 'regular'), []);
  assert.deepEqual(keysOf(recs, 'source.local'), [], 'the context checksum memo is pruned by default');
  assert.ok(keysOf(recs, 'source.image').length >= 1);
  assert.equal(keysOf(recs, 'exec.cachemount').length, 1);
  // The kept container has exited: prune removes stopped containers (and so its snapshot).
  assert.equal(keysOf(recs, 'container').length, 0);
  assert.deepEqual(buildOk(ctxB, 'cachetest:b'), ['DONE']);

  p = polyarch('prune', '--all');
  assert.equal(p.status, 0, p.stderr);
  recs = records();
  assert.deepEqual(recs, [], JSON.stringify(recs));
  assert.deepEqual(readdirSync(mountsDir), []);
  for (const [img, file, want] of [
    ['cachetest:a', '/two', 'two\n'],
    ['cachetest:b', '/b', 'b\n'],
    ['cachetest:m', '/m', 'm\n'],
  ] as const) {
    const run = polyarch('run', '--rm', img, 'cat', file);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, want);
  }
  assertNoMounts();
});

test('an active snapshot, what it stacks on, and what a running build used are never pruned', async () => {
  assert.deepEqual(buildOk(ctxA, 'cachetest:a'), ['DONE', 'DONE']);
  assert.deepEqual(buildOk(ctxB, 'cachetest:b'), ['DONE']);
  const snaps = await Snapshotter.open({ root });
  const regular = (await snaps.list()).filter((s) => s.key.startsWith('build:'));
  const top = regular.find((s) => s.parents.some((p) => p.startsWith('build:')))!; // A's second step
  const bStep = regular.find((s) => s !== top && !top.parents.includes(s.key))!;
  const active = await snaps.prepare('test-active', [...top.parents, top.key]);
  try {
    let p = polyarch('prune', '--all');
    assert.equal(p.status, 0, p.stderr);
    for (const k of [...top.parents, top.key, 'test-active']) assert.ok(await snaps.has(k), `${k} kept`);
    assert.equal(await snaps.has(bStep.key), false, 'an unrelated record is pruned');

    // A "running build" (this process holds a lease) reused B's step after rebuilding it.
    assert.deepEqual(buildOk(ctxB, 'cachetest:b'), ['DONE']);
    const release = await holdBuildLease(root);
    try {
      await markUsed(root, [bStep.key]);
      p = polyarch('prune', '--all');
      assert.equal(p.status, 0, p.stderr);
      assert.ok(await snaps.has(bStep.key), 'used by a running build: kept');
    } finally {
      await release();
    }
  } finally {
    await snaps.remove(active.key);
  }
  const p = polyarch('prune', '--all');
  assert.equal(p.status, 0, p.stderr);
  assert.deepEqual(
    (await snaps.list()).map((s) => s.key),
    [],
  );
  assert.equal(
    existsSync(join(root, 'build', 'cache-used')) && readdirSync(join(root, 'build', 'cache-used')).length,
    0,
  );
  assertNoMounts();
});

test('prune --all during a build removes nothing the build uses; the build succeeds and its image runs', async () => {
  // Warm the first step so the build reuses a record made before it started.
  const warm = polyarch('build', context('slow-warm', 'FROM busybox\nRUN echo first > /first\n'));
  assert.equal(warm.status, 0, warm.stderr);
  const child = spawn(bin, ['build', '--load', '-t', 'cachetest:slow', ctxSlow], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  // Wait until the slow RUN runs (its active snapshot exists), then prune everything.
  const snaps = await Snapshotter.open({ root });
  const deadline = Date.now() + 60_000;
  while (!(await snaps.list()).some((s) => s.kind === 'active')) {
    assert.ok(Date.now() < deadline, `the slow step never started: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const p = polyarch('prune', '--all');
  assert.equal(p.status, 0, p.stderr);
  assert.equal(await exited, 0, stderr);
  assert.deepEqual(runSteps(stderr), ['CACHED', 'DONE']);
  const run = polyarch('run', '--rm', 'cachetest:slow', 'cat', '/first', '/slow');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'first\nslow\n');
  assertNoMounts();
});
