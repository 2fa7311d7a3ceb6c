/**
 * `polyarch run` latency benchmark: `polyarch run --rm IMAGE true` on a warm store (layers
 * already unpacked), median of N runs, next to `podman run --rm` when podman is installed —
 * else (said in the output) next to plain `runc run` of a prepared bundle holding the same
 * rootfs, which is the floor any runc-based tool pays. Target: a median under 0.3 s.
 *
 *   node dist/bench/run.js [--runs N] [--image REF] [--json]
 *
 * Default image: a one-layer busybox made from the host's /bin/busybox (busybox-static) in a
 * temporary state root, so no registry is needed; `--image` runs a given reference instead
 * (pulled during the warm-up run, `$POLYARCH_CONFIG` applies). The temporary root is removed
 * afterwards. Needs root (runc, overlayfs).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { ContentStore } from '../src/content/store.js';
import { MediaType } from '../src/oci/index.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    image: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const runs = Number(args.runs);
if (!(runs >= 1)) {
  console.error('usage: run.js [--runs N] [--image REF] [--json]');
  process.exit(2);
}
const TARGET_MS = 300;
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');

const root = mkdtempSync(join(tmpdir(), 'polyarch-bench-run-'));
const env = { ...process.env, POLYARCH_ROOT: root };

/** A busybox rootfs dir: /bin/busybox plus the applets `true` and `sh`. */
function makeRootfs(dir: string): void {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  cpSync('/bin/busybox', join(dir, 'bin/busybox'));
  for (const applet of ['true', 'sh']) symlinkSync('busybox', join(dir, 'bin', applet));
  for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\n');
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}` as const;

/** Stores the busybox image as `localhost/bench/busybox:latest`; returns its name. */
async function makeImage(rootfs: string): Promise<string> {
  const layer = execFileSync('tar', [
    '-C',
    rootfs,
    '--sort=name',
    '--owner=0',
    '--group=0',
    '-czf',
    '-',
    '.',
  ]);
  const store = await ContentStore.open(join(root, 'store'));
  const l = await store.writeBlob(layer);
  const config = await store.writeJson(
    {
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['sh'] },
      rootfs: { type: 'layers', diff_ids: [sha256(gunzipSync(layer))] },
    },
    MediaType.OciConfig,
  );
  const manifest = await store.writeJson(
    {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config,
      layers: [{ mediaType: MediaType.OciLayerGzip, ...l }],
    },
    MediaType.OciManifest,
  );
  const name = 'localhost/bench/busybox:latest';
  await store.tag(name, manifest);
  return name;
}

function time(cmd: string, argv: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr}`);
  return ms;
}

interface Stats {
  name: string;
  median: number;
  min: number;
  max: number;
  /** CPU time (user + system) of the waited-for children per run: steadier than wall time on a busy machine. */
  cpu: number;
}

/** cutime + cstime of this process (waited-for children), in ms; /proc/self/stat counts in 1/100 s. */
function childCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) * 10; // fields 16 and 17 of proc(5)
}

function measure(name: string, once: (i: number) => number): Stats {
  const cpu0 = childCpuMs();
  const xs = Array.from({ length: runs }, (_, i) => once(i)).sort((a, b) => a - b);
  const cpu = (childCpuMs() - cpu0) / runs;
  const mid = Math.floor(xs.length / 2);
  const median = xs.length % 2 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  return { name, median, min: xs[0]!, max: xs.at(-1)!, cpu };
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** An OCI bundle for `runc run`: `runc spec` with `true` as the process and no terminal. */
function makeBundle(rootfs: string): string {
  const bundle = join(root, 'bundle');
  mkdirSync(bundle);
  cpSync(rootfs, join(bundle, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  execFileSync('runc', ['spec'], { cwd: bundle });
  const specPath = join(bundle, 'config.json');
  const spec = JSON.parse(readFileSync(specPath, 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['true'];
  writeFileSync(specPath, JSON.stringify(spec));
  return bundle;
}

try {
  const rootfs = join(root, 'rootfs');
  makeRootfs(rootfs);
  const image = args.image ?? (await makeImage(rootfs));
  time(bin, ['run', '--rm', image, 'true']); // warm-up: pull (if needed) and unpack
  const results: Stats[] = [];
  results.push(measure('polyarch run --rm IMAGE true', () => time(bin, ['run', '--rm', image, 'true'])));
  results.push(measure('node start-up (polyarch version)', () => time(bin, ['version'])));
  let peer: string;
  if (has('podman')) {
    peer = 'podman (runc, vfs, cgroupfs: what works on this host)';
    // podman reads polyarch's store through an oci-archive it loads once into its own storage.
    const archive = join(root, 'image.tar');
    execFileSync(bin, ['save', '-o', archive, image], { env });
    const podman = [
      '--root',
      join(root, 'podman', 'root'),
      '--runroot',
      join(root, 'podman', 'run'),
      '--storage-driver',
      'vfs',
      '--cgroup-manager=cgroupfs',
      '--runtime',
      'runc',
    ];
    const loaded = execFileSync('podman', [...podman, 'load', '-q', '-i', archive], { encoding: 'utf8' });
    const id = loaded.trim().split(/\s+/).pop()!;
    const runArgs = [...podman, 'run', '--rm', '--network', 'host', '--ulimit', 'nofile=1024:1024'];
    runArgs.push('--ulimit', 'nproc=1024:1024', id, 'true');
    time('podman', runArgs);
    results.push(measure('podman run --rm IMAGE true', () => time('podman', runArgs)));
  } else {
    peer = 'runc (podman is not installed)';
    const bundle = makeBundle(rootfs);
    const runcRoot = join(root, 'runc-bench');
    results.push(
      measure('runc run (prepared bundle)', (i) =>
        time('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `bench-${process.pid}-${i}`]),
      ),
    );
  }
  const ours = results[0]!;
  if (args.json) console.log(JSON.stringify({ runs, peer, targetMs: TARGET_MS, results }, null, 2));
  else {
    console.log(`polyarch run benchmark: ${runs} runs each, warm store, compared with ${peer}`);
    const w = Math.max(...results.map((r) => r.name.length));
    const ms = (x: number) => `${x.toFixed(0)}ms`.padEnd(8);
    console.log(`${'COMMAND'.padEnd(w)}  MEDIAN    MIN       MAX       CPU/RUN`);
    for (const r of results)
      console.log(`${r.name.padEnd(w)}  ${ms(r.median)}  ${ms(r.min)}  ${ms(r.max)}  ${r.cpu.toFixed(0)}ms`);
    console.log(`load average (1 min) ${loadavg()[0]!.toFixed(2)} on ${availableParallelism()} cores`);
    const peerStats = results[2]!;
    console.log(
      `overhead over ${peer.split(' ')[0]}: ${(ours.median - peerStats.median).toFixed(0)}ms; target < ${TARGET_MS}ms: ${ours.median < TARGET_MS ? 'met' : 'NOT met'}`,
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
