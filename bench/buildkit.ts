/**
 * Remote-driver benchmark: the same 3-platform build (busybox; RUN, WORKDIR, COPY, CMD;
 * linux/amd64, linux/arm64, linux/arm/v7, the foreign two under the daemon's QEMU) pushed
 * by ONE buildkitd, driven by polyarch's remote driver and by `buildctl build --frontend
 * dockerfile.v0`, in the same run, alternating which goes first. The daemon does the same
 * work for both, so the difference is client overhead.
 *
 *   node dist/bench/buildkit.js [--runs N] [--json]
 *
 * Runs inside the test environment (a registry with busybox); started outside it, it re-runs
 * itself under test/env/harness. BuildKit comes from where test/env/buildkit.ts finds it
 * ($POLYARCH_TEST_BUILDKIT, ../shared/tools/buildkit, PATH).
 *
 * Measured, median of --runs (default 3):
 *   - cold: `buildctl prune --all` first, then build + push (pulls busybox again).
 *   - warm: the same build again, nothing changed.
 *   - upload: a context of one 64 MiB random file, `FROM scratch` + `COPY`, no output, cache
 *     pruned first: the context transfer dominates.
 * Target: polyarch's time ≤ buildctl's (ratio ≤ 1.0) for cold and warm.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildkitBins, buildkitSkipReason, startBuildkitd } from '../test/env/buildkit.js';
import { median, polyarchBin as bin, relaunchInTestEnv } from './lib/run.js';

const { values: args } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } },
});
const runs = Number(args.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error('usage: buildkit.js [--runs N] [--json]');
  process.exit(2);
}
const PLATFORMS = 'linux/amd64,linux/arm64,linux/arm/v7';

function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: exit ${r.status}\n${r.stderr.slice(-3000)}`);
  return ms;
}

async function main(registry: string): Promise<void> {
  const skip = await buildkitSkipReason();
  if (skip) {
    console.error(`bench: ${skip}`);
    process.exit(1);
  }
  const bins = (await buildkitBins()) as { buildctl: string };
  const dir = mkdtempSync(join(tmpdir(), 'polyarch-bench-bk-'));
  const d = await startBuildkitd({ dir: join(dir, 'bk'), registries: [registry], mirror: registry });
  try {
    const env = {
      ...process.env,
      POLYARCH_ROOT: join(dir, 'root'),
      POLYARCH_BUILDER: '',
      BUILDX_BUILDER: '',
      DOCKER_CONFIG: join(dir, 'docker'),
    };
    mkdirSync(join(dir, 'docker'));
    writeFileSync(join(dir, 'docker', 'config.json'), '{}');
    const ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      'FROM busybox\nARG TARGETPLATFORM\nRUN echo "$(uname -m) $TARGETPLATFORM" > /built\nWORKDIR /app\nCOPY . .\nCMD ["cat", "/built"]\n',
    );
    writeFileSync(join(ctx, 'hello.txt'), 'hello\n');
    const big = join(dir, 'big');
    mkdirSync(big);
    writeFileSync(join(big, 'Dockerfile'), 'FROM scratch\nCOPY blob /blob\n');
    writeFileSync(join(big, 'blob'), randomBytes(64 << 20));
    spawnSync(bin, ['create', '--name', 'bench', '--driver', 'remote', d.endpoint], {
      env,
      stdio: 'inherit',
    });
    const ctl = (a: string[]): [string, string[]] => [bins.buildctl, ['--addr', d.endpoint, ...a]];
    const prune = () => timed(...ctl(['prune', '--all']), env);
    const polyarch = (c: string, ref?: string) =>
      timed(
        bin,
        [
          'build',
          '--builder',
          'bench',
          '--progress',
          'quiet',
          ...(ref ? ['--platform', PLATFORMS, '--push', '-t', ref] : []),
          c,
        ],
        env,
      );
    const buildctl = (c: string, ref?: string) =>
      timed(
        ...ctl([
          'build',
          '--progress',
          'quiet',
          '--frontend',
          'dockerfile.v0',
          '--local',
          `context=${c}`,
          '--local',
          `dockerfile=${c}`,
          ...(ref ? ['--opt', `platform=${PLATFORMS}`, '--output', `type=image,name=${ref},push=true`] : []),
        ]),
        env,
      );
    const res = {
      cold: { polyarch: [] as number[], buildctl: [] as number[] },
      warm: { polyarch: [] as number[], buildctl: [] as number[] },
      upload: { polyarch: [] as number[], buildctl: [] as number[] },
    };
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? (['polyarch', 'buildctl'] as const) : (['buildctl', 'polyarch'] as const);
      for (const who of order) {
        const ref = `${registry}/bench-bk/${who}:${i}`;
        const run = who === 'polyarch' ? polyarch : buildctl;
        prune();
        res.cold[who].push(run(ctx, ref));
        res.warm[who].push(run(ctx, ref));
        prune();
        res.upload[who].push(run(big));
      }
    }
    const out = Object.fromEntries(
      Object.entries(res).map(([k, v]) => {
        const p = median(v.polyarch);
        const b = median(v.buildctl);
        return [
          k,
          { polyarchMs: Math.round(p), buildctlMs: Math.round(b), ratio: Number((p / b).toFixed(2)) },
        ];
      }),
    );
    if (args.json) console.log(JSON.stringify(out));
    else {
      for (const [k, v] of Object.entries(out))
        console.log(
          `${k.padEnd(7)} polyarch ${String(v.polyarchMs).padStart(6)} ms   buildctl ${String(v.buildctlMs).padStart(6)} ms   ratio ${v.ratio.toFixed(2)}×${k === 'upload' ? '' : `  (target ≤ 1.00: ${v.ratio <= 1 ? 'met' : 'not met'})`}`,
        );
      console.log(`(median of ${runs}; upload = a 64 MiB context, FROM scratch + COPY, no output)`);
    }
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!relaunchInTestEnv()) await main(process.env.POLYARCH_TEST_REGISTRY!);
