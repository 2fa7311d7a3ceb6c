/**
 * Shared benchmark plumbing: running a command with each output line's arrival time, the
 * statistics the benches report (median, spread), buildah set-up, and re-running a bench
 * inside the test environment (registries + busybox) when started outside it.
 *
 *   if (relaunchInTestEnv()) return;              // outside the harness: re-ran there
 *   const r = await timed(bin, argv, env);       // r.ms, r.stdout, r.stderr, r.lines
 *   console.log(fmt(median(xs)), spread(xs));
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (bench/lib → dist/bench/lib at run time, so three levels up). */
export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const polyarchBin = join(repo, 'bin', 'polyarch');

export interface Timed {
  ms: number;
  stdout: string;
  stderr: string;
  /** stderr lines with the wall-clock time (epoch ms) each arrived here. */
  lines: { at: number; text: string }[];
}

/** Runs a command to completion (asynchronously, so the wall time is the child's). */
export function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Timed> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
    const out: Buffer[] = [];
    const lines: Timed['lines'] = [];
    let partial = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => {
      const at = Date.now();
      const parts = (partial + c.toString('utf8')).split('\n');
      partial = parts.pop() ?? '';
      for (const text of parts) lines.push({ at, text });
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (partial) lines.push({ at: Date.now(), text: partial });
      const stderr = lines.map((l) => l.text).join('\n');
      const r = { ms, stdout: Buffer.concat(out).toString('utf8'), stderr, lines };
      if (code !== 0) reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}:\n${stderr.slice(-4000)}`));
      else resolvePromise(r);
    });
  });
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** `min–max` of the values, for the spread next to a median. */
export function spread(xs: number[], f: (x: number) => string = fmt): string {
  if (xs.length === 0) return '-';
  return `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
}

export function fmt(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)}s` : `${Math.round(ms)}ms`;
}

export function round(x: number, digits = 3): number {
  const k = 10 ** digits;
  return Math.round(x * k) / k;
}

/** The load average and CPU count, to print beside timings taken on a shared machine. */
export function machineLoad(): string {
  const [one, five] = readFileSync('/proc/loadavg', 'utf8').split(' ');
  const cpus = readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm)?.length ?? 0;
  return `${cpus} CPUs, load average ${one} (1 min) ${five} (5 min)`;
}

/** Debian's buildah, installed when missing; returns its version line. */
export function ensureBuildah(): string {
  const version = spawnSync('buildah', ['--version'], { encoding: 'utf8' });
  if (version.status === 0) return version.stdout.trim();
  console.error('bench: installing buildah (apt-get install -y buildah)');
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'buildah'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0) throw new Error('apt-get install buildah failed');
  return spawnSync('buildah', ['--version'], { encoding: 'utf8' }).stdout.trim();
}

/**
 * A containers.conf for buildah on this host: runc, cgroupfs, and rlimits under the host's
 * hard limits (Podman/buildah defaults raise nofile/nproc above them; runc refuses).
 */
export function writeBuildahConf(path: string): void {
  writeFileSync(
    path,
    [
      '[containers]',
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'runtime = "runc"',
      '',
    ].join('\n'),
  );
}

/** buildah's global flags for a private overlay store under `dir`. */
export function buildahStore(dir: string): string[] {
  return ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'overlay'];
}

/** Unmounts whatever is mounted under dir (buildah's overlay storage), deepest first. */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

/**
 * Outside the test environment, re-runs this script inside it (test/env/harness: a registry
 * holding busybox, POLYARCH_TEST_* set) and returns true; inside it, returns false.
 */
export function relaunchInTestEnv(): boolean {
  if (process.env.POLYARCH_TEST_REGISTRY) return false;
  const harness = join(repo, 'dist', 'test', 'env', 'harness.js');
  const child = spawn(process.execPath, [harness, '--', process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
  return true;
}
