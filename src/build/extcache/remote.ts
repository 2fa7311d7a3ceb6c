/**
 * Reading and writing a cache (format.ts) where it is kept: a registry reference or an OCI
 * layout directory. Reads fetch manifests and configs only; layer blobs move one at a time,
 * when asked (`fetchLayer`), verified by digest on the way into the content store.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { ContentStore } from '../../content/index.js';
import {
  type Descriptor,
  type Digest,
  encodeJson,
  type Index,
  type Manifest,
  MediaType,
  parseImageDocument,
  sha256Digest,
} from '../../oci/index.js';
import { parseReference, type Reference, withDigest } from '../../oci/reference.js';
import type { RegistryClient } from '../../registry/client.js';
import { RegistryError } from '../../registry/errors.js';
import { errorMessage } from '../../util/errors.js';
import { tempPath } from '../../util/fs.js';
import {
  CACHE_ARTIFACT_TYPE,
  CACHE_CONFIG_TYPE,
  type CacheLayer,
  type CacheRecordV1,
  parseCacheConfig,
  parseInline,
} from './format.js';

/** Where a cache lives. */
export type CacheLocation =
  | { kind: 'registry'; ref: Reference; client: RegistryClient }
  | { kind: 'local'; dir: string };

export const describe = (l: CacheLocation): string =>
  l.kind === 'registry' ? `${l.ref.domain}/${l.ref.path}${l.ref.tag ? `:${l.ref.tag}` : ''}` : l.dir;

const blobFile = (dir: string, d: Digest): string => join(dir, 'blobs', 'sha256', d.slice('sha256:'.length));

const MAX_DOC = 4 << 20;

async function readLocalBlob(dir: string, d: Descriptor): Promise<Buffer> {
  if (d.size > MAX_DOC) throw new Error(`${d.digest}: ${d.size} bytes is too large for a cache document`);
  const b = await readFile(blobFile(dir, d.digest));
  if (sha256Digest(b) !== d.digest)
    throw new Error(`blob ${d.digest} has other content (digest ${sha256Digest(b)})`);
  return b;
}

async function getDoc(
  loc: CacheLocation,
  d: Descriptor | undefined,
): Promise<{ bytes: Buffer; mediaType: string; digest?: string } | undefined> {
  if (loc.kind === 'registry') {
    const ref = d ? withDigest({ domain: loc.ref.domain, path: loc.ref.path }, d.digest) : loc.ref;
    try {
      const m = await loc.client.getManifest(ref, { mirrors: false });
      return { bytes: m.bytes, mediaType: m.mediaType, digest: m.digest };
    } catch (err) {
      if (
        !d &&
        err instanceof RegistryError &&
        (err.status === 404 || err.hasCode('MANIFEST_UNKNOWN') || err.hasCode('NAME_UNKNOWN'))
      )
        return undefined;
      throw err;
    }
  }
  if (!d) {
    const text = await readFile(join(loc.dir, 'index.json')).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    return text ? { bytes: text, mediaType: MediaType.OciIndex } : undefined;
  }
  return { bytes: await readLocalBlob(loc.dir, d), mediaType: d.mediaType };
}

async function getBlob(loc: CacheLocation, d: Descriptor): Promise<Buffer> {
  if (loc.kind === 'registry') return loc.client.fetchConfig(loc.ref, d);
  return readLocalBlob(loc.dir, d);
}

export interface ReadCache {
  records: CacheRecordV1[];
  /** The digest of what the registry ref names (to see whether another writer changed it). */
  digest?: string;
  /** The cache manifest's layers (undefined for an inline cache read from an image). */
  layers?: Descriptor[];
}

/**
 * The records of the cache at `loc`; undefined when there is none there. A polyarch cache
 * manifest (or an index holding one), or an image (index) whose configs carry inline records.
 * Throws on a malformed cache.
 */
export async function readCache(loc: CacheLocation): Promise<ReadCache | undefined> {
  const top = await getDoc(loc, undefined);
  if (!top) return undefined;
  let doc = parseImageDocument(top.bytes, `cache ${describe(loc)}`, top.mediaType);
  if (doc.kind === 'index') {
    const entry =
      doc.index.manifests.find((m) => m.artifactType === CACHE_ARTIFACT_TYPE) ??
      (loc.kind === 'local' ? doc.index.manifests[0] : undefined);
    if (entry) {
      const got = await getDoc(loc, entry);
      doc = parseImageDocument(got!.bytes, `cache ${describe(loc)}`, entry.mediaType);
      if (doc.kind === 'index') {
        // A local layout's index.json names the cache index: one more level.
        const inner = doc.index.manifests.find((m) => m.artifactType === CACHE_ARTIFACT_TYPE);
        if (!inner) throw new Error('no polyarch cache manifest in the index');
        const g2 = await getDoc(loc, inner);
        doc = parseImageDocument(g2!.bytes, `cache ${describe(loc)}`, inner.mediaType);
      }
    } else {
      // An image index: inline records in each platform's config.
      const records: CacheRecordV1[] = [];
      for (const m of doc.index.manifests) {
        if (!m.platform) continue;
        const got = await getDoc(loc, m);
        const md = parseImageDocument(got!.bytes, `image ${m.digest}`, m.mediaType);
        if (md.kind === 'manifest') records.push(...(await inlineOf(loc, md.manifest)));
      }
      return { records, ...(top.digest ? { digest: top.digest } : {}) };
    }
  }
  if (doc.kind !== 'manifest') throw new Error('not a cache manifest');
  const man = doc.manifest;
  const digest = top.digest ? { digest: top.digest } : {};
  if (man.config.mediaType !== CACHE_CONFIG_TYPE) return { records: await inlineOf(loc, man), ...digest };
  const cfg = await getBlob(loc, man.config);
  return { records: parseCacheConfig(cfg, man.layers), layers: man.layers, ...digest };
}

async function inlineOf(loc: CacheLocation, man: Manifest): Promise<CacheRecordV1[]> {
  const cfg = JSON.parse((await getBlob(loc, man.config)).toString('utf8')) as {
    rootfs?: { diff_ids?: string[] };
  };
  return parseInline(cfg, man.layers, cfg.rootfs?.diff_ids ?? []);
}

/** Whether the layer blob is there with its size (registry: HEAD; local: hashed). */
export async function layerPresent(loc: CacheLocation, l: CacheLayer): Promise<string | undefined> {
  if (loc.kind === 'registry') {
    const size = await loc.client.blobSize(loc.ref, l.digest);
    if (size === undefined) return `layer ${l.digest} is missing`;
    if (size !== l.size) return `layer ${l.digest} has ${size} bytes, not ${l.size}`;
    return undefined;
  }
  const p = blobFile(loc.dir, l.digest);
  const st = await stat(p).catch(() => undefined);
  if (!st) return `layer ${l.digest} is missing`;
  if (st.size !== l.size) return `layer ${l.digest} has ${st.size} bytes, not ${l.size}`;
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  const got = `sha256:${h.digest('hex')}`;
  if (got !== l.digest) return `layer ${l.digest} has other content (digest ${got})`;
  // On local disk the diff id is cheap to check too (a registry's is checked when fetched).
  const { openLayer } = await import('../../layer/index.js');
  const { stream } = await openLayer(createReadStream(p));
  const u = createHash('sha256');
  for await (const c of stream) u.update(c as Buffer);
  const diffId = `sha256:${u.digest('hex')}`;
  return diffId === l.diffId ? undefined : `layer ${l.digest} uncompresses to ${diffId}, not ${l.diffId}`;
}

/** Copies a layer blob into the store (verified by the store's writer). */
export async function fetchLayer(loc: CacheLocation, l: CacheLayer, store: ContentStore): Promise<void> {
  if (await store.has(l.digest)) return;
  const what = `cache layer ${l.digest} from ${describe(loc)}`;
  if (loc.kind === 'registry') {
    const w = await store.writer({ digest: l.digest, size: l.size, what });
    await loc.client.fetchBlob(loc.ref, { mediaType: l.mediaType, digest: l.digest, size: l.size }, w);
    return;
  }
  await store.ingest(createReadStream(blobFile(loc.dir, l.digest)), { digest: l.digest, size: l.size, what });
}

/** What to write: the merged records and where each new layer's bytes are. */
export interface CacheWrite {
  records: CacheRecordV1[];
  /** Blobs this export adds, readable from the store. */
  blobs: Descriptor[];
  /** Blobs already at the destination (from the cache merged with). */
  present: Set<string>;
  imageManifest: boolean;
  oci: boolean;
  store: ContentStore;
}

function documents(w: CacheWrite): {
  config: Buffer;
  manifest: Buffer;
  manifestType: string;
  index?: Buffer;
  indexType: string;
  layers: Descriptor[];
} {
  const config = encodeJson({ version: 1, records: w.records });
  const seen = new Map<string, Descriptor>();
  for (const r of w.records)
    if (r.layer && !seen.has(r.layer.digest))
      seen.set(r.layer.digest, { mediaType: r.layer.mediaType, digest: r.layer.digest, size: r.layer.size });
  const layers = [...seen.values()];
  const manifestType = w.oci ? MediaType.OciManifest : MediaType.DockerManifest;
  const man: Manifest & { artifactType?: string } = {
    schemaVersion: 2,
    mediaType: manifestType,
    ...(w.oci ? { artifactType: CACHE_ARTIFACT_TYPE } : {}),
    config: { mediaType: CACHE_CONFIG_TYPE, digest: sha256Digest(config), size: config.length },
    layers,
  } as Manifest;
  const manifest = encodeJson(man);
  const indexType = w.oci ? MediaType.OciIndex : MediaType.DockerManifestList;
  if (w.imageManifest) return { config, manifest, manifestType, indexType, layers };
  const index = encodeJson({
    schemaVersion: 2,
    mediaType: indexType,
    manifests: [
      {
        mediaType: manifestType,
        digest: sha256Digest(manifest),
        size: manifest.length,
        artifactType: CACHE_ARTIFACT_TYPE,
      },
    ],
  } as Index);
  return { config, manifest, manifestType, index, indexType, layers };
}

/** Pushes the cache to the registry ref (blobs, config, manifest, then the index under the tag). */
/**
 * Pushes the cache to the registry ref: blobs, config, the manifest, then (by default) the
 * index under the tag. `beforeTag` runs right before the document that moves the tag is put
 * (after every blob is up, so that its check is close to the write); false stops the write.
 */
export async function writeRegistry(
  loc: Extract<CacheLocation, { kind: 'registry' }>,
  w: CacheWrite,
  beforeTag: () => Promise<boolean> = async () => true,
): Promise<boolean> {
  const { client, ref } = loc;
  const docs = documents(w);
  for (const b of w.blobs) {
    if (w.present.has(b.digest)) continue;
    await client.pushBlob(ref, b, (s, e) =>
      e <= s
        ? bufferStream(Buffer.alloc(0))
        : createReadStream(w.store.blobPath(b.digest), { start: s, end: e - 1 }),
    );
  }
  const cfgDesc: Descriptor = {
    mediaType: CACHE_CONFIG_TYPE,
    digest: sha256Digest(docs.config),
    size: docs.config.length,
  };
  await client.pushBlob(ref, cfgDesc, (s, e) => bufferStream(docs.config.subarray(s, e)));
  const tag = ref.tag ?? 'latest';
  if (docs.index)
    await client.putManifest(ref, sha256Digest(docs.manifest), docs.manifest, docs.manifestType);
  if (!(await beforeTag())) return false;
  if (docs.index) await client.putManifest(ref, tag, docs.index, docs.indexType);
  else await client.putManifest(ref, tag, docs.manifest, docs.manifestType);
  return true;
}

function bufferStream(b: Buffer): PassThrough {
  const p = new PassThrough();
  p.end(b);
  return p;
}

/**
 * Writes the cache as an OCI layout at `dir`, atomically: a temp dir next to it (blobs of the
 * cache merged with hard-linked from the old one), renamed into place.
 */
export async function writeLocal(dir: string, w: CacheWrite): Promise<void> {
  // Only a cache is replaced: never a directory of something else (a project, a state root).
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  if (entries.length > 0 && !(await isCacheLayout(dir)))
    throw new Error(`${dir} exists and is not a polyarch cache layout: refusing to replace it`);
  const tmp = tempPath(dir);
  const blobs = join(tmp, 'blobs', 'sha256');
  // Step by step: Node's recursive mkdir never returns under some pseudo filesystems (/proc).
  await mkdir(dirname(dir), { recursive: true });
  await mkdir(tmp);
  try {
    await mkdir(join(tmp, 'blobs'));
    await mkdir(blobs);
    const docs = documents(w);
    const put = async (d: string, data: Buffer) => writeFile(join(blobs, d.slice(7)), data);
    const added = new Set(w.blobs.map((b) => b.digest));
    for (const l of docs.layers) {
      const dst = join(blobs, l.digest.slice(7));
      const src =
        added.has(l.digest) && !w.present.has(l.digest)
          ? w.store.blobPath(l.digest)
          : blobFile(dir, l.digest);
      await link(src, dst).catch(() => copyFile(src, dst));
    }
    await put(sha256Digest(docs.config), docs.config);
    await put(sha256Digest(docs.manifest), docs.manifest);
    let root: Descriptor = {
      mediaType: docs.manifestType,
      digest: sha256Digest(docs.manifest),
      size: docs.manifest.length,
    };
    if (docs.index) {
      await put(sha256Digest(docs.index), docs.index);
      root = { mediaType: docs.indexType, digest: sha256Digest(docs.index), size: docs.index.length };
    }
    await writeFile(join(tmp, 'oci-layout'), encodeJson({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(tmp, 'index.json'),
      encodeJson({
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [
          {
            ...root,
            artifactType: CACHE_ARTIFACT_TYPE,
            annotations: { 'org.opencontainers.image.ref.name': 'latest' },
          },
        ],
      }),
    );
    const old = await stat(dir).catch(() => undefined);
    if (old) {
      const aside = tempPath(dir);
      await rename(dir, aside);
      try {
        await rename(tmp, dir);
      } catch (err) {
        await rename(aside, dir).catch(() => undefined);
        throw err;
      }
      await rm(aside, { recursive: true, force: true });
    } else await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw new Error(`writing ${dir}: ${errorMessage(err)}`);
  }
}

async function isCacheLayout(dir: string): Promise<boolean> {
  try {
    const idx = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as Index;
    return idx.manifests.length === 1 && idx.manifests[0]!.artifactType === CACHE_ARTIFACT_TYPE;
  } catch {
    return false;
  }
}

export function locationOf(
  spec: { type: string; ref?: string; dir?: string },
  client: () => RegistryClient,
): CacheLocation {
  if (spec.type === 'local') return { kind: 'local', dir: spec.dir! };
  return { kind: 'registry', ref: parseReference(spec.ref!), client: client() };
}
