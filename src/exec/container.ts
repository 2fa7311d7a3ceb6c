/**
 * `polyarch run` as a library: resolve an image (local store first, pull when missing), choose
 * its platform variants, unpack their layers into shared snapshots and run one container per
 * variant with runc — natively or under QEMU.
 *
 *   const r = await runImage({
 *     image: '127.0.0.1:5000/library/busybox:latest',
 *     platforms: ['linux/arm64', 'linux/s390x'],   // default: the host's best match
 *     args: ['uname', '-m'], rm: true,
 *     stdout: (b) => process.stdout.write(b), stderr: (b) => process.stderr.write(b),
 *   });
 *   r.exitCode                   // single platform: the process's; matrix: 0, or 1 if any failed
 *   r.results                    // per platform: exit code, duration, container id, error
 *
 * Platform choice (SPEC.md § Platforms): with no platform given, the index entry that best
 * matches the host with containerd's Only() fall-backs (an amd64 host also takes 386); an
 * explicit platform is strict — an index lacking it is an error naming the platforms it has.
 * `allPlatforms` takes every platform entry of the index. Foreign platforms with no working
 * emulator fail before any container starts, naming `polyarch binfmt --install <arch>`.
 *
 * Several platforms make a matrix run: sequential by default, together with `parallel`. The
 * caller's sinks then receive whole lines prefixed `linux/arm64 | `; use `formatSummary` for the
 * table printed at the end. A container that cannot start counts as failed with Docker's code
 * (125, or 126/127 when the command cannot be executed / is not found).
 *
 * Networks (network.ts): `bridge` (the default, as docker's) gives each container its own
 * network namespace connected by pasta, with `publish` (`-p`) and `publishAll` (`-P`) ports;
 * `host` and `none` as before. In a matrix, platforms run one after the other publish the same
 * host ports in turn; run together (`parallel`, `detach`) the first takes the ports asked for
 * and the others free ones (`onPublish` says which). `detach` (`-d`) hands each container to
 * its own monitor process (detach.ts, monitor.ts) and returns once it runs: `results[].containerId`
 * is then the 64-hex id that `ps`/`logs`/`stop`/`rm` (containers.ts) take.
 *
 * Signals: SIGINT/SIGTERM received while a container runs are forwarded to it (runc.ts) and
 * polyarch ends with the container's exit code, as `docker run` does; a matrix then starts no
 * further platform. Received while nothing runs (pulling, unpacking), they end polyarch.
 *
 * Snapshots: the image's layers are committed snapshots keyed by chain id (snapshot/unpack.ts),
 * extracted once and shared by later runs and builds. Each container gets an active snapshot
 * over them; with `rm` it is removed afterwards, else its upper dir is committed as the
 * snapshot `container:<id>` (parents = the image's chain; the active one is `run:<id>`) — kept like Docker keeps a stopped
 * container's changes; nothing lists or removes those yet but the snapshotter itself.
 */
import { performance } from 'node:perf_hooks';
import { join, resolve } from 'node:path';
import { type LeaseHandle, takeLease } from '../content/leases.js';
import { ContentStore } from '../content/store.js';
import { stateRoot, storeDir } from '../content/paths.js';
import { lookupRef } from '../content/images.js';
import { normalizeName } from '../content/refname.js';
import type { Descriptor, ImageConfig } from '../oci/index.js';
import {
  isIndexType,
  isManifestType,
  parseImageConfig,
  parseImageDocument,
  walkIndex,
} from '../oci/index.js';
import {
  bestMatch,
  describePlatforms,
  formatPlatform,
  hostPlatform,
  newMatcher,
  normalizePlatform,
  only,
  type PlatformSpec,
  parsePlatform,
  runsHere,
} from '../platform/index.js';
import type { ProgressWriter } from '../progress/index.js';
import { Snapshotter } from '../snapshot/overlay.js';
import { unpackImage } from '../snapshot/unpack.js';
import { errorMessage, PolyarchError, UsageError } from '../util/errors.js';
import { holdProcessState } from './reap.js';
import { checkExecutable, newContainerId, runContainer } from './runc.js';
import { newFullId } from './containers.js';
import { recordForeground, startDetached } from './detach.js';
import {
  assignHostPorts,
  type ContainerNetwork,
  containerNetwork,
  exposedPorts,
  type NetworkMode,
  type PortMapping,
  planPorts,
} from './network.js';
import type { MountRequest } from './spec.js';

export type PullPolicy = 'always' | 'missing' | 'never';

export interface RunImageOptions {
  /** Image reference (`name[:tag][@digest]`) or a local image ID. */
  image: string;
  /** Platforms to run, strict (`linux/arm64`); default: the host's best match. */
  platforms?: string[];
  /** Every platform the image has. */
  allPlatforms?: boolean;
  /** Default `missing`: pull when the image (or a chosen platform's blobs) is not stored. */
  pull?: PullPolicy;
  /** Command (replaces the image's Cmd). */
  args?: string[];
  /** Replaces the image's Entrypoint (`''` clears it). */
  entrypoint?: string;
  /** `K=V` over the image's Env. */
  env?: string[];
  workingDir?: string;
  user?: string;
  /** Default `bridge`: a network namespace per container (network.ts). */
  network?: NetworkMode;
  /** `-p` mappings (bridge only); `hostPort: 0` takes a free port. */
  publish?: PortMapping[];
  /** `-P`: also publish every port the image exposes, on free host ports. */
  publishAll?: boolean;
  /** `-d`: start each container under its own monitor and return (detach.ts). */
  detach?: boolean;
  /** `--name` of a detached container (a matrix adds `-<os>-<arch>[-<variant>]`). */
  name?: string;
  /**
   * compose/up.ts (with `detach`): join the project's network namespace, whose pasta publishes
   * `ports`; the project's /etc/hosts; compose's labels.
   */
  compose?: {
    joinNetns: { path: string; resolvConf: string };
    hosts: string;
    labels: Record<string, string>;
    ports: PortMapping[];
  };
  /** Called with a platform's published ports, before its container runs. */
  onPublish?: (platform: string, ports: PortMapping[]) => void;
  mounts?: MountRequest[];
  /** Allocate a terminal (single platform, inherited stdio only). Default false. */
  terminal?: boolean;
  /** Remove the container's snapshot afterwards. Default false (kept as `container:<id>`). */
  rm?: boolean;
  /** Run a matrix's platforms together. Default false (one after the other). */
  parallel?: boolean;
  /** Default 'ignore'. A matrix run reads a stream whole first and gives each container a copy. */
  stdin?: 'inherit' | 'ignore' | Buffer | NodeJS.ReadableStream;
  /** Default: this process's stdout/stderr (inherited). */
  stdout?: 'inherit' | ((chunk: Buffer) => void);
  stderr?: 'inherit' | ((chunk: Buffer) => void);
  /** State root. Default `stateRoot(env)`. */
  root?: string;
  /** Content store. Default: opened at `storeDir(env)`. */
  store?: ContentStore;
  /** Environment for state paths, registry config and credentials. Default `process.env`. */
  processEnv?: NodeJS.ProcessEnv;
  /** Whether a platform runs here. Default: native, or a working binfmt emulator. */
  canExecute?: (platform: string) => boolean | Promise<boolean>;
  /** Pull progress events. */
  progress?: ProgressWriter;
  /** Warnings (e.g. from the registry client). */
  warn?: (message: string) => void;
  /** Called when a platform's container is about to start (e.g. to say what is running). */
  onStart?: (platform: string) => void;
  signal?: AbortSignal;
  /** Forward SIGINT/SIGTERM to the running containers (see runImage). Default true. */
  forwardSignals?: boolean;
}

export interface PlatformRun {
  platform: string;
  exitCode: number;
  /** Milliseconds from unpacking to the container's end. */
  durationMs: number;
  containerId: string;
  /** Why it did not run (start failures); the exit code is then 125/126/127. */
  error?: PolyarchError;
}

export interface RunImageResult {
  /** The image as stored. */
  name: string;
  results: PlatformRun[];
  /**
   * Single platform: the process's exit code. Matrix: 0 when all succeeded, else 1 (130/143
   * when SIGINT/SIGTERM stopped it before every platform ran).
   */
  exitCode: number;
  matrix: boolean;
}

/** A chosen platform variant of an image: its manifest descriptor. */
export interface ImageVariant {
  platform: string;
  manifest: Descriptor;
}

/** Attestation manifests (BuildKit's provenance/SBOM) are listed as unknown/unknown. */
function isAttestation(d: Descriptor): boolean {
  return (
    d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
    (d.platform?.os === 'unknown' && d.platform.architecture === 'unknown')
  );
}

function descriptorPlatform(d: Descriptor): PlatformSpec | undefined {
  return (
    d.platform && {
      os: d.platform.os,
      architecture: d.platform.architecture,
      ...(d.platform.variant ? { variant: d.platform.variant } : {}),
    }
  );
}

/**
 * The platform manifests of an index, descending into nested indexes (bounded, see
 * oci/nested.ts); `missing` counts the nested indexes not in the store.
 */
async function platformsOfIndex(
  store: ContentStore,
  root: Descriptor,
  entries: Descriptor[],
  what: string,
): Promise<{ entries: Descriptor[]; missing: number }> {
  const walk = await walkIndex(
    entries,
    async (d) => {
      if (!(await store.has(d.digest))) return undefined;
      const doc = parseImageDocument(
        await store.readBlob(d.digest),
        `index ${d.digest} of ${what}`,
        d.mediaType,
      );
      if (doc.kind !== 'index')
        throw new PolyarchError('INVALID_MANIFEST', `${what}: ${d.digest} is not an index`);
      return doc.index.manifests;
    },
    what,
    { rootDigest: root.digest },
  );
  return {
    entries: walk.leaves
      .map((l) => l.descriptor)
      .filter((d) => !isAttestation(d) && d.platform !== undefined && isManifestType(d.mediaType)),
    missing: walk.missing.length,
  };
}

/** Whether `root` is an index with nested indexes the store does not hold (pulled partially). */
async function lacksNestedIndexes(store: ContentStore, root: Descriptor, what: string): Promise<boolean> {
  if (!isIndexType(root.mediaType) || !(await store.has(root.digest))) return false;
  const doc = parseImageDocument(await store.readBlob(root.digest), `index of ${what}`, root.mediaType);
  if (doc.kind !== 'index') return false;
  return (await platformsOfIndex(store, root, doc.index.manifests, what)).missing > 0;
}

/**
 * Variants of an image root (index or manifest) for `want`: explicit platforms (strict), all,
 * or (neither) the host's best match with containerd's Only() fall-backs.
 */
export async function selectVariants(
  store: ContentStore,
  root: Descriptor,
  want: { platforms?: string[]; all?: boolean },
  what: string,
): Promise<ImageVariant[]> {
  const wanted = (want.platforms ?? []).map((p) => parsePlatform(p, { normalize: true }));
  if (isIndexType(root.mediaType)) {
    const doc = parseImageDocument(await store.readBlob(root.digest), `index of ${what}`, root.mediaType);
    if (doc.kind !== 'index') throw new PolyarchError('INVALID_MANIFEST', `${what}: expected an index`);
    const { entries } = await platformsOfIndex(store, root, doc.index.manifests, what);
    const has = describePlatforms(entries.map((d) => descriptorPlatform(d)!));
    const variant = (d: Descriptor): ImageVariant => ({
      platform: formatPlatform(normalizePlatform(descriptorPlatform(d)!)), // linux/arm64, not …/v8
      manifest: d,
    });
    if (want.all) {
      if (entries.length === 0)
        throw new PolyarchError('NOT_FOUND', `${what}: the index has no platform images`);
      return entries.map(variant);
    }
    if (wanted.length > 0)
      return wanted.map((p) => {
        const m = newMatcher(p);
        const d = entries.find((e) => m.match(descriptorPlatform(e)!));
        if (d === undefined)
          throw new PolyarchError(
            'NOT_FOUND',
            `image ${what} has no ${formatPlatform(p)} variant (it has ${has || 'none'})`,
          );
        return variant(d);
      });
    const d = bestMatch(entries, only(hostPlatform()), (e) => descriptorPlatform(e));
    if (d === undefined)
      throw new PolyarchError(
        'NOT_FOUND',
        `image ${what} has no variant for this host (${formatPlatform(hostPlatform())}; it has ${has || 'none'}): use --platform`,
      );
    return [variant(d)];
  }
  // A single-platform image: its platform is in the config.
  const cfg = await manifestConfig(store, root, what);
  const has: PlatformSpec = {
    os: cfg.os,
    architecture: cfg.architecture,
    ...(cfg.variant ? { variant: cfg.variant } : {}),
  };
  for (const p of wanted)
    if (!newMatcher(p).match(has))
      throw new PolyarchError(
        'NOT_FOUND',
        `image ${what} has no ${formatPlatform(p)} variant (it is ${formatPlatform(has)} only)`,
      );
  return [{ platform: formatPlatform(normalizePlatform(has)), manifest: root }];
}

async function manifestConfig(store: ContentStore, desc: Descriptor, what: string): Promise<ImageConfig> {
  const doc = parseImageDocument(await store.readBlob(desc.digest), `manifest of ${what}`, desc.mediaType);
  if (doc.kind !== 'manifest') throw new PolyarchError('INVALID_MANIFEST', `${what}: expected a manifest`);
  return parseImageConfig(await store.readBlob(doc.manifest.config.digest), `config of ${what}`);
}

/** Whether the manifest, its config and its layers are all in the store. */
async function complete(store: ContentStore, desc: Descriptor): Promise<boolean> {
  if (!(await store.has(desc.digest))) return false;
  for (const c of await store.children(desc))
    if (!c.urls?.length && !(await store.has(c.digest))) return false;
  return true;
}

export interface ResolveImageOptions {
  store: ContentStore;
  platforms?: string[];
  all?: boolean;
  pull?: PullPolicy;
  env?: NodeJS.ProcessEnv;
  progress?: ProgressWriter;
  warn?: (message: string) => void;
}

/**
 * The stored image `ref` names and its chosen variants, pulling (policy `missing`, the default)
 * when the name is not stored or a chosen variant's blobs are not.
 */
export async function resolveImage(
  ref: string,
  opts: ResolveImageOptions,
): Promise<{ name: string; variants: ImageVariant[] }> {
  const policy = opts.pull ?? 'missing';
  const { store } = opts;
  const doPull = async (platforms: string[] | undefined, all: boolean) => {
    // Loaded only when needed: the registry client (undici) costs ~0.2 s of start-up.
    const { pull } = await import('../image/pull.js');
    return pull(ref, {
      store,
      ...(platforms ? { platforms } : {}),
      all,
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.progress ? { progress: opts.progress } : {}),
      ...(opts.warn ? { warn: opts.warn } : {}),
    });
  };
  const lookup = () =>
    lookupRef(store, ref, {
      normalize: (r) => {
        try {
          return normalizeName(r);
        } catch {
          return r; // not a valid reference: maybe an image ID, lookupRef tries that next
        }
      },
    });
  if (policy === 'always') await doPull(opts.platforms, Boolean(opts.all));
  let found = await lookup();
  if (found === undefined) {
    if (policy === 'never')
      throw new PolyarchError('NOT_FOUND', `image ${ref} is not in the local store (and --pull=never)`);
    // What the pull stored, even if a concurrent rmi has removed the name again (the lease
    // keeps the content).
    const pulled = await doPull(opts.platforms, Boolean(opts.all));
    found = { name: pulled.name, descriptor: pulled.descriptor };
  }
  const what = found.name;
  let variants: ImageVariant[];
  try {
    variants = await selectVariants(store, found.descriptor, opts, what);
  } catch (err) {
    // A platform under a nested index this store does not hold yet: pull it.
    if (
      !(err instanceof PolyarchError && err.code === 'NOT_FOUND') ||
      policy === 'never' ||
      !(await lacksNestedIndexes(store, found.descriptor, what))
    )
      throw err;
    await doPull(opts.platforms, Boolean(opts.all));
    found = (await lookup()) ?? found;
    variants = await selectVariants(store, found.descriptor, opts, what);
  }
  const missing: string[] = [];
  for (const v of variants) if (!(await complete(store, v.manifest))) missing.push(v.platform);
  if (missing.length > 0) {
    if (policy === 'never')
      throw new PolyarchError(
        'NOT_FOUND',
        `image ${what}: ${missing.join(', ')} is not in the local store (and --pull=never)`,
      );
    const pulled = await doPull(missing, false);
    found = (await lookup()) ?? { name: pulled.name, descriptor: pulled.descriptor };
    variants = await selectVariants(store, found.descriptor, opts, what);
  }
  return { name: found.name, variants };
}

/**
 * An error from starting the container (runc, user lookup, mounts) ends polyarch with Docker's
 * 125 — or the 126/127 runc.ts already chose; aborts keep their code.
 */
function startError(cause: unknown): PolyarchError {
  if (cause instanceof PolyarchError) {
    if (cause.exitCode !== 1 || cause.code === 'ABORTED') return cause;
    return new PolyarchError(cause.code, cause.message, { cause, exitCode: 125 });
  }
  return new PolyarchError('START_FAILED', errorMessage(cause), { cause, exitCode: 125 });
}

/** Splits chunks into lines and writes each as `<prefix><line>\n`; `flush` ends a partial line. */
export function linePrefixer(prefix: string, write: (chunk: Buffer) => void) {
  let rest = Buffer.alloc(0);
  return {
    push(chunk: Buffer): void {
      let buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
      for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10)) {
        write(Buffer.concat([Buffer.from(prefix), buf.subarray(0, nl + 1)]));
        buf = buf.subarray(nl + 1);
      }
      rest = Buffer.from(buf);
    },
    flush(): void {
      if (rest.length) write(Buffer.concat([Buffer.from(prefix), rest, Buffer.from('\n')]));
      rest = Buffer.alloc(0);
    },
  };
}

/** `1.23s` / `312ms`. */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(2)}s`;
}

/** The matrix summary: `PLATFORM  EXIT  DURATION`, one aligned row per platform. */
export function formatSummary(results: readonly PlatformRun[]): string {
  const rows = [
    ['PLATFORM', 'EXIT', 'DURATION'],
    ...results.map((r) => [r.platform, String(r.exitCode), formatDuration(r.durationMs)]),
  ];
  const widths = [0, 1].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  return (
    rows
      .map((r) => `${r[0]!.padEnd(widths[0]!)}  ${r[1]!.padEnd(widths[1]!)}  ${r[2]}`.trimEnd())
      .join('\n') + '\n'
  );
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks);
}

/** A sink writing to this process's stdout/stderr, or the caller's. */
function sinkOf(s: RunImageOptions['stdout'], fd: 1 | 2): (chunk: Buffer) => void {
  if (typeof s === 'function') return s;
  const stream = fd === 1 ? process.stdout : process.stderr;
  return (b) => stream.write(b);
}

/** Runs `step`; what fails there fails before any container starts: docker's 125 (startError). */
async function couldNotStart<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw startError(err);
  }
}

/** The runtime spec options of a run (`bridge` joins its namespace through editSpec). */
function runSpec(
  opts: RunImageOptions,
  config: NonNullable<ImageConfig['config']>,
  mode: NetworkMode,
  terminal: boolean,
) {
  return {
    config,
    ...(opts.args?.length ? { args: opts.args } : {}),
    ...(opts.entrypoint !== undefined ? { entrypoint: [opts.entrypoint] } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.workingDir ? { workingDir: opts.workingDir } : {}),
    ...(opts.user !== undefined ? { user: opts.user } : {}),
    network: mode === 'none' ? ('none' as const) : ('host' as const),
    ...(opts.mounts ? { mounts: opts.mounts } : {}),
    terminal,
  };
}

/**
 * Run `opts.args` in the image, once per chosen platform. See the module header. A lease
 * (content/leases.ts) keeps what the run resolves and unpacks from `prune` and `rmi` until it
 * returns.
 */
export async function runImage(opts: RunImageOptions): Promise<RunImageResult> {
  const env = opts.processEnv ?? process.env;
  const root = resolve(opts.root ?? stateRoot(env));
  const store = opts.store ?? (await ContentStore.open(storeDir(env)));
  // Blobs are leased on the store, snapshots on the state root's store: one lease when they are the same.
  const dirs = [...new Set([resolve(store.dir), join(root, 'store')])];
  const leases: LeaseHandle[] = [];
  try {
    for (const d of dirs) leases.push(await takeLease(d, 'run'));
    return await runLeased({ ...opts, root, store });
  } finally {
    for (const l of leases) await l.release();
  }
}

async function runLeased(opts: RunImageOptions): Promise<RunImageResult> {
  const env = opts.processEnv ?? process.env;
  const root = opts.root ?? stateRoot(env);
  if (opts.platforms?.length && opts.allPlatforms)
    throw new UsageError('--platform and --all-platforms cannot be used together');
  for (const p of opts.platforms ?? []) parsePlatform(p, { normalize: true });
  // Whatever fails before a container starts is docker's "could not start": exit 125.
  const { name, variants, store } = await couldNotStart(async () => {
    const store = opts.store ?? (await ContentStore.open(storeDir(env)));
    const resolved = await resolveImage(opts.image, {
      store,
      ...(opts.platforms?.length ? { platforms: opts.platforms } : {}),
      all: Boolean(opts.allPlatforms),
      pull: opts.pull ?? 'missing',
      env,
      ...(opts.progress ? { progress: opts.progress } : {}),
      ...(opts.warn ? { warn: opts.warn } : {}),
    });
    // An index may hold Windows (or other) images beside Linux ones; runc runs Linux only.
    for (const v of resolved.variants) {
      const os = v.platform.split('/')[0];
      if (os !== 'linux')
        throw new PolyarchError(
          'UNSUPPORTED',
          `image operating system "${os}" cannot be used on this platform`,
        );
    }
    // Every platform must be executable before anything starts. The host's own needs no probe.
    const can = opts.canExecute ?? runsHere;
    const ok = new Map<string, boolean>();
    await Promise.all(resolved.variants.map(async (v) => ok.set(v.platform, await can(v.platform))));
    for (const v of resolved.variants) checkExecutable(v.platform, (p) => ok.get(p) ?? false);
    return { ...resolved, store };
  });
  const matrix = variants.length > 1;

  const snaps = await Snapshotter.open({ root });
  let stdin = opts.stdin ?? 'ignore';
  if (matrix && typeof stdin === 'object' && !Buffer.isBuffer(stdin)) stdin = await readAll(stdin);
  if (matrix && stdin === 'inherit') stdin = await readAll(process.stdin);
  const out = sinkOf(opts.stdout, 1);
  const err = sinkOf(opts.stderr, 2);
  const inheritOutput = !matrix && (opts.terminal || (opts.stdout ?? 'inherit') === 'inherit');

  const runOne = async (v: ImageVariant): Promise<PlatformRun> => {
    // Kept containers (no --rm) get docker's 64-hex id and a record (detach.ts).
    const id = opts.rm || opts.detach ? newContainerId() : newFullId();
    let net: ContainerNetwork | undefined;
    let netUp: Promise<ContainerNetwork> | undefined;
    let fg: Awaited<ReturnType<typeof recordForeground>> | undefined;
    let fgExit = 125;
    let fgError = '';
    const started = performance.now();
    const prefix = `${v.platform} | `;
    const o = matrix ? linePrefixer(prefix, out) : undefined;
    const e = matrix ? linePrefixer(prefix, err) : undefined;
    const key = `run:${id}`;
    let prepared = false;
    try {
      const { chain, config } = await unpackImage({
        store,
        snapshotter: snaps,
        manifest: v.manifest,
        what: `${name} (${v.platform})`,
      });
      // ---- networks and detached containers (network.ts, detach.ts) ----
      const mode = opts.network ?? 'bridge';
      const ports = await couldNotStart(() =>
        assignHostPorts(
          planPorts(
            opts.publish ?? [],
            opts.publishAll ? exposedPorts(config.config?.ExposedPorts) : [],
            variants.indexOf(v),
            Boolean(opts.detach || opts.parallel),
          ),
        ),
      );
      const suffix = matrix ? `-${v.platform.replaceAll('/', '-')}` : '';
      const described = {
        root,
        ...(opts.name !== undefined ? { name: `${opts.name}${suffix}` } : {}),
        image: opts.image,
        manifestDigest: v.manifest.digest,
        platform: v.platform,
        chain,
        imageConfig: config.config,
        spec: runSpec(opts, config.config ?? {}, mode, false),
        network: mode,
        ports,
        autoRemove: Boolean(opts.rm),
        ...(opts.compose
          ? {
              joinNetns: opts.compose.joinNetns,
              hosts: opts.compose.hosts,
              labels: opts.compose.labels,
              ports: opts.compose.ports,
            }
          : {}),
      };
      if (opts.detach) {
        const rec = await couldNotStart(() => startDetached(described));
        opts.onPublish?.(v.platform, rec.Polyarch.Launch.ports);
        return {
          platform: v.platform,
          exitCode: 0,
          durationMs: performance.now() - started,
          containerId: rec.Id,
        };
      }
      if (!opts.rm) fg = await couldNotStart(() => recordForeground({ ...described, id }));
      // The network (pasta takes tens of milliseconds to come up) is made while the rootfs is
      // mounted and the bundle written; runContainer waits for it before writing the spec.
      // With published ports it comes first, so they are reported before the container starts.
      netUp = couldNotStart(() => containerNetwork(root, id, mode, ports));
      netUp.then(
        (n) => {
          net = n;
        },
        () => undefined,
      );
      if (ports.length > 0) {
        const n = await netUp;
        if (n.ports.length > 0) opts.onPublish?.(v.platform, n.ports);
      }
      const up = netUp;
      // ---- end of networks ----
      const active = await snaps.prepare(key, chain);
      prepared = true;
      opts.onStart?.(v.platform);
      const { exitCode } = await runContainer({
        root,
        id,
        rootfs: active,
        platform: v.platform,
        spec: {
          ...runSpec(opts, config.config ?? {}, mode, Boolean(opts.terminal && !matrix)),
          ...(mode !== 'host'
            ? { hostname: id.startsWith('polyarch-') ? id.slice(-12) : id.slice(0, 12) }
            : {}),
        },
        network: async () => {
          const n = await up;
          return {
            ...(n.resolvConf !== undefined ? { resolvConf: n.resolvConf } : {}),
            ...(n.editSpec ? { editSpec: n.editSpec } : {}),
          };
        },
        stdin,
        stdout: inheritOutput ? 'inherit' : o ? (b) => o.push(b) : out,
        stderr: inheritOutput ? 'inherit' : e ? (b) => e.push(b) : err,
        ...(opts.signal ? { signal: opts.signal } : {}),
        forwardSignals: opts.forwardSignals ?? true,
      }).catch((cause: unknown) => {
        throw startError(cause);
      });
      fgExit = exitCode;
      return { platform: v.platform, exitCode, durationMs: performance.now() - started, containerId: id };
    } catch (cause) {
      fgError = errorMessage(cause);
      fgExit = cause instanceof PolyarchError && cause.exitCode !== 1 ? cause.exitCode : 125;
      // A single run reports its error as polyarch's; a matrix records it and goes on.
      if (!matrix) throw cause;
      const error =
        cause instanceof PolyarchError
          ? cause
          : new PolyarchError('INTERNAL', errorMessage(cause), { cause });
      const exitCode = error.exitCode === 1 ? 125 : error.exitCode;
      e?.flush();
      err(Buffer.from(`${prefix}ERROR: ${error.message}\n`));
      return {
        platform: v.platform,
        exitCode,
        durationMs: performance.now() - started,
        containerId: id,
        error,
      };
    } finally {
      o?.flush();
      e?.flush();
      // Settled first: a failure elsewhere may come while pasta is still starting.
      await netUp?.catch(() => undefined);
      await net?.release();
      if (prepared) {
        if (opts.rm) await snaps.remove(key);
        else await snaps.commit(key, `container:${id}`);
      }
      await fg?.finish(fgExit, fgError); // last: rm of an exited container finds its snapshot
    }
  };

  // Active snapshots and bundles follow: if this process is killed, the next polyarch command
  // removes them (reap.ts).
  const releaseHold = await holdProcessState(root);
  // SIGINT/SIGTERM: while containers run, runc.ts forwards them and the container decides
  // (polyarch then exits with its code, as `docker run` does); a matrix stops starting
  // platforms; with no container running the signal ends polyarch as usual.
  let running = 0;
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted ??= sig;
    if (running > 0) return;
    unlisten();
    process.kill(process.pid, sig);
  };
  const unlisten = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const forward = opts.forwardSignals ?? true;
  if (forward) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  const counted = async (v: ImageVariant): Promise<PlatformRun> => {
    running++;
    try {
      return await runOne(v);
    } finally {
      running--;
    }
  };
  const results: PlatformRun[] = [];
  try {
    if (opts.parallel && matrix) results.push(...(await Promise.all(variants.map(counted))));
    else
      for (const v of variants) {
        if (interrupted || opts.signal?.aborted) break;
        results.push(await counted(v));
      }
  } finally {
    if (forward) unlisten();
    releaseHold();
  }
  let exitCode = matrix ? (results.some((r) => r.exitCode !== 0) ? 1 : 0) : results[0]!.exitCode;
  if (matrix && interrupted) exitCode = 128 + (interrupted === 'SIGINT' ? 2 : 15);
  return { name, results, exitCode, matrix };
}
