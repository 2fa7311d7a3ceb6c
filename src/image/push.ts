/**
 * Pushes an image from the local content store to a registry.
 *
 *   const r = await push('127.0.0.1:5000/app:1', { store });            // to where it is named
 *   const r = await push('app:1', { store, target: '127.0.0.1:5000/x:2' });
 *   r.digest   // digest of the root manifest/index as the registry stores it
 *
 * Order: each manifest's blobs (concurrently, bounded), then the manifest (by digest), and
 * the index last, under the tag. Blobs the registry has are skipped (HEAD); blobs of an image
 * named in another repository of the same registry are mounted instead of uploaded. A
 * registry that refuses OCI documents (MANIFEST_INVALID, 400, 415) gets them once more in
 * Docker schema 2 media types, with a warning: that changes their digests.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { ContentStore, LeaseHandle } from '../content/index.js';
import {
  type Descriptor,
  type Digest,
  encodeJson,
  type Index,
  isIndexType,
  type Manifest,
  parseImageDocument,
  sha256Digest,
} from '../oci/index.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryError } from '../registry/errors.js';
import { mapLimit, Semaphore } from '../util/concurrency.js';
import type { ProgressWriter } from '../progress/index.js';
import { Step } from './progress.js';
import {
  formatReference,
  parseReference,
  type Reference,
  repositoryName,
  withDigest,
} from '../oci/reference.js';
import { PolyarchError } from '../util/errors.js';
import {
  DEFAULT_CONCURRENCY,
  dockerMediaType,
  descriptorPlatform,
  openClient,
  withContext,
} from './remote.js';
import { formatPlatform } from '../platform/index.js';

export interface PushOptions {
  store: ContentStore;
  /** Where to push; default: the reference the image is stored under. */
  target?: string;
  client?: RegistryClient;
  /** Where to report: a `pushing <ref>` vertex with a byte status per blob (`exists sha256:…`,
   * `mounted sha256:…` when nothing moved) and one per manifest. Default: no progress. */
  progress?: ProgressWriter;
  /** Blobs moved at once; default 4. */
  concurrency?: number;
  env?: NodeJS.ProcessEnv;
  warn?: (message: string) => void;
  /**
   * Images known to hold some of the blobs, by blob digest (e.g. a build's base image for its
   * base layers): on the same registry, those blobs are mounted from there instead of uploaded.
   */
  mountSources?: ReadonlyMap<string, string>;
}

export interface PushResult {
  name: string;
  digest: Digest;
  mediaType: string;
  size: number;
  /** What happened to each blob (config and layers): sent, already there, or mounted. */
  blobs: { uploaded: number; existing: number; mounted: number };
}

/** The stored image named `input`: by its normalised reference, else by the exact name. */
export async function resolveLocal(
  store: ContentStore,
  input: string,
): Promise<{ name: string; desc: Descriptor } | undefined> {
  let name = input;
  try {
    name = formatReference(parseReference(input));
  } catch {
    // a plain name in the store, not a registry reference
  }
  const byName = await store.resolve(name);
  if (byName) return { name, desc: byName };
  const exact = name === input ? undefined : await store.resolve(input);
  return exact ? { name: input, desc: exact } : undefined;
}

export async function push(refInput: string, opts: PushOptions): Promise<PushResult> {
  const targetRef = parseReference(opts.target ?? refInput);
  const name = formatReference(targetRef);
  const client =
    opts.client ?? (await openClient({ env: opts.env, ...(opts.warn ? { warn: opts.warn } : {}) }));
  let lease: LeaseHandle | undefined;
  try {
    // A lease (content/leases.ts) keeps what the push reads from a concurrent rmi or prune.
    lease = await opts.store.lease('push');
    const local = await resolveLocal(opts.store, refInput);
    if (!local) throw new PolyarchError('NOT_FOUND', `no image named "${refInput}" in the local store`);
    // The repository on the target's registry each source name is in, if it is there.
    const sameRegistry = (source: string): string | undefined => {
      try {
        const src = parseReference(source);
        if (src.domain === targetRef.domain && src.path !== targetRef.path) return src.path;
      } catch {
        // not a registry name: nothing to mount from
      }
      return undefined;
    };
    const mountFrom = sameRegistry(local.name);
    const mounts = new Map<string, string>();
    for (const [digest, source] of opts.mountSources ?? []) {
      const repo = sameRegistry(source);
      if (repo) mounts.set(digest, repo);
    }
    const desc = local.desc;
    const r = await new Step(opts.progress, `push:${name}`, `pushing ${name}`).run((step) =>
      new Pusher(client, opts, targetRef, mountFrom, mounts, step).pushRoot(desc, name),
    );
    await pushAttestations(client, targetRef, opts, desc, r.digest);
    return r;
  } catch (err) {
    throw withContext(`pushing ${name}`, err);
  } finally {
    await lease?.release();
    if (!opts.client) await client.close();
  }
}

/**
 * The attestations the store keeps for the pushed image's platform manifests (src/attest), as
 * referrers of them. Not when the registry was given converted documents: their digests, the
 * attestations' subjects, changed.
 */
async function pushAttestations(
  client: RegistryClient,
  ref: Reference,
  opts: PushOptions,
  desc: Descriptor,
  pushed: Digest,
): Promise<void> {
  const { localReferrers, pushReferrers } = await import('../attest/attach.js');
  let subjects: Digest[] = [desc.digest];
  if (isIndexType(desc.mediaType)) {
    const doc = parseImageDocument(
      await opts.store.readBlob(desc.digest),
      `index ${desc.digest}`,
      desc.mediaType,
    );
    subjects = doc.kind === 'index' ? doc.index.manifests.map((m) => m.digest) : [];
  }
  const withReferrers: Digest[] = [];
  for (const s of subjects) if ((await localReferrers(opts.store, s)).length > 0) withReferrers.push(s);
  if (withReferrers.length === 0) return;
  if (pushed !== desc.digest) {
    opts.warn?.(
      `${ref.domain} got the image in Docker media types (new digests): its attestations, which name the OCI manifests, are not pushed`,
    );
    return;
  }
  await pushReferrers(client, ref, opts.store, withReferrers, opts.warn);
}

/** Read size of blob bodies: 1 MiB reads are 16× fewer syscalls and socket writes than the 64 KiB default. */
const READ_CHUNK = 1024 * 1024;

function openBlob(store: ContentStore, d: Digest, start: number, end: number): Readable {
  if (end <= start) return Readable.from([]);
  return createReadStream(store.blobPath(d), { start, end: end - 1, highWaterMark: READ_CHUNK });
}

class Pusher {
  /** Bounds blob uploads across all manifests of an index, not per manifest. */
  readonly #slots: Semaphore;
  readonly #warned = new Set<string>();
  readonly blobs = { uploaded: 0, existing: 0, mounted: 0 };
  constructor(
    readonly client: RegistryClient,
    readonly opts: PushOptions,
    readonly ref: Reference,
    readonly mountFrom: string | undefined,
    /** Per blob digest, a repository of the same registry to mount it from. */
    readonly mounts: ReadonlyMap<string, string>,
    readonly step: Step,
  ) {
    this.#slots = new Semaphore(opts.concurrency ?? DEFAULT_CONCURRENCY);
  }

  async pushRoot(desc: Descriptor, name: string): Promise<PushResult> {
    // The tag already names this very image (a warm rebuild pushing again): nothing to send.
    // The registry checked the index's children when it was first put, so one HEAD suffices.
    if (this.ref.tag !== undefined && this.ref.digest === undefined) {
      const remote = await this.client.headManifest(this.ref);
      if (remote?.digest === desc.digest)
        return { name, digest: desc.digest, mediaType: desc.mediaType, size: desc.size, blobs: this.blobs };
    }
    const tag = this.ref.tag ?? desc.digest;
    const pushed = await this.#pushDoc(desc, this.ref.digest && !this.ref.tag ? this.ref.digest : tag);
    if (this.ref.digest && pushed.digest !== this.ref.digest)
      throw new PolyarchError(
        'DIGEST_MISMATCH',
        `the pushed image has digest ${pushed.digest}, not ${this.ref.digest}`,
      );
    return { name, digest: pushed.digest, mediaType: pushed.mediaType, size: pushed.size, blobs: this.blobs };
  }

  /** Pushes a manifest or index and everything below it; returns what the registry now holds. */
  async #pushDoc(desc: Descriptor, tagOrDigest: string): Promise<Descriptor> {
    const store = this.opts.store;
    const bytes = await store.readBlob(desc.digest);
    const doc = parseImageDocument(bytes, `manifest ${desc.digest}`, desc.mediaType);
    if (doc.kind === 'index') {
      const missing: Descriptor[] = [];
      // Children go up together (a 3-platform build's manifests at once, not two then one):
      // their blob uploads share #slots, which is what bounds the traffic.
      const children = await mapLimit(
        doc.index.manifests,
        this.opts.concurrency ?? DEFAULT_CONCURRENCY,
        async (child) => {
          if (await store.has(child.digest)) return this.#pushDoc(child, child.digest);
          // A partially pulled index: the registry may already hold the absent children.
          const remote = await this.client.headManifest(
            withDigest({ domain: this.ref.domain, path: this.ref.path }, child.digest),
          );
          if (!remote) missing.push(child);
          return child;
        },
      );
      if (missing.length)
        throw new PolyarchError(
          'NOT_FOUND',
          `the index lists manifests that are neither in the local store nor in ${repositoryName(this.ref)} (${missing
            // In the index's order, whichever HEAD answered first.
            .sort((a, b) => doc.index.manifests.indexOf(a) - doc.index.manifests.indexOf(b))
            .map((d) => (d.platform ? formatPlatform(descriptorPlatform(d)!) : d.digest))
            .join(', ')}); pull it with --all-platforms first`,
        );
      const changed = children.some((c, i) => c.digest !== doc.index.manifests[i]!.digest);
      if (changed) {
        const index: Index = { ...doc.index, manifests: children };
        return this.#putManifest(encodeJson(index), doc.mediaType, tagOrDigest, true);
      }
      return this.#putManifest(bytes, doc.mediaType, tagOrDigest, false);
    }
    const m = doc.manifest;
    const blobs = [m.config, ...m.layers.filter((l) => !l.urls?.length)];
    const pushBlobs = () =>
      Promise.all(
        blobs.map((b) =>
          this.#slots.run(async () => {
            const from = this.mounts.get(b.digest) ?? this.mountFrom;
            const outcome = await this.client.pushBlob(
              this.ref,
              b,
              (s, e) => openBlob(store, b.digest, s, e),
              {
                ...(from ? { mountFrom: from } : {}),
                progress: this.step.blob(b.digest, b.size),
              },
            );
            if (outcome === 'exists') this.blobs.existing++;
            else if (outcome === 'mounted') this.blobs.mounted++;
            else this.blobs.uploaded++;
          }),
        ),
      );
    await pushBlobs();
    return this.#putManifest(bytes, doc.mediaType, tagOrDigest, false, pushBlobs);
  }

  /**
   * `repushBlobs`: for a manifest, sends its blobs again (each checked with a HEAD first). A
   * registry that answers MANIFEST_BLOB_UNKNOWN for blobs just pushed lost a race with another
   * writer of the same blob (two nodes pushing one base layer at once): the blobs go again and
   * the manifest is put once more, rather than taking it for a refusal of OCI media types.
   */
  async #putManifest(
    bytes: Buffer,
    mediaType: string,
    tagOrDigest: string,
    rewritten: boolean,
    repushBlobs?: () => Promise<unknown>,
  ): Promise<Descriptor> {
    const byDigest = tagOrDigest.includes(':');
    const put = async (b: Buffer, mt: string) => {
      const digest = await this.client.putManifest(
        this.ref,
        byDigest && rewritten ? sha256Digest(b) : tagOrDigest,
        b,
        mt,
      );
      this.step.done(`manifest ${digest}`, b.length);
      return { mediaType: mt, digest, size: b.length } as Descriptor;
    };
    try {
      try {
        return await put(bytes, mediaType);
      } catch (err) {
        if (!(repushBlobs && err instanceof RegistryError && err.hasCode('MANIFEST_BLOB_UNKNOWN'))) throw err;
        await repushBlobs();
        return await put(bytes, mediaType);
      }
    } catch (err) {
      const refused =
        err instanceof RegistryError &&
        // A blob the registry does not have is not a refusal of the media types.
        !err.hasCode('MANIFEST_BLOB_UNKNOWN') &&
        (err.hasCode('MANIFEST_INVALID') || err.status === 400 || err.status === 415) &&
        mediaType.startsWith('application/vnd.oci.');
      if (!refused) throw err;
      const converted = toDocker(bytes, mediaType);
      const key = repositoryName(this.ref);
      if (!this.#warned.has(key)) {
        this.#warned.add(key);
        this.opts.warn?.(
          `${this.ref.domain} refused an OCI ${isIndexType(mediaType) ? 'index' : 'manifest'} (${(err as Error).message}); pushing Docker schema 2 media types instead, which changes the digests`,
        );
      }
      const b = converted.bytes;
      const digest = await this.client.putManifest(
        this.ref,
        byDigest ? sha256Digest(b) : tagOrDigest,
        b,
        converted.mediaType,
      );
      this.step.done(`manifest ${digest}`, b.length);
      return { mediaType: converted.mediaType, digest, size: b.length } as Descriptor;
    }
  }
}

/** Rewrites an OCI manifest or index into Docker schema 2 media types. */
export function toDocker(bytes: Buffer, mediaType: string): { bytes: Buffer; mediaType: string } {
  const doc = parseImageDocument(bytes, 'manifest', mediaType);
  if (doc.kind === 'index') {
    const mt = dockerMediaType(doc.mediaType, 'index');
    const index: Index = {
      ...doc.index,
      mediaType: mt,
      manifests: doc.index.manifests.map((d) => ({
        ...d,
        mediaType: dockerMediaType(d.mediaType, `index entry ${d.digest}`),
      })),
    };
    return { bytes: encodeJson(reorder(index)), mediaType: mt };
  }
  const mt = dockerMediaType(doc.mediaType, 'manifest');
  const manifest: Manifest = {
    ...doc.manifest,
    mediaType: mt,
    config: { ...doc.manifest.config, mediaType: dockerMediaType(doc.manifest.config.mediaType, 'config') },
    layers: doc.manifest.layers.map((l) => ({
      ...l,
      mediaType: dockerMediaType(l.mediaType, `layer ${l.digest}`),
    })),
  };
  return { bytes: encodeJson(reorder(manifest)), mediaType: mt };
}

/** schemaVersion and mediaType first, as Docker writes them. */
function reorder<T extends { schemaVersion: 2; mediaType?: string }>(v: T): T {
  const { schemaVersion, mediaType, ...rest } = v;
  return { schemaVersion, mediaType, ...rest } as T;
}
