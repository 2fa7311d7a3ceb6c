/**
 * Layer compression in one streaming pass: the uncompressed sha256 (diff_id), the compressed
 * sha256 (the blob digest) and size are computed while the data flows to `output`.
 *
 *   const r = await compressLayer(Readable.from(packDir(dir)), createWriteStream(blob));
 *   // r.diffId, r.digest, r.size, r.uncompressedSize
 *   const { compression, stream } = await openLayer(blobStream); // gunzip/zstd by magic
 *
 * gzip is pigz-style: the input is cut into fixed blocks, each deflated on a worker thread
 * with the previous block's last 32 KiB as preset dictionary and ended by a sync flush, so
 * the pieces form ONE gzip member that any gunzip reads. The bytes depend only on the input,
 * the level and the block size — never on the number of threads (threads: 0 deflates the same
 * blocks on this thread). The header has no name and mtime 0, for reproducible blobs.
 * zstd: Node 20 has no zstd binding; the `zstd` option takes an encoder (a Duplex), and by
 * default the `zstd` command is used when it is installed. `output` is ended when done.
 */
import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { Duplex, PassThrough, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';
import { crc32, createGunzip } from 'node:zlib';
import type { Digest } from '../oci/digest.js';
import { DigestingStream } from '../oci/digest.js';
import { loopTurns } from '../util/concurrency.js';
import { PolyarchError, errorMessage } from '../util/errors.js';
import { type DeflateJob, deflateBlock } from './deflate-worker.js';

import type { Compression } from '../oci/mediatypes.js';

export type { Compression };

export interface CompressOptions {
  /** Default `gzip`. */
  compression?: Compression;
  /** gzip 1..9 (default 6, zlib's default), zstd 1..19 (default 3). */
  level?: number;
  /** Deflate worker threads. Default: available cores, at most 8. 0 = deflate on this thread. */
  threads?: number;
  /** gzip block size, 32 KiB..16 MiB. Default 128 KiB (pigz's). Changes the output bytes. */
  blockSize?: number;
  /** zstd encoder factory (a Duplex from raw to compressed). Default: the `zstd` command. */
  zstd?: (level: number) => Duplex;
}

export interface CompressResult {
  compression: Compression;
  /** sha256 of the uncompressed tar: the layer's diff_id. */
  diffId: Digest;
  uncompressedSize: number;
  /** sha256 of the bytes written to output: the blob digest. */
  digest: Digest;
  /** Bytes written to output. */
  size: number;
}

const DICT = 32 * 1024;

interface DeflateReply {
  id: number;
  /** The deflated bytes, in a buffer of their own... */
  out?: Uint8Array;
  /** ...or this many bytes at the start of `data` (the job's input block, spent). */
  outLength?: number;
  data?: Uint8Array;
  error?: string;
}

/**
 * A fixed pool of deflate workers, shared by every compression of the process (see
 * `sharedPool`); jobs are answered by id. Starting a worker costs tens of milliseconds of CPU
 * (a Node bootstrap), so a build's many small layers reuse one pool instead of each starting
 * its own. Idle workers are unref'd: they never keep the process alive.
 */
class DeflatePool {
  #workers: Worker[];
  #next = 0;
  #id = 0;
  #pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();
  /** Spent input blocks, per byte length, ready for reuse. */
  readonly #free = new Map<number, Buffer[]>();
  /** A worker died: this pool takes no more jobs (sharedPool makes a new one). */
  broken = false;

  constructor(n: number) {
    const url = new URL('./deflate-worker.js', import.meta.url);
    this.#workers = Array.from({ length: n }, () => {
      // Small heaps: a worker only holds a block or two; this keeps each one's RSS low.
      const w = new Worker(url, {
        resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 },
      });
      w.unref();
      w.on('message', (m: DeflateReply) => {
        const p = this.#pending.get(m.id);
        if (m.outLength !== undefined && m.data) {
          // The output is in the block itself: it returns to the free list once written.
          if (!p) return;
          this.#settled(m.id);
          p.resolve(Buffer.from(m.data.buffer, 0, m.outLength));
          return;
        }
        if (m.data && m.data.byteOffset === 0 && m.data.byteLength === m.data.buffer.byteLength)
          this.release(Buffer.from(m.data.buffer));
        if (!p) return;
        this.#settled(m.id);
        if (m.error !== undefined || !m.out)
          p.reject(new PolyarchError('INTERNAL', `gzip worker: ${m.error}`));
        else p.resolve(Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength));
      });
      w.on('error', (err) => this.#failAll(err));
      return w;
    });
  }

  /** A spent block of `size` bytes to fill, if one is free. */
  take(size: number): Buffer | undefined {
    return this.#free.get(size)?.pop();
  }

  /** Hands a spent block back for reuse (at most 64 per size are kept). */
  release(b: Buffer): void {
    let list = this.#free.get(b.length);
    if (!list) this.#free.set(b.length, (list = []));
    if (list.length < 64) list.push(b);
  }

  #settled(id: number): void {
    this.#pending.delete(id);
    // Nothing awaited any more: let the process exit without waiting for the workers.
    if (this.#pending.size === 0) for (const w of this.#workers) w.unref();
  }

  #failAll(err: unknown): void {
    this.broken = true;
    for (const p of this.#pending.values())
      p.reject(new PolyarchError('INTERNAL', `gzip worker: ${errorMessage(err)}`));
    this.#pending.clear();
    for (const w of this.#workers) void w.terminate();
  }

  run(job: Omit<DeflateJob, 'id'>): Promise<Buffer> {
    if (this.broken) return Promise.reject(new PolyarchError('INTERNAL', 'gzip worker pool failed'));
    const id = this.#id++;
    const w = this.#workers[this.#next++ % this.#workers.length]!;
    // A pending job must keep the process alive until its answer arrives.
    if (this.#pending.size === 0) for (const x of this.#workers) x.ref();
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // The block is moved, not copied, when it owns its memory (blocks are allocUnsafeSlow).
      const owns = job.data.byteOffset === 0 && job.data.byteLength === job.data.buffer.byteLength;
      w.postMessage({ ...job, id }, owns ? [job.data.buffer as ArrayBuffer] : []);
    });
  }
}

/** One pool per thread count, made on first use and kept (idle workers cost no CPU). */
const pools = new Map<number, DeflatePool>();

function sharedPool(threads: number): DeflatePool {
  let p = pools.get(threads);
  if (!p || p.broken) pools.set(threads, (p = new DeflatePool(threads)));
  return p;
}

/** Writes with backpressure, hashing and counting what is written. */
class Sink {
  /** Absent when the caller hashes the output itself (hashOutput: false). */
  #hash: Hash | undefined;
  size = 0;
  #error: unknown;
  constructor(
    readonly out: Writable,
    hash: boolean,
  ) {
    this.#hash = hash ? createHash('sha256') : undefined;
    // Kept so an error between writes neither crashes the process nor goes unseen.
    out.on('error', (err) => {
      this.#error ??= err;
    });
  }
  /** `done` runs once `out` no longer needs `b` (its write callback), e.g. to reuse the memory. */
  async write(b: Buffer, done?: () => void): Promise<void> {
    if (this.#error) throw this.#error;
    if (b.length === 0) {
      done?.();
      return;
    }
    this.#hash?.update(b);
    this.size += b.length;
    if (!this.out.write(b, done && ((err) => err || done()))) await once(this.out, 'drain');
  }
  digest(): Digest | undefined {
    return this.#hash ? (`sha256:${this.#hash.digest('hex')}` as Digest) : undefined;
  }
}

function gzipHeader(level: number): Buffer {
  // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=255 (unknown): no name, no time, same bytes everywhere.
  const xfl = level >= 9 ? 2 : level <= 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]);
}

function resolveOptions(opts: CompressOptions) {
  const compression = opts.compression ?? 'gzip';
  const level = opts.level ?? (compression === 'zstd' ? 3 : 6);
  const threads = opts.threads ?? Math.min(availableParallelism(), 8);
  const blockSize = opts.blockSize ?? 128 * 1024;
  if (!['gzip', 'zstd', 'uncompressed'].includes(compression))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `compression "${compression}": expected gzip, zstd or uncompressed`,
    );
  if (compression === 'gzip' && !(Number.isInteger(level) && level >= 0 && level <= 9))
    throw new PolyarchError('INVALID_ARGUMENT', `gzip compression level ${level}: expected 0..9`);
  if (!(Number.isInteger(threads) && threads >= 0 && threads <= 256))
    throw new PolyarchError('INVALID_ARGUMENT', `compression threads ${threads}: expected 0..256`);
  if (!(Number.isInteger(blockSize) && blockSize >= DICT && blockSize <= 16 * 1024 * 1024))
    throw new PolyarchError('INVALID_ARGUMENT', `gzip block size ${blockSize}: expected 32 KiB..16 MiB`);
  return { compression, level, threads, blockSize };
}

type LayerInput = AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>;

/**
 * Compresses `input` into `output`, returning diff_id, blob digest and size. With
 * `hashOutput: false` the blob digest is left out: for an output that hashes what it is given
 * anyway (a content store writer), so the compressed bytes are not hashed twice.
 */
export function compressLayer(
  input: LayerInput,
  output: Writable,
  opts: CompressOptions & { hashOutput: false },
): Promise<Omit<CompressResult, 'digest'>>;
export function compressLayer(
  input: LayerInput,
  output: Writable,
  opts?: CompressOptions,
): Promise<CompressResult>;
export async function compressLayer(
  input: LayerInput,
  output: Writable,
  opts: CompressOptions & { hashOutput?: boolean } = {},
): Promise<Omit<CompressResult, 'digest'> & { digest?: Digest }> {
  const o = resolveOptions(opts);
  const hash = opts.hashOutput !== false;
  if (o.compression === 'gzip') return gzipParallel(input, output, o, hash);
  const raw = new DigestingStream();
  const blob = new DigestingStream();
  if (o.compression === 'zstd') await pipeline(input, raw, (opts.zstd ?? zstdCommand)(o.level), blob, output);
  else await pipeline(input, raw, blob, output);
  return {
    compression: o.compression,
    diffId: raw.digest(),
    uncompressedSize: raw.size,
    ...(hash ? { digest: blob.digest() } : {}),
    size: blob.size,
  };
}

async function gzipParallel(
  input: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>,
  output: Writable,
  o: ReturnType<typeof resolveOptions>,
  hash: boolean,
): Promise<Omit<CompressResult, 'digest'> & { digest?: Digest }> {
  const sink = new Sink(output, hash);
  const raw = createHash('sha256');
  let crc = 0;
  let total = 0;
  // A layer of one block (most of a build's small layers) is deflated here: less work than a
  // message to a worker, let alone starting one. Anything bigger goes to the shared pool, off
  // the main thread, which a build keeps busy. The bytes are the same either way.
  let pool = null as DeflatePool | null;
  const inFlight: Array<Promise<Buffer>> = [];
  // Enough queued blocks to keep every worker busy while the main thread hashes and writes;
  // memory stays bounded at about maxInFlight × blockSize × 2.
  const maxInFlight = Math.max(2, o.threads * 8);
  let dictionary: Buffer | undefined;
  let cur: Buffer = Buffer.allocUnsafeSlow(o.blockSize);
  let pos = 0;
  // Keep a failed job from becoming an unhandled rejection before it is awaited.
  const guard = (p: Promise<Buffer>) => {
    p.catch(() => {});
    return p;
  };

  // A result that fills a whole block's memory is a spent input block holding its output: once
  // written it is free for the next input.
  const emit = (b: Buffer) => {
    const p = pool;
    return sink.write(
      b,
      p && b.byteOffset === 0 && b.buffer.byteLength === o.blockSize
        ? () => p.release(Buffer.from(b.buffer))
        : undefined,
    );
  };

  const submit = async (data: Buffer, last: boolean) => {
    const job = { data, last, level: o.level, ...(dictionary ? { dictionary } : {}) };
    // The next block's dictionary is this block's tail (a copy: `data` may be transferred).
    dictionary = Buffer.from(data.subarray(Math.max(0, data.length - DICT)));
    if (!pool && o.threads > 0 && !last) pool = sharedPool(o.threads);
    inFlight.push(guard(pool ? pool.run(job) : Promise.resolve().then(() => deflateBlock(job))));
    while (inFlight.length >= maxInFlight) await emit(await inFlight.shift()!);
  };

  try {
    await sink.write(gzipHeader(o.level));
    // Reading small files, hashing and copying run synchronously between awaits: give the
    // event loop its turns (a build packs layers while other steps run).
    const turn = loopTurns();
    for await (const c of input) {
      await turn();
      let chunk = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      raw.update(chunk);
      crc = crc32(chunk, crc);
      total += chunk.length;
      while (chunk.length > 0) {
        if (pos === o.blockSize) {
          // Only now is it known that this full block is not the last one.
          await submit(cur, false);
          cur = pool?.take(o.blockSize) ?? Buffer.allocUnsafeSlow(o.blockSize);
          pos = 0;
        }
        const n = Math.min(chunk.length, o.blockSize - pos);
        chunk.copy(cur, pos, 0, n);
        pos += n;
        chunk = chunk.subarray(n);
      }
    }
    await submit(cur.subarray(0, pos), true);
    while (inFlight.length > 0) await emit(await inFlight.shift()!);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(total % 2 ** 32, 4);
    await sink.write(trailer);
    output.end();
    if (!output.writableFinished) await once(output, 'finish');
  } catch (err) {
    output.destroy();
    throw err instanceof PolyarchError
      ? err
      : new PolyarchError('IO', `compressing layer: ${errorMessage(err)}`, { cause: err });
  }
  return {
    compression: 'gzip',
    diffId: `sha256:${raw.digest('hex')}` as Digest,
    uncompressedSize: total,
    ...(hash ? { digest: sink.digest() } : {}),
    size: sink.size,
  };
}

/** zstd through the `zstd` command (Debian package zstd), single-threaded for stable bytes. */
export function zstdCommand(level: number): Duplex {
  return commandDuplex('zstd', ['-q', '-c', `-${level}`, '-T1', '--no-progress']);
}

function commandDuplex(cmd: string, args: string[]): Duplex {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const out = new PassThrough();
  child.stdout.pipe(out, { end: false });
  const dup = Duplex.from({ writable: child.stdin, readable: out });
  child.on('error', (err) =>
    dup.destroy(
      new PolyarchError(
        'UNSUPPORTED',
        `${cmd}: ${errorMessage(err)} (zstd needs the zstd command on Node 20)`,
        {
          cause: err,
        },
      ),
    ),
  );
  child.on('close', (code) => {
    if (code === 0) out.end();
    else dup.destroy(new PolyarchError('IO', `${cmd} exited with code ${code}: ${stderr.trim()}`));
  });
  return dup;
}

/** Which compression a blob uses, from its first bytes. */
export function detectCompression(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'uncompressed';
}

/** Decompresses a layer blob, choosing the codec by magic number. */
export async function openLayer(
  input: Readable,
  opts: { zstdDecoder?: () => Duplex } = {},
): Promise<{ compression: Compression; stream: Readable }> {
  const { head, stream: source } = await peek(input, 4);
  const compression = detectCompression(head);
  if (compression === 'uncompressed') return { compression, stream: source };
  const decoder =
    compression === 'gzip'
      ? createGunzip({ chunkSize: 256 * 1024 })
      : (opts.zstdDecoder ?? (() => commandDuplex('zstd', ['-q', '-d', '-c'])))();
  const stream = new PassThrough({ highWaterMark: 256 * 1024 });
  pipeline(source, decoder, stream).catch((err) => stream.destroy(err));
  return { compression, stream };
}

/** Reads at least n bytes (or to the end) and gives back a stream that still starts with them. */
async function peek(input: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const c = input.read() as Buffer | null;
    if (c !== null) {
      parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
      got += c.length;
      continue;
    }
    if (input.readableEnded) break;
    const ended = once(input, 'end').then(() => true);
    const readable = once(input, 'readable').then(() => false);
    if (await Promise.race([ended, readable])) break;
  }
  const head = Buffer.concat(parts);
  if (input.readableEnded) return { head, stream: Readable.from([head]) };
  if (head.length > 0) input.unshift(head);
  return { head, stream: input };
}

export { layerMediaType } from '../oci/mediatypes.js';
