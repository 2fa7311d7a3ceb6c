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
 *
 * This file prepares a build (plan, base images, named contexts, lease, solver) and drives
 * it; engine.ts builds the graph and its sources, step-run.ts and step-copy.ts are the RUN
 * and COPY/ADD ops, engine-util.ts what they share.
 */
import { resolve } from 'node:path';
import { ContentStore, emulatorProofFile, stateRoot, storeDir } from '../content/index.js';
import { holdBuildLease } from './cache.js';
import type { ImportedCache } from './extcache/index.js';
import type { BuildCacheInfo } from './extcache/inline.js';
import {
  DockerfileError,
  type Plan,
  planBuild,
  collectBaseImages,
  collectContextRefs,
  type ImageConfigInfo,
} from '../dockerfile/index.js';
import { checkExecutable, cleanupStale } from '../exec/index.js';
import { holdProcessState, sweepBuildTemp } from '../exec/reap.js';
import type { Digest } from '../oci/index.js';
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
import { Snapshotter } from '../snapshot/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { type ResolvedImage, resolveImage } from './image.js';
import type { BuildResult, PlatformResult } from './result.js';
import { Solver } from './solver.js';
import {
  describeContext,
  type NamedContextSpec,
  namedContextLookup,
  OCI_LAYOUT_PREFIX,
  type PreparedContext,
  prepareNamedContext,
} from './named-context.js';
import { resolveLayoutImage } from './oci-layout.js';
import { type SshSource, SshForwarder } from './ssh.js';
import { Engine } from './engine.js';
import { displayRef, gitEnv, toPlatform } from './engine-util.js';

export { BuildStepError } from './step-error.js';

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
  /**
   * `--build-context NAME=VALUE`s (named-context.ts parseBuildContext): they replace the stage
   * or image of their name in FROM, COPY --from and RUN --mount from=.
   */
  namedContexts?: NamedContextSpec[];
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
  /** The base images the build used, by digest (for provenance). */
  baseImages: Array<{
    ref: string;
    name: string;
    platform: Platform;
    rootDigest: Digest;
    manifestDigest: Digest;
  }>;
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
    ...(opts.namedContexts?.length ? { namedContext: namedContextLookup(opts.namedContexts) } : {}),
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
      p = ref.startsWith(OCI_LAYOUT_PREFIX)
        ? resolveLayoutImage(ref, platform, { store })
        : resolveImage(ref, platform, {
            store,
            pull: opts.pull ?? false,
            env,
            ...(opts.warn ? { warn: opts.warn } : {}),
          });
      images.set(k, p);
    }
    return p;
  };
  // Named contexts the plan reads: fetched (git, http) or checked (directories); the image
  // ones join the base images below, resolved per platform.
  const ssh = new SshForwarder(opts.ssh ?? [], env);
  let contexts: Map<string, PreparedContext>;
  try {
    contexts = await prepareContexts(opts, plan, pw, root, await gitEnv(ssh, env));
  } catch (err) {
    await ssh.close().catch(() => undefined);
    throw err;
  }
  // What the contexts hold (fetched files, an agent started for key files) is released with
  // the engine, or here when the build fails before the engine is made.
  const releaseContexts = async () => {
    await ssh.close().catch(() => undefined);
    for (const c of contexts.values()) if (c.kind === 'dir') await c.cleanup?.().catch(() => undefined);
  };
  let releaseHold: () => void;
  let engine: Engine;
  // The base images by digest, for provenance (src/attest).
  let baseImages: BuildOutput['baseImages'] = [];
  try {
    const bases = [...collectBaseImages(plan), ...contextImages(plan, contexts)];
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
            .find(
              (s) =>
                (s.base.type === 'image' && s.base.ref === b.ref) ||
                (s.base.type === 'context' && contextImageRef(contexts, s.base.name) === b.ref),
            );
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
    baseImages = bases.flatMap((b) => {
      const platform = toPlatform(b.platform);
      const img = resolved.get(`${b.ref}\0${formatPlatform(platform)}`);
      return img
        ? [
            {
              ref: b.ref,
              name: img.name,
              platform,
              rootDigest: img.rootDigest,
              manifestDigest: img.manifestDigest,
            },
          ]
        : [];
    });
    if (bases.length > 0 || contexts.size > 0) {
      const imageConfig = (ref: string, platform: PlatformSpec): ImageConfigInfo | undefined => {
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
      };
      plan = planBuild(opts.dockerfile, {
        ...planOpts,
        imageConfig,
        // An image context brings its image's config; a directory-like one none (as scratch).
        contextConfig: (name, platform) => {
          const ref = contextImageRef(contexts, name);
          return ref !== undefined ? imageConfig(ref, platform) : contexts.has(name) ? {} : undefined;
        },
      });
    }

    // The engine's temp dirs hold secrets: a kill leaves a marker for the next command of any
    // kind to remove them, with the containers and mounts (exec/reap.ts).
    releaseHold = await holdProcessState(root);
    engine = new Engine({
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
      contexts,
      ssh,
    });
  } catch (err) {
    await releaseContexts();
    throw err;
  }
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
    return { platforms: results, plan, cache: { records: engine.records(), finals }, baseImages };
  } finally {
    // A failure rejects at once while sibling steps are still stopping: let them finish their
    // own cleanup (containers, mounts) before removing what is left.
    await solver.idle();
    await engine.close();
    releaseHold();
    await releaseContexts();
  }
}

/**
 * Prepares the named contexts a plan reads (each once, with a progress vertex), warning about
 * the ones it does not read.
 */
async function prepareContexts(
  opts: BuildOptions,
  plan: Plan,
  pw: Solver['progress'],
  root: string,
  env: NodeJS.ProcessEnv,
): Promise<Map<string, PreparedContext>> {
  const out = new Map<string, PreparedContext>();
  const specs = opts.namedContexts ?? [];
  if (specs.length === 0) return out;
  const used = new Set(collectContextRefs(plan).map((r) => r.name));
  for (const s of specs)
    if (!used.has(s.name))
      opts.warn?.(`--build-context ${describeContext(s)}: the build does not use "${s.name}"`);
  // The last of several given for one name wins, as with buildx.
  const byName = new Map(specs.filter((s) => used.has(s.name)).map((s) => [s.name, s]));
  try {
    await Promise.all(
      [...byName.values()].map(async (s) => {
        const v = pw.vertex({
          digest: `internal:named-context:${s.name}`,
          name: `[context ${s.name}] load ${describeContext(s).slice(s.name.length + 1)}`,
        });
        v.start();
        try {
          out.set(
            s.name,
            await prepareNamedContext(s, {
              stateRoot: root,
              env,
              ...(opts.secrets ? { secrets: opts.secrets } : {}),
              ...(opts.buildArgs ? { buildArgs: opts.buildArgs } : {}),
              ...(opts.signal ? { signal: opts.signal } : {}),
            }),
          );
          v.done();
        } catch (err) {
          v.fail(err);
          throw err;
        }
      }),
    );
  } catch (err) {
    for (const c of out.values()) if (c.kind === 'dir') await c.cleanup?.().catch(() => undefined);
    throw err;
  }
  return out;
}

function contextImageRef(contexts: ReadonlyMap<string, PreparedContext>, name: string): string | undefined {
  const c = contexts.get(name);
  return c?.kind === 'image' ? c.ref : undefined;
}

/** The (image, platform) pairs image contexts are read for: resolved with the base images. */
function contextImages(
  plan: Plan,
  contexts: ReadonlyMap<string, PreparedContext>,
): { ref: string; platform: PlatformSpec }[] {
  const out: { ref: string; platform: PlatformSpec }[] = [];
  for (const r of collectContextRefs(plan)) {
    const ref = contextImageRef(contexts, r.name);
    if (ref !== undefined) out.push({ ref, platform: r.platform });
  }
  return out;
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
