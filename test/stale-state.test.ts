/**
 * Secrets on disk and what killed processes leave, as a user meets them with `./bin/polyarch`:
 * while a RUN with `--mount=type=secret,env=` sleeps, every file holding the secret is 0600 (or
 * the mount's own mode) in 0700 directories under a 0700 state root; after `kill -9` of the
 * build — or of a `run` — the next command of any kind (`version`, `images`) deletes the
 * container, unmounts its rootfs and removes the bundle, the staged secret and the active
 * snapshot, and no file under the state root holds the secret any more.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Snapshotter } from '../src/snapshot/overlay.js';
import { formatOwner, selfOwner } from '../src/util/lock.js';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const env = testEnv();
const SECRET = `s3cret-${process.pid}-value`;

let dir: string;

function polyarch(root: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function start(root: string, args: string[], extra: Record<string, string> = {}): ChildProcess {
  return spawn(bin, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config, ...extra },
  });
}

function listDir(p: string): string[] {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
}

const mode = (p: string) => (statSync(p).mode & 0o7777).toString(8);

/** Waits until `pred` holds, or fails naming `what` (and the child's stderr). */
async function until(what: string, pred: () => boolean, child?: ChildProcess, err?: string[]): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (pred()) return;
    if (child && child.exitCode !== null) break;
    await sleep(100);
  }
  assert.fail(`timed out waiting for ${what}: ${err?.join('') ?? ''}`);
}

async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited; // reaped: its pid no longer answers
}

function mountsUnder(root: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(`${root}/`));
}

function runcList(root: string): string[] {
  try {
    return execFileSync('runc', ['--root', join(root, 'runc'), 'list', '-q'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

/** Files under `root` whose bytes contain `needle` (grep, not following links). */
function filesHolding(root: string, needle: string): string[] {
  const r = spawnSync('grep', ['-rlF', '--', needle, root], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean);
}

async function activeRunSnapshots(root: string): Promise<string[]> {
  const s = await Snapshotter.open({ root });
  return (await s.list()).filter((x) => x.kind === 'active').map((x) => x.key);
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'polyarch-stale-'));
});

after(async () => {
  // Whatever a failed test left: the reconciliation under test, then removal.
  for (const name of await readdir(dir)) polyarch(join(dir, name), ['version']);
  await rm(dir, { recursive: true, force: true });
});

describe('secrets on disk', () => {
  test('while a RUN with a secret sleeps: 0600 files in 0700 dirs; after kill -9, `version` removes them', async () => {
    const root = join(dir, 'build-state');
    const ctx = join(dir, 'ctx-secret');
    await mkdir(ctx, { recursive: true });
    await writeFile(
      join(ctx, 'Dockerfile'),
      `FROM ${env.busybox}\nRUN --mount=type=secret,id=tok,env=TOKENV --mount=type=secret,id=tok,target=/run/tok sleep 60\n`,
    );
    const err: string[] = [];
    const child = start(
      root,
      ['build', '--progress', 'plain', '--platform', 'linux/amd64', '--secret', 'id=tok,env=TOK', ctx],
      { TOK: SECRET },
    );
    child.stderr!.on('data', (b: Buffer) => err.push(b.toString()));
    const execDir = join(root, 'exec');
    let bundle = '';
    await until(
      'the RUN container to start',
      () => {
        const ids = listDir(execDir);
        if (ids.length !== 1) return false;
        bundle = join(execDir, ids[0]!);
        return runcList(root).length === 1 && existsSync(join(bundle, 'config.json'));
      },
      child,
      err,
    );
    try {
      // The secret is where it must be, and only readable by its owner.
      const holding = filesHolding(root, SECRET).sort();
      const config = join(bundle, 'config.json');
      assert.ok(holding.includes(config), `config.json holds TOKENV: ${holding}`);
      const staged = holding.filter((p) => p.startsWith(join(root, 'build', 'tmp')));
      // Two mounts of the secret (the env one is also a file at /run/secrets/tok): two files.
      assert.equal(staged.length, 2, `the staged secret files: ${holding}`);
      assert.equal(mode(root), '700', 'state root');
      assert.equal(mode(execDir), '700', 'exec/');
      assert.equal(mode(bundle), '700', 'bundle');
      assert.equal(mode(config), '600', 'config.json');
      assert.equal(mode(join(root, 'runc')), '700', 'runc/');
      assert.equal(mode(join(root, 'build', 'tmp')), '700', 'build/tmp/');
      for (const f of staged) {
        assert.equal(mode(dirname(f)), '700', 'the staged secret dir');
        assert.equal(mode(f), '400', 'the secret file (the mount default, 0400)');
      }
      assert.equal(mode(join(root, 'pids')), '700', 'pids/');
      for (const f of holding) {
        const m = statSync(f).mode & 0o077;
        assert.equal(m, 0, `${f} is not readable by group or others (${mode(f)})`);
      }
      await killHard(child);
    } finally {
      if (child.exitCode === null) await killHard(child);
    }
    // The kill left everything in place: the next command must act (this test can fail).
    assert.ok(existsSync(bundle), 'bundle left by the killed build');
    assert.equal(runcList(root).length, 1, 'the container still runs');
    assert.ok(mountsUnder(root).length > 0, 'its rootfs is still mounted');

    const v = polyarch(root, ['version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^polyarch v/);
    assert.deepEqual(await readdir(execDir), [], 'bundle removed');
    assert.deepEqual(runcList(root), [], 'container deleted');
    assert.deepEqual(mountsUnder(root), [], 'rootfs unmounted');
    assert.deepEqual(await readdir(join(root, 'build', 'tmp')), [], 'build temp (staged secret) removed');
    assert.deepEqual(filesHolding(root, SECRET), [], 'no file under the state root holds the secret');
    assert.deepEqual(await readdir(join(root, 'pids')), [], 'the dead marker is gone');
    assert.deepEqual(await activeRunSnapshots(root), [], 'active snapshots of the dead build removed');
  });
});

/** Whether `pid` runs (a zombie waiting for a reaper has finished). */
function pidLives(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

describe('what killed processes leave', () => {
  test('kill -9 of `run`: the next command (`images`) deletes the container, unmounts and removes the bundle', async () => {
    const root = join(dir, 'run-state');
    assert.equal(polyarch(root, ['pull', '--platform', 'linux/amd64', env.busybox]).status, 0);
    const err: string[] = [];
    const child = start(root, ['run', '--rm', '--platform', 'linux/amd64', env.busybox, 'sleep', '60']);
    child.stderr!.on('data', (b: Buffer) => err.push(b.toString()));
    const execDir = join(root, 'exec');
    await until(
      'the container to run',
      () => runcList(root).length === 1 && listDir(execDir).length === 1,
      child,
      err,
    );
    await killHard(child);
    assert.equal((await readdir(execDir)).length, 1, 'bundle left by the killed run');
    assert.equal(mountsUnder(root).length, 1, 'its rootfs is still mounted');
    assert.equal((await activeRunSnapshots(root)).length, 1, 'its active snapshot is left');
    // The default network is bridge: its namespace and pasta are left too.
    const nets = (await readdir(join(root, 'net'))).filter((n) => n.endsWith('.pid'));
    assert.equal(nets.length, 1, 'its network is left');
    const netId = nets[0]!.replace(/\.pid$/, '');
    const pasta = Number(await readFile(join(root, 'net', nets[0]!), 'utf8'));
    assert.ok(pidLives(pasta), 'its pasta still runs');

    const r = polyarch(root, ['images']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(await readdir(execDir), []);
    assert.deepEqual(runcList(root), []);
    assert.deepEqual(mountsUnder(root), []);
    assert.deepEqual(await activeRunSnapshots(root), []);
    assert.deepEqual(await readdir(join(root, 'pids')), []);
    assert.ok(
      !pidLives(pasta),
      `its pasta is stopped (${readFileSync(`/proc/${pasta}/status`, 'utf8').split('\n')[2]})`,
    );
    assert.ok(!existsSync(`/run/netns/polyarch-${netId}`), 'its network namespace is deleted');
    assert.deepEqual(await readdir(join(root, 'net')), []);
  });

  test('a command that ends normally leaves no marker; a live marker is left alone', async () => {
    const root = join(dir, 'run-state');
    const r = polyarch(root, ['run', '--rm', '--platform', 'linux/amd64', env.busybox, 'true']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(await readdir(join(root, 'pids')), []);
    // This test process's own marker name (alive): `version` must not touch it.
    const mine = join(root, 'pids', formatOwner(selfOwner()));
    await writeFile(mine, '');
    assert.equal(polyarch(root, ['version']).status, 0);
    assert.ok(existsSync(mine));
    await rm(mine);
  });

  test('a dead marker also sweeps the export temp files its process left', async () => {
    const root = join(dir, 'export-state');
    await mkdir(join(root, 'export', 'tmp'), { recursive: true });
    await mkdir(join(root, 'pids'), { recursive: true });
    const gone = spawnSync('true').pid!;
    const temp = join(root, 'export', `.tmp-layers.json-${gone}-0badc0de`);
    const staging = join(root, 'export', 'tmp', `.tmp-out-${gone}-0badc0de`);
    await writeFile(temp, '{');
    await mkdir(staging);
    const me = selfOwner();
    await writeFile(join(root, 'pids', formatOwner({ ...me, pid: gone, start: '1' })), '');
    assert.equal(polyarch(root, ['version']).status, 0);
    assert.ok(!existsSync(temp), 'layer memo temp removed');
    assert.ok(!existsSync(staging), 'staging dir removed');
    assert.deepEqual(await readdir(join(root, 'pids')), []);
  });

  test('a state root polyarch makes is 0700', () => {
    const root = join(dir, 'fresh', 'nested', 'state');
    assert.equal(polyarch(root, ['version']).status, 0);
    assert.equal(mode(root), '700');
  });
});
