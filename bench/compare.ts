/**
 * Side-by-side benchmark: `polyarch build --push` against BuildKit (`buildctl build --frontend
 * dockerfile.v0` on one warm buildkitd, started once, with the same registry mirror) and
 * buildah (`buildah build --layers` + `manifest push --all`), in the same run, for
 * linux/amd64, linux/arm64 and linux/arm/v7 (the foreign two under QEMU), all pushing to the
 * test registry.
 *
 *   node dist/bench/compare.js [--scenario busybox,debian,cross] [--rounds N] [--tools LIST]
 *                              [--parallelism 2,3,4,unbounded] [--json] [--keep] [--record DIR]
 *
 * Scenarios (each measured cold, warm and after a one-file edit of the context):
 *   busybox  the classic example: FROM busybox, RUN, WORKDIR, COPY . ., CMD.
 *   debian   the Docker guide's workload: a bookworm base (mmdebstrap, cached per day, pushed to
 *            the registry as a 3-platform index), RUN apt-get install curl, WORKDIR, COPY . .
 *   cross    `FROM --platform=$BUILDPLATFORM` stage that "compiles" once (native shell work on
 *            the context) and a busybox stage per target platform that copies its output.
 * Cold: a fresh state root (polyarch), `buildctl prune --all` (BuildKit), fresh storage
 * (buildah), and a new image tag for each. Warm: the same build again. Edit: one context file
 * changed, then the same build.
 *
 * Rounds (default 3, `--rounds` or $BENCH_ROUNDS) run the tools one after the other, the order
 * rotating each round; a ratio is polyarch's time over BuildKit's in the same round, reported
 * as the median over rounds with the min–max spread. Phases (from `--progress rawjson` of
 * polyarch and buildctl): start-up (process start to the first step), pull/unpack (FROM),
 * RUN per platform, COPY, export and push (the exporter split at its first upload), as wall
 * spans. Progress lag: how long after its own event time each progress batch reached us.
 *
 * `--parallelism 2,3,4,unbounded` measures only polyarch, cold, with each --max-parallelism
 * (unbounded = 1000), interleaved in each round: what the default should be.
 *
 * `--record DIR` writes each run's progress lines with their arrival times (JSON lines).
 *
 * Runs inside the test environment (test/env/harness); started outside it, re-runs itself
 * there. Needs root (buildkitd, buildah, runc) and the BuildKit of test/env/buildkit.ts.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildkitBins, buildkitSkipReason, startBuildkitd } from '../test/env/buildkit.js';
import { debianRootfs } from '../test/env/debian.js';
import { medianProgress, type ProgressReport, readProgress } from './lib/progress.js';
import {
  buildahStore,
  ensureBuildah,
  fmt,
  machineLoad,
  median,
  polyarchBin,
  relaunchInTestEnv,
  round,
  type Timed,
  timed,
  unmountUnder,
  writeBuildahConf,
} from './lib/run.js';

const SCENARIOS = ['busybox', 'debian', 'cross'] as const;
type ScenarioName = (typeof SCENARIOS)[number];
const TOOLS = ['polyarch', 'buildkit', 'buildah'] as const;
type ToolName = (typeof TOOLS)[number];
const PHASES = ['cold', 'warm', 'edit'] as const;
type PhaseName = (typeof PHASES)[number];
const PLATFORMS = 'linux/amd64,linux/arm64,linux/arm/v7';
const UNBOUNDED = 1000;

/** Targets from issue 16: polyarch's time over BuildKit's, same run. */
const TARGETS: Record<ScenarioName, Partial<Record<PhaseName, number>>> = {
  busybox: { cold: 0.5, warm: 0.5, edit: 0.5 },
  debian: { cold: 0.85, warm: 0.5, edit: 0.6 },
  cross: { cold: 0.6 },
};

function usage(msg: string): never {
  console.error(`compare.js: ${msg}`);
  console.error(
    'usage: compare.js [--scenario busybox,debian,cross] [--rounds N] [--tools polyarch,buildkit,buildah] [--parallelism 2,3,4,unbounded] [--json] [--keep]',
  );
  process.exit(2);
}

const { values: args } = parseArgs({
  options: {
    scenario: { type: 'string', default: SCENARIOS.join(',') },
    rounds: { type: 'string', default: process.env.BENCH_ROUNDS || '3' },
    tools: { type: 'string', default: TOOLS.join(',') },
    parallelism: { type: 'string' },
    'max-parallelism': { type: 'string' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    record: { type: 'string' },
  },
});
const rounds = Number(args.rounds);
if (!Number.isInteger(rounds) || rounds < 1)
  usage(`invalid --rounds "${args.rounds}": expected a positive integer`);
const scenarios = args.scenario.split(',').map((s) => s.trim()) as ScenarioName[];
for (const s of scenarios) if (!SCENARIOS.includes(s)) usage(`unknown scenario "${s}"`);
const tools = args.tools.split(',').map((s) => s.trim()) as ToolName[];
for (const t of tools) if (!TOOLS.includes(t)) usage(`unknown tool "${t}"`);
const parallelisms = args.parallelism?.split(',').map((s) => {
  const n = s.trim() === 'unbounded' ? UNBOUNDED : Number(s);
  if (!Number.isInteger(n) || n < 1) usage(`invalid --parallelism "${s}": positive integers or "unbounded"`);
  return n;
});
const polyarchParallelism = args['max-parallelism'];

interface Scenario {
  /** Writes the context (Dockerfile + files) into dir. */
  make(dir: string): void;
  /** Changes one context file. */
  edit(dir: string, n: number): void;
  /** The BASE build argument. */
  base: string;
}

function scenario(name: ScenarioName, busybox: string, debian: string): Scenario {
  const files = (dir: string, fs: Record<string, string>) => {
    for (const [p, text] of Object.entries(fs)) {
      mkdirSync(join(dir, p, '..'), { recursive: true });
      writeFileSync(join(dir, p), text);
    }
  };
  switch (name) {
    case 'busybox':
      return {
        base: busybox,
        make: (dir) =>
          files(dir, {
            Dockerfile:
              'ARG BASE=busybox\nFROM $BASE\nARG TARGETPLATFORM\nRUN echo "$(uname -m) $TARGETPLATFORM" > /built\nWORKDIR /app\nCOPY . .\nCMD ["cat", "/built"]\n',
            'hello.txt': 'hello\n',
          }),
        edit: (dir, n) => writeFileSync(join(dir, 'hello.txt'), `hello ${n}\n`),
      };
    case 'debian':
      return {
        base: debian,
        make: (dir) =>
          files(dir, {
            Dockerfile: [
              'ARG BASE=debian:bookworm',
              'FROM $BASE',
              'RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*',
              'WORKDIR /src',
              'COPY . .',
              'CMD ["curl", "--version"]',
              '',
            ].join('\n'),
            'index.html': '<p>hello</p>\n',
            'src/app.sh': '#!/bin/sh\ncurl -fsS "$1"\n',
          }),
        edit: (dir, n) => writeFileSync(join(dir, 'index.html'), `<p>hello ${n}</p>\n`),
      };
    case 'cross':
      return {
        base: busybox,
        make: (dir) => {
          // The "compiler": native shell work over the sources, run once for all targets.
          const src: Record<string, string> = {};
          for (let i = 0; i < 20; i++)
            src[`src/m${i}.c`] = `int f${i}(int x) { return x * ${i} + 1; }\n`.repeat(200);
          files(dir, {
            ...src,
            Dockerfile: [
              'ARG BASE=busybox',
              'FROM --platform=$BUILDPLATFORM $BASE AS build',
              'WORKDIR /src',
              'COPY . .',
              'RUN mkdir /out && for i in $(seq 1 40); do cat src/*.c; done | gzip -9 > /out/app.gz && sha256sum /out/app.gz > /out/app.sum',
              'FROM $BASE',
              'ARG TARGETPLATFORM',
              'COPY --from=build /out/ /app/',
              'RUN echo "$TARGETPLATFORM" > /app/platform',
              'CMD ["cat", "/app/app.sum"]',
              '',
            ].join('\n'),
          });
        },
        edit: (dir, n) => writeFileSync(join(dir, 'src', 'm0.c'), `int f0(int x) { return x + ${n}; }\n`),
      };
  }
}

/** Imports the three Debian rootfs tarballs and pushes them as one index; returns its ref. */
async function pushDebianBase(registry: string, work: string, env: NodeJS.ProcessEnv): Promise<string> {
  const arches = [
    ['amd64', 'linux/amd64'],
    ['arm64', 'linux/arm64'],
    ['armhf', 'linux/arm/v7'],
  ] as const;
  const e = { ...env, POLYARCH_ROOT: join(work, 'debian-base') };
  const refs: string[] = [];
  for (const [deb, platform] of arches) {
    const tar = debianRootfs(deb);
    const ref = `${registry}/bench-compare/debian:bookworm-${deb}`;
    await timed(polyarchBin, ['import', '--platform', platform, tar, ref], e);
    await timed(polyarchBin, ['push', '--progress', 'quiet', ref], e);
    refs.push(ref);
  }
  const ref = `${registry}/bench-compare/debian:bookworm`;
  await timed(polyarchBin, ['imagetools', 'create', '-t', ref, ...refs], e);
  return ref;
}

interface Run {
  ms: number;
  /** buildah only: the push part of ms. */
  pushMs?: number;
  progress?: ProgressReport;
}

interface Tool {
  name: ToolName;
  /** Fresh state for a cold build (round i); returns the build function for that state. */
  fresh(id: string): Promise<(ctx: string, ref: string) => Promise<Run>>;
}

function withProgress(r: Timed, t0: number, t1: number): Run {
  return { ms: r.ms, progress: readProgress(r.lines, t0, t1) };
}

let recorded = 0;

async function timedWithClock(cmd: string, argv: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const t0 = Date.now();
  const r = await timed(cmd, argv, env);
  const t1 = Date.now();
  // --record DIR: each run's progress lines with their arrival times, one JSON line each.
  if (args.record) {
    mkdirSync(args.record, { recursive: true });
    const file = join(args.record, `${String(++recorded).padStart(3, '0')}-${cmd.split('/').pop()}.jsonl`);
    writeFileSync(
      file,
      `${JSON.stringify({ argv, t0, t1 })}\n${r.lines.map((l) => JSON.stringify(l)).join('\n')}\n`,
    );
  }
  return withProgress(r, t0, t1);
}

async function main(registry: string, busybox: string): Promise<void> {
  if (!busybox) throw new Error('POLYARCH_TEST_BUSYBOX is not set');
  const work = mkdtempSync(join(tmpdir(), 'polyarch-bench-compare-'));
  const env = { ...process.env, POLYARCH_CONFIG: process.env.POLYARCH_TEST_CONFIG, POLYARCH_BUILDER: '' };
  const wantBuildkit = tools.includes('buildkit') && !parallelisms;
  const wantBuildah = tools.includes('buildah') && !parallelisms;
  let buildkitd: Awaited<ReturnType<typeof startBuildkitd>> | undefined;
  const versions: Record<string, string> = {};
  try {
    const debian = scenarios.includes('debian') ? await pushDebianBase(registry, work, env) : '';

    if (wantBuildkit) {
      const skip = await buildkitSkipReason();
      if (skip) throw new Error(`BuildKit: ${skip}`);
      const bins = (await buildkitBins()) as { buildctl: string; buildkitd: string };
      versions.buildkit = spawnSync(bins.buildkitd, ['--version'], { encoding: 'utf8' }).stdout.trim();
      buildkitd = await startBuildkitd({ dir: join(work, 'bk'), registries: [registry], mirror: registry });
    }
    if (wantBuildah) {
      versions.buildah = ensureBuildah();
      writeBuildahConf(join(work, 'containers.conf'));
    }
    versions.polyarch =
      spawnSync(polyarchBin, ['version'], { encoding: 'utf8', env }).stdout.trim().split('\n')[0] ?? '';
    const buildahEnv = { ...process.env, CONTAINERS_CONF: join(work, 'containers.conf') };

    const toolsFor = (sc: Scenario): Tool[] => {
      const out: Tool[] = [];
      if (tools.includes('polyarch') && !parallelisms)
        out.push({
          name: 'polyarch',
          fresh: async (id) => {
            const root = join(work, `polyarch-${id}`);
            return (ctx, ref) =>
              timedWithClock(
                polyarchBin,
                [
                  'build',
                  // buildctl makes no attestations: leave out buildx's default provenance so both
                  // tools do the same work.
                  '--provenance=false',
                  '--progress',
                  'rawjson',
                  '--platform',
                  PLATFORMS,
                  '--build-arg',
                  `BASE=${sc.base}`,
                  ...(polyarchParallelism ? ['--max-parallelism', polyarchParallelism] : []),
                  '-t',
                  ref,
                  '--push',
                  ctx,
                ],
                { ...env, POLYARCH_ROOT: root },
              );
          },
        });
      if (buildkitd) {
        const bins = buildkitBins() as Promise<{ buildctl: string }>;
        const endpoint = buildkitd.endpoint;
        out.push({
          name: 'buildkit',
          fresh: async () => {
            const { buildctl } = await bins;
            await timed(buildctl, ['--addr', endpoint, 'prune', '--all'], env);
            return (ctx, ref) =>
              timedWithClock(
                buildctl,
                [
                  '--addr',
                  endpoint,
                  'build',
                  '--progress',
                  'rawjson',
                  '--frontend',
                  'dockerfile.v0',
                  '--local',
                  `context=${ctx}`,
                  '--local',
                  `dockerfile=${ctx}`,
                  '--opt',
                  `platform=${PLATFORMS}`,
                  '--opt',
                  `build-arg:BASE=${sc.base}`,
                  '--output',
                  `type=image,name=${ref},push=true,registry.insecure=true`,
                ],
                env,
              );
          },
        });
      }
      if (wantBuildah)
        out.push({
          name: 'buildah',
          fresh: async (id) => {
            const store = buildahStore(join(work, `buildah-${id}`));
            let n = 0;
            return async (ctx, ref) => {
              const list = `bench-${id}-${n++}`;
              const b = await timed(
                'buildah',
                [
                  ...store,
                  'build',
                  '--layers',
                  '--platform',
                  PLATFORMS,
                  '--manifest',
                  list,
                  '--tls-verify=false',
                  '--build-arg',
                  `BASE=${sc.base}`,
                  ctx,
                ],
                buildahEnv,
              );
              const p = await timed(
                'buildah',
                [...store, 'manifest', 'push', '--all', '--tls-verify=false', list, `docker://${ref}`],
                buildahEnv,
              );
              return { ms: b.ms + p.ms, pushMs: p.ms };
            };
          },
        });
      return out;
    };

    const results: Record<string, unknown> = {};
    for (const name of scenarios) {
      const sc = scenario(name, busybox, debian);
      const template = join(work, `ctx-${name}`);
      sc.make(template);
      if (parallelisms) {
        results[name] = await parallelismRounds(name, sc, template, work, registry, env);
        continue;
      }
      const ts = toolsFor(sc);
      const res: Record<string, Record<PhaseName, Run[]>> = {};
      for (const t of ts) res[t.name] = { cold: [], warm: [], edit: [] };
      for (let i = 0; i < rounds; i++) {
        const order = ts.map((_, k) => ts[(k + i) % ts.length]!);
        for (const t of order) {
          const id = `${name}-${t.name}-${i}`;
          const ctx = join(work, `ctx-${id}`);
          cpSync(template, ctx, { recursive: true });
          const run = await t.fresh(id);
          const ref = `${registry}/bench-compare/${name}-${t.name}:${i}`;
          for (const phase of PHASES) {
            if (phase === 'edit') sc.edit(ctx, i + 1);
            res[t.name]![phase].push(await run(ctx, ref));
          }
          if (t.name === 'buildah') unmountUnder(join(work, `buildah-${id}`));
        }
        if (!args.json)
          console.error(
            `${name} round ${i + 1}/${rounds}: ${ts
              .map((t) => `${t.name} ${PHASES.map((p) => `${p} ${fmt(res[t.name]![p][i]!.ms)}`).join(' ')}`)
              .join('; ')}  [${machineLoad()}]`,
          );
      }
      results[name] = summarize(name, res);
    }
    const out = { platforms: PLATFORMS, rounds, machine: machineLoad(), versions, results };
    if (args.json) console.log(JSON.stringify(out, null, 2));
    else print(out);
  } finally {
    await buildkitd?.stop();
    unmountUnder(work);
    if (!args.keep) rmSync(work, { recursive: true, force: true });
    else console.error(`bench: kept ${work}`);
  }
}

interface Summary {
  ms: Record<string, Record<PhaseName, { median: number; min: number; max: number }>>;
  ratio: Partial<
    Record<PhaseName, { median: number; min: number; max: number; target?: number; met?: boolean }>
  >;
  ratioBuildah: Partial<Record<PhaseName, number>>;
  phases: Record<string, Partial<Record<PhaseName, ProgressReport>>>;
  buildahPushMs: Partial<Record<PhaseName, number>>;
}

function summarize(name: ScenarioName, res: Record<string, Record<PhaseName, Run[]>>): Summary {
  const s: Summary = { ms: {}, ratio: {}, ratioBuildah: {}, phases: {}, buildahPushMs: {} };
  for (const [tool, byPhase] of Object.entries(res)) {
    s.ms[tool] = {} as Summary['ms'][string];
    s.phases[tool] = {};
    for (const p of PHASES) {
      const xs = byPhase[p].map((r) => r.ms);
      s.ms[tool]![p] = { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
      const pr = byPhase[p].flatMap((r) => (r.progress ? [r.progress] : []));
      if (pr.length) s.phases[tool]![p] = medianProgress(pr, median);
      if (tool === 'buildah') s.buildahPushMs[p] = median(byPhase[p].map((r) => r.pushMs ?? 0));
    }
  }
  for (const p of PHASES) {
    const pa = res.polyarch?.[p];
    const bk = res.buildkit?.[p];
    if (pa && bk) {
      const rs = pa.map((r, i) => r.ms / bk[i]!.ms);
      const target = TARGETS[name][p];
      const m = median(rs);
      s.ratio[p] = {
        median: round(m),
        min: round(Math.min(...rs)),
        max: round(Math.max(...rs)),
        ...(target !== undefined ? { target, met: m <= target } : {}),
      };
    }
    const bh = res.buildah?.[p];
    if (pa && bh) s.ratioBuildah[p] = round(median(pa.map((r, i) => r.ms / bh[i]!.ms)));
  }
  return s;
}

/** polyarch only, cold, each --max-parallelism in turn (rotating the order each round). */
async function parallelismRounds(
  name: ScenarioName,
  sc: Scenario,
  template: string,
  work: string,
  registry: string,
  env: NodeJS.ProcessEnv,
): Promise<Record<string, { median: number; min: number; max: number; phases: ProgressReport }>> {
  const ns = parallelisms!;
  const res = new Map<number, Run[]>(ns.map((n) => [n, []]));
  for (let i = 0; i < rounds; i++) {
    for (let k = 0; k < ns.length; k++) {
      const n = ns[(k + i) % ns.length]!;
      const id = `${name}-p${n}-${i}`;
      const ctx = join(work, `ctx-${id}`);
      cpSync(template, ctx, { recursive: true });
      const r = await timedWithClock(
        polyarchBin,
        [
          'build',
          // buildctl makes no attestations: leave out buildx's default provenance so both
          // tools do the same work.
          '--provenance=false',
          '--progress',
          'rawjson',
          '--platform',
          PLATFORMS,
          '--build-arg',
          `BASE=${sc.base}`,
          '--max-parallelism',
          String(n),
          '-t',
          `${registry}/bench-compare/${id}:latest`,
          '--push',
          ctx,
        ],
        { ...env, POLYARCH_ROOT: join(work, `polyarch-${id}`) },
      );
      res.get(n)!.push(r);
      if (!args.json)
        console.error(
          `${name} round ${i + 1}/${rounds}: --max-parallelism ${label(n)} cold ${fmt(r.ms)}  [${machineLoad()}]`,
        );
    }
  }
  return Object.fromEntries(
    ns.map((n) => {
      const xs = res.get(n)!.map((r) => r.ms);
      return [
        label(n),
        {
          median: median(xs),
          min: Math.min(...xs),
          max: Math.max(...xs),
          phases: medianProgress(
            res.get(n)!.flatMap((r) => (r.progress ? [r.progress] : [])),
            median,
          ),
        },
      ];
    }),
  );
}

/** Phases in build order: metadata, pull, RUNs, file steps, export, push. */
function rank(phase: string): number {
  const order = [
    'metadata',
    'context',
    'pull/unpack',
    'RUN',
    'COPY',
    'WORKDIR',
    'export+push',
    'export',
    'push',
  ];
  const i = order.findIndex((o) => phase.trim().startsWith(o));
  return i < 0 ? 6.5 : i;
}

function label(n: number): string {
  return n === UNBOUNDED ? 'unbounded' : String(n);
}

function print(out: {
  platforms: string;
  rounds: number;
  machine: string;
  versions: Record<string, string>;
  results: Record<string, unknown>;
}): void {
  console.log(`compare bench: ${out.platforms}, --push, median of ${out.rounds} round(s) [min–max]`);
  console.log(`  machine: ${out.machine}`);
  for (const [k, v] of Object.entries(out.versions)) console.log(`  ${k}: ${v}`);
  for (const [name, r] of Object.entries(out.results)) {
    if (parallelisms) {
      console.log(`\n${name}: polyarch cold by --max-parallelism`);
      for (const [n, v] of Object.entries(
        r as Record<string, { median: number; min: number; max: number; phases: ProgressReport }>,
      )) {
        const runs = Object.entries(v.phases.phases)
          .filter(([k]) => k.startsWith('RUN'))
          .map(([k, p]) => `${k} ${fmt(p.spanMs)}`)
          .join(', ');
        console.log(`  ${n.padEnd(10)} ${fmt(v.median).padStart(8)} [${fmt(v.min)}–${fmt(v.max)}]  ${runs}`);
      }
      continue;
    }
    const s = r as Summary;
    console.log(`\n${name}:`);
    const tools = Object.keys(s.ms);
    console.log(
      `  ${'phase'.padEnd(6)}${tools.map((t) => t.padStart(26)).join('')}   ratio polyarch/BuildKit        vs buildah`,
    );
    for (const p of PHASES) {
      const cells = tools.map((t) => {
        const m = s.ms[t]![p];
        return `${fmt(m.median)} [${fmt(m.min)}–${fmt(m.max)}]`.padStart(26);
      });
      const q = s.ratio[p];
      const ratio = q
        ? `${q.median.toFixed(2)}× [${q.min.toFixed(2)}–${q.max.toFixed(2)}]${q.target !== undefined ? ` (≤ ${q.target}: ${q.met ? 'met' : 'MISSED'})` : ''}`
        : '-';
      const rb = s.ratioBuildah[p];
      console.log(
        `  ${p.padEnd(6)}${cells.join('')}   ${ratio.padEnd(30)} ${rb !== undefined ? `${rb.toFixed(2)}×` : ''}`,
      );
    }
    for (const [tool, byPhase] of Object.entries(s.phases))
      for (const [p, pr] of Object.entries(byPhase)) {
        if (!pr) continue;
        const parts = Object.entries(pr.phases)
          .filter(([, v]) => v.spanMs >= 50)
          .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
          .map(
            ([k, v]) => `${k.trim()} ${fmt(v.spanMs)}${v.cached ? ` (${v.cached}/${v.count} cached)` : ''}`,
          );
        console.log(
          `    ${tool} ${p}: start-up ${fmt(pr.startupMs)}; ${parts.join('; ')}; tail ${fmt(pr.tailMs)}; progress lag max ${fmt(pr.lagMs.max)} p95 ${fmt(pr.lagMs.p95)}`,
        );
      }
    for (const [p, ms] of Object.entries(s.buildahPushMs))
      if (ms) console.log(`    buildah ${p}: manifest push ${fmt(ms)}`);
  }
}

if (!relaunchInTestEnv())
  await main(process.env.POLYARCH_TEST_REGISTRY!, process.env.POLYARCH_TEST_BUSYBOX ?? '');
