/**
 * The store's verified blob writer (ContentStore.writer): bytes go to a temp file under
 * `<store>/ingest/`, hashed on the way; commit() checks digest and size, then hands the file to
 * the store, which leases it (leases.ts) and renames it into blobs/.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { unlink } from 'node:fs/promises';
import { type Digest, digestAlgorithm } from '../oci/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import type { BlobInfo, BlobWriter, ContentStore, IngestExpect } from './store.js';

function ioError(what: string, err: unknown): PolyarchError {
  return new PolyarchError('IO', `${what}: ${errorMessage(err)}`, { cause: err });
}

export function whatOf(expect: IngestExpect): string {
  return expect.what ?? (expect.digest ? `blob ${expect.digest}` : 'blob');
}

export class IngestWriter implements BlobWriter {
  readonly #store: ContentStore;
  readonly #fh: FileHandle;
  readonly #path: string;
  readonly #expect: IngestExpect;
  readonly #hash: Hash;
  readonly #alg: string;
  #offset = 0;
  #closed = false;

  constructor(store: ContentStore, fh: FileHandle, path: string, expect: IngestExpect) {
    this.#store = store;
    this.#fh = fh;
    this.#path = path;
    this.#expect = expect;
    this.#alg = expect.digest ? digestAlgorithm(expect.digest) : 'sha256';
    this.#hash = createHash(this.#alg);
  }

  get offset(): number {
    return this.#offset;
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.#closed)
      throw new PolyarchError('INTERNAL', `write to a finished writer for ${whatOf(this.#expect)}`);
    const limit = this.#expect.size;
    if (limit !== undefined && this.#offset + chunk.length > limit) {
      // Fail early: a blob that outgrows its descriptor will never verify.
      await this.abort();
      throw new PolyarchError(
        'SIZE_MISMATCH',
        `size mismatch writing ${whatOf(this.#expect)}: expected ${limit} bytes, got more than ${limit}`,
      );
    }
    this.#hash.update(chunk);
    let done = 0;
    try {
      while (done < chunk.length) {
        const { bytesWritten } = await this.#fh.write(chunk, done, chunk.length - done);
        done += bytesWritten;
      }
    } catch (err) {
      await this.abort();
      throw ioError(`cannot write ${whatOf(this.#expect)} to ${this.#path}`, err);
    }
    this.#offset += chunk.length;
  }

  async commit(): Promise<BlobInfo> {
    if (this.#closed)
      throw new PolyarchError('INTERNAL', `commit of a finished writer for ${whatOf(this.#expect)}`);
    this.#closed = true;
    try {
      await this.#fh.sync();
    } catch (err) {
      await this.#fh.close().catch(() => {});
      await unlink(this.#path).catch(() => {});
      throw ioError(`cannot sync ${this.#path}`, err);
    }
    await this.#fh.close();
    const size = this.#offset;
    const digest = `${this.#alg}:${this.#hash.digest('hex')}` as Digest;
    const { digest: wantDigest, size: wantSize } = this.#expect;
    let mismatch: PolyarchError | undefined;
    if (wantSize !== undefined && size !== wantSize)
      mismatch = new PolyarchError(
        'SIZE_MISMATCH',
        `size mismatch writing ${whatOf(this.#expect)}: expected ${wantSize} bytes, got ${size}`,
      );
    else if (wantDigest !== undefined && digest !== wantDigest)
      mismatch = new PolyarchError(
        'DIGEST_MISMATCH',
        `digest mismatch writing ${whatOf(this.#expect)}: expected ${wantDigest}, got ${digest}`,
      );
    if (mismatch) {
      await unlink(this.#path).catch(() => {});
      throw mismatch;
    }
    await this.#store._commitTemp(this.#path, { digest, size });
    return { digest, size };
  }

  async abort(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#fh.close().catch(() => {});
    }
    await unlink(this.#path).catch(() => {});
  }
}
