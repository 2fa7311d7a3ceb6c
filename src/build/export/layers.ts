/**
 * Snapshot layers → compressed blobs in the content store, memoised on disk.
 *
 *   const memo = await LayerMemo.open(stateRoot);
 *   const l = await packSnapshotLayer({ store, snapshotter, memo, key, compression: 'gzip' });
 *   // l.descriptor (blob in the store), l.diffId, l.packed (false when the memo answered)
 *
 * Packing is one streaming pass: packOverlayDiff (overlay whiteouts → OCI whiteouts, entries
 * the same as in the snapshot's parents left out, mtimes clamped to SOURCE_DATE_EPOCH) → compressLayer (diff_id, digest and size while the bytes flow)
 * → a verified store writer. Nothing is held whole in memory or written twice.
 *
 * The memo (`<stateRoot>/export/layers.json`) maps (snapshot key, snapshot creation time,
 * compression, level, SOURCE_DATE_EPOCH) to the blob made from it. The creation time is in the
 * key because a snapshot removed and made again under the same key may hold other bytes. An
 * entry is trusted only while its blob is in the store with the recorded size; otherwise the
 * layer is packed again. The file is replaced atomically under a lock, so concurrent builds
 * lose no entries.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { ContentStore } from '../../content/index.js';
import { compressLayer, packOverlayDiff } from '../../layer/index.js';
import { type Compression, type Descriptor, type Digest, layerMediaType } from '../../oci/index.js';
import type { Snapshotter } from '../../snapshot/index.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/fs.js';
import { acquireLock, pidAlive } from '../../util/lock.js';

export interface MemoEntry {
  digest: Digest;
  size: number;
  diffId: Digest;
  compression: Compression;
  uncompressedSize: number;
}

interface MemoFile {
  version: 1;
  layers: Record<string, MemoEntry>;
}

/** Export dirs already swept by this process. */
const swept = new Set<string>();

/**
 * Removes `.tmp-<name>-<pid>-<8 hex>` entries (util/fs.ts tempPath names) in `dir` whose
 * writer is no longer running. One readdir; nothing else when there are none.
 */
export async function sweepDeadTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = /^\.tmp-.+-(\d+)-[0-9a-f]{8}$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true }).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}

export class LayerMemo {
  readonly path: string;
  #cache: Record<string, MemoEntry> = {};

  private constructor(path: string) {
    this.path = path;
  }

  /**
   * Opens (or starts) the memo under `<stateRoot>/export/`. The first open in a process also
   * removes temp files (`.tmp-layers.json-<pid>-<hex>`) and staging dirs (`tmp/`) that
   * processes killed mid-write left there.
   */
  static async open(stateRoot: string): Promise<LayerMemo> {
    const dir = join(stateRoot, 'export');
    await mkdir(dir, { recursive: true });
    if (!swept.has(dir)) {
      swept.add(dir);
      await sweepDeadTemps(dir);
      await sweepDeadTemps(join(dir, 'tmp'));
    }
    const memo = new LayerMemo(join(dir, 'layers.json'));
    memo.#cache = await memo.#read();
    return memo;
  }

  async #read(): Promise<Record<string, MemoEntry>> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new PolyarchError('IO', `cannot read layer memo ${this.path}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    try {
      const f = JSON.parse(text) as MemoFile;
      return f.version === 1 && f.layers && typeof f.layers === 'object' ? f.layers : {};
    } catch {
      // A damaged memo only costs re-packing; it is rewritten on the next put.
      return {};
    }
  }

  /** Number of entries as last read. */
  get size(): number {
    return Object.keys(this.#cache).length;
  }

  /**
   * Drops entries whose blob `has` no longer finds (e.g. after `prune` collected it); for the
   * store's garbage collection to call. Returns how many were dropped.
   */
  async prune(has: (d: Digest) => Promise<boolean>): Promise<number> {
    return this.#update(async (layers) => {
      let dropped = 0;
      for (const [k, e] of Object.entries(layers))
        if (!(await has(e.digest))) {
          delete layers[k];
          dropped++;
        }
      return dropped;
    });
  }

  get(key: string): MemoEntry | undefined {
    return this.#cache[key];
  }

  /** Records an entry: read-modify-write of the file under its lock, replaced atomically. */
  async put(key: string, entry: MemoEntry): Promise<void> {
    await this.#update(async (layers) => {
      layers[key] = entry;
    });
  }

  async #update<T>(fn: (layers: Record<string, MemoEntry>) => Promise<T>): Promise<T> {
    const release = await acquireLock(`${this.path}.lock`, { timeoutMs: 60_000 });
    try {
      const layers = await this.#read();
      const out = await fn(layers);
      this.#cache = layers;
      await writeFileAtomic(this.path, JSON.stringify({ version: 1, layers } satisfies MemoFile));
      return out;
    } finally {
      await release();
    }
  }
}

export interface PackLayerOptions {
  store: ContentStore;
  snapshotter: Snapshotter;
  memo: LayerMemo;
  /** Committed snapshot key. */
  key: string;
  compression: Compression;
  /** Default per compression (gzip 6, zstd 3). */
  level?: number;
  sourceDateEpoch?: number;
  /** OCI (default) or Docker layer media type. */
  oci?: boolean;
  /** Deflate threads; default compressLayer's. */
  threads?: number;
  /** Aborts packing between tar chunks. */
  signal?: AbortSignal;
}

/** Passes chunks through, failing with the signal's reason once it is aborted. */
async function* abortable(src: AsyncIterable<Buffer>, signal?: AbortSignal): AsyncGenerator<Buffer> {
  for await (const c of src) {
    signal?.throwIfAborted();
    yield c;
  }
}

export interface PackedLayer {
  descriptor: Descriptor;
  diffId: Digest;
  /** True when the layer was packed now, false when the memo had it. */
  packed: boolean;
}

const DEFAULT_LEVEL: Record<Compression, number> = { gzip: 6, zstd: 3, uncompressed: 0 };

/** The memo key of a snapshot layer. */
export function memoKey(
  key: string,
  created: string,
  compression: Compression,
  level: number,
  sde?: number,
): string {
  return JSON.stringify([key, created, compression, level, sde ?? null]);
}

/** Packs and compresses a committed snapshot into the store, or answers from the memo. */
export async function packSnapshotLayer(opts: PackLayerOptions): Promise<PackedLayer> {
  const info = await opts.snapshotter.stat(opts.key);
  if (!info) throw new PolyarchError('NOT_FOUND', `exporting layer: snapshot "${opts.key}" does not exist`);
  if (info.kind !== 'committed')
    throw new PolyarchError('INVALID_ARGUMENT', `exporting layer: snapshot "${opts.key}" is not committed`);
  const level = opts.level ?? DEFAULT_LEVEL[opts.compression];
  const mkey = memoKey(opts.key, info.created, opts.compression, level, opts.sourceDateEpoch);
  const mediaType = layerMediaType(opts.compression, { oci: opts.oci !== false });
  const hit = opts.memo.get(mkey);
  if (hit && (await opts.store.size(hit.digest)) === hit.size)
    return {
      descriptor: { mediaType, digest: hit.digest, size: hit.size },
      diffId: hit.diffId,
      packed: false,
    };

  // Compared with the layers below, entries the step did not change are left out.
  const lowers = (await opts.snapshotter.paths(info.parents)).reverse();
  const tar = await packOverlayDiff(info.fs, {
    xattrs: true,
    lowers,
    ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}),
  });
  const w = await opts.store.writer({ what: `layer of snapshot ${opts.key}` });
  // Compressed blocks are small (tens of KiB); writev hands over everything buffered meanwhile
  // as one write, so the store sees few large writes instead of thousands of small ones. The
  // batch is gathered in one reused buffer (a Writable runs one write at a time and the store
  // keeps no chunk after its write resolves): a fresh Buffer.concat per batch was half a GiB of
  // garbage per GiB of blob, and the mark-compacts it triggered cost more than the copy.
  let staging = Buffer.allocUnsafeSlow(2 << 20);
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      w.write(chunk).then(() => cb(), cb);
    },
    writev(chunks, cb) {
      let n = 0;
      for (const c of chunks) n += (c.chunk as Buffer).length;
      if (n > staging.length) staging = Buffer.allocUnsafeSlow(n);
      let at = 0;
      for (const c of chunks) at += (c.chunk as Buffer).copy(staging, at);
      w.write(staging.subarray(0, n)).then(() => cb(), cb);
    },
  });
  try {
    // The store writer hashes what it is given: the compressor need not hash it too.
    const r = await compressLayer(abortable(tar, opts.signal), sink, {
      compression: opts.compression,
      level,
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
      hashOutput: false,
    });
    const blob = await w.commit();
    if (blob.size !== r.size)
      throw new PolyarchError(
        'INTERNAL',
        `layer of snapshot ${opts.key}: stored ${blob.size} bytes, compressed ${r.size}`,
      );
    await opts.memo.put(mkey, {
      digest: blob.digest,
      size: r.size,
      diffId: r.diffId,
      compression: opts.compression,
      uncompressedSize: r.uncompressedSize,
    });
    return { descriptor: { mediaType, digest: blob.digest, size: r.size }, diffId: r.diffId, packed: true };
  } catch (err) {
    await w.abort();
    throw err;
  }
}
