/**
 * The content store: a content-addressed blob store that is, on disk, a valid OCI image
 * layout (oci-layout, index.json, blobs/<alg>/<hex>), so skopeo and umoci read it and
 * polyarch reads theirs. It is the only writer of blobs on disk.
 *
 *   const store = await ContentStore.open(storeDir());
 *   const { digest, size } = await store.ingest(stream, { digest: expected, size });  // verified
 *   await store.tag('docker.io/library/busybox:latest', indexDescriptor);
 *   const desc = await store.resolve('docker.io/library/busybox:latest');
 *   await store.gc();                        // drops blobs no ref reaches and no running operation leases
 *   const lease = await store.lease('pull'); // …until lease.release(), what this process uses stays
 *
 * Guarantees, between processes as well as within one:
 * - A blob appears under blobs/ only after its digest and size were verified: it is written
 *   to a temp file under ingest/ (named <pid>-<random>), hashed while it streams, fsynced,
 *   checked, then renamed into place (and the directory fsynced). Two writers of the same
 *   blob both succeed and leave one correct file.
 * - Temp files of writers that died (their pid is gone) are removed on open() and gc();
 *   a live writer's are never touched.
 * - index.json is replaced atomically (temp + fsync + rename) under a lock file, so
 *   concurrent tag/untag lose nothing and readers never see a partial file.
 * - gc() keeps what running operations lease (leases.ts): a process holding a lease on this
 *   store (`store.lease('pull')`) leases every blob before it looks at it (size, has,
 *   readBlob, openRead) and before a commit puts it in place, so a blob it found stays until
 *   it is done, and one it wrote stays until it is tagged.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import {
  type Descriptor,
  type Digest,
  digestAlgorithm,
  digestHex,
  encodeJson,
  type Index,
  isDigest,
  isIndexType,
  isManifestType,
  MediaType,
  parseDigest,
  parseImageDocument,
  REF_NAME_ANNOTATION,
} from '../oci/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { fsyncDir } from '../util/fs.js';
import { acquireLock, formatOwner, ownerAlive, parseOwner, selfOwner } from '../util/lock.js';
import { IngestWriter, whatOf } from './ingest.js';
import { heldLease, type LeaseHandle, type LeaseKind, readLeases, takeLease, withGcLock } from './leases.js';

/** The annotation containerd uses for the full image name in an OCI layout's index.json. */
export const CONTAINERD_NAME_ANNOTATION = 'io.containerd.image.name';

export const OCI_LAYOUT_VERSION = '1.0.0';

/** What a blob being written must turn out to be; checked on commit. */
export interface IngestExpect {
  digest?: Digest;
  size?: number;
  /** Names the blob in errors (e.g. `layer 127.0.0.1:5000/app@sha256:…`); default `blob <digest>`. */
  what?: string;
}

export interface BlobInfo {
  digest: Digest;
  size: number;
}

/** An in-progress blob write: a temp file under <store>/ingest/, never visible under blobs/ until commit verifies it. */
export interface BlobWriter {
  /** Bytes written so far. */
  readonly offset: number;
  /** Appends a chunk, hashing it on the way. */
  write(chunk: Uint8Array): Promise<void>;
  /** fsync, verify digest and size, rename into blobs/; an already present blob makes this a no-op that succeeds. */
  commit(): Promise<BlobInfo>;
  /** Removes the temp file. Safe to call more than once, or after a failed commit. */
  abort(): Promise<void>;
}

export interface StoreOptions {
  /** Bounded wait for the index.json lock. Default 30 s. */
  lockTimeoutMs?: number;
}

export interface GcOptions {
  /** Blobs modified less than this long ago are kept even if unreachable. Default 0 (none). */
  graceMs?: number;
}

export interface GcResult {
  removed: number;
  bytes: number;
  /** Unreferenced blobs kept because a running operation leases them. */
  kept: number;
  keptBytes: number;
}

export interface NamedRef {
  name: string;
  descriptor: Descriptor;
}

/** Temp files whose writer's liveness cannot be checked from here are removed after this long. */
const UNJUDGED_TEMP_MAX_AGE_MS = 24 * 3600 * 1000;
const READ_CHUNK = 1 << 20;
/** readBlob is for documents; anything larger is streamed (openRead) so memory stays bounded. */
const MAX_READ_BLOB = 64 << 20;
/** Leased blobs up to this size are read to see whether they are image documents (gc follows those). */
const LEASED_DOC_MAX = 4 << 20;

// OCI image layout's grammar for org.opencontainers.image.ref.name.
const REF_NAME_RE =
  /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function ioError(what: string, err: unknown): PolyarchError {
  return new PolyarchError('IO', `${what}: ${errorMessage(err)}`, { cause: err });
}

function refName(d: Descriptor): string | undefined {
  return d.annotations?.[REF_NAME_ANNOTATION];
}

function emptyIndex(): Index {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
}

export class ContentStore {
  readonly dir: string;
  readonly #ingestDir: string;
  readonly #opts: StoreOptions;

  private constructor(dir: string, opts: StoreOptions) {
    this.dir = dir;
    this.#ingestDir = join(dir, 'ingest');
    this.#opts = opts;
  }

  /** Opens the layout at `dir`, creating an empty one if missing, and removes temp files of dead writers. */
  static async open(dir: string, opts: StoreOptions = {}): Promise<ContentStore> {
    const store = new ContentStore(dir, opts);
    await store.#init();
    return store;
  }

  async #init(): Promise<void> {
    try {
      await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
      await mkdir(this.#ingestDir, { recursive: true });
    } catch (err) {
      throw ioError(`cannot create content store ${this.dir}`, err);
    }
    const layoutPath = join(this.dir, 'oci-layout');
    // A new store's two files are made together (each is a synced write, a link and a synced
    // directory), while the ingest dir is swept.
    await Promise.all([
      this.#createOnce(layoutPath, encodeJson({ imageLayoutVersion: OCI_LAYOUT_VERSION })),
      this.#createOnce(join(this.dir, 'index.json'), encodeJson(emptyIndex())),
      this.cleanIngest(),
    ]);
    let layout: unknown;
    try {
      layout = JSON.parse(await readFile(layoutPath, 'utf8'));
    } catch (err) {
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `${layoutPath} is not a valid oci-layout file: ${errorMessage(err)}`,
      );
    }
    const version = (layout as { imageLayoutVersion?: unknown } | null)?.imageLayoutVersion;
    if (version !== OCI_LAYOUT_VERSION)
      throw new PolyarchError(
        'UNSUPPORTED',
        `${layoutPath}: imageLayoutVersion ${JSON.stringify(version)} is not supported (${OCI_LAYOUT_VERSION})`,
      );
  }

  /** Writes `data` to `path` unless it exists; link() never overwrites, so a racing creator's file wins intact. */
  async #createOnce(path: string, data: Buffer): Promise<void> {
    try {
      await stat(path);
      return;
    } catch (err) {
      if (code(err) !== 'ENOENT') throw ioError(`cannot read ${path}`, err);
    }
    const tmp = await this.#writeTemp(data);
    try {
      await link(tmp, path);
      await fsyncDir(dirname(path));
    } catch (err) {
      if (code(err) !== 'EEXIST') throw ioError(`cannot create ${path}`, err);
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  #tempPath(): string {
    return join(this.#ingestDir, `${formatOwner(selfOwner())}-${randomBytes(8).toString('hex')}`);
  }

  async #writeTemp(data: Uint8Array): Promise<string> {
    const tmp = this.#tempPath();
    let fh: FileHandle | undefined;
    try {
      fh = await open(tmp, 'wx', 0o644);
      await fh.writeFile(data);
      await fh.sync();
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw ioError(`cannot write ${tmp}`, err);
    } finally {
      await fh?.close();
    }
    return tmp;
  }

  /**
   * Removes temp files under ingest/ left by writers that died: their name starts with the
   * owner (pid, start time, host) of a process that no longer runs (a recycled pid does
   * not count). A live writer's file is never touched, however old. Files whose writer
   * cannot be checked from here (another host or pid namespace, or not named by polyarch)
   * are removed once untouched for a day.
   */
  async cleanIngest(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.#ingestDir);
    } catch (err) {
      if (code(err) === 'ENOENT') return 0;
      throw ioError(`cannot list ${this.#ingestDir}`, err);
    }
    let removed = 0;
    for (const name of names) {
      const path = join(this.#ingestDir, name);
      const owner = parseOwner(name);
      let alive = owner && ownerAlive(owner);
      if (alive === undefined) {
        // Not ours to judge (another host or pid namespace, or not polyarch's): by age only.
        const st = await stat(path).catch(() => undefined);
        alive = st === undefined || Date.now() - st.mtimeMs < UNJUDGED_TEMP_MAX_AGE_MS;
      }
      if (!alive) {
        await unlink(path).then(
          () => removed++,
          () => {},
        );
      }
    }
    return removed;
  }

  /** `<dir>/blobs/<alg>/<hex>`. */
  blobPath(d: Digest): string {
    parseDigest(d);
    return join(this.dir, 'blobs', digestAlgorithm(d), digestHex(d));
  }

  async has(d: Digest): Promise<boolean> {
    return (await this.size(d)) !== undefined;
  }

  /**
   * Takes (or joins) this process's lease on the store (leases.ts): until it is released, what
   * this process looks at or writes here is kept from gc() in every process.
   */
  lease(kind: LeaseKind): Promise<LeaseHandle> {
    return takeLease(this.dir, kind);
  }

  /** Leases `digests` when this process holds a lease on the store; else nothing to do. */
  async protect(digests: readonly Digest[]): Promise<void> {
    await heldLease(this.dir)?.protectContent(digests);
  }

  /** The size of a blob present in the store, else undefined (leased first, see the header). */
  async size(d: Digest): Promise<number | undefined> {
    parseDigest(d);
    await this.protect([d]);
    return this.#size(d);
  }

  async #size(d: Digest): Promise<number | undefined> {
    try {
      const st = await stat(this.blobPath(d));
      return st.isFile() ? st.size : undefined;
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return undefined;
      throw ioError(`cannot stat blob ${d} in ${this.dir}`, err);
    }
  }

  #notFound(d: Digest): PolyarchError {
    return new PolyarchError('NOT_FOUND', `blob ${d} not found in content store ${this.dir}`);
  }

  /** Reads a small blob (manifest, config) whole and checks its digest. */
  async readBlob(d: Digest): Promise<Buffer> {
    const lease = heldLease(this.dir);
    if (!lease) return this.#readBlob(d);
    await lease.protectContent([d]);
    const data = await this.#readBlob(d);
    // What a leased image document reaches is kept with it (gc follows it): no lease writes.
    if (data.length <= LEASED_DOC_MAX && data[0] === 0x7b) {
      try {
        const doc = parseImageDocument(data, `blob ${d}`);
        lease.cover(
          doc.kind === 'index'
            ? doc.index.manifests.map((m) => m.digest)
            : [doc.manifest.config.digest, ...doc.manifest.layers.map((l) => l.digest)],
        );
      } catch {
        // Not an image document (a config): nothing below it.
      }
    }
    return data;
  }

  async #readBlob(d: Digest): Promise<Buffer> {
    const size = await this.#size(d);
    if (size === undefined) throw this.#notFound(d);
    if (size > MAX_READ_BLOB)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `blob ${d} is ${size} bytes, too large to read whole (limit ${MAX_READ_BLOB}): stream it with openRead`,
      );
    let data: Buffer;
    try {
      data = await readFile(this.blobPath(d));
    } catch (err) {
      if (code(err) === 'ENOENT') throw this.#notFound(d);
      throw ioError(`cannot read blob ${d} in ${this.dir}`, err);
    }
    const actual = `${digestAlgorithm(d)}:${createHash(digestAlgorithm(d)).update(data).digest('hex')}`;
    if (actual !== d)
      throw new PolyarchError(
        'DIGEST_MISMATCH',
        `blob ${d} in content store ${this.dir} is corrupt: its content hashes to ${actual}`,
      );
    return data;
  }

  /** Streams a blob from byte `start` (default 0). A missing blob fails the stream with NOT_FOUND. */
  openRead(d: Digest, start = 0): Readable {
    const path = this.blobPath(d);
    const notFound = () => this.#notFound(d);
    const protect = () => this.protect([d]);
    async function* chunks(): AsyncGenerator<Buffer> {
      let fh: FileHandle;
      await protect();
      try {
        fh = await open(path, 'r');
      } catch (err) {
        if (code(err) === 'ENOENT') throw notFound();
        throw ioError(`cannot open blob ${d}`, err);
      }
      try {
        let pos = start;
        for (;;) {
          const buf = Buffer.allocUnsafe(READ_CHUNK);
          const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, pos);
          if (bytesRead === 0) return;
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
        }
      } finally {
        await fh.close();
      }
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  /** Streams a blob through its hash and checks digest (and `size` if given). */
  async verifyBlob(d: Digest, size?: number): Promise<void> {
    const hash = createHash(digestAlgorithm(d));
    let n = 0;
    for await (const chunk of this.openRead(d)) {
      hash.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    const actual = `${digestAlgorithm(d)}:${hash.digest('hex')}`;
    if (actual !== d)
      throw new PolyarchError(
        'DIGEST_MISMATCH',
        `blob ${d} in ${this.dir} is corrupt: it hashes to ${actual}`,
      );
    if (size !== undefined && n !== size)
      throw new PolyarchError('SIZE_MISMATCH', `blob ${d} in ${this.dir} has ${n} bytes, expected ${size}`);
  }

  /** Starts a verified blob write. */
  async writer(expect: IngestExpect = {}): Promise<BlobWriter> {
    if (expect.digest !== undefined) parseDigest(expect.digest);
    if (expect.size !== undefined && (!Number.isSafeInteger(expect.size) || expect.size < 0))
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `invalid expected size ${expect.size} for ${whatOf(expect)}`,
      );
    const path = this.#tempPath();
    let fh: FileHandle;
    try {
      fh = await open(path, 'wx', 0o644);
    } catch (err) {
      throw ioError(`cannot create ingest file ${path}`, err);
    }
    return new IngestWriter(this, fh, path, expect);
  }

  /** Writes a stream (or any iterable of chunks) as a blob, verified against `expect`. Memory use is one chunk. */
  async ingest(
    src: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Readable,
    expect: IngestExpect = {},
  ): Promise<BlobInfo> {
    const w = await this.writer(expect);
    try {
      for await (const chunk of src as AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>)
        await w.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
      return await w.commit();
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  /** Writes bytes as a blob; an already present blob is not rewritten. */
  async writeBlob(data: Uint8Array, expect: IngestExpect = {}): Promise<BlobInfo> {
    const alg = expect.digest ? digestAlgorithm(expect.digest) : 'sha256';
    const digest = `${alg}:${createHash(alg).update(data).digest('hex')}` as Digest;
    if (expect.digest === undefined || expect.digest === digest) {
      if (expect.size === undefined || expect.size === data.length) {
        if ((await this.size(digest)) === data.length) return { digest, size: data.length };
      }
    }
    const w = await this.writer(expect);
    try {
      await w.write(data);
      return await w.commit();
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  /** Serialises `value` as polyarch writes JSON (encodeJson) and stores it; returns its descriptor. */
  async writeJson(value: unknown, mediaType: string): Promise<Descriptor> {
    const { digest, size } = await this.writeBlob(encodeJson(value));
    return { mediaType, digest, size };
  }

  async deleteBlob(d: Digest): Promise<void> {
    try {
      await unlink(this.blobPath(d));
    } catch (err) {
      if (code(err) !== 'ENOENT') throw ioError(`cannot delete blob ${d}`, err);
    }
  }

  /** @internal Moves a verified temp file to its blob path. */
  async _commitTemp(tmp: string, info: BlobInfo): Promise<void> {
    const final = this.blobPath(info.digest);
    // Leased before it appears (or is found), so gc() never takes it from under the writer.
    await this.protect([info.digest]);
    // A blob already there with the right size was verified by whoever wrote it.
    if ((await this.#size(info.digest)) === info.size) {
      await unlink(tmp).catch(() => {});
      return;
    }
    try {
      await mkdir(dirname(final), { recursive: true });
      await rename(tmp, final);
      await fsyncDir(dirname(final));
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw ioError(`cannot store blob ${info.digest} in ${this.dir}`, err);
    }
  }

  // ---- named references (index.json) ----

  #indexPath(): string {
    return join(this.dir, 'index.json');
  }

  /** Reads index.json as it is now (atomically replaced, so never partial). */
  async readIndex(): Promise<Index> {
    const path = this.#indexPath();
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (code(err) === 'ENOENT') return emptyIndex();
      throw ioError(`cannot read ${path}`, err);
    }
    const doc = parseImageDocument(text, `image layout index ${path}`, MediaType.OciIndex);
    if (doc.kind !== 'index')
      throw new PolyarchError('INVALID_MANIFEST', `invalid image layout index ${path}: not an index`);
    return doc.index;
  }

  /** Read-modify-write of index.json under the lock; `fn` returns false to skip the write. */
  async #updateIndex(fn: (idx: Index) => boolean): Promise<void> {
    const release = await acquireLock(`${this.#indexPath()}.lock`, {
      timeoutMs: this.#opts.lockTimeoutMs,
    });
    try {
      const idx = await this.readIndex();
      if (!fn(idx)) return;
      const tmp = await this.#writeTemp(encodeJson(idx));
      try {
        await rename(tmp, this.#indexPath());
      } catch (err) {
        await unlink(tmp).catch(() => {});
        throw ioError(`cannot replace ${this.#indexPath()}`, err);
      }
      await fsyncDir(this.dir);
    } finally {
      await release();
    }
  }

  /** The descriptor tagged `name`, or undefined. */
  async resolve(name: string): Promise<Descriptor | undefined> {
    const idx = await this.readIndex();
    return idx.manifests.findLast((m) => refName(m) === name);
  }

  /** Points `name` at `desc` (whose blob must be in the store), replacing any entry of that name. */
  async tag(name: string, desc: Descriptor): Promise<void> {
    if (!REF_NAME_RE.test(name))
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `invalid reference name "${name}": allowed are letters, digits and . _ - : @ + / between them`,
      );
    parseDigest(desc.digest);
    if (!(await this.has(desc.digest)))
      throw new PolyarchError('NOT_FOUND', `cannot tag "${name}": blob ${desc.digest} is not in ${this.dir}`);
    const { [REF_NAME_ANNOTATION]: _a, [CONTAINERD_NAME_ANNOTATION]: _b, ...rest } = desc.annotations ?? {};
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (desc.platform) entry.platform = desc.platform;
    if (desc.artifactType) entry.artifactType = desc.artifactType;
    entry.annotations = { ...rest, [CONTAINERD_NAME_ANNOTATION]: name, [REF_NAME_ANNOTATION]: name };
    await this.#updateIndex((idx) => {
      // An untagged entry of the same image is superseded by the name.
      idx.manifests = idx.manifests.filter(
        (m) => refName(m) !== name && !(refName(m) === undefined && m.digest === desc.digest),
      );
      idx.manifests.push(entry);
      return true;
    });
  }

  /**
   * Keeps `desc` (whose blob must be in the store) as an untagged image — an index.json entry
   * with no name, reachable by its ID like docker's `<none>` images — unless an entry (named
   * or not) already holds that digest.
   */
  async keepUntagged(desc: Descriptor): Promise<void> {
    parseDigest(desc.digest);
    if (!(await this.has(desc.digest)))
      throw new PolyarchError(
        'NOT_FOUND',
        `cannot keep image ${desc.digest}: its blob is not in ${this.dir}`,
      );
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (desc.platform) entry.platform = desc.platform;
    await this.#updateIndex((idx) => {
      if (idx.manifests.some((m) => m.digest === desc.digest)) return false;
      idx.manifests.push(entry);
      return true;
    });
  }

  /** Removes the untagged entries of `digest`; false if there were none. */
  async removeUntagged(digest: Digest): Promise<boolean> {
    let found = false;
    await this.#updateIndex((idx) => {
      const kept = idx.manifests.filter((m) => !(refName(m) === undefined && m.digest === digest));
      found = kept.length !== idx.manifests.length;
      idx.manifests = kept;
      return found;
    });
    return found;
  }

  /** Removes the entry named `name`; false if there was none. */
  async untag(name: string): Promise<boolean> {
    let found = false;
    await this.#updateIndex((idx) => {
      const kept = idx.manifests.filter((m) => refName(m) !== name);
      found = kept.length !== idx.manifests.length;
      idx.manifests = kept;
      return found;
    });
    return found;
  }

  /** The entries of index.json with no name (untagged images), in file order. */
  async untagged(): Promise<Descriptor[]> {
    return (await this.readIndex()).manifests.filter((m) => refName(m) === undefined);
  }

  /** Every named entry of index.json, in file order. */
  async refs(): Promise<NamedRef[]> {
    const idx = await this.readIndex();
    const out: NamedRef[] = [];
    for (const m of idx.manifests) {
      const name = refName(m);
      if (name !== undefined) out.push({ name, descriptor: m });
    }
    return out;
  }

  // ---- graph and gc ----

  /**
   * The children of an index (its manifests) or manifest (config, then layers). Blobs
   * missing locally have no known children (a pull may keep one platform of an index).
   */
  async children(desc: Descriptor): Promise<Descriptor[]> {
    if (!isIndexType(desc.mediaType) && !isManifestType(desc.mediaType)) return [];
    await this.protect([desc.digest]);
    return this.#children(desc);
  }

  /** children() without leasing: for gc(), which runs under the lock lease writes wait on. */
  async #children(desc: Descriptor): Promise<Descriptor[]> {
    if (!isIndexType(desc.mediaType) && !isManifestType(desc.mediaType)) return [];
    if ((await this.#size(desc.digest)) === undefined) return [];
    const doc = parseImageDocument(await this.#readBlob(desc.digest), `${desc.mediaType} ${desc.digest}`);
    if (doc.kind === 'index') return [...doc.index.manifests];
    return [doc.manifest.config, ...doc.manifest.layers];
  }

  /** Every digest reachable from `roots` (including the roots). */
  async reachable(roots: Descriptor[]): Promise<Set<Digest>> {
    return this.#reachable(roots, (d) => this.children(d));
  }

  async #reachable(
    roots: Descriptor[],
    children: (d: Descriptor) => Promise<Descriptor[]>,
  ): Promise<Set<Digest>> {
    const seen = new Set<Digest>();
    const stack = [...roots];
    while (stack.length > 0) {
      const d = stack.pop()!;
      if (seen.has(d.digest)) continue;
      seen.add(d.digest);
      stack.push(...(await children(d)));
    }
    return seen;
  }

  /**
   * Removes blobs not reachable from index.json, from `keep` or from what a running operation
   * leases (leases.ts), and temp files of dead writers. Leased blobs that are image documents
   * keep what they reach too. Runs under the store's GC lock (no lease changes meanwhile) and
   * the index lock (no ref changes).
   */
  async gc(keep: Descriptor[] = [], opts: GcOptions = {}): Promise<GcResult> {
    const result = await withGcLock(this.dir, async (leases) => {
      const release = await acquireLock(`${this.#indexPath()}.lock`, {
        timeoutMs: this.#opts.lockTimeoutMs,
      });
      try {
        const idx = await this.readIndex();
        const children = (d: Descriptor) => this.#children(d);
        const live = await this.#reachable([...idx.manifests, ...keep], children);
        const leased = await this.#reachable(await this.#leasedRoots(leases.content), children);
        return await this.#sweep(live, leased, leases.unreadable, opts.graceMs ?? 0);
      } finally {
        await release();
      }
    });
    await this.cleanIngest();
    return result;
  }

  /** Blobs running operations lease, with what leased image documents reach: what gc() keeps for them. */
  async inUse(): Promise<Set<Digest>> {
    const live = await readLeases(this.dir);
    return this.#reachable(await this.#leasedRoots(live.content), (d) => this.#children(d));
  }

  /** Leased digests as descriptors; those that are image documents get their media type, so their children count. */
  async #leasedRoots(digests: Iterable<string>): Promise<Descriptor[]> {
    const out: Descriptor[] = [];
    for (const d of digests) {
      if (!isDigest(d)) continue;
      const size = await this.#size(d);
      let mediaType = 'application/octet-stream';
      // Absent now, it is still leased: it may be committed before the sweep reaches it.
      if (size !== undefined && size <= LEASED_DOC_MAX && (await firstByte(this.blobPath(d))) === 0x7b) {
        try {
          mediaType = parseImageDocument(await readFile(this.blobPath(d)), `blob ${d}`).mediaType;
        } catch {
          // Not an image document (a config, a layer): nothing below it.
        }
      }
      out.push({ mediaType, digest: d, size: size ?? 0 });
    }
    return out;
  }

  async #sweep(live: Set<Digest>, leased: Set<Digest>, keepAll: boolean, graceMs: number): Promise<GcResult> {
    const result: GcResult = { removed: 0, bytes: 0, kept: 0, keptBytes: 0 };
    const blobs = join(this.dir, 'blobs');
    for (const alg of await readdir(blobs).catch(() => [] as string[])) {
      const names = await readdir(join(blobs, alg)).catch(() => [] as string[]);
      for (const hex of names) {
        const d = `${alg}:${hex}`;
        if (!isDigest(d) || live.has(d)) continue;
        const path = join(blobs, alg, hex);
        const st = await stat(path).catch(() => undefined);
        if (!st?.isFile()) continue;
        if (graceMs > 0 && Date.now() - st.mtimeMs < graceMs) continue;
        if (keepAll || leased.has(d)) {
          result.kept++;
          result.keptBytes += st.size;
          continue;
        }
        try {
          await unlink(path);
          result.removed++;
          result.bytes += st.size;
        } catch (err) {
          if (code(err) !== 'ENOENT') throw ioError(`cannot delete blob ${d}`, err);
        }
      }
    }
    return result;
  }

  /** Every blob in the store with its size (for du). */
  async listBlobs(): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    const blobs = join(this.dir, 'blobs');
    for (const alg of await readdir(blobs).catch(() => [] as string[])) {
      for (const hex of await readdir(join(blobs, alg)).catch(() => [] as string[])) {
        const d = `${alg}:${hex}`;
        if (!isDigest(d)) continue;
        const st = await stat(join(blobs, alg, hex)).catch(() => undefined);
        if (st?.isFile()) out.push({ digest: d, size: st.size });
      }
    }
    return out;
  }
}

/** The first byte of a file (`{` for JSON documents), or undefined. */
async function firstByte(path: string): Promise<number | undefined> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    const buf = Buffer.alloc(1);
    const { bytesRead } = await fh.read(buf, 0, 1, 0);
    return bytesRead === 1 ? buf[0] : undefined;
  } catch {
    return undefined;
  } finally {
    await fh?.close();
  }
}
