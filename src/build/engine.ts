/**
 * The build engine's graph and ops: one `Engine` per build turns each platform's plan into
 * solver vertices (image, context and stage sources; RUN, COPY, ADD, WORKDIR steps) with
 * their cache keys, runs the steps (runc, under QEMU for foreign platforms) and makes each
 * platform's result (layers, config, history). build.ts prepares what it needs and drives it.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, rm } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import type { ContentStore } from '../content/index.js';
import { markUsed } from './cache.js';
import type { ImportedRecord } from './extcache/index.js';
import type { StepRecord } from './extcache/inline.js';
import {
  DockerfileError,
  type Plan,
  type PlanCopy,
  type PlanInstruction,
  type PlanStage,
  type PlatformPlan,
  runCommand,
  stageImageConfig,
  type SourceRef,
} from '../dockerfile/index.js';
import { resolveUser } from '../exec/index.js';
import { applyLayerBlob } from '../layer/index.js';
import type { ContainerConfig, HistoryEntry, ImageConfig } from '../oci/index.js';
import { formatPlatform, type Platform } from '../platform/index.js';
import { type ActiveSnapshot, type Snapshotter, unmountPath } from '../snapshot/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { BuildContext } from './context.js';
import { mkdirAll, type Owner } from './fsops.js';
import { type ResolvedImage, unpackImage } from './image.js';
import type { PlatformResult } from './result.js';
import type { Solver, SolverVertex, VertexContext, VertexResult } from './solver.js';
import { OCI_LAYOUT_PREFIX, type PreparedContext } from './named-context.js';
import { maskURL } from './remote/url.js';
import type { SshForwarder } from './ssh.js';

import type { BuildOptions } from './build.js';
import { BuildStepError } from './step-error.js';
import { copyStep } from './step-copy.js';
import { displayRef, type FsState, sha, stepKey, toPlatform } from './engine-util.js';
import { runStep } from './step-run.js';

interface StageGraph {
  stage: PlanStage;
  final: SolverVertex<FsState>;
  /** Per instruction, the vertex that ran it (filesystem instructions only). */
  steps: (SolverVertex<FsState> | undefined)[];
  config: ImageConfig & { history: HistoryEntry[] };
  /** History and layer entries before this stage's own instructions. */
  baseHistory: HistoryEntry[];
}

export interface EngineDeps {
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
  /** Prepared named contexts, by name. */
  contexts: ReadonlyMap<string, PreparedContext>;
  /** `--ssh` agents: RUN --mount=type=ssh, and git over ssh (ADD, named contexts). */
  ssh: SshForwarder;
}

/** One build's graph construction and op implementations. */
export class Engine {
  // Public members (d, ssh, tmp, cached, fsOp, withActive, view, secret, owner) are what the
  // step modules (step-run.ts, step-copy.ts) use of the engine.
  readonly d: EngineDeps;
  readonly #stages = new Map<string, StageGraph>();
  #context: Promise<BuildContext> | undefined;
  readonly #tmpDir: string;
  readonly #cleanups = new Set<() => Promise<void>>();
  readonly ssh: SshForwarder;

  constructor(d: EngineDeps) {
    this.d = d;
    this.ssh = d.ssh;
    this.#tmpDir = join(d.root, 'build', 'tmp', `${process.pid}-${randomBytes(4).toString('hex')}`);
  }

  async close(): Promise<void> {
    for (const c of [...this.#cleanups]) await c().catch(() => undefined);
    await this.ssh.close().catch(() => undefined);
    await rm(this.#tmpDir, { recursive: true, force: true }).catch(() => undefined);
    if (this.#context) await (await this.#context.catch(() => undefined))?.save().catch(() => undefined);
    for (const p of this.#namedContexts.values())
      await (await p.catch(() => undefined))?.save().catch(() => undefined);
  }

  async tmp(prefix: string): Promise<string> {
    const p = join(this.#tmpDir, `${prefix}-${randomBytes(6).toString('hex')}`);
    await mkdir(p, { recursive: true });
    return p;
  }

  // ---- graph ------------------------------------------------------------------------------

  #contextVertex(): SolverVertex<BuildContext> {
    const ignore = this.d.solver.vertex<BuildContext>({
      digest: 'internal:dockerignore',
      name: '[internal] load .dockerignore',
      inputs: [],
      run: async () => {
        this.#context ??= BuildContext.open({
          dir: resolve(this.d.opts.contextDir),
          ...(this.d.opts.dockerfilePath ? { dockerfilePath: this.d.opts.dockerfilePath } : {}),
          stateRoot: this.d.root,
        });
        return { value: await this.#context, cached: false };
      },
    });
    // The files themselves are read (and hashed) by the steps that use them.
    return this.d.solver.vertex<BuildContext>({
      digest: 'internal:context',
      name: '[internal] load build context',
      inputs: [ignore as SolverVertex<unknown>],
      run: async ([ctx]) => ({ value: ctx as BuildContext, cached: false }),
    });
  }

  #imageVertex(ref: string, platform: Platform, name: string): SolverVertex<FsState> {
    return this.d.solver.vertex<FsState>({
      digest: `image:${ref}:${formatPlatform(platform)}`,
      name,
      inputs: [],
      run: async (_i, ctx) => {
        const img = await this.d.imageFor(ref, platform);
        // Marked before looking, like #cached, and again once unpacked (cache.ts).
        await markUsed(
          this.d.root,
          img.layers.map((l) => l.chainId),
        );
        let cached = true;
        for (const l of img.layers) if (!(await this.d.snapshots.has(l.chainId))) cached = false;
        // Unpacked when a step needs its files (#ensure): with every step cached (a fresh
        // runner with --cache-from), never.
        const chain = img.layers.map((l) => l.chainId as string);
        if (!cached) {
          const unpack = () => unpackImage(img, { store: this.d.store, snapshots: this.d.snapshots });
          if (this.d.opts.cacheImport) {
            // Called from the step that needs it, inside that step's slot: no slot of its own.
            let once: Promise<unknown> | undefined;
            for (const c of chain) this.#lazyImages.set(c, () => (once ??= unpack()));
          } else await ctx.slot(unpack);
        }
        await markUsed(this.d.root, chain);
        return {
          value: {
            key: `image:${img.manifestDigest}`,
            chain,
            layers: img.layers.map((l) => ({
              kind: 'blob',
              descriptor: l.descriptor,
              diffId: l.diffId,
              // A push mounts the layer from the registry repository it came from.
              ...(img.name.startsWith(OCI_LAYOUT_PREFIX) ? {} : { source: img.name }),
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
    return this.d.solver.vertex<FsState>({
      digest: 'scratch',
      name: 'scratch',
      hidden: true,
      inputs: [],
      run: async () => ({ value: { key: 'scratch', chain: [], layers: [], emptyLayer: true }, cached: true }),
    });
  }

  #stageLabel(pp: PlatformPlan, stage: PlanStage): string {
    const parts: string[] = [];
    if (this.d.multi) parts.push(formatPlatform(toPlatform(stage.platform)));
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
    const base = this.#contextBase(stage.base);
    if (base.type === 'image') {
      const img = this.#resolvedSync(base.ref, platform);
      current = this.#imageVertex(
        base.ref,
        platform,
        step(1, img.name.includes('@') ? `FROM ${img.name}` : `FROM ${img.name}@${img.rootDigest}`),
      );
      baseHistory = baseImageHistory(img);
      baseConfig = { ...img.config, history: baseHistory } as ImageConfig & { history: HistoryEntry[] };
    } else if (base.type === 'stage') {
      const dep = this.#depStage(pp, base);
      const g = this.stageGraph(pp, dep);
      current = g.final;
      baseConfig = g.config;
      baseHistory = g.config.history;
    } else if (base.type === 'context') {
      // A directory-like named context: its files are the stage's first layer, no config.
      current = this.#contextBaseVertex(base.name, step(1, `FROM ${base.name}`));
      baseConfig = {
        os: platform.os,
        architecture: platform.architecture,
        rootfs: { type: 'layers', diff_ids: [] },
        history: [],
      };
      baseHistory = [{ created_by: `FROM ${base.name} (named build context)`, comment: 'polyarch' }];
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
      // Progress and errors never show a URL's password (ADD https://user:pw@…).
      const name = step(n, ins.kind === 'ADD' ? maskURL(ins.original) : ins.original);
      const parent = current;
      const located = (err: unknown, logTail?: string[]) => this.#locate(err, ins, name, logTail);
      let v: SolverVertex<FsState>;
      if (ins.kind === 'RUN') {
        const mountSources = ins.mounts
          .filter((m) => m.type === 'bind' || m.type === 'cache')
          .map((m) => this.#sourceVertex(pp, m.from, platform));
        v = this.d.solver.vertex<FsState>({
          digest,
          name,
          inputs: [parent, ...mountSources],
          run: (inputs, ctx) =>
            runStep(this, inputs as [FsState, ...(FsState | BuildContext)[]], ins, platform, ctx).catch(
              (err) => {
                throw located(err, (err as { logTail?: string[] }).logTail);
              },
            ),
        });
      } else if (ins.kind === 'WORKDIR') {
        const path = ins.path;
        v = this.d.solver.vertex<FsState>({
          digest,
          name,
          inputs: [parent],
          run: async (inputs, ctx) => {
            const parent = inputs[0] as FsState;
            const definition = { op: 'mkdir', path };
            const hit = await this.cached(parent, stepKey(parent, definition));
            if (hit) return { value: hit, cached: true };
            // An existing directory: nothing to change, so nothing to mount (the result is the
            // empty layer the mkdir would have made).
            if (await this.#isDirIn(parent, path)) {
              const value = { ...parent, key: stepKey(parent, definition), emptyLayer: true };
              this.#record(parent, value, null);
              return { value, cached: false };
            }
            return this.fsOp(parent, definition, ctx, async (mnt) => {
              await mkdirAll(mnt, path);
            }).catch((err) => {
              throw located(err);
            });
          },
        });
      } else {
        const copy = ins as PlanCopy;
        const source = this.#sourceVertex(pp, copy.from, platform);
        v = this.d.solver.vertex<FsState>({
          digest,
          name,
          inputs: [parent, source],
          run: (inputs, ctx) =>
            copyStep(this, inputs[0] as FsState, inputs[1] as FsState | BuildContext, copy, ctx).catch(
              (err) => {
                throw located(err);
              },
            ),
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
    for (const p of this.d.plan.platforms)
      for (const s of p.stages) {
        const base = this.#contextBase(s.base);
        if (base.type === 'image') {
          const platform = toPlatform(s.platform);
          this.#resolvedCache.set(
            `${base.ref}\0${formatPlatform(platform)}`,
            await this.d.imageFor(base.ref, platform),
          );
        }
      }
  }

  /** A named context that is an image (docker-image://, oci-layout://) read as that image. */
  #contextBase(ref: SourceRef): SourceRef {
    if (ref.type !== 'context') return ref;
    const c = this.d.contexts.get(ref.name);
    if (!c) throw new PolyarchError('INTERNAL', `named context ${ref.name} was not prepared`);
    return c.kind === 'image' ? { type: 'image', ref: c.ref } : ref;
  }

  /** A directory-like named context as a build context (its own .dockerignore applies). */
  #namedContextVertex(name: string): SolverVertex<BuildContext> {
    const c = this.d.contexts.get(name);
    if (c?.kind !== 'dir') throw new PolyarchError('INTERNAL', `named context ${name} is not a directory`);
    return this.d.solver.vertex<BuildContext>({
      digest: `internal:context:${name}`,
      name: `[context ${name}] load build context`,
      inputs: [],
      run: async () => {
        let p = this.#namedContexts.get(name);
        if (!p) {
          p = BuildContext.open({ dir: c.dir, stateRoot: this.d.root });
          this.#namedContexts.set(name, p);
        }
        return { value: await p, cached: false };
      },
    });
  }
  readonly #namedContexts = new Map<string, Promise<BuildContext>>();

  /** `FROM <directory-like named context>`: one layer with all of its files (as COPY . /). */
  #contextBaseVertex(name: string, label: string): SolverVertex<FsState> {
    const ctxVertex = this.#namedContextVertex(name);
    const scratch = this.#scratchVertex();
    const copy = {
      kind: 'COPY',
      sources: ['.'],
      contents: [],
      dest: '/',
      destPath: '/',
      link: false,
      parents: false,
      exclude: [],
      range: this.d.plan.platforms[0]!.stages[0]!.range,
      original: `FROM ${name}`,
    } as unknown as PlanCopy;
    return this.d.solver.vertex<FsState>({
      digest: `context-base:${name}`,
      name: label,
      inputs: [scratch as SolverVertex<unknown>, ctxVertex as SolverVertex<unknown>],
      run: (inputs, ctx) => copyStep(this, inputs[0] as FsState, inputs[1] as BuildContext, copy, ctx),
    });
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
    const src = this.#contextBase(from);
    if (src.type === 'context')
      return this.#namedContextVertex(src.name) as SolverVertex<FsState | BuildContext>;
    if (src.type !== 'image') throw new PolyarchError('INTERNAL', `unexpected source ${src.type}`);
    return this.#imageVertex(
      src.ref,
      platform,
      `[${this.d.multi ? `${formatPlatform(platform)} ` : ''}internal] load ${displayRef(src.ref)}`,
    );
  }

  #locate(err: unknown, ins: PlanInstruction, vertexName: string, logTail?: string[]): unknown {
    if (err instanceof BuildStepError || err instanceof DockerfileError) return err;
    if (err instanceof PolyarchError && err.code === 'ABORTED') return err;
    return new BuildStepError(errorMessage(err), {
      file: this.d.file,
      range: ins.range,
      lines: this.d.plan.lines,
      vertexName,
      ...(logTail ? { logTail } : {}),
      cause: err,
      code: err instanceof PolyarchError ? err.code : 'BUILD_STEP',
    });
  }

  // ---- ops --------------------------------------------------------------------------------

  #snapKey(cacheKey: string): string {
    return this.d.opts.noCache ? `build:${cacheKey}:${randomBytes(6).toString('hex')}` : `build:${cacheKey}`;
  }

  async cached(parent: FsState, cacheKey: string): Promise<FsState | undefined> {
    if (this.d.opts.noCache) return undefined;
    const key = `build:${cacheKey}`;
    // Marked before looking, so a prune that has not seen the mark yet finds it changed (cache.ts).
    await markUsed(this.d.root, [key]);
    const info = await this.d.snapshots.stat(key);
    if (info?.kind !== 'committed') return this.#imported(parent, cacheKey);
    return this.#next(parent, cacheKey, key, (await readdir(info.fs)).length === 0, info.created);
  }

  /**
   * A hit in an imported cache (`--cache-from`): the state names the layer's snapshot
   * `build:<key>` without making it; #ensure makes it (fetch + unpack) when a step runs on it.
   */
  async #imported(parent: FsState, cacheKey: string): Promise<FsState | undefined> {
    const rec = await this.d.opts.cacheImport?.lookup(cacheKey);
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
          if (await this.d.snapshots.has(key)) return;
          await this.d.opts.cacheImport!.fetch(rec, this.d.store);
          await markUsed(this.d.root, [key]);
          await this.d.snapshots.create(key, parents, async (fsDir) => {
            const r = await applyLayerBlob(this.d.store.openRead(rec.layer!.digest), fsDir, {
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
    const imp = this.d.opts.cacheImport;
    if (!imp) return;
    await Promise.all(
      r.layers.map(async (l) => {
        if (l.kind !== 'blob') return;
        const rec = imp.byLayer(l.descriptor.digest);
        if (!rec) return;
        await imp.fetch(rec, this.d.store);
        // Fetched for the image only (not unpacked, which checks it): its diff id is checked
        // here, so a cache cannot put a wrong rootfs.diff_ids into an image.
        if (!this.#ensuring.has(`build:${rec.key}`)) await imp.verifyDiffId(rec, this.d.store);
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
  async fsOp(
    parent: FsState,
    definition: unknown,
    ctx: VertexContext,
    fn: (mountDir: string) => Promise<void>,
  ): Promise<VertexResult<FsState>> {
    const cacheKey = stepKey(parent, definition);
    const hit = await this.cached(parent, cacheKey);
    if (hit) return { value: hit, cached: true };
    return ctx.slot(async () => {
      const value = await this.withActive(parent, cacheKey, async (active) => {
        const mnt = await this.tmp('mnt');
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
    const layers = (await this.d.snapshots.paths(state.chain)).reverse(); // top-most first
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
  async withActive(
    parent: FsState,
    cacheKey: string,
    fn: (active: ActiveSnapshot) => Promise<void>,
  ): Promise<FsState> {
    await this.#ensure(parent.chain);
    const activeKey = `build-active-${randomBytes(8).toString('hex')}`;
    const active = await this.d.snapshots.prepare(activeKey, parent.chain, { unique: true });
    const cleanup = async () => {
      await active.unmount().catch(() => undefined);
      await this.d.snapshots.remove(activeKey);
    };
    this.#cleanups.add(cleanup);
    try {
      await fn(active);
      const empty = (await readdir(active.upper)).length === 0;
      const snapKey = this.#snapKey(cacheKey);
      const info = await this.d.snapshots.commit(activeKey, snapKey);
      if (!empty) this.d.opts.onLayerCommitted?.(snapKey);
      return this.#next(parent, cacheKey, snapKey, empty, info.created);
    } catch (err) {
      await cleanup().catch(() => undefined);
      throw err;
    } finally {
      this.#cleanups.delete(cleanup);
    }
  }

  /** Mount a read-only view of a state's files; returns the directory and how to release it. */
  async view(state: FsState): Promise<{ dir: string; release: () => Promise<void> }> {
    const dir = await this.tmp('view');
    if (state.chain.length === 0) return { dir, release: () => rm(dir, { recursive: true, force: true }) };
    await this.#ensure(state.chain);
    const key = `build-view-${randomBytes(8).toString('hex')}`;
    const view = await this.d.snapshots.view(key, state.chain, { unique: true });
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      this.#cleanups.delete(release);
      await view.unmount().catch(() => unmountPath(dir).catch(() => undefined));
      await this.d.snapshots.remove(key);
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

  async secret(id: string): Promise<Buffer | undefined> {
    const s = this.d.opts.secrets?.find((x) => x.id === id);
    if (!s) return undefined;
    if (s.env !== undefined) {
      const v = this.d.env[s.env];
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

  async owner(mnt: string, chown: string | undefined, fromContext: boolean): Promise<Owner | undefined> {
    if (chown === undefined || chown === '') return fromContext ? { uid: 0, gid: 0 } : undefined;
    const u = await resolveUser(mnt, chown);
    // Docker: a user without a group uses the same number as the gid.
    return { uid: u.uid, gid: chown.includes(':') ? u.gid : u.uid };
  }

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
    const labels = this.d.opts.labels;
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
      last = (await this.d.solver.solve(dep.final)).created;
    } else {
      base = g.baseHistory.map((h) => ({ ...h }));
      // The base image's own time (g.config starts as the base image's config).
      last = this.#contextBase(g.stage.base).type === 'image' ? g.config.created : undefined;
    }
    const out = [...base];
    for (const [i, ins] of g.stage.instructions.entries()) {
      const v = g.steps[i];
      let empty = true;
      if (v) {
        const st = await this.d.solver.solve(v);
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
