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
 * runs with runc, cgroupfs and rlimits under the host's hard limits (lib/run.ts).
 * For polyarch, `--progress rawjson` gives where the time goes (lib/progress.ts): process start
 * to the first vertex, then each phase (metadata, FROM, RUN per platform, COPY, export, push)
 * as the sum of vertex durations and as the wall span they cover.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { medianProgress, type ProgressReport, readProgress } from './lib/progress.js';
import {
  buildahStore,
  ensureBuildah,
  fmt,
  median,
  polyarchBin as bin,
  relaunchInTestEnv,
  round,
  timed,
  unmountUnder,
  writeBuildahConf,
} from './lib/run.js';

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

const PLATFORMS = 'linux/amd64,linux/arm64,linux/arm/v7';
const TARGET_COLD = 0.35;
const TARGET_WARM = 0.12;

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

async function main(registry: string, busybox: string): Promise<void> {
  if (!busybox) throw new Error('POLYARCH_TEST_BUSYBOX is not set');
  const buildahVersion = ensureBuildah();
  const work = mkdtempSync(join(tmpdir(), 'polyarch-bench-build-'));
  const ctx = join(work, 'ctx');
  makeContext(ctx);
  const containersConf = join(work, 'containers.conf');
  writeBuildahConf(containersConf);
  const baseEnv = { ...process.env, POLYARCH_CONFIG: process.env.POLYARCH_TEST_CONFIG };
  const buildahEnv = { ...process.env, CONTAINERS_CONF: containersConf };
  const startup = await timed(bin, ['version'], baseEnv);

  const results = { polyarchCold: [] as number[], polyarchWarm: [] as number[] };
  const buildahRes = { cold: [] as number[], layersCold: [] as number[], warm: [] as number[] };
  const breakdowns: { cold: ProgressReport[]; warm: ProgressReport[] } = { cold: [], warm: [] };

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
        breakdowns[phase].push(readProgress(r.lines, t0, t1));
      }
      // Nothing is deleted until the end: on ext4, a mass deletion slows the inode allocations
      // of the next minutes (ext4 skips recently deleted inodes), and whichever tool ran right
      // after the other's clean-up paid for it. Each round has its own directories instead.

      // buildah: plain cold; then --layers cold (untimed for the ratio) and --layers warm.
      for (const layers of [false, true]) {
        const store = join(work, `buildah-${i}-${layers ? 'layers' : 'plain'}`);
        const bargv = [
          ...buildahStore(store),
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
    breakdown: {
      cold: medianProgress(breakdowns.cold, median),
      warm: medianProgress(breakdowns.warm, median),
    },
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
    for (const [k, v] of Object.entries(b.phases))
      console.log(
        `    ${k.padEnd(12)} ${String(v.count).padStart(2)} steps${v.cached ? ` (${v.cached} cached)` : ''}  sum ${fmt(v.sumMs)}  span ${fmt(v.spanMs)}`,
      );
  }
}

if (!relaunchInTestEnv())
  await main(process.env.POLYARCH_TEST_REGISTRY!, process.env.POLYARCH_TEST_BUSYBOX ?? '');
