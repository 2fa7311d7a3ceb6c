/**
 * Writers for the file outputs: OCI layout (tar or directory), docker-archive, rootfs tar and
 * rootfs directories. A file output is atomic: made under a temp name beside the destination,
 * fsynced, then renamed into place; a failure removes the temp and leaves no partial file. A
 * directory output is written INTO the destination (writeIntoDir): what it already holds and
 * the image does not is kept, and each entry is replaced whole.
 *
 *   await writeOciArchive({ store, root, names, dest: 'out.tar', tar: true });
 *   await writeDockerArchive({ store, image: platformImage, names, dest: 'img.tar' });
 *   await writeRootfs({ store, platforms, dest: 'out/', tar: false, sourceDateEpoch });
 *
 * Tar members are written in a fixed order with fixed headers (mtime = SOURCE_DATE_EPOCH or 0,
 * uid/gid 0), so archives of the same image are byte-identical.
 */
import { lstat, mkdir, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
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
import { fsyncDir, tempPath, writeFileAtomic } from '../../util/fs.js';
import { pidAlive } from '../../util/lock.js';
import type { PlatformImage } from './image.js';
import { mergeInto } from './merge.js';

const CONTAINERD_NAME = 'io.containerd.image.name';
const REF_NAME = 'org.opencontainers.image.ref.name';

/** Names of staging dirs `tempPath` makes beside a destination: `.tmp-<name>-<pid>-<hex>`. */
function stagingPid(entry: string, base: string): number | undefined {
  const prefix = `.tmp-${base}-`;
  if (!entry.startsWith(prefix)) return undefined;
  const m = /^(\d+)-[0-9a-f]{8}$/.exec(entry.slice(prefix.length));
  return m ? Number(m[1]) : undefined;
}

/** Removes staging dirs beside `dest` left by exports that were killed (their pid is gone). */
async function sweepStaging(dest: string): Promise<void> {
  const parent = dirname(dest);
  const base = basename(dest);
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const pid = stagingPid(name, base);
    if (pid !== undefined && pid !== process.pid && !pidAlive(pid))
      await rm(join(parent, name), { recursive: true, force: true }).catch(() => undefined);
  }
}

export interface WriteIntoDirOptions {
  signal?: AbortSignal;
  /** Where to stage when the destination's parent is not writable; default: fail. */
  stagingDir?: string;
}

/**
 * Runs `fill(stagingDir)` and writes what it made INTO `dest`, as BuildKit's local exporter
 * does (merge.ts): entries `dest` has and the tree does not are kept; the tree's entries
 * replace the ones of the same path, each whole (one rename, or a temp file renamed over). A
 * `dest` that does not exist yet is made by one rename of the finished tree. The staging dir
 * is beside `dest` (same file system, so entries move instead of being copied) and is removed
 * afterwards, whatever happens; ones left by killed exports are removed by the next export to
 * the same destination. The caller refuses destinations such as `/` (checkDestinations).
 */
export async function writeIntoDir(
  dest: string,
  fill: (dir: string) => Promise<void>,
  opts: WriteIntoDirOptions = {},
): Promise<void> {
  const abs = resolve(dest);
  try {
    const st = await lstat(abs).catch(() => undefined);
    const existed = st !== undefined;
    if (!existed) await mkdir(dirname(abs), { recursive: true });
    // A symlink given as dest is the user's choice of directory: write where it points.
    const real = existed ? await realpath(abs) : join(await realpath(dirname(abs)), basename(abs));
    if (existed && !(await stat(real)).isDirectory())
      throw new PolyarchError('IO', `writing ${dest}: it exists and is not a directory`);
    await sweepStaging(real);
    let tmp = tempPath(real);
    try {
      await mkdir(tmp, { mode: 0o755 });
    } catch (err) {
      if (!opts.stagingDir) throw err;
      await mkdir(opts.stagingDir, { recursive: true, mode: 0o700 });
      tmp = tempPath(join(opts.stagingDir, basename(real)));
      await mkdir(tmp, { mode: 0o755 });
    }
    try {
      await fill(tmp);
      opts.signal?.throwIfAborted();
      if (!existed && (await moveNew(tmp, real))) return;
      await mkdir(real, { recursive: true });
      await mergeInto(tmp, real, opts.signal);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  } catch (err) {
    throw err instanceof PolyarchError
      ? err
      : new PolyarchError('IO', `writing ${dest}: ${errorMessage(err)}`, { cause: err });
  }
}

/** Puts a finished tree at a path that did not exist: one rename; false when that is not possible here. */
async function moveNew(tmp: string, dest: string): Promise<boolean> {
  try {
    await rename(tmp, dest);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Made meanwhile (EEXIST/ENOTEMPTY), or the staging dir is on another file system.
    if (code === 'EXDEV' || code === 'EEXIST' || code === 'ENOTEMPTY') return false;
    throw err;
  }
  await fsyncDir(dirname(dest));
  return true;
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
  /** Artifacts whose subject is in `root` (attestations): listed in index.json untagged, with their blobs. */
  referrers?: Descriptor[];
  names: string[];
  dest: string;
  /** A tar file (true) or a layout directory (false), written into an existing one (index.json replaced). */
  tar: boolean;
  /** Tar member mtime; default 0. */
  mtime?: number;
}

/** An OCI image layout of `root` as a tar or a directory. */
export async function writeOciArchive(o: OciArchiveOptions): Promise<void> {
  const blobs = await collectBlobs(o.store, o.root);
  const layout0 = layoutIndex(o.root, o.names);
  // Attestations (OCI 1.1 artifacts with a subject): their own untagged index.json entries.
  for (const r of o.referrers ?? []) {
    const have = new Set(blobs.map((b) => b.digest));
    for (const b of await collectBlobs(o.store, r)) if (!have.has(b.digest)) blobs.push(b);
    layout0.manifests.push({
      mediaType: r.mediaType,
      digest: r.digest,
      size: r.size,
      ...(r.artifactType ? { artifactType: r.artifactType } : {}),
    });
  }
  const index = encodeJson(layout0);
  const layout = encodeJson({ imageLayoutVersion: '1.0.0' });
  if (!o.tar) {
    await writeIntoDir(o.dest, async (dir) => {
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
  await writeFileAtomic(resolve(o.dest), writeTar(entries), { createParents: true });
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
  await writeFileAtomic(resolve(o.dest), writeTar(entries), { createParents: true });
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
  /** type=local: where to stage when the destination's parent is not writable. */
  stagingDir?: string;
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
    await writeIntoDir(o.dest, fill, {
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.stagingDir ? { stagingDir: o.stagingDir } : {}),
    });
    return;
  }
  const abs = resolve(o.dest);
  const work = tempPath(abs);
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
