/**
 * `polyarch import`: a one-layer image from a rootfs tarball or directory (docker import's),
 * stored under a name in the local store. Importing several platforms under one name builds
 * an OCI index; an entry of the same platform is replaced in place, others are kept.
 *
 *   const r = await importImage({ store, source: '/rootfs/arm64', ref: 'busybox',
 *                                 platform: 'linux/arm64', changes: ['CMD ["sh"]'] });
 *   r.name        // 'docker.io/library/busybox:latest'
 *   r.descriptor  // what the name points at now (an index once it holds two platforms)
 *   r.manifest    // the new platform manifest
 *
 * The source is a directory (packed with packDir: sorted, numeric ids, no `./` prefix), a
 * tar file (plain, gzip or zstd, detected by magic number; checked to be a tar while it
 * streams) or `-` for stdin. The layer is gzip (compressLayer: diff_id and digest in one pass,
 * bytes independent of thread count), so the same tree gives the same layer digest.
 * `created` (config and history) is SOURCE_DATE_EPOCH when set — then directory mtimes are
 * also clamped to it and the whole image is reproducible — else the current time, as docker
 * import does. The history comment is `Imported from <SOURCE as given>` unless `message` is set.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, type Readable, Writable } from 'node:stream';
import type { ContentStore } from '../content/index.js';
import { compressLayer, openLayer, packDir, readTar } from '../layer/index.js';
import {
  type ContainerConfig,
  type Descriptor,
  type ImageConfig,
  type Index,
  isIndexType,
  isManifestType,
  type Manifest,
  MediaType,
  type PlatformSpec,
  parseImageConfig,
  parseImageDocument,
} from '../oci/index.js';
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  parsePlatform,
  samePlatform,
  toOciPlatform,
} from '../platform/index.js';
import { formatReference, parseReference } from '../oci/reference.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { acquireLock } from '../util/lock.js';
import { applyChanges } from './changes.js';

export interface ImportOptions {
  store: ContentStore;
  /** A directory, a tar file (plain/gzip/zstd), or `-` for `stdin`. */
  source: string;
  /** The name to store the image under (normalised: `busybox` → `docker.io/library/busybox:latest`). */
  ref: string;
  /** `os/arch[/variant]`; default: the host's platform. */
  platform?: string;
  /** Dockerfile instructions applied to the config (see changes.ts). Default none. */
  changes?: readonly string[];
  /** History comment; default `Imported from <source>`. */
  message?: string;
  /** Read for `-`; default process.stdin. */
  stdin?: Readable;
  /** SOURCE_DATE_EPOCH comes from here; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface ImportResult {
  name: string;
  /** The root the name now points at (index or manifest). */
  descriptor: Descriptor;
  /** The imported platform's manifest (with its platform). */
  manifest: Descriptor;
  platform: string;
  /** True if an entry of the same platform was replaced. */
  replaced: boolean;
}

/** Parses SOURCE_DATE_EPOCH (whole seconds, non-negative); undefined when unset or empty. */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid SOURCE_DATE_EPOCH "${v}": want whole seconds since 1970`,
    );
  return Number(v);
}

/** The one image manifest shape polyarch writes (import and docker-archive load share it, so digests agree). */
export function imageManifest(config: Descriptor, layers: Descriptor[]): Manifest {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
}

/** A Writable that feeds a store blob writer (so compressLayer can stream into the store). */
export function writerSink(w: { write(chunk: Uint8Array): Promise<void> }): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      w.write(chunk).then(() => cb(), cb);
    },
  });
}

/** Opens the source as uncompressed tar bytes; a tar file is checked entry by entry as it flows. */
async function openSource(opts: ImportOptions, epoch: number | undefined): Promise<AsyncIterable<Buffer>> {
  const { source } = opts;
  if (source === '-') return checkedTar(opts.stdin ?? process.stdin, 'stdin');
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(source);
  } catch (err) {
    throw new PolyarchError('NOT_FOUND', `import source "${source}": ${errorMessage(err)}`, { cause: err });
  }
  if (st.isDirectory()) return packDir(source, epoch === undefined ? {} : { sourceDateEpoch: epoch });
  if (!st.isFile())
    throw new PolyarchError('INVALID_ARGUMENT', `import source "${source}" is not a file or directory`);
  return checkedTar(createReadStream(source, { highWaterMark: 256 * 1024 }), source);
}

/**
 * The decompressed bytes of a tarball, passed on unchanged while a tar reader checks them
 * alongside: a source that is not a tar fails the import instead of making a broken layer.
 */
async function checkedTar(input: Readable, what: string): Promise<AsyncIterable<Buffer>> {
  const { stream } = await openLayer(input);
  const toLayer = new PassThrough({ highWaterMark: 256 * 1024 });
  const toCheck = new PassThrough({ highWaterMark: 256 * 1024 });
  // Errors reach the consumer through the iterators; these listeners only keep a late one
  // (after the layer side has finished) from crashing the process.
  toLayer.on('error', () => {});
  toCheck.on('error', () => {});
  stream.pipe(toLayer);
  stream.pipe(toCheck);
  stream.on('error', (err) => {
    toLayer.destroy(err);
    toCheck.destroy(err);
  });
  const check = (async () => {
    let n = 0;
    for await (const _entry of readTar(toCheck)) n++;
    return n;
  })();
  check.catch(() => {});
  async function* chunks(): AsyncGenerator<Buffer> {
    try {
      for await (const c of toLayer) yield c as Buffer;
      await check;
    } catch (err) {
      toCheck.destroy();
      if (err instanceof PolyarchError)
        throw new PolyarchError(err.code, `import source "${what}": ${tarProblem(err)}`, { cause: err });
      throw new PolyarchError('INVALID_ARGUMENT', `import source "${what}": ${tarProblem(err)}`, {
        cause: err,
      });
    }
  }
  check.catch((err) => toLayer.destroy(err));
  return chunks();
}

/**
 * One line saying why a stream is not a usable tar: `not a tar archive` when its very first
 * header is wrong (what a random file gives), else the codec's message with control
 * characters escaped (entry names can hold newlines).
 */
export function tarProblem(err: unknown): string {
  const message = errorMessage(err);
  if ((err as PolyarchError).code === 'INVALID_TAR' && / at offset 0: /.test(message))
    return 'not a tar archive (its first header is invalid)';
  return message.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** The platform of an index entry: its descriptor's, else its config's (read from the store). */
async function entryPlatform(store: ContentStore, d: Descriptor): Promise<PlatformSpec | undefined> {
  if (d.platform) return d.platform;
  if (!isManifestType(d.mediaType) || !(await store.has(d.digest))) return undefined;
  const doc = parseImageDocument(await store.readBlob(d.digest), `manifest ${d.digest}`);
  if (doc.kind !== 'manifest' || !(await store.has(doc.manifest.config.digest))) return undefined;
  const cfg = parseImageConfig(
    await store.readBlob(doc.manifest.config.digest),
    `config ${doc.manifest.config.digest}`,
  );
  return { os: cfg.os, architecture: cfg.architecture, ...(cfg.variant ? { variant: cfg.variant } : {}) };
}

/**
 * What `name` should point at after adding `manifest`: the manifest alone, or an index of
 * the existing platforms with an entry of the same platform replaced in place.
 */
async function mergeInto(
  store: ContentStore,
  existing: Descriptor | undefined,
  manifest: Descriptor & { platform: PlatformSpec },
): Promise<{ root: Descriptor; replaced: boolean }> {
  // An index whose blob is gone cannot be merged into: the new image simply takes the name.
  if (!existing || (isIndexType(existing.mediaType) && !(await store.has(existing.digest))))
    return { root: manifest, replaced: false };
  let entries: Descriptor[];
  let annotations: Index['annotations'];
  if (isIndexType(existing.mediaType)) {
    const doc = parseImageDocument(await store.readBlob(existing.digest), `index ${existing.digest}`);
    if (doc.kind !== 'index')
      throw new PolyarchError('INVALID_MANIFEST', `index ${existing.digest} is not an index`);
    entries = doc.index.manifests;
    annotations = doc.index.annotations;
  } else entries = [existing];
  const out: Descriptor[] = [];
  const replacedDigests = new Set<string>();
  let replaced = false;
  for (const e of entries) {
    const p = await entryPlatform(store, e);
    if (p && samePlatform(p, manifest.platform)) {
      replacedDigests.add(e.digest);
      if (!replaced) out.push(manifest);
      replaced = true;
    } else {
      const { annotations: a, ...rest } = e;
      // The layout's name annotations belong to index.json, not to index entries.
      const kept = Object.entries(a ?? {}).filter(
        ([k]) => k !== 'org.opencontainers.image.ref.name' && k !== 'io.containerd.image.name',
      );
      out.push({
        ...rest,
        ...(p && !rest.platform ? { platform: p } : {}),
        ...(kept.length ? { annotations: Object.fromEntries(kept) } : {}),
      });
    }
  }
  // Attestations that describe a replaced manifest go with it.
  const final = out.filter((e) => !replacedDigests.has(e.annotations?.['vnd.docker.reference.digest'] ?? ''));
  // A single manifest of another platform becomes a two-entry index; of the same, is replaced.
  if (!replaced) final.push(manifest);
  if (final.length === 1 && !isIndexType(existing.mediaType)) return { root: manifest, replaced };
  const index: Index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: final,
    ...(annotations ? { annotations } : {}),
  };
  return { root: await store.writeJson(index, MediaType.OciIndex), replaced };
}

/** importImage, holding a lease (content/leases.ts) so a concurrent rmi or prune keeps what it uses. */
export async function importImage(opts: ImportOptions): Promise<ImportResult> {
  const lease = await opts.store.lease('import');
  try {
    return await importImageLeased(opts);
  } finally {
    await lease.release();
  }
}

async function importImageLeased(opts: ImportOptions): Promise<ImportResult> {
  const { store } = opts;
  // Check every input before reading the source, so a typo costs nothing.
  const ref = parseReference(opts.ref);
  if (ref.digest)
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `cannot import to "${opts.ref}": a name with a digest cannot be tagged`,
    );
  const name = formatReference(ref);
  const platform =
    opts.platform === undefined
      ? normalizePlatform(hostPlatform())
      : parsePlatform(opts.platform, { normalize: true });
  const container: ContainerConfig = applyChanges({}, opts.changes ?? []);
  const epoch = sourceDateEpoch(opts.env);
  const created = new Date(epoch === undefined ? Date.now() : epoch * 1000)
    .toISOString()
    .replace('.000Z', 'Z');
  const comment = opts.message ?? `Imported from ${opts.source}`;

  const tar = await openSource(opts, epoch);
  const w = await store.writer({ what: `layer of ${opts.source}` });
  let layer: Descriptor;
  let diffId: ImageConfig['rootfs']['diff_ids'][number];
  try {
    const r = await compressLayer(tar, writerSink(w), { compression: 'gzip' });
    await w.commit();
    layer = { mediaType: MediaType.OciLayerGzip, digest: r.digest, size: r.size };
    diffId = r.diffId;
  } catch (err) {
    await w.abort();
    throw err;
  }
  const oci = toOciPlatform(platform);
  const config: ImageConfig = {
    created,
    architecture: oci.architecture,
    os: oci.os,
    ...(oci.variant ? { variant: oci.variant } : {}),
    config: container,
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created, comment }],
  };
  const configDesc = await store.writeJson(config, MediaType.OciConfig);
  const manifestDesc = await store.writeJson(imageManifest(configDesc, [layer]), MediaType.OciManifest);
  const manifest = { ...manifestDesc, platform: oci as PlatformSpec };

  // Two imports into one name at once must not lose a platform: merge and tag under a lock.
  const release = await acquireLock(join(store.dir, 'import.lock'));
  try {
    const { root, replaced } = await mergeInto(store, await store.resolve(name), manifest);
    await store.tag(name, root);
    return { name, descriptor: root, manifest, platform: formatPlatform(platform), replaced };
  } finally {
    await release();
  }
}
