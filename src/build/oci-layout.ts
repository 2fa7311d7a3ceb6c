/**
 * An image in an OCI image layout directory as a build source (`--build-context
 * NAME=oci-layout://PATH[:tag][@digest]`), resolved for one platform.
 *
 *   const img = await resolveLayoutImage('oci-layout:///srv/layout:v1', platform, { store });
 *
 * The image is found by its tag (`org.opencontainers.image.ref.name` in index.json, `latest`
 * when neither tag nor digest is given) or by digest; the blobs that platform needs (index,
 * manifest, config, layers) are copied into the content store, each checked against its
 * digest, so the layout is only read and the rest of the build treats it as any stored image.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContentStore } from '../content/index.js';
import {
  type Descriptor,
  type Digest,
  isIndexType,
  parseImageDocument,
  REF_NAME_ANNOTATION,
} from '../oci/index.js';
import { formatPlatform, newMatcher, type Platform } from '../platform/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { imageFromStore, type ResolvedImage } from './image.js';
import { OCI_LAYOUT_PREFIX } from './named-context.js';

export interface LayoutRef {
  path: string;
  tag?: string;
  digest?: string;
}

/** `oci-layout://PATH[:tag][@digest]` → its parts (the form named-context.ts makes). */
export function parseLayoutKey(key: string): LayoutRef {
  let rest = key.slice(OCI_LAYOUT_PREFIX.length);
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { path: rest, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

function blobPath(layout: string, d: string): string {
  const [alg, hex] = d.split(':');
  if (!alg || !hex || !/^[a-z0-9]+$/.test(alg) || !/^[a-f0-9]+$/.test(hex))
    throw new PolyarchError('INVALID_IMAGE', `invalid digest "${d}" in the OCI layout ${layout}`);
  return join(layout, 'blobs', alg, hex);
}

/** Copies one blob of the layout into the store, verified; present blobs are not copied again. */
async function copyBlob(store: ContentStore, layout: string, d: Descriptor): Promise<void> {
  await store.protect([d.digest]);
  if (await store.has(d.digest)) return;
  const path = blobPath(layout, d.digest);
  if (!(await stat(path).catch(() => undefined))?.isFile())
    throw new PolyarchError('NOT_FOUND', `the OCI layout ${layout} lacks blob ${d.digest}`);
  await store.ingest(createReadStream(path), {
    digest: d.digest,
    size: d.size,
    what: `blob ${d.digest} of the OCI layout ${layout}`,
  });
}

async function readDoc(store: ContentStore, d: Descriptor, what: string) {
  return parseImageDocument(await store.readBlob(d.digest), what, d.mediaType);
}

/** The manifests a layout's index.json lists; a missing or unreadable one names the layout. */
async function layoutEntries(path: string): Promise<Descriptor[]> {
  let index: { manifests?: Descriptor[] };
  try {
    index = JSON.parse(await readFile(join(path, 'index.json'), 'utf8')) as { manifests?: Descriptor[] };
  } catch (err) {
    throw new PolyarchError('NOT_FOUND', `reading the OCI layout ${path}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return Array.isArray(index.manifests) ? index.manifests : [];
}

/**
 * The digest of the image a layout reference names (its tag in index.json, `latest` when it
 * has neither tag nor digest), as buildx resolves it before handing a layout to BuildKit.
 */
export async function layoutDigest(ref: LayoutRef): Promise<string> {
  if (ref.digest !== undefined) return ref.digest;
  const entries = await layoutEntries(ref.path);
  const tag = ref.tag ?? 'latest';
  const found = entries.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
  if (!found) {
    const tags = entries.map((m) => m.annotations?.[REF_NAME_ANNOTATION]).filter((t) => t !== undefined);
    throw new PolyarchError(
      'NOT_FOUND',
      `the OCI layout ${ref.path} has no image tagged "${tag}" (it has ${tags.length ? tags.map((t) => `"${t}"`).join(', ') : 'no tags'})`,
    );
  }
  return found.digest;
}

/** The layout's image for `platform` (see the module header). */
export async function resolveLayoutImage(
  key: string,
  platform: Platform,
  opts: { store: ContentStore },
): Promise<ResolvedImage> {
  const ref = parseLayoutKey(key);
  const name = key;
  const entries = await layoutEntries(ref.path);
  let root: Descriptor | undefined;
  if (ref.digest !== undefined) {
    root = entries.find((m) => m.digest === ref.digest);
    if (!root) {
      // Not named in index.json: any image document among its blobs.
      const path = blobPath(ref.path, ref.digest);
      const bytes = await readFile(path).catch(() => undefined);
      if (!bytes)
        throw new PolyarchError('NOT_FOUND', `the OCI layout ${ref.path} has no blob ${ref.digest}`);
      const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
      if (typeof mediaType !== 'string')
        throw new PolyarchError(
          'INVALID_IMAGE',
          `${ref.digest} in ${ref.path} is not an image manifest or index`,
        );
      root = { mediaType, digest: ref.digest as Digest, size: bytes.length };
    }
  } else {
    const tag = ref.tag ?? 'latest';
    root = entries.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
    if (!root) {
      const tags = entries.map((m) => m.annotations?.[REF_NAME_ANNOTATION]).filter((t) => t !== undefined);
      throw new PolyarchError(
        'NOT_FOUND',
        `the OCI layout ${ref.path} has no image tagged "${tag}" (it has ${tags.length ? tags.map((t) => `"${t}"`).join(', ') : 'no tags'})`,
      );
    }
  }
  // The platform's manifest, then its config and layers, copied into the store.
  await copyBlob(opts.store, ref.path, root);
  let manifestDesc = root;
  if (isIndexType(root.mediaType)) {
    const doc = await readDoc(opts.store, root, `index ${name}`);
    if (doc.kind !== 'index') throw new PolyarchError('INVALID_IMAGE', `${name}: the index is not an index`);
    const m = newMatcher(platform);
    const found = doc.index.manifests.find(
      (d) =>
        d.platform !== undefined &&
        d.annotations?.['vnd.docker.reference.type'] === undefined &&
        m.match(d.platform as Platform),
    );
    if (!found) {
      const have = doc.index.manifests
        .filter((d) => d.platform)
        .map((d) => formatPlatform(d.platform as Platform));
      throw new PolyarchError(
        'NOT_FOUND',
        `${name}: no image for platform ${formatPlatform(platform)} (it has ${have.join(', ') || 'none'})`,
      );
    }
    manifestDesc = found;
    await copyBlob(opts.store, ref.path, manifestDesc);
  }
  const doc = await readDoc(opts.store, manifestDesc, `manifest ${name}`);
  if (doc.kind !== 'manifest') throw new PolyarchError('INVALID_IMAGE', `${name}: not an image manifest`);
  await copyBlob(opts.store, ref.path, doc.manifest.config);
  for (const l of doc.manifest.layers) await copyBlob(opts.store, ref.path, l);
  const got = await imageFromStore(opts.store, name, platform, root);
  if (got && 'name' in got) return got;
  throw new PolyarchError(
    'NOT_FOUND',
    got && 'missing' in got ? got.missing : `${name}: the image is incomplete in the layout`,
  );
}
