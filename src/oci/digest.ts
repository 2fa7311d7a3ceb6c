/**
 * Content digests: the branded `Digest` type, parsing/validation, and sha256 computed
 * while data streams past (`DigestingStream`), so no blob is ever held in memory to be
 * hashed.
 *
 *   const d = parseDigest('sha256:…');          // throws INVALID_DIGEST naming the input
 *   const d2 = sha256Digest(bytes);             // of a Buffer
 *   const t = new DigestingStream();            // pipe data through; t.digest(), t.size
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { PolyarchError } from '../util/errors.js';

declare const digestBrand: unique symbol;
/** `algorithm:hex`, validated. Only sha256 and sha512 are accepted, as in the OCI spec's registered set. */
export type Digest = string & { readonly [digestBrand]: true };

const ALGORITHMS: Record<string, number> = { sha256: 64, sha512: 128 };

/** Validates `s` as an OCI digest (registered algorithms, lower-case hex of the right length). */
export function parseDigest(s: string): Digest {
  const colon = s.indexOf(':');
  if (colon <= 0) throw new PolyarchError('INVALID_DIGEST', `invalid digest "${s}": expected algorithm:hex`);
  const alg = s.slice(0, colon);
  const hex = s.slice(colon + 1);
  const len = ALGORITHMS[alg];
  if (len === undefined)
    throw new PolyarchError(
      'INVALID_DIGEST',
      `invalid digest "${s}": unsupported algorithm "${alg}" (sha256, sha512)`,
    );
  if (hex.length !== len || !/^[a-f0-9]+$/.test(hex))
    throw new PolyarchError(
      'INVALID_DIGEST',
      `invalid digest "${s}": ${alg} needs ${len} lower-case hex characters`,
    );
  return s as Digest;
}

export function isDigest(s: unknown): s is Digest {
  if (typeof s !== 'string') return false;
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

export function digestAlgorithm(d: Digest): string {
  return d.slice(0, d.indexOf(':'));
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

/** A pass-through stream that hashes and counts what flows through it. */
export class DigestingStream extends Transform {
  #hash: Hash;
  #alg: string;
  #size = 0;
  #digest: Digest | undefined;

  constructor(algorithm: 'sha256' | 'sha512' = 'sha256') {
    super();
    this.#alg = algorithm;
    this.#hash = createHash(algorithm);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.#digest = `${this.#alg}:${this.#hash.digest('hex')}` as Digest;
    cb();
  }

  get size(): number {
    return this.#size;
  }

  /** The digest of everything that passed; only valid once the stream has ended. */
  digest(): Digest {
    if (!this.#digest) throw new PolyarchError('INTERNAL', 'digest requested before the stream ended');
    return this.#digest;
  }
}
