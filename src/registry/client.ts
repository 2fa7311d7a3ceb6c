/**
 * Registry operations on repositories: manifests (GET/HEAD/PUT) and blobs (HEAD, streamed
 * GET with Range resume, monolithic or chunked upload with resume, cross-repository mount).
 *
 *   const c = new RegistryClient({ config, env });
 *   const m = await c.getManifest(ref);                 // { bytes, mediaType, digest }
 *   await c.fetchBlob(ref, desc, writer);                // streams into a BlobWriter
 *   await c.pushBlob(ref, desc, (start, end) => createReadStream(p, { start, end: end - 1 }));
 *   await c.close();
 *
 * Nothing is ever held in memory whole except manifests and configs (bounded to 4 MiB by the
 * bytes received, whatever Content-Length says); transfers that stall or trickle fail (limits.ts).
 */
import { PassThrough, type Readable, Transform } from 'node:stream';
import { type Descriptor, type Digest, MediaType, sha256Digest } from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';
import { RegistryError } from './errors.js';
import { formatReference, manifestReference, type Reference, repositoryName } from '../oci/reference.js';
import { header, pullScope, pushScope, Transport, type TransportOptions } from './transport.js';

/** Largest manifest accepted, as containerd's limit. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/**
 * Blobs above this size are uploaded in chunks (PATCH), which a dropped connection resumes;
 * smaller ones in one PUT, as containerd sends every blob. Each PATCH costs the registry a
 * round of bookkeeping: with 8 MiB chunks above 16 MiB, pushing 2 × 62 MiB of layers took
 * ~25% longer than with one PUT per blob (bench/push.ts). Default 64 MiB.
 */
export const DEFAULT_CHUNK_THRESHOLD = 64 * 1024 * 1024;
/** Size of each PATCH chunk; default 32 MiB. */
export const DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024;
/** Times a dropped blob transfer is resumed before giving up. */
const RESUMES = 5;

export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
].join(', ');

export interface ClientOptions extends TransportOptions {
  chunkThreshold?: number;
  chunkSize?: number;
}

/** What a blob write into the local store needs (the content store's BlobWriter). */
export interface BlobSink {
  readonly offset: number;
  write(chunk: Uint8Array): Promise<void>;
  commit(): Promise<{ digest: Digest; size: number }>;
  abort(): Promise<void>;
}

export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

/** What a blob transfer reports; src/image turns it into progress statuses. */
export interface TransferUpdate {
  /**
   * `start` began; `progress` bytes moved; `done` finished and verified; `exists` already
   * at the destination; `mounted` cross-repository mount; `resume` a dropped transfer
   * continues at `done`.
   */
  status: 'start' | 'progress' | 'done' | 'exists' | 'mounted' | 'resume';
  done: number;
  total: number;
}

export type TransferCallback = (u: TransferUpdate) => void;

export class RegistryClient {
  readonly transport: Transport;
  readonly chunkThreshold: number;
  readonly chunkSize: number;

  constructor(opts: ClientOptions = {}) {
    this.transport = new Transport(opts);
    this.chunkThreshold = opts.chunkThreshold ?? DEFAULT_CHUNK_THRESHOLD;
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /** GET /v2/ with the challenge flow: succeeds only if the registry accepts our credentials. */
  async ping(host: string): Promise<void> {
    const res = await this.transport.request({
      host,
      method: 'GET',
      path: '/v2/',
      scopes: [],
      expect: [200],
      what: `checking ${host}`,
    });
    await res.discard();
  }

  async getManifest(ref: Reference, opts: { mirrors?: boolean } = {}): Promise<FetchedManifest> {
    const what = `GET manifest ${formatReference(ref)}`;
    const res = await this.transport.request({
      host: ref.domain,
      method: 'GET',
      path: `/v2/${ref.path}/manifests/${manifestReference(ref)}`,
      headers: { accept: MANIFEST_ACCEPT },
      scopes: [pullScope(ref.path)],
      expect: [200],
      what,
      mirrors: opts.mirrors ?? true,
    });
    const len = Number(header(res, 'content-length') ?? 0);
    if (len > MAX_MANIFEST_BYTES) {
      res.body.destroy();
      throw new PolyarchError(
        'INVALID_MANIFEST',
        `${what}: manifest of ${len} bytes exceeds ${MAX_MANIFEST_BYTES}`,
      );
    }
    const bytes = await res.read(MAX_MANIFEST_BYTES, 'manifest');
    const digest = sha256Digest(bytes);
    if (ref.digest && ref.digest !== digest)
      throw new PolyarchError('DIGEST_MISMATCH', `${what}: content has digest ${digest}, not ${ref.digest}`);
    const mediaType = (header(res, 'content-type') ?? '').split(';')[0]!.trim();
    return { bytes, mediaType, digest };
  }

  /** HEAD a manifest: its descriptor, or undefined when the registry does not have it. */
  async headManifest(
    ref: Reference,
  ): Promise<{ digest?: Digest; mediaType: string; size: number } | undefined> {
    const res = await this.transport.request({
      host: ref.domain,
      method: 'HEAD',
      path: `/v2/${ref.path}/manifests/${manifestReference(ref)}`,
      headers: { accept: MANIFEST_ACCEPT },
      scopes: [pullScope(ref.path)],
      expect: [200, 404],
      what: `HEAD manifest ${formatReference(ref)}`,
    });
    await res.discard();
    if (res.status === 404) return undefined;
    const d = header(res, 'docker-content-digest');
    return {
      ...(d ? { digest: d as Digest } : {}),
      mediaType: (header(res, 'content-type') ?? '').split(';')[0]!.trim(),
      size: Number(header(res, 'content-length') ?? 0),
    };
  }

  /** PUT a manifest under `tagOrDigest`; returns the digest of the bytes sent. */
  async putManifest(ref: Reference, tagOrDigest: string, bytes: Buffer, mediaType: string): Promise<Digest> {
    const res = await this.transport.request({
      host: ref.domain,
      method: 'PUT',
      path: `/v2/${ref.path}/manifests/${tagOrDigest}`,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: () => bytes,
      scopes: [pushScope(ref.path)],
      expect: [201, 200],
      what: `PUT manifest ${repositoryName(ref)}:${tagOrDigest}`,
    });
    await res.discard();
    return sha256Digest(bytes);
  }

  /** Reads a small blob (an image config) into memory, verifying its digest; at most 4 MiB. */
  async fetchConfig(ref: Reference, desc: Descriptor): Promise<Buffer> {
    const what = `GET blob ${repositoryName(ref)}@${desc.digest}`;
    if (desc.size > MAX_MANIFEST_BYTES)
      throw new PolyarchError(
        'INVALID_MANIFEST',
        `${what}: a config of ${desc.size} bytes exceeds ${MAX_MANIFEST_BYTES}`,
      );
    const res = await this.transport.request({
      host: ref.domain,
      method: 'GET',
      path: `/v2/${ref.path}/blobs/${desc.digest}`,
      scopes: [pullScope(ref.path)],
      expect: [200],
      what,
      mirrors: true,
    });
    // The descriptor names the size: a byte more is already wrong.
    const bytes = await res.read(desc.size, `config (${desc.size} bytes in the manifest)`);
    const digest = sha256Digest(bytes);
    if (digest !== desc.digest)
      throw new PolyarchError('DIGEST_MISMATCH', `${what}: content has digest ${digest}, not ${desc.digest}`);
    return bytes;
  }

  /**
   * A blob's bytes [start, end) as a stream, for copying between registries without a
   * local copy. The request starts at once; errors surface on the stream.
   */
  blobStream(ref: Reference, digest: Digest, start: number, end: number): Readable {
    const out = new PassThrough();
    if (end <= start) {
      out.end();
      return out;
    }
    this.transport
      .request({
        host: ref.domain,
        method: 'GET',
        path: `/v2/${ref.path}/blobs/${digest}`,
        headers: { range: `bytes=${start}-${end - 1}` },
        scopes: [pullScope(ref.path)],
        expect: [200, 206],
        what: `GET blob ${repositoryName(ref)}@${digest}`,
        mirrors: true,
      })
      .then(async (res) => {
        // A server that ignores Range sends everything: cut out [start, end).
        let skip = res.status === 200 ? start : 0;
        let left = end - start;
        for await (const chunk of res.chunks()) {
          let c = chunk;
          if (skip) {
            const n = Math.min(skip, c.length);
            c = c.subarray(n);
            skip -= n;
          }
          if (c.length > left) c = c.subarray(0, left);
          left -= c.length;
          if (c.length && !out.write(c)) await new Promise((r) => out.once('drain', r));
          if (left === 0) break;
        }
        out.end();
      })
      .catch((err: unknown) => out.destroy(err as Error));
    return out;
  }

  /** The size of a blob in the repository, or undefined if it is not there. */
  async blobSize(ref: Reference, digest: Digest, push = false): Promise<number | undefined> {
    const res = await this.transport.request({
      host: ref.domain,
      method: 'HEAD',
      path: `/v2/${ref.path}/blobs/${digest}`,
      scopes: [push ? pushScope(ref.path) : pullScope(ref.path)],
      expect: [200, 404],
      what: `HEAD blob ${repositoryName(ref)}@${digest}`,
    });
    await res.discard();
    return res.status === 200 ? Number(header(res, 'content-length') ?? 0) : undefined;
  }

  /**
   * Streams a blob into `sink`, resuming with `Range: bytes=<offset>-` after a dropped
   * connection, then commits (the sink verifies digest and size).
   */
  async fetchBlob(
    ref: Reference,
    desc: Descriptor,
    sink: BlobSink,
    progress?: TransferCallback,
  ): Promise<void> {
    const what = `GET blob ${repositoryName(ref)}@${desc.digest}`;
    let resumes = 0;
    progress?.({ status: 'start', done: sink.offset, total: desc.size });
    try {
      while (sink.offset < desc.size || desc.size === 0) {
        const offset = sink.offset;
        const res = await this.transport.request({
          host: ref.domain,
          method: 'GET',
          path: `/v2/${ref.path}/blobs/${desc.digest}`,
          headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
          scopes: [pullScope(ref.path)],
          expect: [200, 206],
          what,
          mirrors: true,
        });
        // A server that ignores Range sends the whole blob again: skip what we have.
        let skip = offset > 0 && res.status === 200 ? offset : 0;
        try {
          for await (const chunk of res.chunks()) {
            let c = chunk;
            if (skip > 0) {
              if (c.length <= skip) {
                skip -= c.length;
                continue;
              }
              c = c.subarray(skip);
              skip = 0;
            }
            if (sink.offset + c.length > desc.size)
              throw new PolyarchError('SIZE_MISMATCH', `${what}: more than the expected ${desc.size} bytes`);
            await sink.write(c);
            progress?.({ status: 'progress', done: sink.offset, total: desc.size });
          }
          // A body that ended early without an error is a drop too: resume below.
          if (sink.offset >= desc.size) break;
          if (resumes++ >= RESUMES)
            throw new PolyarchError('SIZE_MISMATCH', `${what}: got ${sink.offset} of ${desc.size} bytes`);
        } catch (err) {
          // A stall (a temporary RegistryError) resumes like a drop; a trickle, a size or
          // digest error does not.
          const final = err instanceof PolyarchError && !(err instanceof RegistryError && err.temporary);
          if (final || resumes++ >= RESUMES) throw err;
          res.body.destroy();
        }
        progress?.({ status: 'resume', done: sink.offset, total: desc.size });
      }
      await sink.commit();
      progress?.({ status: 'done', done: desc.size, total: desc.size });
    } catch (err) {
      await sink.abort().catch(() => {});
      throw err;
    }
  }

  /**
   * Uploads a blob unless the repository has it. `open(start, end)` streams bytes
   * [start, end) of the blob. With `mountFrom` (another repository on the same registry
   * holding the blob) a cross-repository mount is tried first.
   */
  async pushBlob(
    ref: Reference,
    desc: Descriptor,
    open: (start: number, end: number) => Readable,
    opts: { mountFrom?: string; progress?: TransferCallback } = {},
  ): Promise<'exists' | 'mounted' | 'uploaded'> {
    const repo = repositoryName(ref);
    const what = `uploading blob ${desc.digest} to ${repo}`;
    const progress = opts.progress;
    if ((await this.blobSize(ref, desc.digest, true)) !== undefined) {
      progress?.({ status: 'exists', done: desc.size, total: desc.size });
      return 'exists';
    }
    const scopes = [pushScope(ref.path)];
    let path = `/v2/${ref.path}/blobs/uploads/`;
    if (opts.mountFrom && opts.mountFrom !== ref.path) {
      path += `?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(opts.mountFrom)}`;
      scopes.push(pullScope(opts.mountFrom));
    }
    const begin = (p: string) =>
      this.transport.request({
        host: ref.domain,
        method: 'POST',
        path: p,
        headers: { 'content-length': '0' },
        scopes,
        expect: [201, 202],
        what,
      });
    const start = await begin(path);
    await start.discard();
    if (start.status === 201) {
      progress?.({ status: 'mounted', done: desc.size, total: desc.size });
      return 'mounted';
    }
    let location = this.#location(start, what);
    progress?.({ status: 'start', done: 0, total: desc.size });
    if (desc.size <= this.chunkThreshold) {
      for (let resumes = 0; ; ) {
        try {
          const res = await this.transport.request({
            host: ref.domain,
            method: 'PUT',
            path: withDigestParam(location, desc.digest),
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
            body: () => counting(open(0, desc.size), 0, desc.size, progress),
            scopes: [pushScope(ref.path)],
            expect: [201],
            what,
            retries: 0,
            commit: true,
          });
          await res.discard();
          break;
        } catch (err) {
          // A PUT cut mid-body leaves part of it in the session, whose state (offset 0) no
          // longer matches: sending it to the same location again is BLOB_UPLOAD_INVALID.
          // Start a new session and send the whole blob again.
          if (
            resumes++ >= RESUMES ||
            (err instanceof RegistryError && !err.temporary && err.code !== 'UNREACHABLE')
          )
            throw err;
          const after = err instanceof RegistryError ? err.retryAfterMs : undefined;
          await sleep(after !== undefined ? Math.min(after, 10_000) : 100 * 2 ** resumes);
          const again = await begin(`/v2/${ref.path}/blobs/uploads/`);
          await again.discard();
          location = this.#location(again, what);
          progress?.({ status: 'resume', done: 0, total: desc.size });
        }
      }
    } else {
      let offset = 0;
      let resumes = 0;
      const restart = async () => {
        const again = await begin(`/v2/${ref.path}/blobs/uploads/`);
        await again.discard();
        location = this.#location(again, what);
        offset = 0;
      };
      for (;;) {
        while (offset < desc.size) {
          const end = Math.min(offset + this.chunkSize, desc.size);
          try {
            const res = await this.transport.request({
              host: ref.domain,
              method: 'PATCH',
              path: location,
              headers: {
                'content-type': 'application/octet-stream',
                'content-range': `${offset}-${end - 1}`,
                'content-length': String(end - offset),
              },
              body: () => counting(open(offset, end), offset, desc.size, progress),
              scopes: [pushScope(ref.path)],
              expect: [202],
              what,
              retries: 0,
            });
            await res.discard();
            location = this.#location(res, what);
            offset = end;
            progress?.({ status: 'progress', done: offset, total: desc.size });
          } catch (err) {
            // A dropped PATCH may have landed partly: ask the registry where the upload stands
            // (416: our offset and the registry's disagree — ask too).
            if (
              resumes++ >= RESUMES ||
              (err instanceof RegistryError &&
                !err.temporary &&
                err.code !== 'UNREACHABLE' &&
                err.status !== 416)
            )
              throw err;
            // Give the registry a moment to finish writing what it got of the cut request, so
            // the status it reports is final.
            await sleep(100 * 2 ** (resumes - 1));
            const st = await this.transport.request({
              host: ref.domain,
              method: 'GET',
              path: location,
              scopes: [pushScope(ref.path)],
              expect: [204, 404],
              what,
            });
            await st.discard();
            if (st.status === 204) {
              const range = header(st, 'range');
              offset = range ? Number(range.split('-')[1]) + 1 : 0;
              location = this.#location(st, what, location);
            } else {
              // distribution cancels a session whose last PATCH was cut (its offset no longer
              // matches the stored state): start a new session from the first byte.
              await restart();
            }
            progress?.({ status: 'resume', done: offset, total: desc.size });
          }
        }
        try {
          const res = await this.transport.request({
            host: ref.domain,
            method: 'PUT',
            path: withDigestParam(location, desc.digest),
            headers: { 'content-length': '0' },
            scopes: [pushScope(ref.path)],
            expect: [201],
            what,
            commit: true,
          });
          await res.discard();
          break;
        } catch (err) {
          // After a resume the registry may still have appended the tail of the cut request
          // once it had reported its status: the content no longer matches the digest. Send
          // the whole blob again in a new session.
          const spoilt =
            err instanceof RegistryError &&
            (err.hasCode('DIGEST_INVALID') || err.hasCode('BLOB_UPLOAD_INVALID') || err.status === 416);
          if (!spoilt || resumes === 0 || resumes++ >= RESUMES) throw err;
          await restart();
          progress?.({ status: 'resume', done: 0, total: desc.size });
        }
      }
    }
    progress?.({ status: 'done', done: desc.size, total: desc.size });
    return 'uploaded';
  }

  #location(
    res: { headers: Record<string, string | string[] | undefined>; url: string },
    what: string,
    fallback?: string,
  ): string {
    const loc = header(res, 'location');
    if (!loc) {
      if (fallback) return fallback;
      throw new RegistryError('REGISTRY', `${what}: the registry sent no upload Location`);
    }
    return new URL(loc, res.url).toString();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `r` passed through, reporting bytes sent (from `base`) as they are read. */
function counting(r: Readable, base: number, total: number, progress?: TransferCallback): Readable {
  if (!progress) return r;
  let done = base;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      done += chunk.length;
      progress({ status: 'progress', done, total });
      cb(null, chunk);
    },
  });
  r.on('error', (err) => t.destroy(err));
  return r.pipe(t);
}

function withDigestParam(location: string, digest: Digest): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}
