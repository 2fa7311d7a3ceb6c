/**
 * A build on a remote builder: BuildKit's own `dockerfile.v0` frontend on each BuildKit node,
 * polyarch's engine on this machine (local-node.ts) and on ssh nodes (src/builder/ssh), the
 * platforms spread over all of them by one scheduler (schedule.ts), the nodes in parallel.
 * An ssh node whose session is lost mid-build has its platforms rebuilt on another polyarch
 * node (this machine or another ssh node) that can build them all, with a warning.
 *
 *   const r = await remoteBuild(builder, { contextDir, dockerfileName: 'Dockerfile',
 *     platforms, buildArgs, labels, secrets, outputs, progress, env, warn });
 *   r.metadata   // buildx's --metadata-file JSON, plus polyarch.build.nodes: platform → node
 *
 * Outputs: a push goes through the node's image exporter. With several nodes each node
 * pushes by digest only (no tag) and polyarch makes the one index and pushes it to each
 * name once, so no node ever writes a tag and concurrent builds cannot lose each other's
 * entries. `--load`/`type=image` comes back as an OCI tar over the session and is loaded
 * into the local store (several nodes: one index over all of them); `type=oci|docker|tar`
 * is streamed to a temporary file renamed into place when the build succeeded.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { createWriteStream, mkdirSync } from 'node:fs';
import { PassThrough, type Writable } from 'node:stream';
import { BuildSession } from '../../buildkit/index.js';
import type { OutputSpec } from '../../build/export/index.js';
import type { SshSource } from '../../build/ssh.js';
import type { NamedContextSpec } from '../../build/named-context.js';
import type { ContentStore } from '../../content/index.js';
import { type Descriptor, MediaType, parseImageConfig, parseImageDocument } from '../../oci/index.js';
import { parseReference, repositoryName } from '../../oci/reference.js';
import { formatPlatform, hostPlatform, type Platform, toOciPlatform } from '../../platform/index.js';
import type { ProgressSink } from '../../progress/index.js';
import { errorMessage, PolyarchError, UsageError } from '../../util/errors.js';
import { localDriver, mergePlatforms } from '../driver.js';
import type { SshNodeConnection } from '../ssh/index.js';
import { type Builder, nodeDriver } from '../types.js';
import { type EngineJob, runEngineJob } from './engine-node.js';
import { type ConnectedNode, connectNode } from './driver.js';
import { mapStatus } from './progress.js';
import { type Candidate, schedule, type Unreachable } from './schedule.js';

export interface RemoteBuildRequest {
  contextDir: string;
  /** The Dockerfile on disk; or `dockerfileText` (read from stdin). */
  dockerfilePath?: string;
  dockerfileText?: string;
  dockerfileName: string;
  /** Default: the first reachable node's own platform. */
  platforms?: readonly Platform[];
  buildArgs: Readonly<Record<string, string>>;
  target?: string;
  labels: Readonly<Record<string, string>>;
  noCache?: boolean;
  pull?: boolean;
  network?: 'default' | 'host' | 'none';
  secrets: ReadonlyArray<{ id: string; src?: string; env?: string }>;
  /** `--ssh` agents or key files for `RUN --mount=type=ssh`, forwarded over each node's session. */
  ssh?: readonly SshSource[];
  /** `--build-context`s (build/named-context.ts parseBuildContext). */
  namedContexts?: readonly NamedContextSpec[];
  /** `--cache-from` / `--cache-to` specs (`type=registry,ref=…[,mode=max]`; a bare ref is a registry one). */
  cacheFrom?: readonly string[];
  cacheTo?: readonly string[];
  /** `--annotation [index:|manifest:|manifest-descriptor:|index-descriptor:][\[platform\]]key=value`. */
  annotations?: readonly string[];
  /** `attest:sbom` / `attest:provenance` frontend attributes (src/attest attestFrontendAttrs): BuildKit makes them. */
  attest?: Readonly<Record<string, string>>;
  outputs: readonly OutputSpec[];
  progress: ProgressSink;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
  warn?: (message: string) => void;
}

export interface RemoteBuildResult {
  /** Root digest of the image output (index or manifest), if any. */
  digest?: string;
  metadata: Record<string, unknown>;
  /** Platform → node that built it. */
  nodes: Record<string, string>;
}

type LocalJob = EngineJob;

interface NodeJob {
  n: ConnectedNode;
  platforms: Platform[];
  ref: string;
  /** Exporter index → where its bytes (or, for type=local, its files) go. */
  sinks: Map<string, Writable | { dir: string }>;
  /** What to do with client-side outputs once the solve succeeded. */
  finish: Array<() => Promise<void>>;
  abort: Array<() => Promise<void>>;
  loaded?: Promise<Descriptor | undefined>;
  response?: Record<string, string>;
}

async function readSecrets(req: RemoteBuildRequest): Promise<Map<string, Buffer>> {
  const env = req.env ?? process.env;
  const out = new Map<string, Buffer>();
  for (const s of req.secrets) {
    if (s.env !== undefined) {
      const v = env[s.env];
      if (v === undefined)
        throw new PolyarchError('NOT_FOUND', `secret ${s.id}: environment variable ${s.env} is not set`);
      out.set(s.id, Buffer.from(v));
    } else if (s.src !== undefined) {
      try {
        out.set(s.id, await readFile(s.src));
      } catch (err) {
        throw new PolyarchError(
          'NOT_FOUND',
          `secret ${s.id}: reading ${s.src}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
        );
      }
    }
  }
  return out;
}

/** A cache spec as BuildKit takes it: `type=registry,ref=r/x:cache,mode=max` → { type, attrs }. */
export function parseCacheSpec(spec: string, flag: string): { type: string; attrs: Record<string, string> } {
  if (!spec.includes('=')) return { type: 'registry', attrs: { ref: spec } };
  const attrs: Record<string, string> = {};
  let type = '';
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid ${flag} "${spec}": expected key=value pairs`);
    const k = part.slice(0, eq).trim();
    if (k === 'type') type = part.slice(eq + 1);
    else attrs[k] = part.slice(eq + 1);
  }
  if (!type) throw new UsageError(`invalid ${flag} "${spec}": type is required`);
  if (type === 'local')
    throw new UsageError(
      `${flag} "${spec}": type=local is not supported on remote builders (use registry or inline)`,
    );
  return { type, attrs };
}

/**
 * `--annotation` → image exporter attributes (buildx's): `k=v` → `annotation.k`,
 * `index:k=v` → `annotation-index.k`, `manifest[linux/arm64]:k=v` → `annotation-manifest[linux/arm64].k`.
 */
export function annotationAttrs(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of list) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --annotation "${a}": expected [type:]key=value`);
    const key = a.slice(0, eq);
    const m = /^(index|manifest|manifest-descriptor|index-descriptor)(\[[^\]]+\])?:(.+)$/.exec(key);
    out[m ? `annotation-${m[1]}${m[2] ?? ''}.${m[3]}` : `annotation.${key}`] = a.slice(eq + 1);
  }
  return out;
}

function frontendAttrs(
  req: RemoteBuildRequest,
  platforms: readonly Platform[],
  multi: boolean,
): Record<string, string> {
  const a: Record<string, string> = {
    filename: req.dockerfileName,
    platform: platforms.map((p) => formatPlatform(p)).join(','),
  };
  if (multi) a['multi-platform'] = 'true';
  if (req.target) a.target = req.target;
  for (const [k, v] of Object.entries(req.buildArgs)) a[`build-arg:${k}`] = v;
  for (const [k, v] of Object.entries(req.labels)) a[`label:${k}`] = v;
  if (req.noCache) a['no-cache'] = '';
  if (req.pull) a['image-resolve-mode'] = 'pull';
  Object.assign(a, req.attest);
  if (req.network === 'none' || req.network === 'host') a['force-network-mode'] = req.network;
  // The frontend reads the cache sources from its own attribute too (client/solve.go).
  const imports = (req.cacheFrom ?? []).map((c) => parseCacheSpec(c, '--cache-from'));
  if (imports.length > 0)
    a['cache-imports'] = JSON.stringify(imports.map((i) => ({ Type: i.type, Attrs: i.attrs })));
  return a;
}

/**
 * `--build-context`s as buildx sends them: `context:NAME` frontend attributes naming an image
 * (`docker-image://…`), a git or http(s) URL as given, a session dir (`local:NAME`, shared by
 * the session's FileSync as `dirs`), or an OCI layout (`oci-layout://<store id>:<tag>@<digest>`,
 * the digest resolved here, its blobs served by the session's content store as `ociStores`).
 */
export async function contextAttrs(specs: readonly NamedContextSpec[]): Promise<{
  attrs: Record<string, string>;
  dirs: Record<string, string>;
  ociStores: Record<string, string>;
}> {
  const attrs: Record<string, string> = {};
  const dirs: Record<string, string> = {};
  const ociStores: Record<string, string> = {};
  for (const s of specs) {
    attrs['frontend.caps'] = 'moby.buildkit.frontend.contexts+forward';
    const src = s.source;
    if (src.kind === 'image') attrs[`context:${s.name}`] = `docker-image://${src.ref}`;
    else if (src.kind === 'git' || src.kind === 'http') attrs[`context:${s.name}`] = s.value;
    else if (src.kind === 'local') {
      // buildx: `context` and `dockerfile` are the session's own dirs.
      const local = s.name === 'context' || s.name === 'dockerfile' ? `_${s.name}` : s.name;
      dirs[local] = src.dir;
      attrs[`context:${s.name}`] = `local:${local}`;
    } else {
      const { layoutDigest } = await import('../../build/oci-layout.js');
      const digest = await layoutDigest(src);
      // A store id is a reference name to BuildKit: lower-case letters and digits.
      const id = randomBytes(12).toString('hex');
      ociStores[id] = src.path;
      attrs[`context:${s.name}`] =
        `oci-layout://${id}${src.tag !== undefined ? `:${src.tag}` : ''}@${digest}`;
    }
  }
  return { attrs, dirs, ociStores };
}

function imageAttrs(o: OutputSpec, annotations: Readonly<Record<string, string>>): Record<string, string> {
  const a: Record<string, string> = { ...annotations };
  a['oci-mediatypes'] = String(o.ociMediaTypes);
  if (o.compression) a.compression = o.compression;
  if (o.compressionLevel !== undefined) a['compression-level'] = String(o.compressionLevel);
  return a;
}

/** A temp file beside `dest`, renamed into place by `finish`, removed by `abort`. */
function fileSink(dest: string, job: NodeJob): Writable {
  const abs = resolve(dest);
  const tmp = join(dirname(abs), `.${basename(abs)}.${randomBytes(4).toString('hex')}.tmp`);
  const ws = createWriteStream(tmp);
  const closed = new Promise<void>((res) => ws.once('close', () => res()));
  job.finish.push(async () => {
    await closed;
    await rename(tmp, abs);
  });
  job.abort.push(async () => {
    ws.destroy();
    await closed;
    await unlink(tmp).catch(() => {});
  });
  return ws;
}

/**
 * type=local: files land in a temporary directory beside `dest`; on success each top-level
 * entry is moved into `dest` (made if missing), replacing one of the same name, as buildx
 * writes into an existing directory. Several nodes each bring their platforms' subdirectories.
 */
function dirSink(dest: string, job: NodeJob): { dir: string } {
  const abs = resolve(dest);
  const tmp = join(dirname(abs), `.${basename(abs)}.${randomBytes(4).toString('hex')}.tmp`);
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  job.finish.push(async () => {
    await mkdir(abs, { recursive: true });
    for (const name of await readdir(tmp)) {
      await rm(join(abs, name), { recursive: true, force: true });
      await rename(join(tmp, name), join(abs, name));
    }
    await rm(tmp, { recursive: true, force: true });
  });
  job.abort.push(() => rm(tmp, { recursive: true, force: true }));
  return { dir: tmp };
}

/** The exporters for one node, and the client-side ends of those that come back. */
/**
 * A type=oci output from several nodes (or as a layout directory): each node's OCI tar is
 * loaded into a temporary store, and once all are in, one index over every node's manifests
 * is written as the layout (tar or directory) at dest.
 */
interface OciMerge {
  spec: OutputSpec;
  dir: string;
  store: Promise<ContentStore>;
  roots: Promise<Descriptor | undefined>[];
}

function ociMerge(merges: Map<OutputSpec, OciMerge>, o: OutputSpec): OciMerge {
  let m = merges.get(o);
  if (!m) {
    const abs = resolve(o.dest!);
    const dir = join(dirname(abs), `.${basename(abs)}.${randomBytes(4).toString('hex')}.store.tmp`);
    const store = import('../../content/index.js').then((c) => c.ContentStore.open(dir));
    store.catch(() => {});
    m = { spec: o, dir, store, roots: [] };
    merges.set(o, m);
  }
  return m;
}

/** Streams an OCI tar the daemon sends into `store`; resolves to its root. */
function loadInto(
  job: NodeJob,
  store: () => Promise<ContentStore>,
): { pipe: PassThrough; root: Promise<Descriptor | undefined> } {
  const pipe = new PassThrough({ highWaterMark: 1 << 20 });
  const root = (async () => {
    const { loadArchive } = await import('../../image/archive.js');
    const r = await loadArchive({ store: await store(), input: pipe });
    return r.images[0]?.descriptor;
  })();
  root.catch(() => {});
  job.abort.push(async () => {
    pipe.destroy(new PolyarchError('ABORTED', 'build failed'));
    await root.catch(() => {});
  });
  return { pipe, root };
}

function exportersFor(
  job: NodeJob,
  outputs: readonly OutputSpec[],
  multiNode: boolean,
  store: () => Promise<ContentStore>,
  merges: Map<OutputSpec, OciMerge>,
  annotations: Readonly<Record<string, string>>,
): Array<{ type: string; attrs: Record<string, string> }> {
  const ex: Array<{ type: string; attrs: Record<string, string> }> = [];
  for (const o of outputs) {
    if (o.type === 'local') {
      if (!o.dest) throw new PolyarchError('INVALID_ARGUMENT', `output ${o.raw}: dest is required`);
      job.sinks.set(String(ex.length), dirSink(o.dest, job));
      ex.push({ type: 'local', attrs: {} });
      continue;
    }
    if ((o.type === 'image' || o.type === 'registry') && o.push) {
      if (o.names.length === 0)
        throw new PolyarchError('INVALID_ARGUMENT', `output ${o.raw}: a push needs a name (-t or name=)`);
      const attrs = imageAttrs(o, annotations);
      attrs.push = 'true';
      if (multiNode || o.pushByDigest) {
        // Repository only: polyarch writes the tags once all nodes are done.
        attrs.name = [...new Set(o.names.map((n) => repositoryName(parseReference(n))))].join(',');
        attrs['push-by-digest'] = 'true';
      } else attrs.name = o.names.join(',');
      ex.push({ type: 'image', attrs });
    }
    if ((o.type === 'image' && o.store) || o.type === 'oci' || o.type === 'docker' || o.type === 'tar') {
      if ((o.type === 'docker' || o.type === 'tar') && multiNode)
        throw new PolyarchError(
          'UNSUPPORTED',
          `output ${o.raw}: type=${o.type} needs every platform on one node (this build uses several; type=oci can combine them)`,
        );
      const id = String(ex.length);
      if (o.type === 'image') {
        ex.push({ type: 'oci', attrs: { ...imageAttrs(o, annotations), tar: 'true' } });
        const { pipe, root } = loadInto(job, store);
        job.sinks.set(id, pipe);
        job.loaded = root;
      } else if (o.type === 'oci' && (multiNode || !o.tar)) {
        if (!o.dest) throw new PolyarchError('INVALID_ARGUMENT', `output ${o.raw}: dest is required`);
        const m = ociMerge(merges, o);
        ex.push({ type: 'oci', attrs: { ...imageAttrs(o, annotations), tar: 'true' } });
        const { pipe, root } = loadInto(job, () => m.store);
        job.sinks.set(id, pipe);
        m.roots.push(root);
      } else {
        if (!o.dest) throw new PolyarchError('INVALID_ARGUMENT', `output ${o.raw}: dest is required`);
        const attrs: Record<string, string> =
          o.type === 'tar' ? {} : { ...imageAttrs(o, annotations), tar: 'true' };
        if (o.type !== 'tar' && o.names.length) attrs.name = o.names.join(',');
        ex.push({ type: o.type, attrs });
        job.sinks.set(id, fileSink(o.dest, job));
      }
    }
  }
  return ex;
}

function decodeDescriptor(b64: string | undefined): Record<string, unknown> | undefined {
  if (!b64) return undefined;
  try {
    return JSON.parse(Buffer.from(b64, 'base64').toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** The manifests under `root` in the store, each with its platform. */
async function manifestsOf(store: ContentStore, root: Descriptor): Promise<Descriptor[]> {
  const doc = parseImageDocument(await store.readBlob(root.digest), `image ${root.digest}`, root.mediaType);
  if (doc.kind === 'index') return [...doc.index.manifests];
  const cfg = parseImageConfig(await store.readBlob(doc.manifest.config.digest), `config of ${root.digest}`);
  const platform = toOciPlatform({
    os: cfg.os,
    architecture: cfg.architecture,
    ...(cfg.variant ? { variant: cfg.variant } : {}),
  });
  return [{ mediaType: root.mediaType, digest: root.digest, size: root.size, platform }];
}

export async function remoteBuild(builder: Builder, req: RemoteBuildRequest): Promise<RemoteBuildResult> {
  const warn = req.warn ?? (() => {});
  const env = req.env ?? process.env;
  const secrets = await readSecrets(req);
  const named = await contextAttrs(req.namedContexts ?? []);
  // `--ssh`: one forwarder for every node's session (agents for key files start on first use).
  const agents = req.ssh?.length
    ? new (await import('../../build/ssh.js')).SshForwarder(req.ssh, env)
    : undefined;
  // polyarch's own engine may be nodes too: this machine (local) and ssh nodes, beside
  // BuildKit ones (remote); one scheduler places platforms on all of them.
  const localNodes = builder.nodes.filter((n) => nodeDriver(builder, n) === 'local');
  const remoteNodes = builder.nodes.filter((n) => nodeDriver(builder, n) === 'remote');
  const sshNodes = builder.nodes.filter((n) => nodeDriver(builder, n) === 'ssh');
  const sshMod = sshNodes.length > 0 ? await import('../ssh/index.js') : undefined;
  const [settled, local, sshSettled] = await Promise.all([
    Promise.allSettled(remoteNodes.map((node) => connectNode(node))),
    Promise.all(localNodes.map(async (node) => ({ node, info: await localDriver.info(node) }))),
    Promise.allSettled(sshNodes.map((node) => sshMod!.SshNodeConnection.open(node, { env }))),
  ]);
  const connected: ConnectedNode[] = [];
  const sshConns: SshNodeConnection[] = [];
  const unreachable: Unreachable[] = [];
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') connected.push(s.value);
    else unreachable.push({ name: remoteNodes[i]!.name, reason: errorMessage(s.reason) });
  });
  sshSettled.forEach((s, i) => {
    if (s.status === 'fulfilled') sshConns.push(s.value);
    else unreachable.push({ name: sshNodes[i]!.name, reason: errorMessage(s.reason) });
  });
  let tmpDockerfileDir: string | undefined;
  try {
    if (connected.length === 0 && local.length === 0 && sshConns.length === 0) {
      const first = [...settled, ...sshSettled].find((s) => s.status === 'rejected') as PromiseRejectedResult;
      throw first.reason;
    }
    for (const u of unreachable)
      warn(`${u.reason}; its platforms go to the other nodes of builder ${builder.name}`);
    const candidates: Candidate[] = builder.nodes.flatMap((node): Candidate[] => {
      const c = connected.find((n) => n.node === node);
      if (c)
        return [
          {
            name: node.name,
            pinned: node.platforms,
            ...(c.native ? { native: c.native } : {}),
            platforms: c.platforms,
          },
        ];
      const sc = sshConns.find((n) => n.node === node);
      if (sc)
        return [
          {
            name: node.name,
            pinned: node.platforms,
            native: sc.hello.native,
            platforms: mergePlatforms(node.platforms, sc.hello.platforms),
          },
        ];
      const l = local.find((n) => n.node === node);
      return l
        ? [{ name: node.name, pinned: node.platforms, native: hostPlatform(), platforms: l.info.platforms }]
        : [];
    });
    const platforms = req.platforms?.length
      ? [...req.platforms]
      : [candidates[0]!.native ?? candidates[0]!.platforms[0]!];
    const plan = schedule(platforms, candidates, unreachable);
    const localJobs: LocalJob[] = [
      ...local
        .filter((l) => plan.has(l.node.name))
        .map((l): LocalJob => ({ node: l.node, platforms: plan.get(l.node.name)! })),
      ...sshConns
        .filter((c) => plan.has(c.node.name))
        .map((c): LocalJob => ({ node: c.node, platforms: plan.get(c.node.name)!, conn: c })),
    ];
    // Sessions of nodes this build does not use end now (nothing stays on those nodes).
    for (const c of sshConns) if (!plan.has(c.node.name)) c.close();
    // Local nodes' results are always merged here: pushed by digest, stored untagged.
    const multiNode = plan.size > 1 || localJobs.length > 0;
    // One engine node builds everything: it pushes with the tags itself, as a plain build does.
    const direct = plan.size === 1 && localJobs.length === 1 && localJobs[0]!.conn !== undefined;
    const multiPlatform = platforms.length > 1;

    let dockerfileDir = req.dockerfilePath ? dirname(req.dockerfilePath) : req.contextDir;
    let dockerfileName = req.dockerfilePath ? basename(req.dockerfilePath) : req.dockerfileName;
    if (req.dockerfileText !== undefined) {
      tmpDockerfileDir = await mkdtemp(join(tmpdir(), 'polyarch-dockerfile-'));
      await writeFile(join(tmpDockerfileDir, 'Dockerfile'), req.dockerfileText);
      dockerfileDir = tmpDockerfileDir;
      dockerfileName = 'Dockerfile';
    }
    let storePromise: Promise<ContentStore> | undefined;
    // The local store and image modules are loaded only for outputs that need them.
    const store = () =>
      (storePromise ??= import('../../content/index.js').then((c) => c.ContentStore.open(c.storeDir(env))));
    const jobs: NodeJob[] = connected
      .filter((n) => plan.has(n.node.name))
      .map((n) => ({
        n,
        platforms: plan.get(n.node.name)!,
        ref: randomBytes(13).toString('hex').slice(0, 25),
        sinks: new Map(),
        finish: [],
        abort: [],
      }));
    const cacheImports = (req.cacheFrom ?? []).map((c) => parseCacheSpec(c, '--cache-from'));
    const cacheExports = (req.cacheTo ?? []).map((c) => parseCacheSpec(c, '--cache-to'));
    const merges = new Map<OutputSpec, OciMerge>();
    const merged: Descriptor[] = [];
    const abort = new AbortController();
    const onAbort = () => abort.abort(req.signal?.reason);
    req.signal?.addEventListener('abort', onAbort, { once: true });
    let runs: Promise<unknown>[] = [];
    try {
      const localRuns = localJobs.map(async (lj) => {
        try {
          await runEngineJob(lj, {
            req,
            candidates,
            localNodes: local.map((l) => l.node),
            sshNodes: sshConns.map((c) => c.node),
            secrets,
            signal: abort.signal,
            warn,
            env,
            direct,
          });
        } catch (err) {
          abort.abort(err);
          if (req.signal?.aborted) throw req.signal.reason;
          throw err;
        }
      });
      runs = [
        ...localRuns,
        ...jobs.map(async (job) => {
          const exporters = exportersFor(
            job,
            req.outputs,
            multiNode,
            store,
            merges,
            annotationAttrs(req.annotations ?? []),
          );
          const session = new BuildSession({
            dirs: {
              ...named.dirs,
              context: req.contextDir,
              dockerfile: dockerfileDir,
            },
            secrets,
            ...(agents ? { ssh: agents } : {}),
            ociStores: named.ociStores,
            env,
            name: `polyarch ${builder.name}/${job.n.node.name}`,
            // Stable per machine and context (as buildx's): a rebuild sends only what changed.
            sharedKey: createHash('sha256')
              .update(`${hostname()}\0${req.contextDir}`)
              .digest('hex')
              .slice(0, 32),
            output: (id) =>
              job.sinks.get(id) ?? (job.sinks.size === 1 ? [...job.sinks.values()][0] : undefined),
          });
          session.attach(job.n.client.channel);
          try {
            job.response = await job.n.client.solve(
              {
                ref: job.ref,
                frontend: 'dockerfile.v0',
                frontendAttrs: {
                  ...frontendAttrs(req, job.platforms, multiPlatform),
                  ...named.attrs,
                  filename: dockerfileName,
                },
                exporters,
                cacheImports,
                cacheExports,
                ...(req.network === 'host' ? { entitlements: ['network.host'] } : {}),
              },
              {
                session,
                signal: abort.signal,
                onStatus: (s) => {
                  try {
                    req.progress.write(mapStatus(s, multiNode ? job.n.node.name : undefined));
                  } catch {
                    // Progress never breaks the build.
                  }
                },
              },
            );
          } catch (err) {
            abort.abort(err);
            if (req.signal?.aborted) throw req.signal.reason;
            throw new PolyarchError(
              (err as PolyarchError).code ?? 'IO',
              `node ${job.n.node.name} (${job.n.node.endpoint}): ${errorMessage(err).replace(/^Solve: /, '')}`,
              { cause: err },
            );
          } finally {
            session.close();
          }
        }),
      ];
      await Promise.all(runs);
      for (const job of jobs) for (const f of job.finish) await f();
      for (const m of merges.values()) merged.push(await writeMerged(m));
    } catch (err) {
      // Whatever still runs (other nodes, the local engine) stops too, and is waited for, so
      // nothing is left mounted or half-written when this returns.
      abort.abort(err);
      await Promise.allSettled(runs);
      for (const job of jobs) for (const a of job.abort) await a().catch(() => {});
      throw err;
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      for (const m of merges.values()) await rm(m.dir, { recursive: true, force: true });
    }
    return await finishOutputs(builder, req, jobs, localJobs, multiNode, store, merged[0], direct);
  } finally {
    for (const n of connected) n.client.close();
    for (const c of sshConns) c.close();
    if (tmpDockerfileDir) await rm(tmpDockerfileDir, { recursive: true, force: true });
    await agents?.close();
  }
}

/** One layout at the output's dest over every node's manifests. */
async function writeMerged(m: OciMerge): Promise<Descriptor> {
  const store = await m.store;
  const roots = (await Promise.all(m.roots)).filter((d): d is Descriptor => d !== undefined);
  if (roots.length === 0) throw new PolyarchError('IO', `output ${m.spec.raw}: the daemons sent no image`);
  const root =
    roots.length === 1
      ? roots[0]!
      : await store.writeJson(
          {
            schemaVersion: 2,
            mediaType: MediaType.OciIndex,
            manifests: (await Promise.all(roots.map((r) => manifestsOf(store, r)))).flat(),
          },
          MediaType.OciIndex,
        );
  const { writeOciArchive } = await import('../../build/export/archive.js');
  await writeOciArchive({ store, root, names: m.spec.names, dest: resolve(m.spec.dest!), tar: m.spec.tar });
  return root;
}

async function finishOutputs(
  builder: Builder,
  req: RemoteBuildRequest,
  jobs: NodeJob[],
  localJobs: LocalJob[],
  multiNode: boolean,
  store: () => Promise<ContentStore>,
  merged?: Descriptor,
  direct = false,
): Promise<RemoteBuildResult> {
  const env = req.env ?? process.env;
  const nodes: Record<string, string> = {};
  for (const j of [...jobs.map((j) => ({ node: j.n.node, platforms: j.platforms })), ...localJobs])
    for (const p of j.platforms) nodes[formatPlatform(p)] = j.node.name;
  const md: Record<string, unknown> = {};
  if (jobs[0]) md['buildx.build.ref'] = `${builder.name}/${jobs[0].n.node.name}/${jobs[0].ref}`;
  let digest: string | undefined;
  let descriptor: Record<string, unknown> | undefined;
  const first = jobs[0]?.response ?? {};
  const names = [...new Set(req.outputs.flatMap((o) => o.names))];
  const push = req.outputs.find((o) => (o.type === 'image' || o.type === 'registry') && o.push);
  if (!multiNode) {
    digest = first['containerimage.digest'];
    descriptor = decodeDescriptor(first['containerimage.descriptor']);
    if (first['containerimage.config.digest'])
      md['containerimage.config.digest'] = first['containerimage.config.digest'];
  } else if (direct && push) {
    // The only node pushed with the tags.
    const l = localJobs[0]!;
    if (!l.result?.pushed) throw new PolyarchError('IO', `node ${l.node.name}: the build pushed no image`);
    digest = l.result.pushed;
    const d = l.result.pushedDescriptor;
    if (d) descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  } else if (push && !push.pushByDigest) {
    // One index over every node's manifests, pushed once to each name.
    const repo = repositoryName(parseReference(push.names[0]!));
    const sources = jobs.map((j) => {
      const d = j.response?.['containerimage.digest'];
      if (!d) throw new PolyarchError('IO', `node ${j.n.node.name}: the daemon returned no image digest`);
      return `${repo}@${d}`;
    });
    for (const l of localJobs) {
      if (!l.result?.pushed)
        throw new PolyarchError('IO', `node ${l.node.name}: the local build pushed no image`);
      sources.push(`${repo}@${l.result.pushed}`);
    }
    const { createIndex } = await import('../../image/create.js');
    const indexAnnotations = (req.annotations ?? []).filter((a) => a.startsWith('index:'));
    const r = await createIndex({ sources, tags: push.names, env, annotations: indexAnnotations });
    digest = r.digest;
    descriptor = { mediaType: r.index.mediaType, digest: r.digest, size: r.bytes.length };
  }
  // Loaded images: tag them, several nodes' merged into one index first.
  const loads = jobs.filter((j) => j.loaded);
  const localStored = localJobs.flatMap((l) => (l.result?.stored ? [l.result.stored] : []));
  if (loads.length > 0 || localStored.length > 0) {
    const s = await store();
    const roots = [
      ...(await Promise.all(loads.map((j) => j.loaded!))).filter((d): d is Descriptor => d !== undefined),
      ...localStored,
    ];
    let root: Descriptor | undefined = roots[0];
    if (roots.length > 1) {
      const manifests = (await Promise.all(roots.map((r) => manifestsOf(s, r)))).flat();
      root = await s.writeJson(
        { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests },
        MediaType.OciIndex,
      );
    }
    const storeOut = req.outputs.find((o) => o.type === 'image' && o.store);
    if (root) for (const n of storeOut?.names ?? []) await s.tag(n, root);
    if (root && (!digest || multiNode)) {
      digest ??= root.digest;
      descriptor ??= { mediaType: root.mediaType, digest: root.digest, size: root.size };
    }
  }
  if (!digest && merged) {
    digest = merged.digest;
    descriptor = { mediaType: merged.mediaType, digest: merged.digest, size: merged.size };
  }
  if (descriptor) md['containerimage.descriptor'] = descriptor;
  if (digest) md['containerimage.digest'] = digest;
  if (names.length > 0 && digest) md['image.name'] = names.join(',');
  md['polyarch.build.nodes'] = nodes;
  const transfer: Record<string, unknown> = {};
  for (const l of localJobs) if (l.transfer) transfer[l.node.name] = l.transfer;
  if (Object.keys(transfer).length > 0) md['polyarch.build.transfer'] = transfer;
  return { ...(digest ? { digest } : {}), metadata: md, nodes };
}
