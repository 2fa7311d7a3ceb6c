/**
 * Views of the store for the CLI's `images`, `tag`, `rmi` and `du`: typed rows, no printing.
 *
 *   const rows = await listImages(store);          // one row per (ref, platform)
 *   const ref = await lookupRef(store, 'busybox'); // as given, normalised, or an image ID
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
  walkIndex,
} from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';
import { familiarName, normalizeName } from './refname.js';
import type { ContentStore, GcResult, NamedRef } from './store.js';

/**
 * Names under this prefix are the store's own bookkeeping (src/attest: an image's attestations,
 * `polyarch.referrers/sha256-<hex>`), not images: listings and ID lookups skip them.
 */
export const REFERRERS_NAME_PREFIX = 'polyarch.referrers/';

async function imageRefs(store: ContentStore): Promise<NamedRef[]> {
  return (await store.refs()).filter((r) => !r.name.startsWith(REFERRERS_NAME_PREFIX));
}

/**
 * Removes the referrer indexes (attestations) whose subject no image of the store reaches any
 * more, so that gc collects them with the image they described.
 */
export async function dropOrphanReferrers(store: ContentStore): Promise<number> {
  const all = await store.refs();
  const referrers = all.filter((r) => r.name.startsWith(REFERRERS_NAME_PREFIX));
  if (referrers.length === 0) return 0;
  const live = await store.reachable([
    ...all.filter((r) => !r.name.startsWith(REFERRERS_NAME_PREFIX)).map((r) => r.descriptor),
    ...(await store.untagged()),
  ]);
  let dropped = 0;
  for (const r of referrers) {
    const subject = r.name.slice(REFERRERS_NAME_PREFIX.length).replace('-', ':') as Digest;
    if (!live.has(subject) && (await store.untag(r.name))) dropped++;
  }
  return dropped;
}

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
  /** The platform manifest's config and layer descriptors (absent when it is not in the store). */
  config?: Descriptor;
  layers?: Descriptor[];
}

export interface LookupOptions {
  /** Default: the temporary local normaliser (refname.ts). */
  normalize?: Normalize;
}

/**
 * Finds `ref` in the store: the name as given first, then its normalised form, then as an
 * image ID (a hex prefix of a ref's digest, `sha256:` optional, like docker's short IDs).
 * Returns every name an ID matches; an ID matching two different images is an error.
 */
export async function lookupRefs(
  store: ContentStore,
  ref: string,
  opts: LookupOptions = {},
): Promise<NamedRef[]> {
  const normalize = opts.normalize ?? normalizeName;
  for (const name of new Set([ref, normalize(ref)])) {
    const descriptor = await store.resolve(name);
    if (descriptor) return [{ name, descriptor }];
  }
  const id = /^(?:sha256:)?([0-9a-f]{4,64})$/.exec(ref)?.[1];
  if (id === undefined) return [];
  let matches = (await imageRefs(store)).filter((r) => digestHex(r.descriptor.digest).startsWith(id));
  // An untagged image is reachable by its ID alone; it goes by its digest.
  if (matches.length === 0)
    matches = (await store.untagged())
      .filter((d) => digestHex(d.digest).startsWith(id))
      .map((d) => ({ name: d.digest, descriptor: d }));
  const digests = new Set(matches.map((m) => m.descriptor.digest));
  if (digests.size > 1)
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `image ID "${ref}" is ambiguous: it matches ${[...digests].join(', ')}`,
    );
  return matches;
}

/** The one image `ref` names (see lookupRefs), or undefined. */
export async function lookupRef(
  store: ContentStore,
  ref: string,
  opts: LookupOptions = {},
): Promise<NamedRef | undefined> {
  return (await lookupRefs(store, ref, opts))[0];
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
  config: Descriptor;
  layers: Descriptor[];
}

/**
 * The platform manifests under `desc` that are present in the store, with their sizes; nested
 * indexes are descended into (bounded: oci/nested.ts).
 */
async function platformManifests(store: ContentStore, desc: Descriptor): Promise<PlatformManifest[]> {
  if (!(await store.has(desc.digest))) return [];
  if (!isIndexType(desc.mediaType)) return manifestRow(store, desc);
  const what = `index ${desc.digest}`;
  const walk = await walkIndex(
    await store.children(desc),
    async (d) => ((await store.has(d.digest)) ? store.children(d) : undefined),
    what,
    { rootDigest: desc.digest },
  );
  const out: PlatformManifest[] = [];
  for (const { descriptor: child } of walk.leaves) {
    if (isAttestation(child) || !(await store.has(child.digest))) continue;
    out.push(...(await manifestRow(store, child)));
  }
  return out;
}

/** A manifest's row: its platform (the descriptor's, else its config's) and size. */
async function manifestRow(store: ContentStore, desc: Descriptor): Promise<PlatformManifest[]> {
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
  return [{ descriptor: desc, platform, size, config: m.config, layers: m.layers }];
}

/** Whether a `lookupRefs` result is an untagged image (named by its own digest). */
export function isUntagged(ref: NamedRef): boolean {
  return ref.name === ref.descriptor.digest;
}

export interface ListOptions {
  /** Untagged images too (`<none>`), like `docker images -a`. Default false. */
  all?: boolean;
}

/** One row per ref and platform present locally, in index.json order. */
export async function listImages(store: ContentStore, opts: ListOptions = {}): Promise<ImageRow[]> {
  const rows: ImageRow[] = [];
  const untagged = opts.all
    ? (await store.untagged()).map((d) => ({ name: d.digest, descriptor: d }) as NamedRef)
    : [];
  for (const ref of [...(await imageRefs(store)), ...untagged]) {
    const { name, descriptor } = ref;
    const { repository, tag } = isUntagged(ref)
      ? { repository: '<none>', tag: '<none>' }
      : familiarName(name);
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
      rows.push({
        ...base,
        platform: pm.platform,
        manifestDigest: pm.descriptor.digest,
        size: pm.size,
        config: pm.config,
        layers: pm.layers,
      });
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
  /** Blobs no ref reaches: what `prune` would free, but for those in `inUse`. */
  unreferenced: { blobs: number; bytes: number };
  /** Of the unreferenced blobs, those a running pull, build or run leases (prune keeps them). */
  inUse: { blobs: number; bytes: number };
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
  const leased = await store.inUse();
  const held = loose.filter((b) => leased.has(b.digest));
  return {
    blobs: all.length,
    bytes: all.reduce((n, b) => n + b.size, 0),
    refs,
    unreferenced: { blobs: loose.length, bytes: loose.reduce((n, b) => n + b.size, 0) },
    inUse: { blobs: held.length, bytes: held.reduce((n, b) => n + b.size, 0) },
  };
}

/** Tags `dst` (normalised) to what `src` names; returns the stored names. */
export async function tagImage(
  store: ContentStore,
  src: string,
  dst: string,
  opts: LookupOptions = {},
): Promise<{ source: string; target: string; descriptor: Descriptor }> {
  const found = await lookupRef(store, src, opts);
  if (!found) throw new PolyarchError('NOT_FOUND', `no such image "${src}" in the local store`);
  const target = (opts.normalize ?? normalizeName)(dst);
  await store.tag(target, found.descriptor);
  return { source: found.name, target, descriptor: found.descriptor };
}

export interface RemoveOptions extends LookupOptions {
  /** Let an image ID untag every name of that image (docker's -f); default false. */
  force?: boolean;
}

/**
 * Untags every ref (all must exist, else nothing changes and the error names the first
 * missing one), then collects the blobs no ref reaches any more. An image ID untags its
 * one name, or all of them with `force`.
 */
export async function removeImages(
  store: ContentStore,
  refs: string[],
  opts: RemoveOptions = {},
): Promise<{ untagged: NamedRef[]; freed: GcResult }> {
  const found = new Map<string, NamedRef>();
  for (const ref of refs) {
    const matches = await lookupRefs(store, ref, opts);
    if (matches.length === 0)
      throw new PolyarchError('NOT_FOUND', `no such image "${ref}" in the local store`);
    if (matches.length > 1 && !opts.force)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `image ID "${ref}" is referenced by ${matches.length} names (${matches.map((m) => m.name).join(', ')}): remove them by name or use --force`,
      );
    for (const m of matches) found.set(m.name, m);
  }
  for (const f of found.values())
    if (isUntagged(f)) await store.removeUntagged(f.descriptor.digest);
    else await store.untag(f.name);
  await dropOrphanReferrers(store);
  const freed = await store.gc();
  return { untagged: [...found.values()], freed };
}
