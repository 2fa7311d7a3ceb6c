/**
 * The exporters: a solver's BuildResult → images in the store, registries, archives, dirs.
 *
 *   const { outputs, warning } = resolveOutputs({ output: opts.output, push, load, tags });
 *   if (warning) console.error(warning);
 *   const res = await exportBuild(result, outputs, { store, snapshotter, stateRoot, progress,
 *                                                    sourceDateEpoch });
 *   await writeBuildFiles(res, { metadataFile, iidFile });
 *   res.digest, res.descriptor, res.names, res.metadata, res.stats
 *
 * Outputs are checked against the result before any work (type=docker with several platforms
 * is a UsageError). Then one image per distinct format (compression, level, media types) is
 * written to the store (layers memoised, layers.ts), and each output is produced from it:
 * tagged (image), pushed (registry, children before the index; existing blobs skipped by HEAD),
 * or written as a file/directory atomically (archive.ts).
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContentStore } from '../../content/index.js';
import type { Descriptor, Digest } from '../../oci/index.js';
import { formatPlatform } from '../../platform/index.js';
import { type ProgressSink, ProgressWriter, type VertexHandle } from '../../progress/index.js';
import { formatReference, parseReference, repositoryName } from '../../oci/reference.js';
import { holdProcessState } from '../../exec/reap.js';
import type { Snapshotter } from '../../snapshot/index.js';
import { errorMessage, PolyarchError, UsageError } from '../../util/errors.js';
import type { BuildResult, PlatformResult } from '../result.js';
import { type BuildCacheInfo, inlineCacheField } from '../extcache/inline.js';
import { writeDockerArchive, writeOciArchive, writeRootfs } from './archive.js';
import type { AttestContext } from '../../attest/index.js';
import { formatKey, type ImageFormat, packLayer, type WrittenImage, writeImage } from './image.js';
import { LayerMemo } from './layers.js';
import { checkDestinations, type OutputSpec } from './outputs.js';

export * from './archive.js';
export * from './image.js';
export * from './layers.js';
export * from './outputs.js';

export interface ExportContext {
  store: ContentStore;
  snapshotter: Snapshotter;
  /** polyarch state root: the layer memo lives in `<stateRoot>/export/`. */
  stateRoot: string;
  progress?: ProgressSink;
  /** SOURCE_DATE_EPOCH (seconds): reproducible layers, config and history times. */
  sourceDateEpoch?: number;
  signal?: AbortSignal;
  /** Environment for registry config and credentials; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Warnings (e.g. a registry refusing OCI media types); default: none. */
  warn?: (message: string) => void;
  /** Deflate worker threads; default compressLayer's (cores, at most 8). */
  threads?: number;
  /** Goes into the metadata as `buildx.build.ref` when given. */
  buildRef?: string;
  /** `--cache-to type=inline`: the build's cache records, written into each image config. */
  inlineCache?: BuildCacheInfo;
  /** `--sbom`/`--provenance`/`--attest`: attestations attached to each image written (src/attest). */
  attest?: AttestContext;
}

export interface PushedImage {
  name: string;
  digest: Digest;
}

export interface ExportStats {
  /** Snapshot layers packed now / answered by the layer memo. */
  packed: number;
  reused: number;
  /** Blobs the registry pushes uploaded / found present / mounted. */
  uploaded: number;
  existing: number;
  mounted: number;
}

export interface ExportResponse {
  /** The root (index for several platforms, else manifest) of the first image output; undefined without outputs. */
  descriptor?: Descriptor;
  digest?: Digest;
  /** Names tagged in the store or pushed. */
  names: string[];
  /** Per platform of that image: manifest and config. */
  manifests: Array<{ platform: string; manifest: Descriptor; config: Descriptor }>;
  pushed: PushedImage[];
  /** buildx's metadata-file JSON. */
  metadata: Record<string, unknown>;
  stats: ExportStats;
}

const IMAGE_TYPES = new Set(['image', 'registry', 'oci', 'docker']);

/** Output checks that need the result (before any work); with `stateRoot`, checkDestinations too. */
export function checkOutputs(result: BuildResult, outputs: OutputSpec[], stateRoot?: string): void {
  if (stateRoot !== undefined) checkDestinations(outputs, stateRoot);
  for (const o of outputs)
    if (o.type === 'docker' && result.platforms.length > 1)
      throw new UsageError(
        `invalid output "${o.raw}": type=docker holds one platform, the build has ${result.platforms.length} (${result.platforms
          .map((p) => formatPlatform(p.platform))
          .join(', ')}); use type=oci for several, or build one --platform`,
      );
}

function formatOf(o: OutputSpec): ImageFormat {
  return {
    compression: o.compression,
    ...(o.compressionLevel !== undefined ? { level: o.compressionLevel } : {}),
    oci: o.ociMediaTypes,
  };
}

/**
 * Packs one platform's new layers into the store in every format the outputs need, ahead of
 * `exportBuild` — called as each platform finishes (BuildOptions.onPlatformResult) so that
 * packing overlaps the steps of the platforms still building. The layer memo makes the
 * exporter's own packing of these layers free. Best effort: a failure here is left for
 * `exportBuild` to meet and report.
 */
export async function prepareLayers(
  platform: PlatformResult,
  outputs: OutputSpec[],
  ctx: ExportContext,
): Promise<void> {
  await Promise.all(
    platform.layers.map((l) => (l.kind === 'snapshot' ? prepareLayer(l.key, outputs, ctx) : undefined)),
  );
}

/** In-flight packs of this process, so a layer asked for twice (per step, then per platform) is packed once. */
const preparing = new Map<string, Promise<unknown>>();

/**
 * Packs one committed snapshot layer in every format the outputs need (see prepareLayers);
 * for BuildOptions.onLayerCommitted, as soon as a step has made it.
 */
export async function prepareLayer(key: string, outputs: OutputSpec[], ctx: ExportContext): Promise<void> {
  const formats = new Map<string, ImageFormat>();
  for (const o of outputs) if (IMAGE_TYPES.has(o.type)) formats.set(formatKey(formatOf(o)), formatOf(o));
  if (formats.size === 0) return;
  const memo = await LayerMemo.open(ctx.stateRoot);
  for (const f of formats.values()) {
    ctx.signal?.throwIfAborted();
    const id = JSON.stringify([ctx.stateRoot, key, formatKey(f), ctx.sourceDateEpoch ?? null]);
    let p = preparing.get(id);
    if (!p) {
      p = packLayer(key, { ...ctx, memo, format: f });
      preparing.set(id, p);
      p.then(
        () => preparing.delete(id),
        () => preparing.delete(id),
      );
    }
    await p;
  }
}

/** Exports `result` to every output; see the module comment. */
export async function exportBuild(
  result: BuildResult,
  outputs: OutputSpec[],
  ctx: ExportContext,
): Promise<ExportResponse> {
  checkOutputs(result, outputs, ctx.stateRoot);
  // Temp files and staging dirs follow: if this process is killed, the next command of any
  // kind removes them (exec/reap.ts).
  const release = outputs.length > 0 ? await holdProcessState(ctx.stateRoot) : () => undefined;
  try {
    return await exportOutputs(result, outputs, ctx);
  } finally {
    release();
  }
}

async function exportOutputs(
  result: BuildResult,
  outputs: OutputSpec[],
  ctx: ExportContext,
): Promise<ExportResponse> {
  const stats: ExportStats = { packed: 0, reused: 0, uploaded: 0, existing: 0, mounted: 0 };
  const resp: ExportResponse = { names: [], manifests: [], pushed: [], metadata: {}, stats };
  if (outputs.length === 0) return resp;
  const pw = ctx.progress ? new ProgressWriter(ctx.progress) : undefined;
  // The registry client (undici) is loaded only when something is pushed, and its loading
  // starts now so that it overlaps the image writes (I/O) below.
  const pushModule = outputs.some((o) => o.push) ? import('../../image/push.js') : undefined;
  pushModule?.catch(() => undefined);
  const memo = await LayerMemo.open(ctx.stateRoot);
  const images = new Map<string, WrittenImage>();

  const imageFor = async (o: OutputSpec, v: VertexHandle | undefined): Promise<WrittenImage> => {
    const f = formatOf(o);
    const key = formatKey(f);
    const have = images.get(key);
    if (have) return have;
    const layers = v?.status('exporting layers');
    const documents: { kind: 'manifest' | 'index'; descriptor: Descriptor }[] = [];
    const img = await writeImage(result, {
      store: ctx.store,
      snapshotter: ctx.snapshotter,
      memo,
      format: f,
      ...(ctx.sourceDateEpoch !== undefined ? { sourceDateEpoch: ctx.sourceDateEpoch } : {}),
      ...(ctx.threads !== undefined ? { threads: ctx.threads } : {}),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
      onDocument: (e) => {
        if (e.kind !== 'config') documents.push({ kind: e.kind, descriptor: e.descriptor });
      },
      ...(ctx.inlineCache
        ? { configExtra: (i: number) => inlineCacheField(ctx.inlineCache!, i, result.platforms[i]!) }
        : {}),
    });
    // Platforms are written concurrently: the layers are done only when writeImage returns.
    layers?.done();
    for (const e of documents)
      v?.status(
        `exporting ${e.kind === 'index' ? 'manifest list' : 'manifest'} ${e.descriptor.digest}`,
      ).done();
    stats.packed += img.packed;
    stats.reused += img.reused;
    if (ctx.attest && (ctx.attest.request.sbom || ctx.attest.request.provenance)) {
      const s = v?.status('attaching attestations');
      const { attestImage } = await import('../../attest/index.js');
      await attestImage(ctx.store, img.platforms, {
        ...ctx.attest,
        names: [...new Set(outputs.flatMap((x) => (IMAGE_TYPES.has(x.type) ? x.names : [])))],
        ...(ctx.sourceDateEpoch !== undefined ? { sourceDateEpoch: ctx.sourceDateEpoch } : {}),
        ...(ctx.warn ? { warn: ctx.warn } : {}),
      });
      s?.done();
    }
    images.set(key, img);
    return img;
  };

  let first: WrittenImage | undefined;
  let firstDigest: Digest | undefined;
  const names = new Set<string>();

  for (const [i, o] of outputs.entries()) {
    ctx.signal?.throwIfAborted();
    const title =
      o.type === 'image' || o.type === 'registry'
        ? 'exporting to image'
        : o.type === 'oci'
          ? 'exporting to oci image format'
          : o.type === 'docker'
            ? 'exporting to docker image format'
            : 'copying files';
    const run = async (v: VertexHandle | undefined) => {
      const img = await imageFor(o, v);
      if (IMAGE_TYPES.has(o.type) && !first) first = img;
      const mtime = ctx.sourceDateEpoch ?? 0;
      switch (o.type) {
        case 'image':
        case 'registry': {
          if (o.store)
            for (const n of o.names) {
              const s = v?.status(`naming to ${n}`);
              await ctx.store.tag(n, img.descriptor);
              s?.done();
              names.add(n);
            }
          if (o.push) {
            const { push } = await (pushModule ?? import('../../image/push.js'));
            const pushed = await pushImage(push, img.descriptor, o, ctx, stats, pw, mountSources(result));
            resp.pushed.push(...pushed);
            for (const p of pushed) names.add(p.name);
            if (first === img && !firstDigest && pushed[0]) firstDigest = pushed[0].digest;
          }
          break;
        }
        case 'oci': {
          const s = v?.status('sending tarball');
          // An existing directory as dest means a layout directory, as with tar=false.
          const isDir = (await stat(o.dest!).catch(() => undefined))?.isDirectory() === true;
          await writeOciArchive({
            store: ctx.store,
            root: img.descriptor,
            referrers: await archiveReferrers(ctx.store, img),
            names: o.names,
            dest: o.dest!,
            tar: o.tar && !isDir,
            mtime,
          });
          s?.done();
          break;
        }
        case 'docker': {
          const s = v?.status('sending tarball');
          await writeDockerArchive({
            store: ctx.store,
            image: img.platforms[0]!,
            names: o.names,
            dest: o.dest!,
            mtime,
          });
          s?.done();
          break;
        }
        case 'local':
        case 'tar':
          await writeRootfs({
            store: ctx.store,
            platforms: img.platforms,
            dest: o.dest!,
            tar: o.type === 'tar',
            stagingDir: join(ctx.stateRoot, 'export', 'tmp'),
            ...(ctx.sourceDateEpoch !== undefined ? { sourceDateEpoch: ctx.sourceDateEpoch } : {}),
            ...(ctx.signal ? { signal: ctx.signal } : {}),
          });
          break;
      }
    };
    if (pw) await pw.run({ digest: `exporter:${i}:${o.type}`, name: title }, run);
    else await run(undefined);
  }

  const root = first ?? [...images.values()][0]!;
  resp.descriptor = firstDigest && first ? { ...root.descriptor, digest: firstDigest } : root.descriptor;
  resp.digest = resp.descriptor.digest;
  resp.names = [...names];
  resp.manifests = root.platforms.map((p) => ({
    platform: formatPlatform(p.platform),
    manifest: p.manifest,
    config: p.config,
  }));
  const md: Record<string, unknown> = {};
  if (ctx.buildRef) md['buildx.build.ref'] = ctx.buildRef;
  if (root.platforms.length === 1) md['containerimage.config.digest'] = root.platforms[0]!.config.digest;
  md['containerimage.descriptor'] = {
    mediaType: resp.descriptor.mediaType,
    digest: resp.descriptor.digest,
    size: resp.descriptor.size,
  };
  md['containerimage.digest'] = resp.digest;
  if (resp.names.length > 0) md['image.name'] = resp.names.join(',');
  resp.metadata = md;
  return resp;
}

/** The attestations an OCI archive of `img` carries: those asked for (not the default provenance). */
async function archiveReferrers(store: ContentStore, img: WrittenImage): Promise<Descriptor[]> {
  const { archiveReferrers: of } = await import('../../attest/index.js');
  return of(
    store,
    img.platforms.map((p) => p.manifest.digest),
  );
}

/** Base layers by digest, with the image each came from (to mount them from there). */
function mountSources(result: BuildResult): Map<string, string> {
  const m = new Map<string, string>();
  for (const p of result.platforms)
    for (const l of p.layers) if (l.kind === 'blob' && l.source) m.set(l.descriptor.digest, l.source);
  return m;
}

/** Pushes the stored image `root` to every name of `o` (by digest only with push-by-digest). */
async function pushImage(
  push: typeof import('../../image/push.js').push,
  root: Descriptor,
  o: OutputSpec,
  ctx: ExportContext,
  stats: ExportStats,
  pw: ProgressWriter | undefined,
  mounts: ReadonlyMap<string, string>,
): Promise<PushedImage[]> {
  // push() sends what the store names: hold the image under a private name meanwhile, which
  // also keeps a concurrent `prune` from collecting it before it is pushed.
  const hold = `polyarch.export/push-${process.pid}-${randomBytes(6).toString('hex')}`;
  await ctx.store.tag(hold, root);
  const out: PushedImage[] = [];
  try {
    const targets = o.pushByDigest
      ? [...new Set(o.names.map((n) => repositoryName(parseReference(n))))].map((r) => `${r}@${root.digest}`)
      : o.names;
    for (const t of targets) {
      ctx.signal?.throwIfAborted();
      try {
        // push() reports its own `pushing <ref>` step with a byte status per blob.
        const r = await push(hold, {
          store: ctx.store,
          target: t,
          ...(pw ? { progress: pw } : {}),
          ...(ctx.env ? { env: ctx.env } : {}),
          ...(ctx.warn ? { warn: ctx.warn } : {}),
          mountSources: mounts,
        });
        out.push({ name: o.pushByDigest ? formatReference(parseReference(t)) : t, digest: r.digest });
        stats.uploaded += r.blobs.uploaded;
        stats.existing += r.blobs.existing;
        stats.mounted += r.blobs.mounted;
      } catch (err) {
        throw err instanceof PolyarchError
          ? err
          : new PolyarchError('IO', `pushing ${t}: ${errorMessage(err)}`);
      }
    }
  } finally {
    await ctx.store.untag(hold).catch(() => {});
  }
  return out;
}

export { writeBuildFiles } from './files.js';
