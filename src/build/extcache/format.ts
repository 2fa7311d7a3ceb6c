/**
 * polyarch's external build cache format (not BuildKit's: the keys are polyarch's own).
 *
 * A cache is an OCI image manifest (in a registry under a ref, or in an OCI layout directory)
 *
 *   { "mediaType": "application/vnd.oci.image.manifest.v1+json",
 *     "artifactType": "application/vnd.polyarch.cache.v1",
 *     "config": { "mediaType": "application/vnd.polyarch.cache.config.v1+json", … },
 *     "layers": [ the layer blobs, gzip/zstd/uncompressed tar, as in an image ] }
 *
 * wrapped, by default (`image-manifest=false`, as buildx), in an OCI index with that one
 * manifest. The config lists the records:
 *
 *   { "version": 1, "records": [ { "key": "<64 hex>", "parent": "<key>|image:sha256:…|scratch",
 *       "platform": "linux/arm64", "created": "<RFC 3339>",
 *       "layer": { "digest", "size", "mediaType", "diffId" } | null (the step added nothing) } ] }
 *
 * `key` is a build step's cache key (build.ts stepKey: the parent state's key and the step's
 * definition, with content checksums of the files it reads — no secret values, no host paths).
 * Records of every platform share one cache; an export into an existing cache merges.
 *
 * Inline cache (`--cache-to type=inline`): the pushed image config carries the records of its
 * own layers under the top-level field `polyarch.cache.v1` (`{ version: 1, records }` with
 * `layer` an index into the image's layers instead of a descriptor).
 */
import type { Descriptor, Digest } from '../../oci/index.js';

export const CACHE_ARTIFACT_TYPE = 'application/vnd.polyarch.cache.v1';
export const CACHE_CONFIG_TYPE = 'application/vnd.polyarch.cache.config.v1+json';
export const INLINE_FIELD = 'polyarch.cache.v1';

export interface CacheLayer {
  digest: Digest;
  size: number;
  mediaType: string;
  diffId: Digest;
}

export interface CacheRecordV1 {
  key: string;
  parent: string;
  platform?: string;
  created?: string;
  layer: CacheLayer | null;
}

export interface CacheConfigV1 {
  version: 1;
  records: CacheRecordV1[];
}

export interface InlineRecord {
  key: string;
  parent: string;
  created?: string;
  /** Index into the image's layers, or null for a step that added nothing. */
  layer: number | null;
}

const HEX64 = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

const str = (v: unknown): v is string => typeof v === 'string';

/** The layer of a record, checked; undefined when malformed. */
function parseLayer(v: unknown): CacheLayer | null | undefined {
  if (v === null) return null;
  if (!v || typeof v !== 'object') return undefined;
  const l = v as Record<string, unknown>;
  if (!str(l.digest) || !DIGEST.test(l.digest)) return undefined;
  if (!str(l.diffId) || !DIGEST.test(l.diffId)) return undefined;
  if (typeof l.size !== 'number' || !Number.isSafeInteger(l.size) || l.size < 0) return undefined;
  if (!str(l.mediaType) || !/^application\/vnd\.(oci|docker)\./.test(l.mediaType)) return undefined;
  return { digest: l.digest as Digest, diffId: l.diffId as Digest, size: l.size, mediaType: l.mediaType };
}

const validCreated = (v: unknown): v is string => str(v) && !Number.isNaN(Date.parse(v));

/** Parses a cache config; throws a message naming what is wrong (the caller warns). */
export function parseCacheConfig(bytes: Buffer, layers: readonly Descriptor[]): CacheRecordV1[] {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new Error(`the cache config is not JSON (${(err as Error).message})`);
  }
  const d = doc as { version?: unknown; records?: unknown } | null;
  if (!d || typeof d !== 'object' || d.version !== 1 || !Array.isArray(d.records))
    throw new Error('the cache config is not a polyarch cache config version 1');
  const listed = new Map(layers.map((l) => [l.digest, l.size]));
  const out: CacheRecordV1[] = [];
  for (const r of d.records as unknown[]) {
    const rec = r as Record<string, unknown> | null;
    if (!rec || typeof rec !== 'object' || !str(rec.key) || !HEX64.test(rec.key) || !str(rec.parent))
      throw new Error('the cache config has a malformed record');
    const layer = parseLayer(rec.layer);
    if (layer === undefined) throw new Error(`cache record ${rec.key}: malformed layer`);
    if (layer && listed.get(layer.digest) !== layer.size)
      throw new Error(`cache record ${rec.key}: layer ${layer.digest} is not in the cache manifest`);
    out.push({
      key: rec.key,
      parent: rec.parent,
      ...(str(rec.platform) ? { platform: rec.platform } : {}),
      ...(validCreated(rec.created) ? { created: rec.created } : {}),
      layer,
    });
  }
  return out;
}

/** Records from an image config's inline field, mapped onto its layers; [] when it has none. */
export function parseInline(
  config: unknown,
  layers: readonly Descriptor[],
  diffIds: readonly string[],
): CacheRecordV1[] {
  const f = (config as Record<string, unknown> | null)?.[INLINE_FIELD] as
    | { version?: unknown; records?: unknown }
    | undefined;
  if (f === undefined) return [];
  if (f?.version !== 1 || !Array.isArray(f.records))
    throw new Error(`the image config's ${INLINE_FIELD} is malformed`);
  const out: CacheRecordV1[] = [];
  for (const r of f.records as unknown[]) {
    const rec = r as Record<string, unknown> | null;
    if (!rec || !str(rec.key) || !HEX64.test(rec.key) || !str(rec.parent))
      throw new Error(`the image config's ${INLINE_FIELD} has a malformed record`);
    let layer: CacheLayer | null = null;
    if (rec.layer !== null) {
      const i = rec.layer;
      if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= layers.length || !diffIds[i])
        throw new Error(`inline cache record ${rec.key}: no layer ${String(i)} in the image`);
      const l = layers[i]!;
      layer = { digest: l.digest, size: l.size, mediaType: l.mediaType, diffId: diffIds[i] as Digest };
    }
    out.push({
      key: rec.key,
      parent: rec.parent,
      ...(validCreated(rec.created) ? { created: rec.created } : {}),
      layer,
    });
  }
  return out;
}
