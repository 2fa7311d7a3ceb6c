/**
 * Parsing and validation of image documents from bytes. Every function names what it
 * was reading (`what`, e.g. `manifest 127.0.0.1:5000/app@sha256:…`) and the rule that
 * failed, and never returns a half-checked value.
 *
 *   const doc = parseImageDocument(bytes, 'manifest x');   // { kind: 'index' | 'manifest', … }
 */
import { PolyarchError } from '../util/errors.js';
import { type Digest, isDigest } from './digest.js';
import { isIndexType, isManifestType, MediaType } from './mediatypes.js';
import type { Descriptor, ImageConfig, Index, Manifest } from './types.js';

export type ImageDocument =
  | { kind: 'index'; mediaType: string; index: Index }
  | { kind: 'manifest'; mediaType: string; manifest: Manifest };

function invalid(what: string, rule: string): PolyarchError {
  return new PolyarchError('INVALID_MANIFEST', `invalid ${what}: ${rule}`);
}

function parseJsonObject(bytes: Uint8Array | string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw invalid(what, `not JSON (${(err as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(what, 'not a JSON object');
  return v as Record<string, unknown>;
}

/** Checks one descriptor; `where` says which one (`layers[2]`). */
export function validateDescriptor(d: unknown, what: string, where: string): Descriptor {
  if (typeof d !== 'object' || d === null) throw invalid(what, `${where} is not an object`);
  const o = d as Record<string, unknown>;
  if (typeof o.mediaType !== 'string' || o.mediaType === '')
    throw invalid(what, `${where}.mediaType is missing`);
  if (!isDigest(o.digest))
    throw invalid(what, `${where}.digest ${JSON.stringify(o.digest)} is not a valid digest`);
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0)
    throw invalid(what, `${where}.size must be a non-negative integer`);
  if (o.platform !== undefined) {
    const p = o.platform as Record<string, unknown>;
    if (typeof p !== 'object' || p === null || typeof p.os !== 'string' || typeof p.architecture !== 'string')
      throw invalid(what, `${where}.platform needs string os and architecture`);
  }
  if (o.annotations !== undefined) validateStringMap(o.annotations, what, `${where}.annotations`);
  return o as unknown as Descriptor;
}

function validateStringMap(m: unknown, what: string, where: string): void {
  if (typeof m !== 'object' || m === null || Array.isArray(m))
    throw invalid(what, `${where} must be an object`);
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== 'string') throw invalid(what, `${where}["${k}"] must be a string`);
  }
}

/**
 * Parses a manifest, index or manifest list. `headerType` is the Content-Type a registry
 * sent, used when the document itself has no mediaType (allowed by the OCI spec).
 */
export function parseImageDocument(
  bytes: Uint8Array | string,
  what: string,
  headerType?: string,
): ImageDocument {
  const o = parseJsonObject(bytes, what);
  const declared = typeof o.mediaType === 'string' ? o.mediaType : undefined;
  if (
    declared === MediaType.DockerManifestV1 ||
    declared === MediaType.DockerManifestV1Signed ||
    o.schemaVersion === 1
  )
    throw invalid(
      what,
      'Docker schema 1 manifests are not supported (re-push the image with a current client)',
    );
  if (o.schemaVersion !== 2)
    throw invalid(what, `schemaVersion must be 2, got ${JSON.stringify(o.schemaVersion)}`);
  if (
    declared &&
    headerType &&
    declared !== headerType &&
    (isIndexType(headerType) || isManifestType(headerType))
  )
    throw invalid(what, `mediaType ${declared} does not match the Content-Type ${headerType}`);
  let mediaType = declared ?? headerType;
  if (!mediaType || !(isIndexType(mediaType) || isManifestType(mediaType))) {
    // Shape decides when neither the document nor the transport names a known type.
    if (Array.isArray(o.manifests)) mediaType = MediaType.OciIndex;
    else if (o.config !== undefined) mediaType = MediaType.OciManifest;
    else throw invalid(what, `unknown media type ${JSON.stringify(mediaType ?? null)}`);
  }
  if (isIndexType(mediaType)) {
    if (!Array.isArray(o.manifests)) throw invalid(what, 'an index needs a manifests array');
    if (o.config !== undefined || o.layers !== undefined)
      throw invalid(what, 'an index must not have config or layers');
    o.manifests.forEach((d, i) => {
      validateDescriptor(d, what, `manifests[${i}]`);
    });
    if (o.annotations !== undefined) validateStringMap(o.annotations, what, 'annotations');
    if (o.subject !== undefined) validateDescriptor(o.subject, what, 'subject');
    return { kind: 'index', mediaType, index: o as unknown as Index };
  }
  if (o.manifests !== undefined) throw invalid(what, 'a manifest must not have manifests');
  validateDescriptor(o.config, what, 'config');
  if (!Array.isArray(o.layers)) throw invalid(what, 'a manifest needs a layers array');
  o.layers.forEach((d, i) => {
    validateDescriptor(d, what, `layers[${i}]`);
  });
  if (o.annotations !== undefined) validateStringMap(o.annotations, what, 'annotations');
  if (o.subject !== undefined) validateDescriptor(o.subject, what, 'subject');
  return { kind: 'manifest', mediaType, manifest: o as unknown as Manifest };
}

/** Parses an image config blob and checks what running and rebuilding rely on. */
export function parseImageConfig(bytes: Uint8Array | string, what: string): ImageConfig {
  const o = parseJsonObject(bytes, what);
  if (typeof o.architecture !== 'string' || o.architecture === '')
    throw invalid(what, 'architecture is missing');
  if (typeof o.os !== 'string' || o.os === '') throw invalid(what, 'os is missing');
  const rootfs = o.rootfs as Record<string, unknown> | undefined;
  if (rootfs?.type !== 'layers' || !Array.isArray(rootfs.diff_ids))
    throw invalid(what, 'rootfs must be {"type":"layers","diff_ids":[…]}');
  rootfs.diff_ids.forEach((d, i) => {
    if (!isDigest(d)) throw invalid(what, `rootfs.diff_ids[${i}] ${JSON.stringify(d)} is not a valid digest`);
  });
  return o as unknown as ImageConfig;
}

/** Serialises a document the way polyarch writes all JSON blobs: compact, key order as given. */
export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** True if `d` refers to `digest` (a convenience for readable filters). */
export function refersTo(d: Descriptor, digest: Digest): boolean {
  return d.digest === digest;
}
