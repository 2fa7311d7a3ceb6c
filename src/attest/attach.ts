/**
 * Attestations as OCI 1.1 artifacts: one manifest per attestation whose `subject` is the
 * platform manifest it describes, `artifactType` application/vnd.in-toto+json, the empty
 * config, and one layer holding the in-toto statement. They are referrers, never entries of
 * the image index, so the index (and its digest) is the same with or without them.
 *
 *   const art = await writeArtifact(store, subject, statement);        // blobs + manifest in the store
 *   await addLocalReferrers(store, subject.digest, [art]);             // kept with the image
 *   await localReferrers(store, subject.digest);                       // → descriptors
 *   await pushReferrers(client, ref, store, [subject.digest], warn);   // after the image is pushed
 *
 * In the local store a subject's referrers are an index tagged `polyarch.referrers/sha256-<hex>`
 * (the shape of the registry referrers tag schema), which keeps them from gc and lets `save` and
 * `push` find them. A registry with the referrers API indexes an artifact itself (it answers the
 * PUT with `OCI-Subject`); for one without it, the `sha256-<hex>` tag holds an index of them,
 * read, merged and written back. A registry that refuses an artifact gets a warning, and the
 * image, already pushed, stays as it is.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { type ContentStore, REFERRERS_NAME_PREFIX } from '../content/index.js';
import {
  type Descriptor,
  type Digest,
  digestHex,
  encodeJson,
  type Index,
  type Manifest,
  MediaType,
  parseImageDocument,
  sha256Digest,
} from '../oci/index.js';
import { type Reference, repositoryName } from '../oci/reference.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryError } from '../registry/errors.js';
import { header, pullScope, pushScope } from '../registry/scope.js';
import { errorMessage } from '../util/errors.js';
import type { InTotoStatement } from './sbom.js';

export const ATTESTATION_ARTIFACT_TYPE = 'application/vnd.in-toto+json';
export const PREDICATE_ANNOTATION = 'in-toto.io/predicate-type';
/** Prefix of the local store's referrer index names (hidden from image listings there). */
export const LOCAL_REFERRERS_PREFIX = REFERRERS_NAME_PREFIX;
const EMPTY_JSON = Buffer.from('{}');
export const EMPTY_CONFIG: Descriptor = {
  mediaType: MediaType.OciEmpty,
  digest: sha256Digest(EMPTY_JSON),
  size: 2,
  data: EMPTY_JSON.toString('base64'),
};
/** Largest referrers index read from a registry. */
const MAX_INDEX = 4 << 20;

/** The referrers tag schema's tag for `subject` (`sha256-<hex>`). */
export function referrersTag(subject: Digest): string {
  return subject.replace(':', '-');
}

export function localReferrersName(subject: Digest): string {
  return `${LOCAL_REFERRERS_PREFIX}${referrersTag(subject)}`;
}

export function isLocalReferrersName(name: string): boolean {
  return name.startsWith(LOCAL_REFERRERS_PREFIX);
}

/** Writes the statement and its artifact manifest into the store; returns the manifest's descriptor as a referrer. */
export async function writeArtifact(
  store: ContentStore,
  subject: Descriptor,
  statement: InTotoStatement,
): Promise<Descriptor> {
  await store.writeBlob(EMPTY_JSON, { digest: EMPTY_CONFIG.digest, size: 2 });
  const predicate = { [PREDICATE_ANNOTATION]: statement.predicateType };
  const layer = await store.writeJson(statement, ATTESTATION_ARTIFACT_TYPE);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    artifactType: ATTESTATION_ARTIFACT_TYPE,
    config: EMPTY_CONFIG,
    layers: [{ ...layer, annotations: predicate }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: predicate,
  };
  const d = await store.writeJson(manifest, MediaType.OciManifest);
  return { ...d, artifactType: ATTESTATION_ARTIFACT_TYPE, annotations: predicate };
}

function indexOf(manifests: Descriptor[]): Index {
  return { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests };
}

/** The referrers the local store keeps for `subject`. */
export async function localReferrers(store: ContentStore, subject: Digest): Promise<Descriptor[]> {
  const d = await store.resolve(localReferrersName(subject));
  if (!d || !(await store.has(d.digest))) return [];
  const doc = parseImageDocument(await store.readBlob(d.digest), `referrers of ${subject}`, d.mediaType);
  return doc.kind === 'index' ? doc.index.manifests : [];
}

/**
 * Records `artifacts` as referrers of `subject` in the local store. An earlier attestation of
 * the same predicate type is replaced: a rebuild's provenance supersedes the last one.
 */
export async function addLocalReferrers(
  store: ContentStore,
  subject: Digest,
  artifacts: Descriptor[],
): Promise<void> {
  const types = new Set(artifacts.map((a) => a.annotations?.[PREDICATE_ANNOTATION]));
  const kept = (await localReferrers(store, subject)).filter(
    (d) => !types.has(d.annotations?.[PREDICATE_ANNOTATION]) && !artifacts.some((a) => a.digest === d.digest),
  );
  const idx = await store.writeJson(indexOf([...kept, ...artifacts]), MediaType.OciIndex);
  await store.tag(localReferrersName(subject), idx);
}

/** The artifact manifests and blobs `referrers` need, as root descriptors for copying (archives). */
export async function referrersOf(store: ContentStore, subjects: Digest[]): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  for (const s of subjects)
    for (const d of await localReferrers(store, s)) if (await store.has(d.digest)) out.push(d);
  return out;
}

function openBlob(store: ContentStore, d: Digest, start: number, end: number): Readable {
  if (end <= start) return Readable.from([]);
  return createReadStream(store.blobPath(d), { start, end: end - 1 });
}

/** PUT a manifest by digest; whether the registry indexed its subject (`OCI-Subject`). */
async function putArtifact(
  client: RegistryClient,
  ref: Reference,
  bytes: Buffer,
  digest: Digest,
): Promise<boolean> {
  const res = await client.transport.request({
    host: ref.domain,
    method: 'PUT',
    path: `/v2/${ref.path}/manifests/${digest}`,
    headers: { 'content-type': MediaType.OciManifest, 'content-length': String(bytes.length) },
    body: () => bytes,
    scopes: [pushScope(ref.path)],
    expect: [201, 200],
    what: `PUT manifest ${repositoryName(ref)}@${digest}`,
  });
  await res.discard();
  return header(res, 'oci-subject') !== undefined;
}

/** The registry's referrers tag index for `subject`, or an empty one. */
async function fallbackIndex(client: RegistryClient, ref: Reference, subject: Digest): Promise<Descriptor[]> {
  const res = await client.transport.request({
    host: ref.domain,
    method: 'GET',
    path: `/v2/${ref.path}/manifests/${referrersTag(subject)}`,
    headers: { accept: MediaType.OciIndex },
    scopes: [pullScope(ref.path)],
    expect: [200, 404],
    what: `GET manifest ${repositoryName(ref)}:${referrersTag(subject)}`,
  });
  if (res.status === 404) {
    await res.discard();
    return [];
  }
  const bytes = await res.read(MAX_INDEX, 'referrers index');
  const doc = parseImageDocument(bytes, `referrers index ${referrersTag(subject)}`, MediaType.OciIndex);
  return doc.kind === 'index' ? doc.index.manifests : [];
}

export interface PushReferrersResult {
  pushed: number;
  /** Subjects whose referrers went into the fallback tag. */
  fallback: number;
}

/**
 * Pushes the local referrers of each subject (already in the repository of `ref`) and makes
 * them findable: by the referrers API, or the `sha256-<hex>` tag where there is none. A refusal
 * is warned about (once) and ends the attestation push; the image is not touched.
 */
export async function pushReferrers(
  client: RegistryClient,
  ref: Reference,
  store: ContentStore,
  subjects: Digest[],
  warn?: (m: string) => void,
): Promise<PushReferrersResult> {
  const result: PushReferrersResult = { pushed: 0, fallback: 0 };
  // Subjects (one per platform) and their artifacts go up side by side: a push with default
  // provenance must not cost a round trip per document. Blobs the artifacts share (the empty
  // config) are sent once, before any manifest names them.
  let refused: { subject: Digest; err: unknown } | undefined;
  const isRefusal = (err: unknown) =>
    err instanceof RegistryError && err.status !== undefined && err.status >= 400 && err.status < 500;
  const per = await Promise.all(
    subjects.map(async (subject) => {
      const arts: { desc: Descriptor; bytes: Buffer; blobs: Descriptor[] }[] = [];
      for (const a of await localReferrers(store, subject)) {
        if (!(await store.has(a.digest))) continue;
        const bytes = await store.readBlob(a.digest);
        const doc = parseImageDocument(bytes, `attestation ${a.digest}`, a.mediaType);
        if (doc.kind === 'manifest')
          arts.push({ desc: a, bytes, blobs: [doc.manifest.config, ...doc.manifest.layers] });
      }
      return { subject, arts };
    }),
  );
  const blobs = new Map<string, Descriptor>();
  for (const p of per) for (const a of p.arts) for (const b of a.blobs) blobs.set(b.digest, b);
  try {
    await Promise.all(
      [...blobs.values()].map((b) => client.pushBlob(ref, b, (s, e) => openBlob(store, b.digest, s, e))),
    );
  } catch (err) {
    if (!isRefusal(err)) throw err;
    refused = { subject: per[0]?.subject ?? ('' as Digest), err };
  }
  const one = async ({ subject, arts }: (typeof per)[number]) => {
    if (arts.length === 0) return;
    const indexed = await Promise.all(arts.map((a) => putArtifact(client, ref, a.bytes, a.desc.digest)));
    result.pushed += arts.length;
    const unindexed = arts.filter((_, i) => !indexed[i]).map((a) => a.desc);
    if (unindexed.length === 0) return;
    const have = await fallbackIndex(client, ref, subject);
    // A rebuild's attestation of a predicate type supersedes the one listed before (else
    // every warm rebuild would grow the list); other referrers (signatures…) stay.
    const types = new Set(unindexed.map((u) => u.annotations?.[PREDICATE_ANNOTATION]));
    const merged = [
      ...have.filter(
        (d) =>
          !unindexed.some((u) => u.digest === d.digest) &&
          !(d.artifactType === ATTESTATION_ARTIFACT_TYPE && types.has(d.annotations?.[PREDICATE_ANNOTATION])),
      ),
      ...unindexed,
    ];
    await client.putManifest(ref, referrersTag(subject), encodeJson(indexOf(merged)), MediaType.OciIndex);
    result.fallback++;
  };
  if (!refused)
    await Promise.all(
      per.map((p) =>
        one(p).catch((err) => {
          if (!isRefusal(err)) throw err;
          refused ??= { subject: p.subject, err };
        }),
      ),
    );
  if (refused)
    warn?.(
      `${repositoryName(ref)}: the registry refused the attestations of ${digestHex(refused.subject).slice(0, 12)} (${errorMessage(refused.err)}): the image is pushed without them`,
    );
  return result;
}
