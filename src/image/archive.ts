/**
 * `save` and `load`: images of the local store to and from tar archives, streaming (a layer
 * is never held in memory), with every blob verified on the way in and out.
 *
 *   await saveArchive({ store, refs: ['busybox'], output: 'bb.tar' });                 // oci-archive
 *   await saveArchive({ store, refs: ['busybox'], output: 'bb.tar', format: 'docker' }); // docker load's
 *   const r = await loadArchive({ store, input: 'bb.tar' });   // r.images: [{ name, descriptor }]
 *
 * oci-archive (default): a tar of an OCI image layout (oci-layout, index.json, blobs/) whose
 * index.json names each ref with `org.opencontainers.image.ref.name` and
 * `io.containerd.image.name` (the full name, as in the store). An index is saved with the
 * platform manifests the store has (a partly pulled index keeps its other entries' references).
 * docker-archive: `manifest.json`, `repositories`, `<config-hex>.json`, `<diff_id-hex>.tar`
 * (uncompressed layers, as skopeo writes them); one platform per image: `platform`, default
 * the host's. A file output is written to a temp file beside it, fsynced, then renamed.
 *
 * load reads either kind (by `oci-layout` + `index.json`, else `manifest.json`), plain or
 * gzip/zstd compressed, in one pass. Nothing reaches the store's blobs/ until the whole
 * archive has been read and checked: blob entries are hashed against their names and sizes,
 * docker layers are recompressed to gzip (the same bytes `import` makes) with their diff_ids
 * checked against the config, and every blob a named image needs must be in the archive or
 * the store (an index may lack some platforms). Only then are the blobs committed and the
 * names tagged; any failure leaves the store as it was. A docker-archive image gets an OCI
 * manifest; its config is kept byte for byte, so its image ID (the config digest) is kept.
 * An oci-archive entry without a name is loaded but not tagged (the next prune removes it).
 */
import {
  ATTESTATION_ARTIFACT_TYPE,
  addLocalReferrers,
  archiveReferrers,
  PREDICATE_ANNOTATION,
} from '../attest/index.js';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type BlobWriter, type ContentStore, lookupRef, type NamedRef } from '../content/index.js';
import { compressLayer, openLayer, readTar, type TarEntryInput, writeTar } from '../layer/index.js';
import {
  type Descriptor,
  type Digest,
  encodeJson,
  type ImageConfig,
  type Index,
  isIndexType,
  isLayerType,
  isManifestType,
  layerCompression,
  type Manifest,
  MediaType,
  parseDigest,
  parseImageConfig,
  parseImageDocument,
  REF_NAME_ANNOTATION,
  sha256Digest,
} from '../oci/index.js';
import {
  bestMatch,
  describePlatforms,
  hostPlatform,
  type PlatformSpec,
  parsePlatform,
} from '../platform/index.js';
import { familiarReference, formatReference, parseReference } from '../oci/reference.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { fsyncDir } from '../util/fs.js';
import { imageManifest, tarProblem, writerSink } from './import.js';

export type ArchiveFormat = 'oci' | 'docker';

export interface SaveOptions {
  store: ContentStore;
  /** Names (normalised like docker's), or image IDs, of images in the store. */
  refs: readonly string[];
  /** A file path (written atomically) or a stream (ended when done). */
  output: string | Writable;
  /** Default `oci`. */
  format?: ArchiveFormat;
  /** docker format: the platform to take from an index; default the host's. Ignored for oci. */
  platform?: string;
}

export interface SavedImage {
  name: string;
  descriptor: Descriptor;
}

export interface LoadOptions {
  store: ContentStore;
  /** A file path or a stream of the archive (plain, gzip or zstd). */
  input: string | Readable;
  /** Called for names that cannot be used (the image is loaded untagged). Default: ignore. */
  warn?: (message: string) => void;
}

export interface LoadedImage {
  /** The stored name; undefined when the archive did not name the image. */
  name?: string;
  descriptor: Descriptor;
}

export interface LoadResult {
  format: ArchiveFormat;
  images: LoadedImage[];
}

/** Manifests, indexes, configs: blobs up to this size are kept in memory while loading. */
const SMALL_BLOB = 4 << 20;
/** JSON files of a docker archive (manifest.json, configs) may not be larger than this. */
const MAX_JSON = 64 << 20;
const EPOCH_HEADER = { mtime: 0, uid: 0, gid: 0, uname: '', gname: '' };

function normalizeName(ref: string): string {
  try {
    return formatReference(parseReference(ref));
  } catch {
    return ref;
  }
}

function archiveError(what: string, rule: string, code = 'INVALID_ARGUMENT', cause?: unknown): PolyarchError {
  return new PolyarchError(code, `${what}: ${rule}`, cause === undefined ? {} : { cause });
}

// ---------------------------------------------------------------------------------------------
// save

async function findImages(store: ContentStore, refs: readonly string[]): Promise<NamedRef[]> {
  if (refs.length === 0) throw new PolyarchError('USAGE', 'save needs at least one image', { exitCode: 2 });
  const out: NamedRef[] = [];
  for (const ref of refs) {
    const found = await lookupRef(store, ref, { normalize: normalizeName });
    if (!found) throw new PolyarchError('NOT_FOUND', `no such image "${ref}" in the local store`);
    out.push(found);
  }
  return out;
}

async function readDoc(store: ContentStore, d: Descriptor) {
  return parseImageDocument(await store.readBlob(d.digest), `${d.mediaType} ${d.digest}`, d.mediaType);
}

/** Blobs an image needs, root first; index entries missing from the store are left out. */
async function collectBlobs(store: ContentStore, root: NamedRef, into: Map<Digest, number>): Promise<void> {
  const visit = async (d: Descriptor, optional: boolean): Promise<void> => {
    if (into.has(d.digest)) return;
    const size = await store.size(d.digest);
    if (size === undefined) {
      if (optional) return;
      throw new PolyarchError(
        'NOT_FOUND',
        `image "${root.name}" is incomplete in the store: blob ${d.digest} is missing`,
      );
    }
    into.set(d.digest, size);
    if (isIndexType(d.mediaType)) {
      const doc = await readDoc(store, d);
      if (doc.kind === 'index') for (const m of doc.index.manifests) await visit(m, true);
    } else if (isManifestType(d.mediaType)) {
      const doc = await readDoc(store, d);
      if (doc.kind === 'manifest')
        for (const c of [doc.manifest.config, ...doc.manifest.layers]) await visit(c, false);
    }
  };
  await visit(root.descriptor, false);
}

/** A blob's bytes, hashed on the way: store corruption fails the save instead of shipping. */
async function* verifiedBlob(store: ContentStore, d: Digest): AsyncGenerator<Buffer> {
  const hash = createHash('sha256');
  for await (const chunk of store.openRead(d)) {
    hash.update(chunk as Buffer);
    yield chunk as Buffer;
  }
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== d)
    throw new PolyarchError('DIGEST_MISMATCH', `blob ${d} in ${store.dir} is corrupt: it hashes to ${got}`);
}

function fileEntry(path: string, size: number, body: TarEntryInput['body']): TarEntryInput {
  return {
    header: { path, type: 'file', mode: 0o644, size, ...EPOCH_HEADER },
    body: body as TarEntryInput['body'],
  };
}

function dirEntry(path: string): TarEntryInput {
  return { header: { path, type: 'dir', mode: 0o755, ...EPOCH_HEADER } };
}

function jsonEntry(path: string, value: unknown): TarEntryInput {
  const data = Buffer.isBuffer(value) ? value : encodeJson(value);
  return fileEntry(path, data.length, data);
}

/** An archive's attestation artifact, recorded as a referrer of its subject; false for anything else. */
async function restoreReferrer(store: ContentStore, d: Descriptor): Promise<boolean> {
  if (d.mediaType !== MediaType.OciManifest || d.artifactType !== ATTESTATION_ARTIFACT_TYPE) return false;
  const doc = await readDoc(store, d);
  if (doc.kind !== 'manifest' || !doc.manifest.subject) return false;
  const predicate = doc.manifest.annotations?.[PREDICATE_ANNOTATION];
  await addLocalReferrers(store, doc.manifest.subject.digest, [
    {
      mediaType: d.mediaType,
      digest: d.digest,
      size: d.size,
      artifactType: ATTESTATION_ARTIFACT_TYPE,
      ...(predicate ? { annotations: { [PREDICATE_ANNOTATION]: predicate } } : {}),
    },
  ]);
  return true;
}

async function ociEntries(store: ContentStore, images: NamedRef[]): Promise<TarEntryInput[]> {
  const blobs = new Map<Digest, number>();
  for (const img of images) await collectBlobs(store, img, blobs);
  const index: Index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: images.map(({ name, descriptor: d }) => ({
      mediaType: d.mediaType,
      digest: d.digest,
      size: d.size,
      ...(d.platform ? { platform: d.platform } : {}),
      annotations: { 'io.containerd.image.name': name, [REF_NAME_ANNOTATION]: name },
    })),
  };
  // The attestations asked for at build time: untagged entries of their own (src/attest).
  const subjects: Digest[] = [];
  for (const { descriptor: d } of images) {
    subjects.push(d.digest);
    if (isIndexType(d.mediaType)) {
      const doc = await readDoc(store, d);
      if (doc.kind === 'index') subjects.push(...doc.index.manifests.map((m) => m.digest));
    }
  }
  for (const r of await archiveReferrers(store, subjects)) {
    await collectBlobs(store, { name: `attestation ${r.digest}`, descriptor: r }, blobs);
    index.manifests.push({
      mediaType: r.mediaType,
      digest: r.digest,
      size: r.size,
      ...(r.artifactType ? { artifactType: r.artifactType } : {}),
    });
  }
  const entries: TarEntryInput[] = [
    jsonEntry('oci-layout', { imageLayoutVersion: '1.0.0' }),
    jsonEntry('index.json', index),
    dirEntry('blobs/'),
    dirEntry('blobs/sha256/'),
  ];
  for (const [digest, size] of blobs)
    entries.push(fileEntry(`blobs/sha256/${digest.slice(7)}`, size, () => verifiedBlob(store, digest)));
  return entries;
}

function platformOfConfig(c: ImageConfig): PlatformSpec {
  return { os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) };
}

/** The one platform manifest of `img` to put in a docker archive. */
async function chooseManifest(
  store: ContentStore,
  img: NamedRef,
  want: ReturnType<typeof parsePlatform>,
): Promise<{ manifest: Manifest; config: Buffer }> {
  let d = img.descriptor;
  if (isIndexType(d.mediaType)) {
    const doc = await readDoc(store, d);
    if (doc.kind !== 'index') throw new PolyarchError('INVALID_MANIFEST', `${d.digest} is not an index`);
    const present: Descriptor[] = [];
    for (const m of doc.index.manifests)
      if (m.platform && isManifestType(m.mediaType) && (await store.has(m.digest))) present.push(m);
    const pick = bestMatch(present, want, (m) => m.platform);
    if (!pick)
      throw new PolyarchError(
        'NOT_FOUND',
        `image "${img.name}" has no ${describePlatforms([want])} manifest in the store (has ${describePlatforms(present.map((m) => m.platform!)) || 'none'}): choose one with --platform`,
      );
    d = pick;
  }
  const doc = await readDoc(store, d);
  if (doc.kind !== 'manifest') throw new PolyarchError('INVALID_MANIFEST', `${d.digest} is not a manifest`);
  const config = await store.readBlob(doc.manifest.config.digest);
  return { manifest: doc.manifest, config };
}

/** Decompresses a stored layer; hashes the output against the diff_id it must have. */
async function* layerTar(store: ContentStore, layer: Descriptor, diffId: Digest): AsyncGenerator<Buffer> {
  const { stream } = await openLayer(store.openRead(layer.digest));
  const hash = createHash('sha256');
  for await (const c of stream) {
    hash.update(c as Buffer);
    yield c as Buffer;
  }
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== diffId)
    throw new PolyarchError(
      'DIGEST_MISMATCH',
      `layer ${layer.digest} decompresses to ${got}, its config says ${diffId}`,
    );
}

async function uncompressedSize(store: ContentStore, layer: Descriptor): Promise<number> {
  if (layerCompression(layer.mediaType) === 'uncompressed') return layer.size;
  const { stream } = await openLayer(store.openRead(layer.digest));
  let n = 0;
  for await (const c of stream) n += (c as Buffer).length;
  return n;
}

async function dockerEntries(
  store: ContentStore,
  images: NamedRef[],
  platform: string | undefined,
): Promise<TarEntryInput[]> {
  const want = platform === undefined ? hostPlatform() : parsePlatform(platform, { normalize: true });
  const byConfig = new Map<
    string,
    { config: Buffer; manifest: Manifest; diffIds: Digest[]; tags: string[] }
  >();
  for (const img of images) {
    const { manifest, config } = await chooseManifest(store, img, want);
    const cfg = parseImageConfig(config, `config ${manifest.config.digest}`);
    const layers = manifest.layers.filter((l) => isLayerType(l.mediaType));
    if (layers.length !== cfg.rootfs.diff_ids.length)
      throw new PolyarchError(
        'INVALID_MANIFEST',
        `image "${img.name}": ${layers.length} layers but ${cfg.rootfs.diff_ids.length} diff_ids`,
      );
    const key = manifest.config.digest;
    const entry = byConfig.get(key) ?? { config, manifest, diffIds: cfg.rootfs.diff_ids, tags: [] };
    // A name with a digest cannot be a RepoTag.
    const ref = parseReference(img.name);
    if (!ref.digest) entry.tags.push(familiarReference(ref));
    byConfig.set(key, entry);
  }
  const entries: TarEntryInput[] = [];
  const written = new Set<string>();
  const manifestJson: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
  const repositories: Record<string, Record<string, string>> = {};
  for (const [configDigest, { config, manifest, diffIds, tags }] of byConfig) {
    const configPath = `${configDigest.slice(7)}.json`;
    entries.push(jsonEntry(configPath, config));
    const layerPaths: string[] = [];
    const layers = manifest.layers.filter((l) => isLayerType(l.mediaType));
    for (const [i, layer] of layers.entries()) {
      const diffId = diffIds[i]!;
      const path = `${diffId.slice(7)}.tar`;
      layerPaths.push(path);
      if (written.has(path)) continue;
      written.add(path);
      if (!(await store.has(layer.digest)))
        throw new PolyarchError('NOT_FOUND', `layer ${layer.digest} of ${configDigest} is not in the store`);
      entries.push(
        fileEntry(path, await uncompressedSize(store, layer), () => layerTar(store, layer, diffId)),
      );
    }
    manifestJson.push({ Config: configPath, RepoTags: tags, Layers: layerPaths });
    const top = diffIds.at(-1)?.slice(7) ?? '';
    for (const t of tags) {
      const colon = t.lastIndexOf(':');
      (repositories[t.slice(0, colon)] ??= {})[t.slice(colon + 1)] = top;
    }
  }
  entries.push(jsonEntry('manifest.json', manifestJson));
  entries.push(jsonEntry('repositories', repositories));
  return entries;
}

/** Writes the archive; returns what was saved. */
/** saveArchive, holding a lease (content/leases.ts) so a concurrent rmi or prune keeps what it uses. */
export async function saveArchive(opts: SaveOptions): Promise<SavedImage[]> {
  const lease = await opts.store.lease('save');
  try {
    return await saveArchiveLeased(opts);
  } finally {
    await lease.release();
  }
}

async function saveArchiveLeased(opts: SaveOptions): Promise<SavedImage[]> {
  const format = opts.format ?? 'oci';
  if (format !== 'oci' && format !== 'docker')
    throw new PolyarchError('USAGE', `invalid format "${format}": use oci or docker`, { exitCode: 2 });
  const images = await findImages(opts.store, opts.refs);
  // Entries are planned (and every blob's presence checked) before the output is created.
  const entries =
    format === 'oci'
      ? await ociEntries(opts.store, images)
      : await dockerEntries(opts.store, images, opts.platform);
  const tar = Readable.from(writeTar(entries));
  if (typeof opts.output !== 'string') {
    await pipeline(tar, opts.output);
    return images;
  }
  const out = opts.output;
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(tmp, 'wx', 0o644);
    await pipeline(tar, createWriteStream('', { fd: fh.fd, autoClose: false }));
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, out);
    await fsyncDir(dirname(out));
  } catch (err) {
    await fh?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    if (err instanceof PolyarchError) throw err;
    throw new PolyarchError('IO', `writing ${out}: ${errorMessage(err)}`, { cause: err });
  }
  return images;
}

// ---------------------------------------------------------------------------------------------
// load

/** A blob entry read (and verified) but not yet committed. */
interface PendingBlob {
  digest: Digest;
  size: number;
  /** Undefined when the store already had it. */
  writer?: BlobWriter;
  /** The bytes of small blobs (documents are parsed from here). */
  data?: Buffer;
}

/** A docker-archive layer file, recompressed to gzip into an uncommitted writer. */
interface PendingLayer {
  diffId: Digest;
  digest: Digest;
  size: number;
  writer?: BlobWriter;
}

function cleanPath(p: string): string {
  return posix.normalize(`/${p}`).slice(1).replace(/\/$/, '');
}

class Loader {
  readonly blobs = new Map<Digest, PendingBlob>();
  readonly layers = new Map<string, PendingLayer>();
  readonly small = new Map<string, Buffer>();
  readonly links = new Map<string, string>();
  readonly writers: BlobWriter[] = [];
  sawLayout = false;

  constructor(
    readonly store: ContentStore,
    readonly what: string,
  ) {}

  fail(rule: string, code = 'INVALID_ARGUMENT'): PolyarchError {
    return archiveError(`archive ${this.what}`, rule, code);
  }

  async readBody(body: AsyncIterable<Buffer>, size: number, path: string): Promise<Buffer> {
    if (size > MAX_JSON) throw this.fail(`${path} is ${size} bytes, too large for a JSON file`);
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c);
    return Buffer.concat(parts);
  }

  async blobEntry(
    path: string,
    alg: string,
    hex: string,
    size: number,
    body: AsyncIterable<Buffer>,
  ): Promise<void> {
    let digest: Digest;
    try {
      digest = parseDigest(`${alg}:${hex}`);
    } catch (err) {
      throw this.fail(`${path} is not named by a valid digest: ${errorMessage(err)}`);
    }
    const hash = createHash(alg);
    const have = this.blobs.has(digest) || (await this.store.has(digest));
    const writer = have
      ? undefined
      : await this.store.writer({ digest, size, what: `blob ${digest} of archive ${this.what}` });
    if (writer) this.writers.push(writer);
    // Only JSON documents are kept in memory (a layer never starts with '{'), so an archive
    // of many small layers does not pile up in memory.
    let parts: Buffer[] | undefined = size <= SMALL_BLOB ? [] : undefined;
    for await (const c of body) {
      hash.update(c);
      if (parts?.length === 0 && c.length > 0 && c[0] !== 0x7b) parts = undefined;
      parts?.push(c);
      if (writer) await writer.write(c);
    }
    const got = `${alg}:${hash.digest('hex')}`;
    if (got !== digest)
      throw archiveError(
        `archive ${this.what}`,
        `blob ${path} does not match its name: its content hashes to ${got}`,
        'DIGEST_MISMATCH',
      );
    if (this.blobs.has(digest)) return;
    this.blobs.set(digest, {
      digest,
      size,
      ...(writer ? { writer } : {}),
      ...(parts ? { data: Buffer.concat(parts) } : {}),
    });
  }

  async layerEntry(path: string, body: AsyncIterable<Buffer>): Promise<void> {
    const { stream } = await openLayer(Readable.from(body));
    const writer = await this.store.writer({ what: `layer ${path} of archive ${this.what}` });
    this.writers.push(writer);
    let r: Awaited<ReturnType<typeof compressLayer>>;
    try {
      r = await compressLayer(stream, writerSink(writer), { compression: 'gzip' });
    } catch (err) {
      throw archiveError(
        `archive ${this.what}`,
        `layer ${path}: ${errorMessage(err)}`,
        'INVALID_ARGUMENT',
        err,
      );
    }
    // An identical layer already in the store needs no second copy.
    const have = await this.store.has(r.digest);
    if (have) await writer.abort();
    this.layers.set(path, { diffId: r.diffId, digest: r.digest, size: r.size, ...(have ? {} : { writer }) });
  }

  async read(input: Readable): Promise<void> {
    const { stream } = await openLayer(input);
    for await (const entry of readTar(stream)) {
      const h = entry.header;
      const path = cleanPath(h.path);
      if (h.type === 'symlink' || h.type === 'hardlink') {
        // docker save links identical layers to the first copy.
        const target = h.type === 'symlink' ? posix.join(posix.dirname(path), h.linkpath) : h.linkpath;
        this.links.set(path, cleanPath(target));
        continue;
      }
      if (h.type !== 'file') continue;
      const blob = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(path);
      if (path === 'oci-layout') this.sawLayout = true;
      if (blob) await this.blobEntry(path, blob[1]!, blob[2]!, h.size, entry.body);
      // Layer files of a docker archive: `<id>/layer.tar`, `<hex>.tar`, or anything large that is not JSON.
      else if (path.endsWith('.tar') || (h.size > SMALL_BLOB && !path.endsWith('.json')))
        await this.layerEntry(path, entry.body);
      // oci-layout, index.json, manifest.json, repositories, configs, legacy `<id>/json`, VERSION.
      else this.small.set(path, await this.readBody(entry.body, h.size, path));
    }
  }

  resolvePath(p: string): string {
    let path = cleanPath(p);
    for (let i = 0; i < 16 && this.links.has(path); i++) path = this.links.get(path)!;
    return path;
  }

  async doc(d: Descriptor) {
    const pending = this.blobs.get(d.digest);
    let bytes = pending?.data;
    if (!bytes && !pending?.writer && (await this.store.has(d.digest)))
      bytes = await this.store.readBlob(d.digest);
    if (!bytes) throw this.fail(`${d.mediaType} ${d.digest} is too large or missing`);
    return parseImageDocument(bytes, `${d.mediaType} ${d.digest} in archive ${this.what}`, d.mediaType);
  }

  /** Marks what `d` needs; false if `d` is absent and `optional`. */
  async need(d: Descriptor, optional: boolean, needed: Set<Digest>, from: string): Promise<boolean> {
    const pending = this.blobs.get(d.digest);
    if (!pending && !(await this.store.has(d.digest))) {
      if (optional) return false;
      throw this.fail(`blob ${d.digest} (${from}) is neither in the archive nor in the store`, 'NOT_FOUND');
    }
    if (pending && pending.size !== d.size)
      throw this.fail(`blob ${d.digest} has ${pending.size} bytes, ${from} says ${d.size}`, 'SIZE_MISMATCH');
    if (needed.has(d.digest)) return true;
    needed.add(d.digest);
    if (isIndexType(d.mediaType)) {
      const doc = await this.doc(d);
      if (doc.kind === 'index')
        for (const m of doc.index.manifests) await this.need(m, true, needed, `index ${d.digest}`);
    } else if (isManifestType(d.mediaType)) {
      const doc = await this.doc(d);
      if (doc.kind === 'manifest')
        for (const c of [doc.manifest.config, ...doc.manifest.layers])
          await this.need(c, false, needed, `manifest ${d.digest}`);
    }
    return true;
  }

  nameOf(raw: string | undefined, warn: (m: string) => void): string | undefined {
    if (raw === undefined || raw === '') return undefined;
    try {
      const ref = parseReference(raw);
      return formatReference(ref);
    } catch (err) {
      warn(
        `archive ${this.what}: name "${raw}" is not an image reference (${errorMessage(err)}); loading the image untagged`,
      );
      return undefined;
    }
  }

  async planOci(warn: (m: string) => void): Promise<Array<{ name?: string; descriptor: Descriptor }>> {
    const bytes = this.small.get('index.json');
    if (!bytes) throw this.fail('it has oci-layout but no index.json');
    const doc = parseImageDocument(bytes, `index.json of archive ${this.what}`, MediaType.OciIndex);
    if (doc.kind !== 'index') throw this.fail('index.json is not an index');
    const needed = new Set<Digest>();
    const out: Array<{ name?: string; descriptor: Descriptor }> = [];
    for (const d of doc.index.manifests) {
      await this.need(d, false, needed, 'index.json');
      const a = d.annotations ?? {};
      const name = this.nameOf(a['io.containerd.image.name'] || a[REF_NAME_ANNOTATION], warn);
      const { annotations: _a, ...descriptor } = d;
      out.push({ ...(name ? { name } : {}), descriptor });
    }
    await this.commitBlobs(needed);
    return out;
  }

  async commitBlobs(needed: Set<Digest>): Promise<void> {
    for (const d of needed) {
      const w = this.blobs.get(d)?.writer;
      if (w) await w.commit();
    }
  }

  async planDocker(warn: (m: string) => void): Promise<Array<{ name?: string; descriptor: Descriptor }>> {
    const bytes = this.small.get('manifest.json');
    let list: unknown;
    try {
      list = JSON.parse(bytes!.toString('utf8'));
    } catch (err) {
      throw this.fail(`manifest.json is not JSON: ${errorMessage(err)}`);
    }
    if (!Array.isArray(list)) throw this.fail('manifest.json is not a list');
    const plans: Array<{ config: Buffer; layers: PendingLayer[]; tags: string[] }> = [];
    for (const [i, item] of (list as Array<Record<string, unknown>>).entries()) {
      const where = `manifest.json[${i}]`;
      if (typeof item?.Config !== 'string' || !Array.isArray(item.Layers))
        throw this.fail(`${where} needs Config and Layers`);
      const configPath = this.resolvePath(item.Config);
      const config =
        this.small.get(configPath) ?? this.blobs.get(`sha256:${basename(configPath)}` as Digest)?.data;
      if (!config) throw this.fail(`${where}: config ${item.Config} is not in the archive`, 'NOT_FOUND');
      const named = /^([a-f0-9]{64})(?:\.json)?$/.exec(basename(configPath))?.[1];
      const digest = sha256Digest(config);
      if (named && `sha256:${named}` !== digest)
        throw this.fail(
          `config ${item.Config} does not match its name: its content hashes to ${digest}`,
          'DIGEST_MISMATCH',
        );
      const cfg = parseImageConfig(config, `config ${item.Config} of archive ${this.what}`);
      if (cfg.rootfs.diff_ids.length !== item.Layers.length)
        throw this.fail(
          `${where}: ${item.Layers.length} layers but its config has ${cfg.rootfs.diff_ids.length} diff_ids`,
        );
      const layers = (item.Layers as unknown[]).map((p, j) => {
        const layer = typeof p === 'string' ? this.layers.get(this.resolvePath(p)) : undefined;
        if (!layer) throw this.fail(`${where}: layer ${String(p)} is not in the archive`, 'NOT_FOUND');
        if (layer.diffId !== cfg.rootfs.diff_ids[j])
          throw this.fail(
            `layer ${String(p)} has diff_id ${layer.diffId}, its config says ${cfg.rootfs.diff_ids[j]}`,
            'DIGEST_MISMATCH',
          );
        return layer;
      });
      const tags: string[] = [];
      for (const t of Array.isArray(item.RepoTags) ? item.RepoTags : []) {
        const name = this.nameOf(String(t), warn);
        if (name) tags.push(name);
      }
      plans.push({ config, layers, tags });
    }
    // Everything checked: now the store is written.
    const out: Array<{ name?: string; descriptor: Descriptor }> = [];
    for (const p of plans) {
      for (const l of p.layers) if (l.writer && !(await this.store.has(l.digest))) await l.writer.commit();
      const { digest, size } = await this.store.writeBlob(p.config);
      const manifest = imageManifest(
        { mediaType: MediaType.OciConfig, digest, size },
        p.layers.map((l) => ({ mediaType: MediaType.OciLayerGzip, digest: l.digest, size: l.size })),
      );
      const cfg = parseImageConfig(p.config, 'config');
      const desc = await this.store.writeJson(manifest, MediaType.OciManifest);
      const descriptor: Descriptor = { ...desc, platform: platformOfConfig(cfg) };
      if (p.tags.length === 0) out.push({ descriptor });
      for (const name of p.tags) out.push({ name, descriptor });
    }
    return out;
  }
}

/** Reads an archive into the store and tags its names; see the module comment for the guarantees. */
/** loadArchive, holding a lease (content/leases.ts) so a concurrent rmi or prune keeps what it uses. */
export async function loadArchive(opts: LoadOptions): Promise<LoadResult> {
  const lease = await opts.store.lease('load');
  try {
    return await loadArchiveLeased(opts);
  } finally {
    await lease.release();
  }
}

async function loadArchiveLeased(opts: LoadOptions): Promise<LoadResult> {
  const what = typeof opts.input === 'string' ? opts.input : 'stdin';
  const warn = opts.warn ?? (() => {});
  let input: Readable;
  if (typeof opts.input === 'string') {
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(opts.input, 'r');
    } catch (err) {
      throw archiveError(`archive ${what}`, errorMessage(err), 'NOT_FOUND', err);
    }
    // The handle's own stream: it closes the handle, so no FileHandle is left for gc to close.
    input = fh.createReadStream({ highWaterMark: 1 << 20 });
  } else input = opts.input;
  const loader = new Loader(opts.store, what);
  try {
    try {
      await loader.read(input);
    } catch (err) {
      if (err instanceof PolyarchError && err.message.startsWith(`archive ${what}`)) throw err;
      throw archiveError(
        `archive ${what}`,
        tarProblem(err),
        (err as PolyarchError).code ?? 'INVALID_ARGUMENT',
        err,
      );
    }
    let format: ArchiveFormat;
    let images: Array<{ name?: string; descriptor: Descriptor }>;
    if (loader.sawLayout && loader.small.has('index.json')) {
      format = 'oci';
      images = await loader.planOci(warn);
    } else if (loader.small.has('manifest.json')) {
      format = 'docker';
      images = await loader.planDocker(warn);
    } else
      throw loader.fail(
        'it is neither an oci-archive (oci-layout, index.json) nor a docker-archive (manifest.json)',
      );
    // An image the archive names nothing for stays as an untagged image, reachable by its ID;
    // an attestation (an in-toto artifact with a subject) becomes a referrer of its image again.
    for (const img of images)
      if (img.name) await opts.store.tag(img.name, img.descriptor);
      else if (!(await restoreReferrer(opts.store, img.descriptor)))
        await opts.store.keepUntagged(img.descriptor);
    return { format, images };
  } finally {
    for (const w of loader.writers) await w.abort();
    input.destroy();
  }
}
