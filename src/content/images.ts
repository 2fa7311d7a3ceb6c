/**
 * Views of the store for the CLI's `images`, `tag`, `rmi` and `du`: typed rows, no printing.
 *
 *   const rows = await listImages(store);          // one row per (ref, platform)
 *   const ref = await lookupRef(store, 'busybox'); // as given, then normalised
 *   const usage = await diskUsage(store);          // blob count/bytes, per ref
 *   await removeImages(store, ['busybox']);        // untag all (all must exist), then gc
 */
import {
  type Descriptor,
  type Digest,
  digestHex,
  isIndexType,
  isManifestType,
  type PlatformSpec,
  parseImageConfig,
  parseImageDocument,
} from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';
import { familiarName, normalizeName } from './refname.js';
import type { ContentStore, GcResult, NamedRef } from './store.js';

/** Maps a user-typed reference to the stored name; default: the temporary local normaliser. */
export type Normalize = (ref: string) => string;

export interface ImageRow {
  /** The stored reference name. */
  name: string;
  repository: string;
  tag: string;
  /** `os/arch[/variant]`, or `-` when no platform manifest is in the store. */
  platform: string;
  /** First 12 hex digits of the ref's digest (index or manifest). */
  id: string;
  digest: Digest;
  /** The platform manifest's digest (equal to `digest` for a single-platform ref). */
  manifestDigest: Digest | undefined;
  /** Compressed size of config plus layers of that platform. */
  size: number;
}

/** Finds `ref` in the store: the name as given first, then its normalised form. */
export async function lookupRef(
  store: ContentStore,
  ref: string,
  normalize: Normalize = normalizeName,
): Promise<NamedRef | undefined> {
  for (const name of new Set([ref, normalize(ref)])) {
    const descriptor = await store.resolve(name);
    if (descriptor) return { name, descriptor };
  }
  return undefined;
}

export function formatPlatform(p: PlatformSpec): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

function isAttestation(d: Descriptor): boolean {
  return (
    d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
    (d.platform?.os === 'unknown' && d.platform.architecture === 'unknown')
  );
}

interface PlatformManifest {
  descriptor: Descriptor;
  platform: string;
  size: number;
}

/** The platform manifests under `desc` that are present in the store, with their sizes. */
async function platformManifests(store: ContentStore, desc: Descriptor): Promise<PlatformManifest[]> {
  if (!(await store.has(desc.digest))) return [];
  if (isIndexType(desc.mediaType)) {
    const out: PlatformManifest[] = [];
    for (const child of await store.children(desc)) {
      if (isAttestation(child)) continue;
      for (const pm of await platformManifests(store, child)) {
        if (child.platform && isManifestType(child.mediaType)) pm.platform = formatPlatform(child.platform);
        out.push(pm);
      }
    }
    return out;
  }
  if (!isManifestType(desc.mediaType)) return [];
  const doc = parseImageDocument(await store.readBlob(desc.digest), `manifest ${desc.digest}`);
  if (doc.kind !== 'manifest') return [];
  const m = doc.manifest;
  let platform = desc.platform ? formatPlatform(desc.platform) : '-';
  if (!desc.platform && (await store.has(m.config.digest))) {
    const cfg = parseImageConfig(await store.readBlob(m.config.digest), `config ${m.config.digest}`);
    platform = formatPlatform(cfg);
  }
  const size = m.config.size + m.layers.reduce((n, l) => n + l.size, 0);
  return [{ descriptor: desc, platform, size }];
}

/** One row per ref and platform present locally, in index.json order. */
export async function listImages(store: ContentStore): Promise<ImageRow[]> {
  const rows: ImageRow[] = [];
  for (const { name, descriptor } of await store.refs()) {
    const { repository, tag } = familiarName(name);
    const base = {
      name,
      repository,
      tag,
      id: digestHex(descriptor.digest).slice(0, 12),
      digest: descriptor.digest,
    };
    const pms = await platformManifests(store, descriptor);
    if (pms.length === 0) rows.push({ ...base, platform: '-', manifestDigest: undefined, size: 0 });
    for (const pm of pms)
      rows.push({ ...base, platform: pm.platform, manifestDigest: pm.descriptor.digest, size: pm.size });
  }
  return rows;
}

export interface RefUsage {
  name: string;
  /** Blobs reachable from this ref and present in the store. */
  blobs: number;
  bytes: number;
  /** Of those, the bytes no other ref reaches (freed by removing this ref alone). */
  exclusiveBytes: number;
}

export interface DiskUsage {
  blobs: number;
  bytes: number;
  refs: RefUsage[];
  /** Blobs no ref reaches: what `prune` would free. */
  unreferenced: { blobs: number; bytes: number };
}

export async function diskUsage(store: ContentStore): Promise<DiskUsage> {
  const all = await store.listBlobs();
  const sizes = new Map(all.map((b) => [b.digest, b.size]));
  const owners = new Map<Digest, number>();
  const perRef: Array<{ name: string; digests: Digest[] }> = [];
  for (const { name, descriptor } of await store.refs()) {
    const digests = [...(await store.reachable([descriptor]))].filter((d) => sizes.has(d));
    perRef.push({ name, digests });
    for (const d of digests) owners.set(d, (owners.get(d) ?? 0) + 1);
  }
  // Unnamed index.json entries also keep their blobs.
  const idx = await store.readIndex();
  const referenced = await store.reachable(idx.manifests);
  const refs = perRef.map(({ name, digests }) => ({
    name,
    blobs: digests.length,
    bytes: digests.reduce((n, d) => n + sizes.get(d)!, 0),
    exclusiveBytes: digests.filter((d) => owners.get(d) === 1).reduce((n, d) => n + sizes.get(d)!, 0),
  }));
  const loose = all.filter((b) => !referenced.has(b.digest));
  return {
    blobs: all.length,
    bytes: all.reduce((n, b) => n + b.size, 0),
    refs,
    unreferenced: { blobs: loose.length, bytes: loose.reduce((n, b) => n + b.size, 0) },
  };
}

/** Tags `dst` (normalised) to what `src` names; returns the stored names. */
export async function tagImage(
  store: ContentStore,
  src: string,
  dst: string,
  normalize: Normalize = normalizeName,
): Promise<{ source: string; target: string; descriptor: Descriptor }> {
  const found = await lookupRef(store, src, normalize);
  if (!found) throw new PolyarchError('NOT_FOUND', `no such image "${src}" in the local store`);
  const target = normalize(dst);
  await store.tag(target, found.descriptor);
  return { source: found.name, target, descriptor: found.descriptor };
}

/**
 * Untags every ref (all must exist, else nothing changes and the error names the first
 * missing one), then collects the blobs no ref reaches any more.
 */
export async function removeImages(
  store: ContentStore,
  refs: string[],
  normalize: Normalize = normalizeName,
): Promise<{ untagged: NamedRef[]; freed: GcResult }> {
  const found: NamedRef[] = [];
  for (const ref of refs) {
    const f = await lookupRef(store, ref, normalize);
    if (!f) throw new PolyarchError('NOT_FOUND', `no such image "${ref}" in the local store`);
    found.push(f);
  }
  for (const f of found) await store.untag(f.name);
  const freed = await store.gc();
  return { untagged: found, freed };
}
