/**
 * Build benchmark: `polyarch build --push` against buildah, measured in the same run, for a
 * small Dockerfile (two RUNs, a COPY, WORKDIR, CMD) on busybox for linux/amd64, linux/arm64
 * and linux/arm/v7 (the foreign two under QEMU).
 *
 *   node dist/bench/build.js [--runs N] [--json] [--keep]
 *
 * Runs inside the test environment (test/env/harness: a registry holding busybox); started
 * outside it, it re-runs itself under the harness. Installs Debian's buildah when missing.
 *
 * Measured, each the median of --runs (default 3) rounds:
 *   - polyarch cold: empty state root, build all three platforms and push the index.
 *   - polyarch warm: the same command again, nothing changed (cache hits + push).
 *   - buildah cold: empty storage, `buildah build --platform ... --manifest` (no push).
 *   - buildah warm: `buildah build --layers` twice on fresh storage; the second is timed.
 * Targets: polyarch cold ≤ 0.35× buildah cold; polyarch warm ≤ 0.12× buildah warm.
 * Every run has its own fresh directories, all removed only at the end (a deletion during the
 * runs would slow the inode allocations of whichever ran next: ext4 skips recently deleted
 * inodes for minutes).
 * Both read the base from the registry (`--build-arg BASE=...`) and use overlay storage; buildah
 * runs with runc, cgroupfs and rlimits under the host's hard limits (containers.conf below).
 * For polyarch, `--progress rawjson` gives where the time goes: process start to the first
 * vertex, then each vertex kind (metadata, FROM, RUN, COPY, export/push) as the sum of vertex
 * durations and as the wall span they cover.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const runs = Number(args.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error('usage: build.js [--runs N] [--json] [--keep]');
  process.exit(2);
}

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const PLATFORMS = 'linux/amd64,linux/arm64,linux/arm/v7';
const TARGET_COLD = 0.35;
const TARGET_WARM = 0.12;

function ensureBuildah(): string {
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

/** The context: a Dockerfile, five small files and 1 MiB of incompressible bytes. */
function makeContext(dir: string): void {
  mkdirSync(join(dir, 'app'), { recursive: true });
  writeFileSync(
    join(dir, 'Dockerfile'),
    [
      'ARG BASE=busybox',
      'FROM $BASE',
      'ARG TARGETARCH',
      'RUN echo "built for $TARGETARCH on $(uname -m)" > /built && mkdir -p /app',
      'COPY app/ /app/',
      'RUN ls -la /app > /app/listing.txt && wc -c /app/* > /app/sizes.txt',
      'WORKDIR /app',
      'CMD ["cat", "/built"]',
      '',
    ].join('\n'),
  );
  for (let i = 1; i <= 5; i++) writeFileSync(join(dir, 'app', `f${i}.txt`), `file ${i}\n`.repeat(100 * i));
  // Deterministic pseudo-random bytes, so every run (and both tools) copy the same file.
  const big = Buffer.alloc(1 << 20);
  let x = 2463534242;
  for (let i = 0; i < big.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    big.writeUInt32LE(x >>> 0, i);
  }
  writeFileSync(join(dir, 'app', 'blob.bin'), big);
}

interface Timed {
  ms: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (asynchronously, so the wall time is the child's). */
function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv): Promise<Timed> {
  return new Promise((resolvePromise, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      const r = {
        ms,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (code !== 0) reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}:\n${r.stderr.slice(-4000)}`));
      else resolvePromise(r);
    });
  });
}

/** Unmounts whatever is mounted under dir (buildah's overlay storage), deepest first. */
function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

interface VertexTimes {
  name: string;
  started?: number;
  completed?: number;
  cached?: boolean;
}

/** rawjson times are RFC 3339 strings (like BuildKit's); epoch ms are accepted too. */
function ms(t: unknown): number | undefined {
  if (typeof t === 'number') return t;
  if (typeof t === 'string') return Date.parse(t);
  return undefined;
}

/** Vertex kind for the breakdown. */
function kind(name: string): string {
  if (/load metadata/.test(name)) return 'metadata';
  if (/^\[internal\]/.test(name)) return 'context';
  const m = /^\[[^\]]*\] (\w+)/.exec(name);
  if (m) return m[1]!;
  if (/^exporting|^pushing|^naming/.test(name)) return 'export/push';
  return name.split(' ')[0] ?? name;
}

interface Breakdown {
  /** Process start to the first vertex start (node start-up, module load, Dockerfile parse). */
  startupMs: number;
  /** Last vertex end to process exit. */
  tailMs: number;
  /** Per kind: summed vertex durations and the wall span from first start to last end. */
  kinds: Record<string, { sumMs: number; spanMs: number; count: number; cached: number }>;
}

function breakdown(rawjson: string, t0: number, t1: number): Breakdown {
  const vertexes = new Map<string, VertexTimes>();
  const pushStarts: [string, number][] = [];
  for (const line of rawjson.split('\n')) {
    if (!line.startsWith('{')) continue;
    let ev: {
      vertexes?: { digest: string; name: string; started?: unknown; completed?: unknown; cached?: boolean }[];
      statuses?: { id: string; vertex: string; started?: unknown }[];
    };
    try {
      ev = JSON.parse(line);
    } catch {
      continue;
    }
    for (const v of ev.vertexes ?? []) {
      const t: VertexTimes = { name: v.name };
      const started = ms(v.started);
      const completed = ms(v.completed);
      if (started !== undefined) t.started = started;
      if (completed !== undefined) t.completed = completed;
      if (v.cached) t.cached = true;
      vertexes.set(v.digest, { ...vertexes.get(v.digest), ...t });
    }
    for (const st of ev.statuses ?? []) {
      const started = ms(st.started);
      if (st.id.startsWith('sha256:') && started !== undefined) pushStarts.push([st.vertex, started]);
    }
  }
  const kinds: Breakdown['kinds'] = {};
  let first = Number.POSITIVE_INFINITY;
  // The exporter's first blob upload (status id = a digest) splits it into prepare and push.
  const exporter = [...vertexes.entries()].find(([, v]) => kind(v.name) === 'export/push');
  const firstPush = Math.min(...pushStarts.filter(([vx]) => vx === exporter?.[0]).map(([, t]) => t));
  let last = 0;
  const spans = new Map<string, [number, number]>();
  for (const v of vertexes.values()) {
    if (v.started === undefined || v.completed === undefined) continue;
    const k = kind(v.name);
    const e = (kinds[k] ??= { sumMs: 0, spanMs: 0, count: 0, cached: 0 });
    e.sumMs += v.completed - v.started;
    e.count++;
    if (v.cached) e.cached++;
    const s = spans.get(k) ?? [v.started, v.completed];
    spans.set(k, [Math.min(s[0], v.started), Math.max(s[1], v.completed)]);
    first = Math.min(first, v.started);
    last = Math.max(last, v.completed);
  }
  for (const [k, [a, b]] of spans) kinds[k]!.spanMs = b - a;
  const ex = exporter?.[1];
  if (ex?.started !== undefined && ex.completed !== undefined && Number.isFinite(firstPush)) {
    kinds['  layers+manifests'] = {
      sumMs: firstPush - ex.started,
      spanMs: firstPush - ex.started,
      count: 1,
      cached: 0,
    };
    kinds['  blob+manifest push'] = {
      sumMs: ex.completed - firstPush,
      spanMs: ex.completed - firstPush,
      count: 1,
      cached: 0,
    };
  }
  return { startupMs: first - t0, tailMs: t1 - last, kinds };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function main(registry: string, busybox: string): Promise<void> {
  if (!busybox) throw new Error('POLYARCH_TEST_BUSYBOX is not set');
  const buildahVersion = ensureBuildah();
  const work = mkdtempSync(join(tmpdir(), 'polyarch-bench-build-'));
  const ctx = join(work, 'ctx');
  makeContext(ctx);
  const containersConf = join(work, 'containers.conf');
  writeFileSync(
    containersConf,
    [
      '[containers]',
      // Podman/buildah defaults raise nofile/nproc above this host's hard limits; runc refuses.
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      '[engine]',
      'cgroup_manager = "cgroupfs"',
      'runtime = "runc"',
      '',
    ].join('\n'),
  );
  const baseEnv = { ...process.env, POLYARCH_CONFIG: process.env.POLYARCH_TEST_CONFIG };
  const buildahEnv = { ...process.env, CONTAINERS_CONF: containersConf };
  const startup = await timed(bin, ['version'], baseEnv);

  const results = { polyarchCold: [] as number[], polyarchWarm: [] as number[] };
  const buildahRes = { cold: [] as number[], layersCold: [] as number[], warm: [] as number[] };
  const breakdowns: { cold: Breakdown[]; warm: Breakdown[] } = { cold: [], warm: [] };

  try {
    for (let i = 0; i < runs; i++) {
      // polyarch: cold then warm, into its own state root, pushing to the test registry.
      const root = join(work, `polyarch-${i}`);
      const env = { ...baseEnv, POLYARCH_ROOT: root };
      const argv = [
        'build',
        '--progress',
        'rawjson',
        '--platform',
        PLATFORMS,
        '--build-arg',
        `BASE=${busybox}`,
        '-t',
        `${registry}/bench/build-${i}:latest`,
        '--push',
        ctx,
      ];
      for (const phase of ['cold', 'warm'] as const) {
        const t0 = Date.now();
        const r = await timed(bin, argv, env);
        const t1 = Date.now();
        (phase === 'cold' ? results.polyarchCold : results.polyarchWarm).push(r.ms);
        breakdowns[phase].push(breakdown(`${r.stdout}\n${r.stderr}`, t0, t1));
      }
      // Nothing is deleted until the end: on ext4, a mass deletion slows the inode allocations
      // of the next minutes (ext4 skips recently deleted inodes), and whichever tool ran right
      // after the other's clean-up paid for it. Each round has its own directories instead.

      // buildah: plain cold; then --layers cold (untimed for the ratio) and --layers warm.
      for (const layers of [false, true]) {
        const store = join(work, `buildah-${i}-${layers ? 'layers' : 'plain'}`);
        const bargv = [
          '--root',
          join(store, 'root'),
          '--runroot',
          join(store, 'run'),
          '--storage-driver',
          'overlay',
          'build',
          ...(layers ? ['--layers'] : []),
          '--platform',
          PLATFORMS,
          '--manifest',
          `bench-build-${i}`,
          '--tls-verify=false',
          '--build-arg',
          `BASE=${busybox}`,
          ctx,
        ];
        const cold = await timed('buildah', bargv, buildahEnv);
        if (layers) {
          buildahRes.layersCold.push(cold.ms);
          const warm = await timed('buildah', bargv, buildahEnv);
          buildahRes.warm.push(warm.ms);
        } else buildahRes.cold.push(cold.ms);
        unmountUnder(store);
      }
      if (!args.json)
        console.error(
          `round ${i + 1}/${runs}: polyarch cold ${fmt(results.polyarchCold[i]!)} warm ${fmt(results.polyarchWarm[i]!)}; ` +
            `buildah cold ${fmt(buildahRes.cold[i]!)} --layers cold ${fmt(buildahRes.layersCold[i]!)} warm ${fmt(buildahRes.warm[i]!)}`,
        );
    }
  } finally {
    unmountUnder(work);
    if (!args.keep) rmSync(work, { recursive: true, force: true });
  }

  const pc = median(results.polyarchCold);
  const pw = median(results.polyarchWarm);
  const bc = median(buildahRes.cold);
  const bw = median(buildahRes.warm);
  const summary = {
    platforms: PLATFORMS,
    runs,
    buildah: buildahVersion,
    polyarchVersionMs: Math.round(startup.ms),
    polyarch: { coldPushMs: Math.round(pc), warmPushMs: Math.round(pw) },
    buildahMs: {
      cold: Math.round(bc),
      layersCold: Math.round(median(buildahRes.layersCold)),
      layersWarm: Math.round(bw),
    },
    ratio: { cold: round(pc / bc), warm: round(pw / bw) },
    target: { cold: TARGET_COLD, warm: TARGET_WARM },
    met: { cold: pc / bc <= TARGET_COLD, warm: pw / bw <= TARGET_WARM },
    breakdown: { cold: medianBreakdown(breakdowns.cold), warm: medianBreakdown(breakdowns.warm) },
  };
  if (args.json) {
    console.log(JSON.stringify(summary, null, 2));
    return;
  }
  console.log(`build bench: ${PLATFORMS}, median of ${runs}; ${buildahVersion}`);
  console.log(`  polyarch version (process start-up)   ${fmt(startup.ms)}`);
  console.log(
    `  cold: polyarch build+push ${fmt(pc)}  buildah build ${fmt(bc)}  ratio ${summary.ratio.cold} (target ≤ ${TARGET_COLD}) ${summary.met.cold ? 'MET' : 'MISSED'}`,
  );
  console.log(
    `  warm: polyarch build+push ${fmt(pw)}  buildah --layers ${fmt(bw)}  ratio ${summary.ratio.warm} (target ≤ ${TARGET_WARM}) ${summary.met.warm ? 'MET' : 'MISSED'}`,
  );
  console.log(`  (buildah --layers cold: ${fmt(summary.buildahMs.layersCold)})`);
  for (const phase of ['cold', 'warm'] as const) {
    const b = summary.breakdown[phase];
    console.log(`  polyarch ${phase}: start-up ${fmt(b.startupMs)}, after last step ${fmt(b.tailMs)}`);
    for (const [k, v] of Object.entries(b.kinds))
      console.log(
        `    ${k.padEnd(12)} ${String(v.count).padStart(2)} steps${v.cached ? ` (${v.cached} cached)` : ''}  sum ${fmt(v.sumMs)}  span ${fmt(v.spanMs)}`,
      );
  }
}

function medianBreakdown(bs: Breakdown[]): Breakdown {
  const kinds: Breakdown['kinds'] = {};
  for (const k of new Set(bs.flatMap((b) => Object.keys(b.kinds)))) {
    const of = (f: 'sumMs' | 'spanMs' | 'count' | 'cached') => median(bs.map((b) => b.kinds[k]?.[f] ?? 0));
    kinds[k] = { sumMs: of('sumMs'), spanMs: of('spanMs'), count: of('count'), cached: of('cached') };
  }
  return { startupMs: median(bs.map((b) => b.startupMs)), tailMs: median(bs.map((b) => b.tailMs)), kinds };
}

function fmt(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)}s` : `${Math.round(ms)}ms`;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

// Outside the test environment: run this script again inside it (registry + busybox).
if (!process.env.POLYARCH_TEST_REGISTRY) {
  const harness = join(repo, 'dist', 'test', 'env', 'harness.js');
  const child = spawn(process.execPath, [harness, '--', process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
} else {
  await main(process.env.POLYARCH_TEST_REGISTRY, process.env.POLYARCH_TEST_BUSYBOX ?? '');
}
