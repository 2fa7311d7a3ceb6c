/**
 * Writers for the file outputs: OCI layout (tar or directory), docker-archive, rootfs tar and
 * rootfs directories. Every one is atomic: the output is made under a temp name beside the
 * destination, fsynced, then renamed into place; a failure removes the temp and leaves no
 * partial destination.
 *
 *   await writeOciArchive({ store, root, names, dest: 'out.tar', tar: true });
 *   await writeDockerArchive({ store, image: platformImage, names, dest: 'img.tar' });
 *   await writeRootfs({ store, platforms, dest: 'out/', tar: false, sourceDateEpoch });
 *
 * Tar members are written in a fixed order with fixed headers (mtime = SOURCE_DATE_EPOCH or 0,
 * uid/gid 0), so archives of the same image are byte-identical.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { ContentStore } from '../../content/index.js';
import { applyLayerBlob, packDir, type TarEntryInput, writeTar } from '../../layer/index.js';
import {
  type Descriptor,
  digestHex,
  encodeJson,
  type Index,
  isIndexType,
  MediaType,
  parseImageDocument,
} from '../../oci/index.js';
import { type Platform, formatPlatform } from '../../platform/index.js';
import { familiarReference, parseReference } from '../../oci/reference.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import type { PlatformImage } from './image.js';

const CONTAINERD_NAME = 'io.containerd.image.name';
const REF_NAME = 'org.opencontainers.image.ref.name';

function tempName(dest: string): string {
  return join(dirname(dest), `.${basename(dest)}.polyarch-${process.pid}-${randomBytes(4).toString('hex')}`);
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Streams `chunks` to `dest` atomically (temp + fsync + rename + fsync of the directory). */
export async function writeFileAtomic(
  dest: string,
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
): Promise<number> {
  const abs = resolve(dest);
  await mkdir(dirname(abs), { recursive: true });
  const tmp = tempName(abs);
  let size = 0;
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      for await (const c of chunks) {
        await fh.write(c);
        size += c.length;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, abs);
    await fsyncPath(dirname(abs));
    return size;
  } catch (err) {
    await rm(tmp, { force: true });
    throw new PolyarchError('IO', `writing ${dest}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Moves a finished temp directory into place. A missing or empty `dest` is replaced by one
 * rename; into an existing non-empty directory each top-level entry is moved (replacing an
 * entry of the same name), as buildx's local exporter writes into an existing directory.
 */
async function installDir(tmp: string, dest: string): Promise<void> {
  const st = await stat(dest).catch(() => undefined);
  if (st && !st.isDirectory())
    throw new PolyarchError('IO', `writing ${dest}: it exists and is not a directory`);
  if (st) {
    const existing = await readdir(dest);
    if (existing.length === 0) await rmdir(dest);
    else {
      for (const name of await readdir(tmp)) {
        await rm(join(dest, name), { recursive: true, force: true });
        await rename(join(tmp, name), join(dest, name));
      }
      await rm(tmp, { recursive: true, force: true });
      await fsyncPath(dest);
      return;
    }
  }
  await rename(tmp, dest);
  await fsyncPath(dirname(dest));
}

/** Runs `fill(tmpDir)` and installs the directory atomically at `dest`; removes the temp on failure. */
export async function writeDirAtomic(dest: string, fill: (dir: string) => Promise<void>): Promise<void> {
  const abs = resolve(dest);
  await mkdir(dirname(abs), { recursive: true });
  const tmp = tempName(abs);
  await mkdir(tmp, { mode: 0o755 });
  try {
    await fill(tmp);
    await installDir(tmp, abs);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err instanceof PolyarchError
      ? err
      : new PolyarchError('IO', `writing ${dest}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Every blob under `root` (index → manifests → config + layers), each once, in a fixed order. */
export async function collectBlobs(store: ContentStore, root: Descriptor): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  const seen = new Set<string>();
  const walk = async (d: Descriptor) => {
    if (seen.has(d.digest)) return;
    seen.add(d.digest);
    out.push(d);
    if (
      isIndexType(d.mediaType) ||
      d.mediaType === MediaType.OciManifest ||
      d.mediaType === MediaType.DockerManifest
    ) {
      const doc = parseImageDocument(await store.readBlob(d.digest), `manifest ${d.digest}`, d.mediaType);
      if (doc.kind === 'index') for (const m of doc.index.manifests) await walk(m);
      else for (const c of [doc.manifest.config, ...doc.manifest.layers]) await walk(c);
    }
  };
  await walk(root);
  return out;
}

/** The tag part of a name, as BuildKit writes org.opencontainers.image.ref.name. */
function refTag(name: string): string {
  try {
    return parseReference(name).tag ?? 'latest';
  } catch {
    return name;
  }
}

function layoutIndex(root: Descriptor, names: string[]): Index {
  const base: Descriptor = { mediaType: root.mediaType, digest: root.digest, size: root.size };
  const manifests =
    names.length === 0
      ? [base]
      : names.map((n) => ({ ...base, annotations: { [CONTAINERD_NAME]: n, [REF_NAME]: refTag(n) } }));
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
}

function fileEntry(path: string, data: Buffer, mtime: number): TarEntryInput {
  return { header: { path, type: 'file', size: data.length, mode: 0o644, mtime }, body: data };
}

function dirEntry(path: string, mtime: number): TarEntryInput {
  return { header: { path, type: 'dir', mode: 0o755, mtime } };
}

function blobEntry(store: ContentStore, d: Descriptor, mtime: number): TarEntryInput {
  return {
    header: { path: `blobs/sha256/${digestHex(d.digest)}`, type: 'file', size: d.size, mode: 0o644, mtime },
    body: () => store.openRead(d.digest) as AsyncIterable<Buffer>,
  };
}

export interface OciArchiveOptions {
  store: ContentStore;
  root: Descriptor;
  names: string[];
  dest: string;
  /** A tar file (true) or a layout directory (false). */
  tar: boolean;
  /** Tar member mtime; default 0. */
  mtime?: number;
}

/** An OCI image layout of `root` as a tar or a directory. */
export async function writeOciArchive(o: OciArchiveOptions): Promise<void> {
  const blobs = await collectBlobs(o.store, o.root);
  const index = encodeJson(layoutIndex(o.root, o.names));
  const layout = encodeJson({ imageLayoutVersion: '1.0.0' });
  if (!o.tar) {
    await writeDirAtomic(o.dest, async (dir) => {
      await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
      for (const b of blobs)
        await writeFileAtomic(
          join(dir, 'blobs', 'sha256', digestHex(b.digest)),
          o.store.openRead(b.digest) as AsyncIterable<Buffer>,
        );
      await writeFileAtomic(join(dir, 'oci-layout'), [layout]);
      await writeFileAtomic(join(dir, 'index.json'), [index]);
    });
    return;
  }
  const mtime = o.mtime ?? 0;
  const entries: TarEntryInput[] = [
    fileEntry('oci-layout', layout, mtime),
    fileEntry('index.json', index, mtime),
    dirEntry('blobs/', mtime),
    dirEntry('blobs/sha256/', mtime),
    ...blobs.map((b) => blobEntry(o.store, b, mtime)),
  ];
  await writeFileAtomic(o.dest, writeTar(entries));
}

export interface DockerArchiveOptions {
  store: ContentStore;
  image: PlatformImage;
  names: string[];
  dest: string;
  mtime?: number;
}

/**
 * A docker-archive (`docker load` / `skopeo docker-archive:` format), as BuildKit's docker
 * exporter writes it: an OCI layout plus `manifest.json` ([{Config, RepoTags, Layers}]) and
 * `repositories`, the layers as their (compressed) blobs.
 */
export async function writeDockerArchive(o: DockerArchiveOptions): Promise<void> {
  const mtime = o.mtime ?? 0;
  const { image } = o;
  const blobPath = (d: Descriptor) => `blobs/sha256/${digestHex(d.digest)}`;
  const refs = o.names.map((n) => parseReference(n));
  const repoTags = refs.map((r) => familiarReference(r));
  const manifestJson = [
    { Config: blobPath(image.config), RepoTags: repoTags, Layers: image.layers.map(blobPath) },
  ];
  const repositories: Record<string, Record<string, string>> = {};
  for (const [i, r] of refs.entries()) {
    const repo = repoTags[i]!.slice(0, repoTags[i]!.lastIndexOf(':'));
    if (r.tag) (repositories[repo] ??= {})[r.tag] = digestHex(image.manifest.digest);
  }
  const { platform: _p, ...root } = image.manifest;
  const blobs = await collectBlobs(o.store, root);
  const entries: TarEntryInput[] = [
    dirEntry('blobs/', mtime),
    dirEntry('blobs/sha256/', mtime),
    ...blobs.map((b) => blobEntry(o.store, b, mtime)),
    fileEntry('index.json', encodeJson(layoutIndex(root, o.names)), mtime),
    fileEntry('manifest.json', encodeJson(manifestJson), mtime),
    fileEntry('oci-layout', encodeJson({ imageLayoutVersion: '1.0.0' }), mtime),
  ];
  if (Object.keys(repositories).length > 0)
    entries.push(fileEntry('repositories', encodeJson(repositories), mtime));
  await writeFileAtomic(o.dest, writeTar(entries));
}

/** `linux_arm64_v8`-style directory name (BuildKit's platform-split naming). */
export function platformDirName(p: Platform): string {
  return formatPlatform(p).replaceAll('/', '_');
}

async function unpackLayers(store: ContentStore, layers: Descriptor[], root: string): Promise<void> {
  for (const l of layers) await applyLayerBlob(store.openRead(l.digest), root);
}

export interface RootfsOptions {
  store: ContentStore;
  platforms: PlatformImage[];
  dest: string;
  /** `type=tar` (one tar file) or `type=local` (a directory). */
  tar: boolean;
  /** Tar mtimes clamped to this. */
  sourceDateEpoch?: number;
  signal?: AbortSignal;
}

/**
 * The image filesystems: one platform → its rootfs at the top; several → one directory per
 * platform (`linux_amd64/`, `linux_arm64_v8/`). Layers are applied in order (whiteouts delete).
 */
export async function writeRootfs(o: RootfsOptions): Promise<void> {
  const split = o.platforms.length > 1;
  const fill = async (dir: string) => {
    for (const p of o.platforms) {
      o.signal?.throwIfAborted();
      const root = split ? join(dir, platformDirName(p.platform)) : dir;
      await mkdir(root, { recursive: true, mode: 0o755 });
      await unpackLayers(o.store, p.layers, root);
    }
  };
  if (!o.tar) {
    await writeDirAtomic(o.dest, fill);
    return;
  }
  const abs = resolve(o.dest);
  const work = tempName(abs);
  await mkdir(work, { mode: 0o755 });
  try {
    await fill(work);
    await writeFileAtomic(
      abs,
      packDir(work, {
        xattrs: true,
        ...(o.sourceDateEpoch !== undefined ? { sourceDateEpoch: o.sourceDateEpoch } : {}),
      }),
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
