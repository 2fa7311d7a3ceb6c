/**
 * Base images for a build: resolve `FROM name` for one platform, then unpack its layers into
 * committed snapshots keyed by chain id (shared with every other build and with `run`).
 *
 *   const img = await resolveImage('busybox', platform, { store, pull: false });
 *   const keys = await unpackImage(img, { store, snapshots });   // snapshot keys, bottom first
 *
 * Resolution (SPEC § Base image resolution): the local store's image when it has the platform
 * (no network); otherwise the registry (mirrors first, `$POLYARCH_CONFIG`), keeping what it
 * pulls; `pull: true` always asks the registry. An image lacking the platform is an error naming
 * the platforms it has — never another architecture.
 */
import type { ContentStore } from '../content/index.js';
import {
  type Descriptor,
  type Digest,
  type ImageConfig,
  type Manifest,
  isIndexType,
  parseImageConfig,
  parseImageDocument,
} from '../oci/index.js';
import { formatPlatform, newMatcher, type Platform } from '../platform/index.js';
import { formatReference, parseReference } from '../oci/reference.js';
import { chainIds, type Snapshotter, unpackImage as unpackSnapshots } from '../snapshot/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';

export interface ResolvedImage {
  /** Normalised name as given (`docker.io/library/busybox:latest`). */
  name: string;
  /** Digest of the root the name points at (index or manifest). */
  rootDigest: Digest;
  /** The platform manifest's digest. */
  manifestDigest: Digest;
  manifest: Manifest;
  config: ImageConfig;
  layers: { descriptor: Descriptor; diffId: Digest; chainId: Digest }[];
}

export interface ResolveImageOptions {
  store: ContentStore;
  /** Always ask the registry (`--pull`). Default false. */
  pull?: boolean;
  env?: NodeJS.ProcessEnv;
  warn?: (message: string) => void;
}

function platformOf(d: Descriptor): Platform | undefined {
  return d.platform as Platform | undefined;
}

/**
 * The image for `platform` from what the store holds under `name` (or at `rootDesc`, what a
 * pull just stored: the name may be gone again, removed by a concurrent rmi, while the build's
 * lease keeps the content), or undefined when incomplete.
 */
export async function imageFromStore(
  store: ContentStore,
  name: string,
  platform: Platform,
  rootDesc?: Descriptor,
): Promise<ResolvedImage | { missing: string } | undefined> {
  const root = rootDesc ?? (await store.resolve(name));
  if (!root) return undefined;
  let manifestDesc: Descriptor = root;
  if (isIndexType(root.mediaType)) {
    if (!(await store.has(root.digest))) return undefined;
    const doc = parseImageDocument(await store.readBlob(root.digest), `index ${name}`, root.mediaType);
    if (doc.kind !== 'index') return undefined;
    const m = newMatcher(platform);
    const entries = doc.index.manifests.filter(
      (d) => d.platform !== undefined && d.annotations?.['vnd.docker.reference.type'] === undefined,
    );
    const found = entries.find((d) => m.match(platformOf(d)!));
    if (!found)
      return {
        missing: `${name}: no image for platform ${formatPlatform(platform)} (it has ${entries.map((d) => formatPlatform(platformOf(d)!)).join(', ') || 'none'})`,
      };
    manifestDesc = found;
  }
  if (!(await store.has(manifestDesc.digest))) return undefined;
  const doc = parseImageDocument(
    await store.readBlob(manifestDesc.digest),
    `manifest ${name}`,
    manifestDesc.mediaType,
  );
  if (doc.kind !== 'manifest') return undefined;
  const man = doc.manifest;
  if (!(await store.has(man.config.digest))) return undefined;
  for (const l of man.layers) if (!(await store.has(l.digest))) return undefined;
  const config = parseImageConfig(await store.readBlob(man.config.digest), `config of ${name}`);
  if (!isIndexType(root.mediaType)) {
    const have = {
      os: config.os,
      architecture: config.architecture,
      ...(config.variant ? { variant: config.variant } : {}),
    };
    if (!newMatcher(platform).match(have))
      return {
        missing: `${name}: no image for platform ${formatPlatform(platform)} (it has ${formatPlatform(have)})`,
      };
  }
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== man.layers.length)
    throw new PolyarchError(
      'INVALID_IMAGE',
      `${name}: the config lists ${diffIds.length} diff ids for ${man.layers.length} layers`,
    );
  const chains = chainIds(diffIds);
  return {
    name,
    rootDigest: root.digest,
    manifestDigest: manifestDesc.digest,
    manifest: man,
    config,
    layers: man.layers.map((descriptor, i) => ({
      descriptor,
      diffId: diffIds[i]!,
      chainId: chains[i]! as Digest,
    })),
  };
}

/** Resolves `ref` for `platform`: the store first (unless `pull`), else the registry. */
export async function resolveImage(
  ref: string,
  platform: Platform,
  opts: ResolveImageOptions,
): Promise<ResolvedImage> {
  let name: string;
  try {
    name = formatReference(parseReference(ref));
  } catch (err) {
    throw new PolyarchError('INVALID_ARGUMENT', `invalid image reference "${ref}": ${errorMessage(err)}`, {
      cause: err,
    });
  }
  if (!opts.pull) {
    const local = await imageFromStore(opts.store, name, platform);
    if (local && 'name' in local) return local;
  }
  // Loaded only to pull: the registry client (undici) costs tens of ms to load, and a base
  // image already in the store never needs it.
  const { pull: pullImage } = await import('../image/pull.js');
  const pulled = await pullImage(name, {
    store: opts.store,
    platforms: [formatPlatform(platform)],
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.warn ? { warn: opts.warn } : {}),
  });
  const got = await imageFromStore(opts.store, name, platform, pulled.descriptor);
  if (got && 'name' in got) return got;
  throw new PolyarchError(
    'NOT_FOUND',
    got && 'missing' in got ? got.missing : `${name}: the pulled image is incomplete in the store`,
  );
}

export interface UnpackOptions {
  store: ContentStore;
  snapshots: Snapshotter;
}

/** Extracts each layer once (key = its chain id, see snapshot/unpack.ts) and returns the keys, bottom-most first. */
export async function unpackImage(img: ResolvedImage, opts: UnpackOptions): Promise<string[]> {
  const r = await unpackSnapshots({
    store: opts.store,
    snapshotter: opts.snapshots,
    manifest: img.manifest,
    what: img.name,
  });
  return r.chain;
}
