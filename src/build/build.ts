/**
 * The build engine: Dockerfile text → Plan (src/dockerfile) → graph of vertices per target
 * platform → solved by the generic Solver → `BuildResult` for the exporters.
 *
 *   const result = await build({ dockerfile: text, contextDir: '.', platforms, progress: sink });
 *   await exportBuild(result, outputs, ...);        // src/build/export (the exporters)
 *
 * Graph: each stage is FROM (image source, an earlier stage, or scratch) followed by one vertex
 * per filesystem instruction (RUN, COPY, ADD, WORKDIR); config-only instructions (ENV, CMD, …)
 * only shape the image config. Vertex digests derive from the Plan's stage keys, so a stage
 * planned identically for several targets (`FROM --platform=$BUILDPLATFORM` without TARGET*
 * args) is one set of vertices and runs once. Stages the target does not need are not planned.
 *
 * Cache: every filesystem vertex has a cache key (its definition, its parent's key, and the
 * content checksums of the files it reads); its result is the committed snapshot
 * `build:<key>`, so the snapshot store is the persistent cache and a rebuild with no change
 * runs nothing. `noCache` makes fresh snapshots under unique keys.
 *
 * Foreign platforms run under QEMU (binfmt_misc F flag); when a stage with RUN targets a
 * platform nothing here executes, the build fails before starting anything.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, join, posix, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ContentStore, emulatorProofFile, stateRoot, storeDir } from '../content/index.js';
import { holdBuildLease, markUsed } from './cache.js';
import type { ImportedCache, ImportedRecord } from './extcache/index.js';
import type { BuildCacheInfo, StepRecord } from './extcache/inline.js';
import {
  DockerfileError,
  type Plan,
  type PlanCopy,
  type PlanInstruction,
  type PlanRun,
  type PlanStage,
  type PlatformPlan,
  planBuild,
  collectBaseImages,
  runCommand,
  stageImageConfig,
  type ImageConfigInfo,
  type SourceRef,
} from '../dockerfile/index.js';
import {
  checkExecutable,
  cleanupStale,
  type MountRequest,
  resolveUser,
  runContainer,
} from '../exec/index.js';
import { holdProcessState, sweepBuildTemp } from '../exec/reap.js';
import { applyLayerBlob } from '../layer/index.js';
import type { ContainerConfig, HistoryEntry, ImageConfig } from '../oci/index.js';
import {
  formatPlatform,
  isHostArchitecture,
  normalizePlatform,
  type Platform,
  type PlatformSpec,
  parsePlatform,
  runsHere,
  uniquePlatforms,
} from '../platform/index.js';
import type { ProgressSink } from '../progress/index.js';
import { formatReference, parseReference } from '../oci/reference.js';
import { type ActiveSnapshot, Snapshotter, unmountPath } from '../snapshot/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { acquireLock } from '../util/lock.js';
import { resolveInRoot } from '../util/rootpath.js';
import { BuildContext, matchPaths } from './context.js';
import { copyTree, mkdirAll, type Owner, resolveSource } from './fsops.js';
import { type ResolvedImage, resolveImage, unpackImage } from './image.js';
import type { BuildResult, PlatformResult, ResultLayer } from './result.js';
import { Solver, type SolverVertex, type VertexContext, type VertexResult } from './solver.js';
import { type SshSource, SshForwarder } from './ssh.js';

export interface SecretSource {
  id: string;
  /** A file on the host. */
  src?: string;
  /** An environment variable of this process. */
  env?: string;
}

export interface BuildOptions {
  /** The Dockerfile's text. */
  dockerfile: string;
  /** Name used in errors and progress. Default `Dockerfile`. */
  dockerfileName?: string;
  /** Where the Dockerfile is on disk (for `<Dockerfile>.dockerignore`), if it is. */
  dockerfilePath?: string;
  /** The build context directory. */
  contextDir: string;
  /** Target platforms. Default: the host's. */
  platforms?: Platform[];
  buildArgs?: Record<string, string>;
  target?: string;
  /** Do not reuse cached results. Default false. */
  noCache?: boolean;
  /** Always resolve base images from the registry. Default false. */
  pull?: boolean;
  secrets?: SecretSource[];
  /** `--ssh`: agents (or key files) `RUN --mount=type=ssh` forwards, by id. */
  ssh?: SshSource[];
  /** `--label`s, set on every platform's image config over the Dockerfile's LABELs. */
  labels?: Record<string, string>;
  /** RUN network: `default` (= host) or `none`; default `default`. */
  network?: 'default' | 'host' | 'none';
  /** Heavy steps at once. Default 16 (the solver's DEFAULT_MAX_PARALLELISM). */
  maxParallelism?: number;
  progress?: ProgressSink;
  signal?: AbortSignal;
  /** polyarch state root. Default `stateRoot(env)`. */
  root?: string;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Whether a platform's programs can run here; default: native or a working binfmt emulator. */
  canExecute?: (platform: string) => boolean;
  warn?: (message: string) => void;
  /**
   * Called with each platform's result as soon as that platform is done, while others may
   * still be building (e.g. to start packing its layers: export's prepareLayers).
   */
  onPlatformResult?: (result: PlatformResult) => void;
  /**
   * Called with the snapshot key of each new non-empty layer as soon as its step commits it
   * (not for cache hits): its content is final, so it can be packed while later steps run.
   */
  onLayerCommitted?: (snapshotKey: string) => void;
  /**
   * `--cache-from` caches (extcache/): a step whose key they hold is not run; its layer is
   * fetched only when an exported image or a step that runs needs it.
   */
  cacheImport?: ImportedCache;
}

export interface BuildOutput extends BuildResult {
  plan: Plan;
  /** Every step's record, for `--cache-to` (extcache/exportCache). */
  cache: BuildCacheInfo;
}

/** A failing build step, located in the Dockerfile, with the last lines of its output. */
export class BuildStepError extends PolyarchError {
  readonly file: string;
  readonly range: DockerfileError['range'];
  readonly lines: readonly string[];
  readonly vertexName: string;
  readonly logTail: string[];
  constructor(
    message: string,
    opts: {
      file: string;
      range: DockerfileError['range'];
      lines: readonly string[];
      vertexName: string;
      logTail?: string[];
      cause?: unknown;
      code?: string;
    },
  ) {
    super(opts.code ?? 'BUILD_STEP', message, { cause: opts.cause });
    this.name = 'BuildStepError';
    this.file = opts.file;
    this.range = opts.range;
    this.lines = opts.lines;
    this.vertexName = opts.vertexName;
    this.logTail = opts.logTail ?? [];
  }
}

/** How many output lines a failed RUN shows. */
const LOG_TAIL_LINES = 10;

/** A filesystem state: its cache identity and its layers (non-empty ones), bottom-most first. */
interface FsState {
  key: string;
  /** Snapshot keys of the layers, bottom-most first. */
  chain: string[];
  layers: ResultLayer[];
  /** The vertex that made this state added no layer. */
  emptyLayer: boolean;
  /**
   * When this state was first made: its snapshot's creation time (kept by the cache, so a
   * rebuild that only hits the cache gets the same history times and the same digests, as
   * with BuildKit), or the base image's `created`. Undefined for scratch.
   */
  created?: string;
}

interface StageGraph {
  stage: PlanStage;
  final: SolverVertex<FsState>;
  /** Per instruction, the vertex that ran it (filesystem instructions only). */
  steps: (SolverVertex<FsState> | undefined)[];
  config: ImageConfig & { history: HistoryEntry[] };
  /** History and layer entries before this stage's own instructions. */
  baseHistory: HistoryEntry[];
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** The cache key of a filesystem step: its parent state's key and its own definition. */
const stepKey = (parent: FsState, definition: unknown) =>
  sha(JSON.stringify({ parent: parent.key, def: definition }));

function toPlatform(p: { os: string; architecture: string; variant?: string }): Platform {
  return normalizePlatform({
    os: p.os,
    architecture: p.architecture,
    ...(p.variant ? { variant: p.variant } : {}),
  });
}

function epochFrom(opts: BuildOptions): string | undefined {
  const v = opts.buildArgs?.SOURCE_DATE_EPOCH ?? (opts.env ?? process.env).SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid SOURCE_DATE_EPOCH "${v}": expected seconds since 1970`,
    );
  return new Date(Number(v) * 1000).toISOString().replace('.000Z', 'Z');
}

/**
 * Builds every requested platform; see the module header. The build holds a lease from the
 * start (cache.ts, content/leases.ts): what it resolves, reuses or makes is kept from a
 * concurrent `prune` or `rmi` until it returns.
 */
export async function build(opts: BuildOptions): Promise<BuildOutput> {
  const releaseLease = await holdBuildLease(resolve(opts.root ?? stateRoot(opts.env ?? process.env)));
  try {
    return await buildLeased(opts);
  } finally {
    await releaseLease();
  }
}

async function buildLeased(opts: BuildOptions): Promise<BuildOutput> {
  const env = opts.env ?? process.env;
  const root = resolve(opts.root ?? stateRoot(env));
  const file = opts.dockerfileName ?? 'Dockerfile';
  const solver = new Solver({
    ...(opts.progress ? { progress: opts.progress } : {}),
    ...(opts.maxParallelism !== undefined ? { maxParallelism: opts.maxParallelism } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const pw = solver.progress;
  // `--platform linux/arm64,linux/aarch64` (or one platform given 100 times) is one platform.
  const platforms = opts.platforms && uniquePlatforms(opts.platforms);
  const multi = (platforms?.length ?? 1) > 1;

  const def = pw.vertex({
    digest: 'internal:definition',
    name: `[internal] load build definition from ${file}`,
  });
  def.start();
  const planOpts = {
    file,
    ...(platforms?.length ? { platforms } : {}),
    ...(opts.buildArgs ? { buildArgs: opts.buildArgs } : {}),
    ...(opts.target !== undefined ? { target: opts.target } : {}),
  };
  let plan: Plan;
  try {
    plan = planBuild(opts.dockerfile, planOpts);
  } catch (err) {
    def.fail(err);
    throw err;
  }
  def.done();
  for (const w of plan.warnings)
    def.warn({
      short: `${w.rule}: ${w.detail} (line ${w.range.start.line})`,
      ...(w.url ? { url: w.url } : {}),
      sourceInfo: { filename: file, data: opts.dockerfile, language: 'Dockerfile' },
      range: [w.range],
    });

  // No emulator for a platform that has to run something: fail before starting anything.
  const canExec =
    opts.canExecute ??
    (await executableMatcher(
      plan.platforms.flatMap((p) => p.stages.map((s) => s.platform)),
      env,
    ));
  for (const p of plan.platforms)
    for (const s of p.stages)
      if (s.instructions.some((i) => i.kind === 'RUN')) {
        try {
          checkExecutable(formatPlatform(toPlatform(s.platform)), canExec);
        } catch (err) {
          throw new DockerfileError(errorMessage(err), {
            file,
            range: s.range,
            lines: plan.lines,
            cause: err,
          });
        }
      }

  const store = await ContentStore.open(storeDir(env));
  const snapshots = await Snapshotter.open({ root });
  // What killed builds (SIGKILL, power loss) left behind: their containers and mounts first,
  // then their active snapshots.
  await cleanupStale(root).catch(() => undefined);
  await sweepBuildTemp(root).catch(() => undefined);
  await snapshots.removeOrphans().catch(() => undefined);

  // Base images: resolve each (ref, platform) once, then plan again with their configs.
  const images = new Map<string, Promise<ResolvedImage>>();
  const imageFor = (ref: string, platform: Platform): Promise<ResolvedImage> => {
    const k = `${ref}\0${formatPlatform(platform)}`;
    let p = images.get(k);
    if (!p) {
      p = resolveImage(ref, platform, {
        store,
        pull: opts.pull ?? false,
        env,
        ...(opts.warn ? { warn: opts.warn } : {}),
      });
      images.set(k, p);
    }
    return p;
  };
  const bases = collectBaseImages(plan);
  const resolved = new Map<string, ResolvedImage>();
  await Promise.all(
    bases.map(async (b) => {
      const platform = toPlatform(b.platform);
      const prefix = multi ? `${formatPlatform(platform)} internal` : 'internal';
      const v = pw.vertex({
        digest: `internal:metadata:${b.ref}:${formatPlatform(platform)}`,
        name: `[${prefix}] load metadata for ${displayRef(b.ref)}`,
      });
      v.start();
      try {
        const img = await imageFor(b.ref, platform);
        resolved.set(`${b.ref}\0${formatPlatform(platform)}`, img);
        v.done();
      } catch (err) {
        v.fail(err);
        const stage = plan.platforms
          .flatMap((p) => p.stages)
          .find((s) => s.base.type === 'image' && s.base.ref === b.ref);
        if (stage)
          throw new DockerfileError(errorMessage(err), {
            file,
            range: stage.range,
            lines: plan.lines,
            cause: err,
          });
        throw err;
      }
    }),
  );
  if (bases.length > 0)
    plan = planBuild(opts.dockerfile, {
      ...planOpts,
      imageConfig: (ref, platform): ImageConfigInfo | undefined => {
        const img = resolved.get(`${ref}\0${formatPlatform(toPlatform(platform))}`);
        const c = img?.config.config;
        if (!img) return undefined;
        return {
          ...(c?.Env ? { env: c.Env } : {}),
          ...(c?.WorkingDir ? { workingDir: c.WorkingDir } : {}),
          ...(c?.User ? { user: c.User } : {}),
          ...(c?.Shell ? { shell: c.Shell } : {}),
          ...(c?.OnBuild ? { onBuild: c.OnBuild } : {}),
        };
      },
    });

  // The engine's temp dirs hold secrets: a kill leaves a marker for the next command of any
  // kind to remove them, with the containers and mounts (exec/reap.ts).
  const releaseHold = await holdProcessState(root);
  const engine = new Engine({
    opts,
    plan,
    solver,
    store,
    snapshots,
    root,
    file,
    multi,
    imageFor,
    canExec,
    env,
  });
  try {
    await engine.preload();
    // Dependencies first (the plan's order): each stage's graph then finds the ones it builds
    // on made, so a chain of thousands of stages is not as deep a chain of calls.
    for (const p of plan.platforms) for (const s of p.stages) engine.stageGraph(p, s);
    const targets = plan.platforms.map((p) => engine.stageGraph(p, p.stages[p.stages.length - 1]!));
    solver.announce(targets.map((t) => t.final));
    const epoch = epochFrom(opts);
    const times = { ...(epoch !== undefined ? { epoch } : {}), now: new Date().toISOString() };
    const finals: string[] = [];
    const results = await Promise.all(
      targets.map(async (t, i): Promise<PlatformResult> => {
        const fs = await solver.solve(t.final);
        finals[i] = fs.key;
        const r = await engine.result(plan.platforms[i]!, t, fs, times);
        // Layers of an imported cache the image holds: into the store for the exporters.
        await engine.fetchImported(r);
        opts.onPlatformResult?.(r);
        return r;
      }),
    );
    return { platforms: results, plan, cache: { records: engine.records(), finals } };
  } finally {
    // A failure rejects at once while sibling steps are still stopping: let them finish their
    // own cleanup (containers, mounts) before removing what is left.
    await solver.idle();
    await engine.close();
    releaseHold();
  }
}

/** The normalised name progress shows (`docker.io/library/busybox:latest`). */
function displayRef(ref: string): string {
  try {
    return formatReference(parseReference(ref));
  } catch {
    return ref;
  }
}

/**
 * Whether each platform the plan's stages use can run here: native, or one test program per
 * foreign architecture (not a probe of every registered emulator). A platform not in the
 * plan answers as native-only.
 */
async function executableMatcher(
  platforms: PlatformSpec[],
  env: NodeJS.ProcessEnv,
): Promise<(p: string) => boolean> {
  const ok = new Map<string, boolean>();
  // Proofs are kept for the boot while the emulation set-up is unchanged: a build does not pay
  // a QEMU start per foreign architecture to learn what an earlier one proved.
  const proofCache = emulatorProofFile(env);
  await Promise.all(
    platforms.map(async (p) => {
      const key = formatPlatform(toPlatform(p));
      ok.set(key, await runsHere(key, { proofCache }));
    }),
  );
  return (p) => ok.get(formatPlatform(normalizePlatform(parsePlatform(p)))) ?? isHostArchitecture(p);
}

interface EngineDeps {
  opts: BuildOptions;
  plan: Plan;
  solver: Solver;
  store: ContentStore;
  snapshots: Snapshotter;
  root: string;
  file: string;
  multi: boolean;
  imageFor: (ref: string, platform: Platform) => Promise<ResolvedImage>;
  canExec: (p: string) => boolean;
  env: NodeJS.ProcessEnv;
}

/** One build's graph construction and op implementations. */
class Engine {
  readonly #d: EngineDeps;
  readonly #stages = new Map<string, StageGraph>();
  #context: Promise<BuildContext> | undefined;
  readonly #tmpDir: string;
  readonly #cleanups = new Set<() => Promise<void>>();
  #ssh: SshForwarder | undefined;

  constructor(d: EngineDeps) {
    this.#d = d;
    this.#tmpDir = join(d.root, 'build', 'tmp', `${process.pid}-${randomBytes(4).toString('hex')}`);
  }

  async close(): Promise<void> {
    for (const c of [...this.#cleanups]) await c().catch(() => undefined);
    await this.#ssh?.close().catch(() => undefined);
    await rm(this.#tmpDir, { recursive: true, force: true }).catch(() => undefined);
    if (this.#context) await (await this.#context.catch(() => undefined))?.save().catch(() => undefined);
  }

  async #tmp(prefix: string): Promise<string> {
    const p = join(this.#tmpDir, `${prefix}-${randomBytes(6).toString('hex')}`);
    await mkdir(p, { recursive: true });
    return p;
  }

  // ---- graph ------------------------------------------------------------------------------

  #contextVertex(): SolverVertex<BuildContext> {
    const ignore = this.#d.solver.vertex<BuildContext>({
      digest: 'internal:dockerignore',
      name: '[internal] load .dockerignore',
      inputs: [],
      run: async () => {
        this.#context ??= BuildContext.open({
          dir: resolve(this.#d.opts.contextDir),
          ...(this.#d.opts.dockerfilePath ? { dockerfilePath: this.#d.opts.dockerfilePath } : {}),
          stateRoot: this.#d.root,
        });
        return { value: await this.#context, cached: false };
      },
    });
    // The files themselves are read (and hashed) by the steps that use them.
    return this.#d.solver.vertex<BuildContext>({
      digest: 'internal:context',
      name: '[internal] load build context',
      inputs: [ignore as SolverVertex<unknown>],
      run: async ([ctx]) => ({ value: ctx as BuildContext, cached: false }),
    });
  }

  #imageVertex(ref: string, platform: Platform, name: string): SolverVertex<FsState> {
    return this.#d.solver.vertex<FsState>({
      digest: `image:${ref}:${formatPlatform(platform)}`,
      name,
      inputs: [],
      run: async (_i, ctx) => {
        const img = await this.#d.imageFor(ref, platform);
        // Marked before looking, like #cached, and again once unpacked (cache.ts).
        await markUsed(
          this.#d.root,
          img.layers.map((l) => l.chainId),
        );
        let cached = true;
        for (const l of img.layers) if (!(await this.#d.snapshots.has(l.chainId))) cached = false;
        // Unpacked when a step needs its files (#ensure): with every step cached (a fresh
        // runner with --cache-from), never.
        const chain = img.layers.map((l) => l.chainId as string);
        if (!cached) {
          const unpack = () => unpackImage(img, { store: this.#d.store, snapshots: this.#d.snapshots });
          if (this.#d.opts.cacheImport) {
            // Called from the step that needs it, inside that step's slot: no slot of its own.
            let once: Promise<unknown> | undefined;
            for (const c of chain) this.#lazyImages.set(c, () => (once ??= unpack()));
          } else await ctx.slot(unpack);
        }
        await markUsed(this.#d.root, chain);
        return {
          value: {
            key: `image:${img.manifestDigest}`,
            chain,
            layers: img.layers.map((l) => ({
              kind: 'blob',
              descriptor: l.descriptor,
              diffId: l.diffId,
              source: img.name,
            })),
            emptyLayer: false,
            ...(img.config.created ? { created: img.config.created } : {}),
          },
          cached,
        };
      },
    });
  }

  #scratchVertex(): SolverVertex<FsState> {
    return this.#d.solver.vertex<FsState>({
      digest: 'scratch',
      name: 'scratch',
      hidden: true,
      inputs: [],
      run: async () => ({ value: { key: 'scratch', chain: [], layers: [], emptyLayer: true }, cached: true }),
    });
  }

  #stageLabel(pp: PlatformPlan, stage: PlanStage): string {
    const parts: string[] = [];
    if (this.#d.multi) parts.push(formatPlatform(toPlatform(stage.platform)));
    if (stage.name) parts.push(stage.name);
    else if (pp.stages.length > 1) parts.push(`stage-${stage.index}`);
    return parts.join(' ');
  }

  /** The vertices of a stage (and, recursively, of the stages it depends on). */
  stageGraph(pp: PlatformPlan, stage: PlanStage): StageGraph {
    const have = this.#stages.get(stage.key);
    if (have) return have;
    const platform = toPlatform(stage.platform);
    const fsKinds = new Set(['RUN', 'COPY', 'ADD', 'WORKDIR']);
    const total = 1 + stage.instructions.filter((i) => fsKinds.has(i.kind)).length;
    const label = this.#stageLabel(pp, stage);
    const step = (n: number, text: string) => `[${label ? `${label} ` : ''}${n}/${total}] ${text}`;

    let current: SolverVertex<FsState>;
    let baseConfig: ImageConfig & { history: HistoryEntry[] };
    let baseHistory: HistoryEntry[];
    if (stage.base.type === 'image') {
      const img = this.#resolvedSync(stage.base.ref, platform);
      current = this.#imageVertex(
        stage.base.ref,
        platform,
        step(1, img.name.includes('@') ? `FROM ${img.name}` : `FROM ${img.name}@${img.rootDigest}`),
      );
      baseHistory = baseImageHistory(img);
      baseConfig = { ...img.config, history: baseHistory } as ImageConfig & { history: HistoryEntry[] };
    } else if (stage.base.type === 'stage') {
      const dep = this.#depStage(pp, stage.base);
      const g = this.stageGraph(pp, dep);
      current = g.final;
      baseConfig = g.config;
      baseHistory = g.config.history;
    } else {
      current = this.#scratchVertex();
      baseConfig = {
        os: platform.os,
        architecture: platform.architecture,
        rootfs: { type: 'layers', diff_ids: [] },
        history: [],
      };
      baseHistory = [];
    }

    const steps: (SolverVertex<FsState> | undefined)[] = [];
    let n = 1;
    for (const [i, ins] of stage.instructions.entries()) {
      if (!fsKinds.has(ins.kind)) {
        steps.push(undefined);
        continue;
      }
      n++;
      const digest = sha(`${stage.key}:${i}`);
      const name = step(n, ins.original);
      const parent = current;
      const located = (err: unknown, logTail?: string[]) => this.#locate(err, ins, name, logTail);
      let v: SolverVertex<FsState>;
      if (ins.kind === 'RUN') {
        const mountSources = ins.mounts
          .filter((m) => m.type === 'bind' || m.type === 'cache')
          .map((m) => this.#sourceVertex(pp, m.from, platform));
        v = this.#d.solver.vertex<FsState>({
          digest,
          name,
          inputs: [parent, ...mountSources],
          run: (inputs, ctx) =>
            this.#run(inputs as [FsState, ...(FsState | BuildContext)[]], ins, platform, ctx).catch((err) => {
              throw located(err, (err as { logTail?: string[] }).logTail);
            }),
        });
      } else if (ins.kind === 'WORKDIR') {
        const path = ins.path;
        v = this.#d.solver.vertex<FsState>({
          digest,
          name,
          inputs: [parent],
          run: async (inputs, ctx) => {
            const parent = inputs[0] as FsState;
            const definition = { op: 'mkdir', path };
            const hit = await this.#cached(parent, stepKey(parent, definition));
            if (hit) return { value: hit, cached: true };
            // An existing directory: nothing to change, so nothing to mount (the result is the
            // empty layer the mkdir would have made).
            if (await this.#isDirIn(parent, path)) {
              const value = { ...parent, key: stepKey(parent, definition), emptyLayer: true };
              this.#record(parent, value, null);
              return { value, cached: false };
            }
            return this.#fsOp(parent, definition, ctx, async (mnt) => {
              await mkdirAll(mnt, path);
            }).catch((err) => {
              throw located(err);
            });
          },
        });
      } else {
        const copy = ins as PlanCopy;
        const source = this.#sourceVertex(pp, copy.from, platform);
        v = this.#d.solver.vertex<FsState>({
          digest,
          name,
          inputs: [parent, source],
          run: (inputs, ctx) =>
            this.#copy(inputs[0] as FsState, inputs[1] as FsState | BuildContext, copy, ctx).catch((err) => {
              throw located(err);
            }),
        });
      }
      steps.push(v);
      current = v;
    }

    const sc = stageImageConfig(stage, (baseConfig.config ?? {}) as Parameters<typeof stageImageConfig>[1]);
    const config = {
      ...baseConfig,
      os: platform.os,
      architecture: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
      ...(sc.author !== undefined ? { author: sc.author } : {}),
      config: sc.config as ContainerConfig,
      history: baseHistory,
    } as ImageConfig & { history: HistoryEntry[] };
    if (!platform.variant) delete config.variant;
    const g: StageGraph = { stage, final: current, steps, config, baseHistory };
    this.#stages.set(stage.key, g);
    return g;
  }

  #resolvedSync(ref: string, platform: Platform): ResolvedImage {
    // Every base image was resolved before the graph is made (build()); this reads that answer.
    const got = this.#resolvedCache.get(`${ref}\0${formatPlatform(platform)}`);
    if (!got)
      throw new PolyarchError('INTERNAL', `image ${ref} for ${formatPlatform(platform)} was not resolved`);
    return got;
  }
  readonly #resolvedCache = new Map<string, ResolvedImage>();

  async preload(): Promise<void> {
    for (const p of this.#d.plan.platforms)
      for (const s of p.stages)
        if (s.base.type === 'image') {
          const platform = toPlatform(s.platform);
          this.#resolvedCache.set(
            `${s.base.ref}\0${formatPlatform(platform)}`,
            await this.#d.imageFor(s.base.ref, platform),
          );
        }
  }

  #depStage(pp: PlatformPlan, ref: { index: number; name?: string }): PlanStage {
    const dep = pp.stages.find((s) => s.index === ref.index);
    if (!dep)
      throw new PolyarchError(
        'NOT_FOUND',
        `stage ${ref.name ?? ref.index} is not part of the ${formatPlatform(toPlatform(pp.platform))} plan`,
      );
    return dep;
  }

  /** The vertex providing files for COPY --from / RUN --mount from: context, stage or image. */
  #sourceVertex(
    pp: PlatformPlan,
    from: SourceRef | undefined,
    platform: Platform,
  ): SolverVertex<FsState | BuildContext> {
    if (from === undefined) return this.#contextVertex() as SolverVertex<FsState | BuildContext>;
    if (from.type === 'scratch') return this.#scratchVertex();
    if (from.type === 'stage') return this.stageGraph(pp, this.#depStage(pp, from)).final;
    return this.#imageVertex(
      from.ref,
      platform,
      `[${this.#d.multi ? `${formatPlatform(platform)} ` : ''}internal] load ${displayRef(from.ref)}`,
    );
  }

  #locate(err: unknown, ins: PlanInstruction, vertexName: string, logTail?: string[]): unknown {
    if (err instanceof BuildStepError || err instanceof DockerfileError) return err;
    if (err instanceof PolyarchError && err.code === 'ABORTED') return err;
    return new BuildStepError(errorMessage(err), {
      file: this.#d.file,
      range: ins.range,
      lines: this.#d.plan.lines,
      vertexName,
      ...(logTail ? { logTail } : {}),
      cause: err,
      code: err instanceof PolyarchError ? err.code : 'BUILD_STEP',
    });
  }

  // ---- ops --------------------------------------------------------------------------------

  #snapKey(cacheKey: string): string {
    return this.#d.opts.noCache ? `build:${cacheKey}:${randomBytes(6).toString('hex')}` : `build:${cacheKey}`;
  }

  async #cached(parent: FsState, cacheKey: string): Promise<FsState | undefined> {
    if (this.#d.opts.noCache) return undefined;
    const key = `build:${cacheKey}`;
    // Marked before looking, so a prune that has not seen the mark yet finds it changed (cache.ts).
    await markUsed(this.#d.root, [key]);
    const info = await this.#d.snapshots.stat(key);
    if (info?.kind !== 'committed') return this.#imported(parent, cacheKey);
    return this.#next(parent, cacheKey, key, (await readdir(info.fs)).length === 0, info.created);
  }

  /**
   * A hit in an imported cache (`--cache-from`): the state names the layer's snapshot
   * `build:<key>` without making it; #ensure makes it (fetch + unpack) when a step runs on it.
   */
  async #imported(parent: FsState, cacheKey: string): Promise<FsState | undefined> {
    const rec = await this.#d.opts.cacheImport?.lookup(cacheKey);
    if (!rec) return undefined;
    const created = rec.created ?? parent.created;
    if (!rec.layer) {
      const value: FsState = {
        key: cacheKey,
        chain: parent.chain,
        layers: parent.layers,
        emptyLayer: true,
        ...(created ? { created } : {}),
      };
      this.#record(parent, value, null);
      return value;
    }
    const snapKey = `build:${cacheKey}`;
    this.#lazy.set(snapKey, rec);
    const l = rec.layer;
    const layer = {
      kind: 'blob' as const,
      descriptor: { mediaType: l.mediaType, digest: l.digest, size: l.size },
      diffId: l.diffId,
      // A push to the cache's registry mounts the layer from the cache's repository.
      ...(rec.from.kind === 'registry' ? { source: `${rec.from.ref.domain}/${rec.from.ref.path}` } : {}),
    };
    const value: FsState = {
      key: cacheKey,
      chain: [...parent.chain, snapKey],
      layers: [...parent.layers, layer],
      emptyLayer: false,
      ...(created ? { created } : {}),
    };
    this.#record(parent, value, layer);
    return value;
  }

  /** Imported layers by snapshot key, not unpacked yet. */
  readonly #lazy = new Map<string, ImportedRecord>();
  readonly #ensuring = new Map<string, Promise<unknown>>();
  readonly #records = new Map<string, StepRecord>();
  /** Base image layers not unpacked yet (with an imported cache), by chain id. */
  readonly #lazyImages = new Map<string, () => Promise<unknown>>();

  #record(parent: FsState, value: FsState, layer: StepRecord['layer']): void {
    this.#records.set(value.key, {
      key: value.key,
      parent: parent.key,
      ...(value.created ? { created: value.created } : {}),
      layer,
    });
  }

  records(): StepRecord[] {
    return [...this.#records.values()];
  }

  /** Makes the snapshots of `chain` an imported cache hit names (fetch, unpack, diff id checked). */
  async #ensure(chain: readonly string[]): Promise<void> {
    for (const [i, key] of chain.entries()) {
      const image = this.#lazyImages.get(key);
      if (image) await image();
      const rec = this.#lazy.get(key);
      if (!rec) continue;
      let p = this.#ensuring.get(key);
      if (!p) {
        const parents = chain.slice(0, i);
        p = (async () => {
          if (await this.#d.snapshots.has(key)) return;
          await this.#d.opts.cacheImport!.fetch(rec, this.#d.store);
          await markUsed(this.#d.root, [key]);
          await this.#d.snapshots.create(key, parents, async (fsDir) => {
            const r = await applyLayerBlob(this.#d.store.openRead(rec.layer!.digest), fsDir, {
              target: 'overlay',
            });
            if (r.diffId !== rec.layer!.diffId)
              throw new PolyarchError(
                'DIGEST_MISMATCH',
                `cache layer ${rec.layer!.digest} uncompresses to ${r.diffId}, not ${rec.layer!.diffId}`,
              );
          });
        })();
        this.#ensuring.set(key, p);
      }
      await p;
    }
  }

  /** Fetches the imported cache layers of a result into the store (the exporters read them there). */
  async fetchImported(r: PlatformResult): Promise<void> {
    const imp = this.#d.opts.cacheImport;
    if (!imp) return;
    await Promise.all(
      r.layers.map(async (l) => {
        if (l.kind !== 'blob') return;
        const rec = imp.byLayer(l.descriptor.digest);
        if (!rec) return;
        await imp.fetch(rec, this.#d.store);
        // Fetched for the image only (not unpacked, which checks it): its diff id is checked
        // here, so a cache cannot put a wrong rootfs.diff_ids into an image.
        if (!this.#ensuring.has(`build:${rec.key}`)) await imp.verifyDiffId(rec, this.#d.store);
      }),
    );
  }

  #next(parent: FsState, cacheKey: string, snapKey: string, empty: boolean, created: string): FsState {
    const value: FsState = empty
      ? { key: cacheKey, chain: parent.chain, layers: parent.layers, emptyLayer: true, created }
      : {
          key: cacheKey,
          chain: [...parent.chain, snapKey],
          layers: [...parent.layers, { kind: 'snapshot', key: snapKey }],
          emptyLayer: false,
          created,
        };
    this.#record(parent, value, empty ? null : { kind: 'snapshot', key: snapKey });
    return value;
  }

  /**
   * A filesystem change made through the mounted overlay of an active snapshot over `parent`,
   * committed as `build:<cacheKey>`; cached when that snapshot exists.
   */
  async #fsOp(
    parent: FsState,
    definition: unknown,
    ctx: VertexContext,
    fn: (mountDir: string) => Promise<void>,
  ): Promise<VertexResult<FsState>> {
    const cacheKey = stepKey(parent, definition);
    const hit = await this.#cached(parent, cacheKey);
    if (hit) return { value: hit, cached: true };
    return ctx.slot(async () => {
      const value = await this.#withActive(parent, cacheKey, async (active) => {
        const mnt = await this.#tmp('mnt');
        await active.mount(mnt);
        try {
          await fn(mnt);
        } finally {
          await active.unmount();
          await rm(mnt, { recursive: true, force: true });
        }
      });
      return { value, cached: false };
    });
  }

  /**
   * Whether `path` is already a directory in `state`, read from its layer directories without
   * mounting them. Conservative: any doubt (a symlink or non-directory on the way, or an upper
   * layer holding only a parent of it, which could be an opaque directory) answers false.
   */
  async #isDirIn(state: FsState, path: string): Promise<boolean> {
    const parts = posix.normalize(`/${path}`).split('/').filter(Boolean);
    if (parts.length === 0 || state.chain.length === 0) return false;
    await this.#ensure(state.chain);
    const layers = (await this.#d.snapshots.paths(state.chain)).reverse(); // top-most first
    for (const layer of layers) {
      let at = layer;
      for (const [i, p] of parts.entries()) {
        at = join(at, p);
        const st = await lstat(at).catch(() => undefined);
        if (!st) {
          if (i === 0) break; // this layer does not touch the path: look below
          return false;
        }
        if (!st.isDirectory()) return false;
        if (i === parts.length - 1) return true;
      }
    }
    return false;
  }

  /** Prepare an active snapshot over `parent`, let `fn` change it, commit it (or remove it on failure). */
  async #withActive(
    parent: FsState,
    cacheKey: string,
    fn: (active: ActiveSnapshot) => Promise<void>,
  ): Promise<FsState> {
    await this.#ensure(parent.chain);
    const activeKey = `build-active-${randomBytes(8).toString('hex')}`;
    const active = await this.#d.snapshots.prepare(activeKey, parent.chain, { unique: true });
    const cleanup = async () => {
      await active.unmount().catch(() => undefined);
      await this.#d.snapshots.remove(activeKey);
    };
    this.#cleanups.add(cleanup);
    try {
      await fn(active);
      const empty = (await readdir(active.upper)).length === 0;
      const snapKey = this.#snapKey(cacheKey);
      const info = await this.#d.snapshots.commit(activeKey, snapKey);
      if (!empty) this.#d.opts.onLayerCommitted?.(snapKey);
      return this.#next(parent, cacheKey, snapKey, empty, info.created);
    } catch (err) {
      await cleanup().catch(() => undefined);
      throw err;
    } finally {
      this.#cleanups.delete(cleanup);
    }
  }

  /** Mount a read-only view of a state's files; returns the directory and how to release it. */
  async #view(state: FsState): Promise<{ dir: string; release: () => Promise<void> }> {
    const dir = await this.#tmp('view');
    if (state.chain.length === 0) return { dir, release: () => rm(dir, { recursive: true, force: true }) };
    await this.#ensure(state.chain);
    const key = `build-view-${randomBytes(8).toString('hex')}`;
    const view = await this.#d.snapshots.view(key, state.chain, { unique: true });
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      this.#cleanups.delete(release);
      await view.unmount().catch(() => unmountPath(dir).catch(() => undefined));
      await this.#d.snapshots.remove(key);
      await rm(dir, { recursive: true, force: true });
    };
    this.#cleanups.add(release);
    try {
      await view.mount(dir);
    } catch (err) {
      await release();
      throw err;
    }
    return { dir, release };
  }

  // ---- RUN ------------------------------------------------------------------------------

  async #run(
    inputs: [FsState, ...(FsState | BuildContext)[]],
    run: PlanRun,
    platform: Platform,
    ctx: VertexContext,
  ): Promise<VertexResult<FsState>> {
    const [parent, ...sources] = inputs;
    const cmd = runCommand(run, '/dev/pipes');
    const netFlag = this.#d.opts.network ?? 'default';
    const network: 'host' | 'none' =
      run.network === 'none' || (run.network === 'default' && netFlag === 'none') ? 'none' : 'host';
    // Mount sources in order of the bind/cache mounts that have one.
    let si = 0;
    const mountDefs: unknown[] = [];
    for (const m of run.mounts) {
      if (m.type === 'bind' || m.type === 'cache') {
        const src = sources[si++]!;
        let srcKey: string;
        if (src instanceof BuildContext) {
          if (m.type === 'bind') {
            const paths = await src.match(m.source ?? '.');
            srcKey = `context:${await src.checksum(paths)}`;
          } else srcKey = 'context';
        } else srcKey = src.key;
        mountDefs.push({ ...m, from: srcKey });
      } else if (m.type === 'secret')
        mountDefs.push({ type: m.type, id: m.id, target: m.target, env: m.env });
      else mountDefs.push(m);
    }
    const definition = {
      op: 'exec',
      platform: formatPlatform(platform),
      argv: cmd.argv,
      script: cmd.script,
      env: run.state.runEnv,
      user: run.state.user,
      cwd: run.state.workdir,
      network,
      security: run.security,
      mounts: mountDefs,
    };
    const cacheKey = stepKey(parent, definition);
    const hit = await this.#cached(parent, cacheKey);
    if (hit) return { value: hit, cached: true };

    return ctx.slot(async () => {
      const releases: (() => Promise<void>)[] = [];
      const mounts: MountRequest[] = [];
      const extraEnv: string[] = Object.entries(run.proxy).map(([k, v]) => `${k}=${v}`);
      const tail: string[] = [];
      const partial: Record<1 | 2, string> = { 1: '', 2: '' };
      const onOutput = (stream: 1 | 2) => (chunk: Buffer) => {
        ctx.progress.log(chunk, stream);
        const lines = (partial[stream] + chunk.toString('utf8')).split('\n');
        partial[stream] = lines.pop() ?? '';
        tail.push(...lines);
        if (tail.length > LOG_TAIL_LINES) tail.splice(0, tail.length - LOG_TAIL_LINES);
      };
      try {
        si = 0;
        for (const m of run.mounts) {
          if (m.type === 'bind') {
            const src = sources[si++]!;
            // The source resolved inside the context or the stage's view, never on the host.
            let root: string;
            if (src instanceof BuildContext) root = src.dir;
            else {
              const v = await this.#view(src);
              releases.push(v.release);
              root = v.dir;
            }
            const at = resolveInRoot(root, m.source ?? '');
            if (at.missing !== undefined || !(await lstat(at.host).catch(() => undefined)))
              throw new PolyarchError(
                'NOT_FOUND',
                `mount source "/${posix.normalize(`/${m.source ?? ''}`).slice(1)}": not found`,
              );
            mounts.push({ type: 'bind', source: at.host, destination: m.target, readonly: true });
          } else if (m.type === 'cache') {
            si++;
            const id = m.id ?? m.target;
            const dir = join(
              this.#d.root,
              'build',
              'cache-mounts',
              sha(`${id}\0${m.id ? '' : formatPlatform(platform)}`).slice(0, 32),
            );
            const fresh = await lstat(dir).then(
              () => false,
              () => true,
            );
            await mkdir(dir, { recursive: true });
            if (fresh) {
              await chmod(dir, m.mode ?? 0o755);
              await chown(dir, m.uid ?? 0, m.gid ?? 0);
            }
            if (m.sharing === 'locked')
              releases.push(await acquireLock(`${dir}.lock`, { timeoutMs: 30 * 60_000 }));
            mounts.push({ type: 'bind', source: dir, destination: m.target, readonly: m.readonly });
          } else if (m.type === 'tmpfs') {
            mounts.push({
              type: 'tmpfs',
              destination: m.target,
              options: ['nosuid', 'nodev', 'mode=1777', ...(m.size ? [`size=${m.size}`] : [])],
            });
          } else if (m.type === 'secret') {
            const id = m.id ?? basename(m.target);
            const secret = await this.#secret(id);
            if (secret === undefined) {
              if (m.required) throw new PolyarchError('NOT_FOUND', `secret ${id} not found`);
              continue;
            }
            const dir = await this.#tmp('secret');
            await chmod(dir, 0o700);
            const f = join(dir, 'secret');
            await writeFile(f, secret, { mode: 0o600 });
            await chmod(f, m.mode ?? 0o400);
            await chown(f, m.uid ?? 0, m.gid ?? 0);
            releases.push(() => rm(dir, { recursive: true, force: true }));
            mounts.push({ type: 'bind', source: f, destination: m.target, readonly: true });
            if (m.env) extraEnv.push(`${m.env}=${secret.toString('utf8')}`);
          } else if (m.type === 'ssh') {
            const id = m.id ?? 'default';
            this.#ssh ??= new SshForwarder(this.#d.opts.ssh ?? [], this.#d.env);
            if (!this.#ssh.has(id)) {
              if (m.required)
                throw new PolyarchError(
                  'NOT_FOUND',
                  `no SSH key "${id}" forwarded from the client (use --ssh ${id})`,
                );
              this.#d.opts.warn?.(
                `RUN --mount=type=ssh: no SSH agent forwarded for id "${id}" (--ssh ${id}): the step runs without one`,
              );
              continue;
            }
            const dir = await this.#tmp('ssh');
            await chmod(dir, 0o711);
            const sock = await this.#ssh.socket(id, {
              dir,
              mode: m.mode ?? 0o600,
              uid: m.uid ?? 0,
              gid: m.gid ?? 0,
            });
            releases.push(async () => {
              await sock.close();
              await rm(dir, { recursive: true, force: true });
            });
            mounts.push({ type: 'bind', source: sock.path, destination: m.target, readonly: true });
            // BuildKit: the first ssh mount is the step's agent.
            if (!extraEnv.some((e) => e.startsWith('SSH_AUTH_SOCK=')))
              extraEnv.push(`SSH_AUTH_SOCK=${m.target}`);
          }
        }
        if (cmd.script) {
          const dir = await this.#tmp('pipes');
          const f = join(dir, posix.basename(cmd.script.path));
          await writeFile(f, cmd.script.data, { mode: cmd.script.mode });
          releases.push(() => rm(dir, { recursive: true, force: true }));
          mounts.push({
            type: 'bind',
            source: dir,
            destination: posix.dirname(cmd.script.path),
            readonly: true,
          });
        }
        const value = await this.#withActive(parent, cacheKey, async (active) => {
          const r = await runContainer({
            root: this.#d.root,
            rootfs: active,
            platform: formatPlatform(platform),
            canExecute: this.#d.canExec,
            spec: {
              config: { Env: run.state.runEnv },
              args: cmd.argv,
              entrypoint: [],
              env: extraEnv,
              workingDir: run.state.workdir,
              ...(run.state.user ? { user: run.state.user } : {}),
              network,
              mounts,
            },
            stdout: onOutput(1),
            stderr: onOutput(2),
            signal: ctx.signal,
          });
          for (const rest of [partial[1], partial[2]]) if (rest) tail.push(rest);
          if (r.exitCode !== 0) {
            const err = new PolyarchError(
              'RUN_FAILED',
              `process "${cmd.argv.join(' ')}" did not complete successfully: exit code: ${r.exitCode}`,
            );
            (err as { logTail?: string[] }).logTail = tail.slice(-LOG_TAIL_LINES);
            throw err;
          }
        });
        return { value, cached: false };
      } finally {
        for (const r of releases.reverse()) await r().catch(() => undefined);
      }
    });
  }

  async #secret(id: string): Promise<Buffer | undefined> {
    const s = this.#d.opts.secrets?.find((x) => x.id === id);
    if (!s) return undefined;
    if (s.env !== undefined) {
      const v = this.#d.env[s.env];
      return v === undefined ? undefined : Buffer.from(v);
    }
    if (s.src !== undefined) {
      const fh = await open(s.src, 'r');
      try {
        return await fh.readFile();
      } finally {
        await fh.close();
      }
    }
    return undefined;
  }

  // ---- COPY / ADD -------------------------------------------------------------------------

  async #owner(mnt: string, chown: string | undefined, fromContext: boolean): Promise<Owner | undefined> {
    if (chown === undefined || chown === '') return fromContext ? { uid: 0, gid: 0 } : undefined;
    const u = await resolveUser(mnt, chown);
    // Docker: a user without a group uses the same number as the gid.
    return { uid: u.uid, gid: chown.includes(':') ? u.gid : u.uid };
  }

  async #copy(
    parent: FsState,
    source: FsState | BuildContext,
    copy: PlanCopy,
    ctx: VertexContext,
  ): Promise<VertexResult<FsState>> {
    const isAdd = copy.kind === 'ADD';
    const urls = isAdd ? copy.sources.filter((s) => /^https?:\/\//.test(s)) : [];
    const locals = copy.sources.filter((s) => !urls.includes(s));
    const mode = copy.chmod !== undefined ? parseMode(copy.chmod) : undefined;
    const multiple = copy.sources.length + copy.contents.length > 1;
    const destIsDir = copy.dest.endsWith('/') || copy.dest === '.' || multiple;
    const fromContext = source instanceof BuildContext;

    // Content identity of what the copy reads.
    let srcKey: string;
    let contextMatches: string[][] = [];
    if (source instanceof BuildContext) {
      contextMatches = await Promise.all(locals.map((s) => source.match(s, copy.exclude)));
      srcKey = `context:${await source.checksum(contextMatches.flat(), copy.exclude)}`;
    } else srcKey = source.key;
    const downloads = await Promise.all(urls.map((u) => this.#download(u, copy.checksum)));
    const definition = {
      op: copy.kind,
      sources: copy.sources,
      contents: copy.contents,
      dest: copy.destPath,
      destIsDir,
      chown: copy.chown,
      chmod: copy.chmod,
      parents: copy.parents,
      exclude: copy.exclude,
      src: srcKey,
      downloads: downloads.map((d) => d.digest),
    };
    if (multiple && !copy.dest.endsWith('/') && copy.dest !== '.')
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `When using ${copy.kind} with more than one source file, the destination must be a directory and end with a /`,
      );
    try {
      return await this.#fsOp(parent, definition, ctx, async (mnt) => {
        const owner = await this.#owner(mnt, copy.chown, fromContext || urls.length > 0);
        const dest = copy.destPath;
        // A file goes into the destination when that is a directory (through links, in the rootfs).
        const intoDir = async () => {
          const at = resolveInRoot(mnt, dest);
          return (
            at.missing === undefined && (await lstat(at.host).catch(() => undefined))?.isDirectory() === true
          );
        };
        // `rel` is the source as matched (it names the destination), resolved inside `srcRoot`.
        const place = async (
          srcRoot: string,
          rel: string,
          filter?: (real: string) => (r: string) => boolean,
        ) => {
          const src = resolveSource(srcRoot, rel);
          if (!src) throw new PolyarchError('NOT_FOUND', `"/${rel}": not found`);
          const st = await lstat(src.host);
          let target: string;
          if (copy.parents && rel !== '') target = posix.join(dest, rel);
          else if (st.isDirectory()) target = dest;
          else {
            target = destIsDir || (await intoDir()) ? posix.join(dest, posix.basename(`/${rel}`)) : dest;
          }
          if (isAdd && st.isFile() && (await isArchive(src.host))) {
            // Extracted confined to the destination directory (layer/apply.ts).
            const host = await mkdirAll(mnt, dest);
            const { createReadStream } = await import('node:fs');
            await applyLayerBlob(createReadStream(src.host), host);
            return;
          }
          await copyTree({
            src: src.host,
            srcRel: src.rel,
            rootfs: mnt,
            dest: target,
            ...(owner ? { owner } : {}),
            ...(mode !== undefined ? { mode } : {}),
            ...(filter ? { filter: filter(src.rel) } : {}),
          });
        };
        if (source instanceof BuildContext) {
          for (const paths of contextMatches)
            for (const rel of paths)
              await place(source.dir, rel, (real) => (r) => !source.excluded(r, copy.exclude, real));
        } else if (locals.length > 0) {
          const view = await this.#view(source);
          try {
            for (const s of locals) {
              const clean = posix.normalize(`/${s}`).slice(1);
              const found = clean === '' ? [''] : await matchPaths(view.dir, clean);
              if (found.length === 0) throw new PolyarchError('NOT_FOUND', `"/${clean}": not found`);
              for (const rel of found) await place(view.dir, rel);
            }
          } finally {
            await view.release();
          }
        }
        for (const d of downloads) {
          const target = destIsDir || (await intoDir()) ? posix.join(dest, d.name) : dest;
          await copyTree({
            src: join(d.dir, 'file'),
            srcRel: 'file',
            rootfs: mnt,
            dest: target,
            ...(owner ? { owner } : {}),
            mode: mode ?? 0o600,
          });
        }
        for (const c of copy.contents) {
          const dir = await this.#tmp('heredoc');
          await writeFile(join(dir, 'file'), c.data, { mode: 0o644 });
          const target = destIsDir || (await intoDir()) ? posix.join(dest, c.path) : dest;
          await copyTree({
            src: join(dir, 'file'),
            srcRel: 'file',
            rootfs: mnt,
            dest: target,
            ...(owner ? { owner } : {}),
            mode: mode ?? 0o644,
          });
        }
      });
    } finally {
      for (const d of downloads) await rm(d.dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  async #download(
    url: string,
    checksum: string | undefined,
  ): Promise<{ dir: string; name: string; digest: string }> {
    const { Agent, interceptors, request } = await import('undici');
    const dir = await this.#tmp('download');
    const agent = new Agent();
    try {
      return await this.#fetchInto(
        url,
        checksum,
        dir,
        agent.compose(interceptors.redirect({ maxRedirections: 5 })),
        request,
      );
    } finally {
      await agent.close().catch(() => undefined);
    }
  }

  async #fetchInto(
    url: string,
    checksum: string | undefined,
    dir: string,
    dispatcher: import('undici').Dispatcher,
    request: typeof import('undici').request,
  ): Promise<{ dir: string; name: string; digest: string }> {
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(url, { method: 'GET', dispatcher });
    } catch (err) {
      throw new PolyarchError('DOWNLOAD', `ADD ${url}: ${errorMessage(err)}`, { cause: err });
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new PolyarchError('DOWNLOAD', `ADD ${url}: HTTP ${res.statusCode}`);
    }
    const h = createHash('sha256');
    const file = join(dir, 'file');
    await pipeline(
      res.body,
      async function* (src: AsyncIterable<Buffer>) {
        for await (const c of src) {
          h.update(c);
          yield c;
        }
      },
      createWriteStream(file),
    );
    const digest = `sha256:${h.digest('hex')}`;
    if (checksum !== undefined && checksum !== digest)
      throw new PolyarchError(
        'DIGEST_MISMATCH',
        `ADD ${url}: digest mismatch ${digest}: expected ${checksum}`,
      );
    const name = posix.basename(new URL(url).pathname) || 'index.html';
    const lm = res.headers['last-modified'];
    if (typeof lm === 'string') {
      const t = new Date(lm);
      if (!Number.isNaN(t.getTime())) await (await import('node:fs/promises')).utimes(file, t, t);
    }
    return { dir, name, digest };
  }

  // ---- result -----------------------------------------------------------------------------

  /**
   * The image config of a solved target. `epoch` (SOURCE_DATE_EPOCH) pins every time; without
   * it each history entry takes the creation time of the state its step made (a config-only
   * step, the time of the state before it), and the config `created` is the newest of this
   * build's entries. `now` is the fallback for a stage with nothing dated (FROM scratch with
   * only config instructions).
   */
  async result(
    pp: PlatformPlan,
    g: StageGraph,
    fs: FsState,
    times: { epoch?: string; now: string },
  ): Promise<PlatformResult> {
    const { history, newest } = await this.#history(pp, g, times);
    const created = times.epoch ?? newest ?? times.now;
    const platform = toPlatform(pp.platform);
    const { rootfs: _r, history: _h, ...rest } = g.config as ImageConfig & { history: HistoryEntry[] };
    const config: PlatformResult['config'] = {
      ...rest,
      created,
      os: platform.os,
      architecture: platform.architecture,
      ...(platform.variant ? { variant: platform.variant } : {}),
      history,
    };
    if (!platform.variant) delete config.variant;
    const labels = this.#d.opts.labels;
    if (labels && Object.keys(labels).length > 0)
      config.config = { ...config.config, Labels: { ...config.config?.Labels, ...labels } };
    const nonEmpty = history.filter((h) => !h.empty_layer).length;
    if (nonEmpty !== fs.layers.length)
      throw new PolyarchError(
        'INTERNAL',
        `history has ${nonEmpty} layer entries for ${fs.layers.length} layers`,
      );
    return { platform, layers: fs.layers, config };
  }

  /**
   * History of a stage: its base's, then one entry per instruction (BuildKit's wording), with
   * the newest time this build's entries carry.
   */
  async #history(
    pp: PlatformPlan,
    g: StageGraph,
    times: { epoch?: string; now: string },
  ): Promise<{ history: HistoryEntry[]; newest?: string }> {
    // The stages this one is built FROM, walked in a loop (a chain may be thousands long),
    // then each one's entries on top of its base's, innermost first.
    const chain = [g];
    for (let s = g; s.stage.base.type === 'stage'; ) {
      s = this.stageGraph(pp, this.#depStage(pp, s.stage.base));
      chain.push(s);
    }
    let below: { history: HistoryEntry[]; newest?: string } | undefined;
    for (let k = chain.length - 1; k >= 0; k--)
      below = await this.#stageHistory(chain[k]!, chain[k + 1], below, times);
    return below!;
  }

  /** One stage's history given its base stage's (`dep`, `below`), or its base image's. */
  async #stageHistory(
    g: StageGraph,
    dep: StageGraph | undefined,
    below: { history: HistoryEntry[]; newest?: string } | undefined,
    times: { epoch?: string; now: string },
  ): Promise<{ history: HistoryEntry[]; newest?: string }> {
    let base: HistoryEntry[];
    let newest: string | undefined;
    // The time a config-only instruction gets: that of the state it applies to.
    let last: string | undefined;
    if (dep && below) {
      base = below.history;
      newest = below.newest;
      last = (await this.#d.solver.solve(dep.final)).created;
    } else {
      base = g.baseHistory.map((h) => ({ ...h }));
      // The base image's own time (g.config starts as the base image's config).
      last = g.stage.base.type === 'image' ? g.config.created : undefined;
    }
    const out = [...base];
    for (const [i, ins] of g.stage.instructions.entries()) {
      const v = g.steps[i];
      let empty = true;
      if (v) {
        const st = await this.#d.solver.solve(v);
        empty = st.emptyLayer;
        last = st.created ?? last;
      }
      const created = times.epoch ?? last ?? times.now;
      if (newest === undefined || !(Date.parse(created) <= Date.parse(newest))) newest = created;
      out.push({
        created,
        created_by: createdBy(ins),
        comment: 'buildkit.dockerfile.v0',
        ...(empty ? { empty_layer: true } : {}),
      });
    }
    // A stage with no instruction of its own is as old as what it starts from.
    newest ??= last;
    return { history: out, ...(newest !== undefined ? { newest } : {}) };
  }
}

function createdBy(ins: PlanInstruction): string {
  switch (ins.kind) {
    case 'RUN': {
      // BuildKit names the ARGs in scope first: `RUN |2 A=1 B=2 /bin/sh -c …`.
      const args = Object.entries(ins.state.args).map(([k, v]) => `${k}=${v}`);
      const prefix = args.length > 0 ? `|${args.length} ${args.join(' ')} ` : '';
      return `RUN ${prefix}${runCommand(ins).argv.join(' ')} # buildkit`;
    }
    case 'COPY':
    case 'ADD':
      return `${ins.original.replace(/\s+/g, ' ').trim()} # buildkit`;
    default:
      return ins.original.replace(/\s+/g, ' ').trim();
  }
}

/** The base image's history, made consistent with its layers when it is not. */
function baseImageHistory(img: ResolvedImage): HistoryEntry[] {
  const h = img.config.history ?? [];
  if (h.filter((e) => !e.empty_layer).length === img.layers.length) return h.map((e) => ({ ...e }));
  return img.layers.map(() => ({ created_by: '', comment: 'polyarch: base layer without history' }));
}

function parseMode(s: string): number {
  if (!/^[0-7]{1,4}$/.test(s))
    throw new PolyarchError('INVALID_ARGUMENT', `invalid --chmod "${s}": expected an octal mode such as 755`);
  return Number.parseInt(s, 8);
}

/** Whether a file is a tar archive ADD should extract (gzip, bzip2, xz, zstd or plain tar). */
async function isArchive(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    const b = buf.subarray(0, bytesRead);
    if (b[0] === 0x1f && b[1] === 0x8b) return true;
    if (b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return true;
    if (b.length >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar') return true;
    return false;
  } finally {
    await fh.close();
  }
}
