/**
 * `--cache-to` / `--cache-from` specs in buildx's syntax (CSV of key=value; a bare word is a
 * registry ref): `type=registry,ref=R[,mode=min|max][,image-manifest=…][,oci-mediatypes=…]
 * [,compression=gzip|zstd|uncompressed][,compression-level=N][,ignore-error=…]`,
 * `type=local,dest=DIR` / `type=local,src=DIR`, `type=inline`.
 */
import { resolve } from 'node:path';
import type { Compression } from '../../oci/index.js';
import { parseReference } from '../../oci/reference.js';
import { UsageError } from '../../util/errors.js';
import { splitCsv } from '../export/outputs.js';

export type CacheType = 'registry' | 'local' | 'inline';

export interface CacheSpec {
  raw: string;
  type: CacheType;
  /** type=registry: the cache reference. */
  ref?: string;
  /** type=local: the OCI layout directory (dest for --cache-to, src for --cache-from), absolute. */
  dir?: string;
  /** min: the exported image's steps; max: every step of every stage. Default min, as buildx. */
  mode: 'min' | 'max';
  /** The ref is an image manifest (true) or an index holding one (false, buildx's default). */
  imageManifest: boolean;
  ociMediaTypes: boolean;
  compression: Compression;
  compressionLevel?: number;
  /** A failed export is a warning instead of an error. */
  ignoreError: boolean;
}

const bool = (raw: string, k: string, v: string): boolean => {
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw new UsageError(`invalid cache spec "${raw}": ${k}=${v}: expected true or false`);
};

/** Parses one spec; `dir` is `export` (--cache-to) or `import` (--cache-from). */
export function parseCacheSpec(raw: string, direction: 'export' | 'import', cwd = process.cwd()): CacheSpec {
  const fields = splitCsv(raw);
  const kv = new Map<string, string>();
  for (const f of fields) {
    const eq = f.indexOf('=');
    if (eq < 0) {
      if (fields.length === 1) kv.set('ref', f);
      else throw new UsageError(`invalid cache spec "${raw}": "${f}" is not key=value`);
    } else kv.set(f.slice(0, eq).trim().toLowerCase(), f.slice(eq + 1));
  }
  const type = kv.get('type') ?? (kv.has('ref') ? 'registry' : undefined);
  if (type === undefined) throw new UsageError(`invalid cache spec "${raw}": type= is required`);
  if (type !== 'registry' && type !== 'local' && type !== 'inline')
    throw new UsageError(
      `invalid cache spec "${raw}": type=${type} is not supported (registry, local or inline)`,
    );
  const allowed = new Set(['type']);
  if (type === 'registry')
    for (const k of ['ref', 'mode', 'image-manifest', 'oci-mediatypes']) allowed.add(k);
  if (type === 'local')
    for (const k of [direction === 'export' ? 'dest' : 'src', 'mode', 'oci-mediatypes', 'image-manifest'])
      allowed.add(k);
  if (direction === 'export' && type !== 'inline')
    for (const k of ['compression', 'compression-level', 'force-compression', 'ignore-error']) allowed.add(k);
  if (direction === 'export' && type === 'inline') allowed.add('ignore-error');
  for (const k of kv.keys())
    if (!allowed.has(k))
      throw new UsageError(
        `invalid cache spec "${raw}": ${k}= is not an attribute of ${direction === 'export' ? '--cache-to' : '--cache-from'} type=${type}`,
      );
  const spec: CacheSpec = {
    raw,
    type,
    mode: 'min',
    imageManifest: false,
    ociMediaTypes: true,
    compression: 'gzip',
    ignoreError: false,
  };
  if (type === 'registry') {
    const ref = kv.get('ref');
    if (!ref) throw new UsageError(`invalid cache spec "${raw}": type=registry needs ref=`);
    try {
      parseReference(ref);
    } catch (err) {
      throw new UsageError(`invalid cache spec "${raw}": ref=${ref}: ${(err as Error).message}`);
    }
    spec.ref = ref;
  }
  if (type === 'local') {
    const k = direction === 'export' ? 'dest' : 'src';
    const d = kv.get(k);
    if (!d) throw new UsageError(`invalid cache spec "${raw}": type=local needs ${k}=`);
    spec.dir = resolve(cwd, d);
  }
  const mode = kv.get('mode');
  if (mode !== undefined) {
    if (mode !== 'min' && mode !== 'max')
      throw new UsageError(`invalid cache spec "${raw}": mode=${mode}: expected min or max`);
    spec.mode = mode;
  }
  if (kv.has('image-manifest')) spec.imageManifest = bool(raw, 'image-manifest', kv.get('image-manifest')!);
  if (kv.has('oci-mediatypes')) spec.ociMediaTypes = bool(raw, 'oci-mediatypes', kv.get('oci-mediatypes')!);
  if (kv.has('ignore-error')) spec.ignoreError = bool(raw, 'ignore-error', kv.get('ignore-error')!);
  if (kv.has('force-compression')) bool(raw, 'force-compression', kv.get('force-compression')!);
  const c = kv.get('compression');
  if (c !== undefined) {
    if (c !== 'gzip' && c !== 'zstd' && c !== 'uncompressed')
      throw new UsageError(
        `invalid cache spec "${raw}": compression=${c}: expected gzip, zstd or uncompressed`,
      );
    spec.compression = c;
  }
  const lvl = kv.get('compression-level');
  if (lvl !== undefined) {
    const n = Number(lvl);
    const max = spec.compression === 'zstd' ? 22 : 9;
    if (!/^\d+$/.test(lvl) || n > max)
      throw new UsageError(`invalid cache spec "${raw}": compression-level=${lvl}: expected 0 to ${max}`);
    spec.compressionLevel = n;
  }
  if (spec.imageManifest && !spec.ociMediaTypes)
    throw new UsageError(`invalid cache spec "${raw}": image-manifest=true needs oci-mediatypes=true`);
  return spec;
}
