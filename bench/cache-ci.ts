/**
 * "CI job on a fresh machine": a fresh state root building 3 platforms (busybox, two RUNs, a
 * COPY; the foreign two under QEMU) with `--cache-from type=registry` against the same without
 * it, and against a warm local rebuild; the same pair for buildah (`--layers --cache-from`).
 *
 *   node dist/bench/cache-ci.js [--runs N] [--json]
 *
 * Runs inside the test environment (test/env/harness: a registry holding busybox); started
 * outside it, it re-runs itself under the harness. Each measurement is the median of --runs
 * (default 3) rounds, each round in fresh directories:
 *   - polyarch warm: a state root that built the same thing already, built again (no change);
 *   - polyarch fresh+cache: an empty state root, `--cache-from type=registry,ref=<seeded>`;
 *   - polyarch fresh: an empty state root, no cache;
 *   - buildah fresh+cache / fresh: empty storage, `--layers [--cache-from <seeded repo>]`.
 * Every polyarch build pushes its image. Goal: fresh+cache ≤ 2× warm.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } },
});
const runs = Number(args.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error('usage: cache-ci.js [--runs N] [--json]');
  process.exit(2);
}
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const PLATFORMS = 'linux/amd64,linux/arm64,linux/arm/v7';
const GOAL = 2;

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
      'CMD ["cat", "/built"]',
      '',
    ].join('\n'),
  );
  for (let i = 1; i <= 5; i++) writeFileSync(join(dir, 'app', `f${i}.txt`), `file ${i}\n`.repeat(100 * i));
}

function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => {
      err = (err + c.toString('utf8')).slice(-4000);
    });
    child.on('error', rej);
    child.on('close', (code) =>
      code === 0
        ? res(performance.now() - t0)
        : rej(new Error(`${cmd} ${argv.join(' ')} exited ${code}:\n${err}`)),
    );
  });
}

function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor(s.length / 2)]!;
};
const fmt = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

async function main(registry: string, busybox: string): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'polyarch-bench-cache-ci-'));
  const ctx = join(work, 'ctx');
  makeContext(ctx);
  const baseEnv = { ...process.env, POLYARCH_CONFIG: process.env.POLYARCH_TEST_CONFIG };
  const tag = `${Date.now().toString(36)}`;
  const cacheRef = `${registry}/bench/ci-cache-${tag}:cache`;
  const argv = (root: string, extra: string[], n: string): [string[], NodeJS.ProcessEnv] => [
    [
      'build',
      '--progress',
      'quiet',
      '--platform',
      PLATFORMS,
      '--build-arg',
      `BASE=${busybox}`,
      ...extra,
      '-t',
      `${registry}/bench/ci-${tag}-${n}:latest`,
      '--push',
      ctx,
    ],
    { ...baseEnv, POLYARCH_ROOT: join(work, root) },
  ];
  const r = { warm: [] as number[], cached: [] as number[], fresh: [] as number[] };
  const b = { cached: [] as number[], fresh: [] as number[], error: '' };
  const containersConf = join(work, 'containers.conf');
  writeFileSync(
    containersConf,
    '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n',
  );
  const buildahEnv = { ...process.env, CONTAINERS_CONF: containersConf };
  const haveBuildah = spawnSync('buildah', ['--version']).status === 0;
  const buildahCache = `${registry}/bench/ci-buildah-cache-${tag}`;
  const bargv = (store: string, extra: string[]) => [
    '--root',
    join(store, 'root'),
    '--runroot',
    join(store, 'run'),
    '--storage-driver',
    'overlay',
    'build',
    '--layers',
    ...extra,
    '--platform',
    PLATFORMS,
    '--manifest',
    `bench-ci-${store.split('/').pop()}`,
    '--tls-verify=false',
    '--build-arg',
    `BASE=${busybox}`,
    ctx,
  ];
  try {
    // Seed the caches once (a cache-warming job).
    await timed(bin, ...swap(argv('seed', ['--cache-to', `type=registry,ref=${cacheRef},mode=max`], 'seed')));
    if (haveBuildah) {
      const store = join(work, 'buildah-seed');
      await timed('buildah', bargv(store, ['--cache-to', buildahCache]), buildahEnv).catch((err: Error) => {
        b.error = err.message.split('\n').slice(-3).join(' ');
      });
      unmountUnder(store);
    }
    for (let i = 0; i < runs; i++) {
      await timed(bin, ...swap(argv(`warm-${i}`, [], `w${i}`)));
      r.warm.push(await timed(bin, ...swap(argv(`warm-${i}`, [], `w${i}`))));
      r.cached.push(
        await timed(
          bin,
          ...swap(argv(`cached-${i}`, ['--cache-from', `type=registry,ref=${cacheRef}`], `c${i}`)),
        ),
      );
      r.fresh.push(await timed(bin, ...swap(argv(`fresh-${i}`, [], `f${i}`))));
      if (haveBuildah && !b.error) {
        for (const [k, extra] of [
          ['cached', ['--cache-from', buildahCache]],
          ['fresh', []],
        ] as const) {
          const store = join(work, `buildah-${k}-${i}`);
          b[k].push(await timed('buildah', bargv(store, [...extra]), buildahEnv));
          unmountUnder(store);
        }
      }
      if (!args.json)
        console.error(
          `round ${i + 1}/${runs}: polyarch warm ${fmt(r.warm[i]!)} fresh+cache ${fmt(r.cached[i]!)} fresh ${fmt(r.fresh[i]!)}` +
            (b.cached[i] !== undefined
              ? `; buildah fresh+cache ${fmt(b.cached[i]!)} fresh ${fmt(b.fresh[i]!)}`
              : ''),
        );
    }
  } finally {
    unmountUnder(work);
    rmSync(work, { recursive: true, force: true });
  }
  const out = {
    platforms: PLATFORMS,
    runs,
    polyarchMs: { warm: median(r.warm), freshCached: median(r.cached), fresh: median(r.fresh) },
    ratioCachedToWarm: median(r.cached) / median(r.warm),
    ratioCachedToFresh: median(r.cached) / median(r.fresh),
    buildahMs: b.cached.length ? { freshCached: median(b.cached), fresh: median(b.fresh) } : undefined,
    buildahRatioCachedToFresh: b.cached.length ? median(b.cached) / median(b.fresh) : undefined,
    buildahNote: haveBuildah ? b.error || undefined : 'buildah is not installed',
    goal: `fresh+cache ≤ ${GOAL}× warm`,
    met: median(r.cached) / median(r.warm) <= GOAL,
  };
  if (args.json) console.log(JSON.stringify(out, null, 2));
  else {
    console.log(`cache-ci bench: ${PLATFORMS}, median of ${runs}`);
    console.log(
      `polyarch: warm ${fmt(out.polyarchMs.warm)}, fresh+cache ${fmt(out.polyarchMs.freshCached)}, fresh ${fmt(out.polyarchMs.fresh)}`,
    );
    console.log(
      `fresh+cache / warm = ${out.ratioCachedToWarm.toFixed(2)}× (goal ≤ ${GOAL}×: ${out.met ? 'met' : 'not met'}); fresh+cache / fresh = ${out.ratioCachedToFresh.toFixed(2)}×`,
    );
    if (out.buildahMs)
      console.log(
        `buildah: fresh+cache ${fmt(out.buildahMs.freshCached)}, fresh ${fmt(out.buildahMs.fresh)}: ${out.buildahRatioCachedToFresh!.toFixed(2)}×`,
      );
    else console.log(`buildah: ${out.buildahNote ?? 'not measured'}`);
  }
}

/** [argv, env] → (argv, env) for timed(bin, …). */
function swap(a: [string[], NodeJS.ProcessEnv]): [string[], NodeJS.ProcessEnv] {
  return a;
}

if (!process.env.POLYARCH_TEST_REGISTRY) {
  const harness = join(repo, 'dist', 'test', 'env', 'harness.js');
  const child = spawn(process.execPath, [harness, '--', process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
  });
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
} else {
  await main(process.env.POLYARCH_TEST_REGISTRY, process.env.POLYARCH_TEST_BUSYBOX ?? '');
}
