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
 * Nothing is ever held in memory whole except manifests (bounded to 4 MiB).
 */
import { PassThrough, type Readable } from 'node:stream';
import { type Descriptor, type Digest, MediaType, sha256Digest } from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';
import { RegistryError } from './errors.js';
import type { TransferEvent } from './progress.js';
import { formatReference, manifestReference, type Reference, repositoryName } from '../oci/reference.js';
import { header, pullScope, pushScope, Transport, type TransportOptions } from './transport.js';

/** Largest manifest accepted, as containerd's limit. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Blobs above this size are uploaded in chunks (PATCH); default 16 MiB. */
export const DEFAULT_CHUNK_THRESHOLD = 16 * 1024 * 1024;
/** Size of each PATCH chunk; default 8 MiB. */
export const DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024;
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

type Progress = (e: Pick<TransferEvent, 'status' | 'done' | 'total'>) => void;

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
    await res.body.dump();
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
      await res.body.dump();
      throw new PolyarchError(
        'INVALID_MANIFEST',
        `${what}: manifest of ${len} bytes exceeds ${MAX_MANIFEST_BYTES}`,
      );
    }
    const bytes = Buffer.from(await res.body.arrayBuffer());
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
    await res.body.dump();
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
    await res.body.dump();
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
    const bytes = Buffer.from(await res.body.arrayBuffer());
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
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
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
    await res.body.dump();
    return res.status === 200 ? Number(header(res, 'content-length') ?? 0) : undefined;
  }

  /**
   * Streams a blob into `sink`, resuming with `Range: bytes=<offset>-` after a dropped
   * connection, then commits (the sink verifies digest and size).
   */
  async fetchBlob(ref: Reference, desc: Descriptor, sink: BlobSink, progress?: Progress): Promise<void> {
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
          for await (const chunk of res.body as AsyncIterable<Buffer>) {
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
          if (err instanceof PolyarchError || resumes++ >= RESUMES) throw err;
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
    opts: { mountFrom?: string; progress?: Progress } = {},
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
    await start.body.dump();
    if (start.status === 201) {
      progress?.({ status: 'mounted', done: desc.size, total: desc.size });
      return 'mounted';
    }
    let location = this.#location(start, what);
    progress?.({ status: 'start', done: 0, total: desc.size });
    if (desc.size <= this.chunkThreshold) {
      const res = await this.transport.request({
        host: ref.domain,
        method: 'PUT',
        path: withDigestParam(location, desc.digest),
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
        body: () => open(0, desc.size),
        scopes: [pushScope(ref.path)],
        expect: [201],
        what,
      });
      await res.body.dump();
    } else {
      let offset = 0;
      let resumes = 0;
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
            body: () => open(offset, end),
            scopes: [pushScope(ref.path)],
            expect: [202],
            what,
            retries: 0,
          });
          await res.body.dump();
          location = this.#location(res, what);
          offset = end;
          progress?.({ status: 'progress', done: offset, total: desc.size });
        } catch (err) {
          // A dropped PATCH may have landed partly: ask the registry where the upload stands.
          if (
            resumes++ >= RESUMES ||
            (err instanceof RegistryError && !err.temporary && err.code !== 'UNREACHABLE')
          )
            throw err;
          const st = await this.transport.request({
            host: ref.domain,
            method: 'GET',
            path: location,
            scopes: [pushScope(ref.path)],
            expect: [204, 404],
            what,
          });
          await st.body.dump();
          if (st.status === 204) {
            const range = header(st, 'range');
            offset = range ? Number(range.split('-')[1]) + 1 : 0;
            location = this.#location(st, what, location);
          } else {
            // distribution cancels a session whose last PATCH was cut (its offset no longer
            // matches the stored state): start a new session from the first byte.
            const again = await begin(`/v2/${ref.path}/blobs/uploads/`);
            await again.body.dump();
            location = this.#location(again, what);
            offset = 0;
          }
          progress?.({ status: 'resume', done: offset, total: desc.size });
        }
      }
      const res = await this.transport.request({
        host: ref.domain,
        method: 'PUT',
        path: withDigestParam(location, desc.digest),
        headers: { 'content-length': '0' },
        scopes: [pushScope(ref.path)],
        expect: [201],
        what,
      });
      await res.body.dump();
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

function withDigestParam(location: string, digest: Digest): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}
