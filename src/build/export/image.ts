/**
 * A BuildResult → blobs, configs, manifests and (for several platforms) an index in the store.
 *
 *   const img = await writeImage(result, { store, snapshotter, memo, format, sourceDateEpoch });
 *   img.descriptor   // the root: an index (several platforms) or a manifest (one)
 *   img.platforms    // per platform: manifest + config descriptors, layers
 *
 * One image is written per *format* (compression, level, media type family) an output asks
 * for; the layers of each are memoised (layers.ts), so asking twice costs nothing. With
 * SOURCE_DATE_EPOCH the bytes are reproducible: layer mtimes clamped, config `created` and
 * history `created` set to the epoch, no random or time-dependent field anywhere.
 */
import type { ContentStore } from '../../content/index.js';
import {
  type Compression,
  type Descriptor,
  type Digest,
  type HistoryEntry,
  type ImageConfig,
  type Index,
  layerCompression,
  layerMediaType,
  type Manifest,
  MediaType,
} from '../../oci/index.js';
import { formatPlatform, type Platform, toOciPlatform } from '../../platform/index.js';
import type { Snapshotter } from '../../snapshot/index.js';
import { PolyarchError } from '../../util/errors.js';
import type { BuildResult, PlatformResult } from '../result.js';
import { type LayerMemo, type PackedLayer, packSnapshotLayer } from './layers.js';

export interface ImageFormat {
  compression: Compression;
  level?: number;
  /** OCI media types (true) or Docker schema 2 ones. */
  oci: boolean;
}

export interface WriteImageOptions {
  store: ContentStore;
  snapshotter: Snapshotter;
  memo: LayerMemo;
  format: ImageFormat;
  sourceDateEpoch?: number;
  threads?: number;
  signal?: AbortSignal;
  /** Called before and after each layer is packed or reused (progress). */
  onLayer?: (e: { platform: Platform; index: number; packed: boolean; descriptor: Descriptor }) => void;
  onDocument?: (e: { kind: 'config' | 'manifest' | 'index'; descriptor: Descriptor }) => void;
  /** Extra top-level config fields for platform `index` (the inline cache), given its layers. */
  configExtra?: (index: number, layers: Descriptor[]) => Record<string, unknown> | undefined;
}

export interface PlatformImage {
  platform: Platform;
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  diffIds: Digest[];
}

export interface WrittenImage {
  descriptor: Descriptor;
  platforms: PlatformImage[];
  /** Snapshot layers packed now (memo misses) and answered by the memo. */
  packed: number;
  reused: number;
}

export function formatKey(f: ImageFormat): string {
  return `${f.compression}/${f.level ?? 'default'}/${f.oci ? 'oci' : 'docker'}`;
}

export function isoTime(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** A reused base layer's media type in the requested family (its bytes are unchanged). */
function blobMediaType(d: Descriptor, oci: boolean): string {
  const nondist =
    d.mediaType === MediaType.DockerLayerForeignGzip || d.mediaType.includes('.nondistributable.');
  if (nondist) return d.mediaType;
  return layerMediaType(layerCompression(d.mediaType), { oci });
}

/** The config with rootfs filled and, under SOURCE_DATE_EPOCH, every time pinned. */
export function finalConfig(p: PlatformResult, diffIds: Digest[], sourceDateEpoch?: number): ImageConfig {
  const { history, created, ...rest } = p.config;
  const nonEmpty = history.filter((h) => !h.empty_layer).length;
  if (nonEmpty !== diffIds.length)
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `build result for ${formatPlatform(p.platform)}: ${diffIds.length} layers but ${nonEmpty} non-empty history entries`,
    );
  const when =
    sourceDateEpoch !== undefined ? isoTime(sourceDateEpoch) : (created ?? new Date().toISOString());
  const hist: HistoryEntry[] = history.map((h) => {
    if (sourceDateEpoch !== undefined) {
      // Clamp, like BuildKit's rewrite: base image history older than the epoch stays.
      const t = h.created === undefined ? undefined : Date.parse(h.created);
      if (t === undefined || Number.isNaN(t) || t > sourceDateEpoch * 1000) return { ...h, created: when };
      return h;
    }
    return h.created === undefined ? { ...h, created: when } : h;
  });
  const oci = toOciPlatform(p.platform);
  return {
    ...rest,
    architecture: oci.architecture,
    os: oci.os,
    ...(oci.variant ? { variant: oci.variant } : {}),
    created: when,
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: hist,
  };
}

/** Packs (or finds in the memo) the committed snapshot layer `key` in `opts.format`. */
export function packLayer(
  key: string,
  opts: Pick<
    WriteImageOptions,
    'store' | 'snapshotter' | 'memo' | 'format' | 'sourceDateEpoch' | 'threads' | 'signal'
  >,
): Promise<PackedLayer> {
  return packSnapshotLayer({
    store: opts.store,
    snapshotter: opts.snapshotter,
    memo: opts.memo,
    key,
    compression: opts.format.compression,
    ...(opts.format.level !== undefined ? { level: opts.format.level } : {}),
    ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    oci: opts.format.oci,
  });
}

async function writePlatform(
  p: PlatformResult,
  index: number,
  opts: WriteImageOptions,
  counts: { packed: number; reused: number },
  packing: Map<string, Promise<PackedLayer>>,
): Promise<PlatformImage> {
  const { store, format } = opts;
  const layers: Descriptor[] = [];
  const diffIds: Digest[] = [];
  for (const [i, l] of p.layers.entries()) {
    opts.signal?.throwIfAborted();
    if (l.kind === 'blob') {
      if (!(await store.has(l.descriptor.digest)))
        throw new PolyarchError(
          'NOT_FOUND',
          `build result for ${formatPlatform(p.platform)}: base layer ${l.descriptor.digest} is not in the content store`,
        );
      const { mediaType: _mt, ...rest } = l.descriptor;
      layers.push({ mediaType: blobMediaType(l.descriptor, format.oci), ...rest });
      diffIds.push(l.diffId);
      opts.onLayer?.({ platform: p.platform, index: i, packed: false, descriptor: layers.at(-1)! });
      continue;
    }
    // A layer several platforms share (a stage built once for all targets) is packed once.
    let pending = packing.get(l.key);
    if (!pending) {
      pending = packLayer(l.key, opts);
      packing.set(l.key, pending);
    } else pending = pending.then((r) => ({ ...r, packed: false }));
    const r = await pending;
    if (r.packed) counts.packed++;
    else counts.reused++;
    layers.push(r.descriptor);
    diffIds.push(r.diffId);
    opts.onLayer?.({ platform: p.platform, index: i, packed: r.packed, descriptor: r.descriptor });
  }
  const config = await store.writeJson(
    { ...finalConfig(p, diffIds, opts.sourceDateEpoch), ...opts.configExtra?.(index, layers) },
    format.oci ? MediaType.OciConfig : MediaType.DockerConfig,
  );
  opts.onDocument?.({ kind: 'config', descriptor: config });
  const manifestType = format.oci ? MediaType.OciManifest : MediaType.DockerManifest;
  const manifest: Manifest = { schemaVersion: 2, mediaType: manifestType, config, layers };
  const mdesc = await store.writeJson(manifest, manifestType);
  const withPlatform: Descriptor = { ...mdesc, platform: toOciPlatform(p.platform) };
  opts.onDocument?.({ kind: 'manifest', descriptor: withPlatform });
  return { platform: p.platform, manifest: withPlatform, config, layers, diffIds };
}

/** Writes the image of `result` in `opts.format` into the store. */
export async function writeImage(result: BuildResult, opts: WriteImageOptions): Promise<WrittenImage> {
  if (result.platforms.length === 0)
    throw new PolyarchError('INVALID_ARGUMENT', 'build result has no platforms to export');
  const counts = { packed: 0, reused: 0 };
  const packing = new Map<string, Promise<PackedLayer>>();
  // Platforms are written concurrently (their layers are independent); the index keeps the
  // requested order.
  const platforms = await Promise.all(
    result.platforms.map((p, i) => writePlatform(p, i, opts, counts, packing)),
  );
  if (platforms.length === 1) {
    const { platform: _p, ...root } = platforms[0]!.manifest;
    return { descriptor: root, platforms, ...counts };
  }
  const indexType = opts.format.oci ? MediaType.OciIndex : MediaType.DockerManifestList;
  const index: Index = {
    schemaVersion: 2,
    mediaType: indexType,
    manifests: platforms.map((p) => p.manifest),
  };
  const descriptor = await opts.store.writeJson(index, indexType);
  opts.onDocument?.({ kind: 'index', descriptor });
  return { descriptor, platforms, ...counts };
}
