/**
 * Reads the attestations of an image in a registry, per platform, for `imagetools inspect`'s
 * `.SBOM` and `.Provenance`: polyarch's OCI 1.1 artifacts (found through the referrers API, or
 * the `sha256-<hex>` referrers tag where the registry has none) and BuildKit's attestation
 * manifests (index entries `vnd.docker.reference.type: attestation-manifest` pointing at their
 * platform manifest by `vnd.docker.reference.digest`).
 *
 *   const byPlatform = await registryAttestations(client, ref, index, platforms);
 *   byPlatform.get('linux/amd64')  // { sbom: [spdx, …], provenance: slsa }
 */
import {
  type Descriptor,
  type Digest,
  type Index,
  MediaType,
  parseImageDocument,
  sha256Digest,
} from '../oci/index.js';
import { type Reference, repositoryName, withDigest } from '../oci/reference.js';
import type { RegistryClient } from '../registry/client.js';
import { pullScope } from '../registry/scope.js';
import { PolyarchError } from '../util/errors.js';
import { PREDICATE_ANNOTATION, referrersTag } from './attach.js';
import { SPDX_PREDICATE } from './sbom.js';

export interface PlatformAttestations {
  /** SPDX documents (the statements' predicates), first one first. */
  sbom: unknown[];
  /** The SLSA provenance predicate. */
  provenance?: unknown;
}

/** Largest attestation blob read (SBOMs of big images run to megabytes). */
const MAX_ATTESTATION = 64 << 20;
const MAX_INDEX = 4 << 20;

export const REFERENCE_TYPE = 'vnd.docker.reference.type';
export const REFERENCE_DIGEST = 'vnd.docker.reference.digest';

function isInToto(mt: string): boolean {
  return mt === MediaType.InTotoAttestation || /^application\/vnd\.in-toto\..*\+dsse$/.test(mt);
}

async function readBlob(client: RegistryClient, ref: Reference, d: Descriptor): Promise<Buffer> {
  const what = `GET blob ${repositoryName(ref)}@${d.digest}`;
  if (d.size > MAX_ATTESTATION)
    throw new PolyarchError(
      'INVALID_MANIFEST',
      `${what}: an attestation of ${d.size} bytes exceeds ${MAX_ATTESTATION}`,
    );
  const res = await client.transport.request({
    host: ref.domain,
    method: 'GET',
    path: `/v2/${ref.path}/blobs/${d.digest}`,
    scopes: [pullScope(ref.path)],
    expect: [200],
    what,
  });
  const bytes = await res.read(d.size, `attestation (${d.size} bytes in the manifest)`);
  if (sha256Digest(bytes) !== d.digest)
    throw new PolyarchError(
      'DIGEST_MISMATCH',
      `${what}: content has digest ${sha256Digest(bytes)}, not ${d.digest}`,
    );
  return bytes;
}

/** The registry's referrers of `subject`: the referrers API, else the referrers tag, else none. */
export async function registryReferrers(
  client: RegistryClient,
  ref: Reference,
  subject: Digest,
): Promise<Descriptor[]> {
  const repo = { domain: ref.domain, path: ref.path };
  const get = async (path: string, what: string) => {
    const res = await client.transport.request({
      host: ref.domain,
      method: 'GET',
      path,
      headers: { accept: MediaType.OciIndex },
      scopes: [pullScope(ref.path)],
      expect: [200, 404, 400, 405],
      what,
    });
    if (res.status !== 200) {
      await res.discard();
      return undefined;
    }
    const doc = parseImageDocument(await res.read(MAX_INDEX, 'referrers index'), what, MediaType.OciIndex);
    return doc.kind === 'index' ? doc.index.manifests : [];
  };
  const api = await get(
    `/v2/${ref.path}/referrers/${subject}`,
    `GET referrers of ${repositoryName(repo)}@${subject}`,
  );
  if (api !== undefined) return api;
  return (
    (await get(
      `/v2/${ref.path}/manifests/${referrersTag(subject)}`,
      `GET manifest ${repositoryName(repo)}:${referrersTag(subject)}`,
    )) ?? []
  );
}

/** Adds the in-toto statements of attestation manifest `d` to `into`. */
async function scanManifest(
  client: RegistryClient,
  ref: Reference,
  d: Descriptor,
  into: PlatformAttestations,
): Promise<void> {
  const m = await client.getManifest(withDigest({ domain: ref.domain, path: ref.path }, d.digest));
  const doc = parseImageDocument(m.bytes, `attestation manifest ${d.digest}`, m.mediaType);
  if (doc.kind !== 'manifest') return;
  for (const layer of doc.manifest.layers) {
    const type = layer.annotations?.[PREDICATE_ANNOTATION];
    if (!isInToto(layer.mediaType) || !type) continue;
    const isSbom = type === SPDX_PREDICATE;
    const isProv = type.startsWith('https://slsa.dev/provenance/');
    if (!isSbom && !(isProv && into.provenance === undefined)) continue;
    let bytes = await readBlob(client, ref, layer);
    if (layer.mediaType.endsWith('+dsse')) {
      const env = JSON.parse(bytes.toString('utf8')) as { payload?: string };
      bytes = Buffer.from(env.payload ?? '', 'base64');
    }
    let stmt: { predicate?: unknown };
    try {
      stmt = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new PolyarchError('INVALID_MANIFEST', `attestation ${layer.digest}: not JSON`);
    }
    if (isSbom) into.sbom.push(stmt.predicate);
    else into.provenance = stmt.predicate;
  }
}

/**
 * The attestations of each platform manifest (`platforms`: platform → manifest descriptor),
 * from `index` (BuildKit's attestation manifests, when the root is an index) and the
 * registry's referrers.
 */
export async function registryAttestations(
  client: RegistryClient,
  ref: Reference,
  index: Index | undefined,
  platforms: Map<string, Descriptor>,
): Promise<Map<string, PlatformAttestations>> {
  const out = new Map<string, PlatformAttestations>();
  for (const [platform, desc] of platforms) {
    const att: PlatformAttestations = { sbom: [] };
    const inIndex = (index?.manifests ?? []).filter(
      (d) =>
        d.annotations?.[REFERENCE_TYPE] === 'attestation-manifest' &&
        d.annotations[REFERENCE_DIGEST] === desc.digest,
    );
    const referrers = (await registryReferrers(client, ref, desc.digest)).filter(
      (d) =>
        d.artifactType === MediaType.InTotoAttestation || d.annotations?.[PREDICATE_ANNOTATION] !== undefined,
    );
    for (const d of [...inIndex, ...referrers]) await scanManifest(client, ref, d, att);
    out.set(platform, att);
  }
  return out;
}

/** buildx's template values: `{SPDX, AdditionalSPDXs}` and `{SLSA}`, empty objects when absent. */
export function sbomStub(a: PlatformAttestations | undefined): Record<string, unknown> {
  if (!a || a.sbom.length === 0) return {};
  return { SPDX: a.sbom[0], ...(a.sbom.length > 1 ? { AdditionalSPDXs: a.sbom.slice(1) } : {}) };
}

export function provenanceStub(a: PlatformAttestations | undefined): Record<string, unknown> {
  return a?.provenance === undefined ? {} : { SLSA: a.provenance };
}
