/**
 * Build attestations: SBOM (SPDX 2.3) and SLSA v1 provenance per platform, attached to each
 * platform manifest as OCI 1.1 referrers (attach.ts), read back for `imagetools inspect`
 * (read.ts). The exporter calls `attestImage` once per image it writes:
 *
 *   const arts = await attestImage(store, written, { request, build, names, sourceDateEpoch });
 *
 * Scans are memoised per platform's layer chain, so a second image format (zstd next to gzip)
 * costs no second read of the layers.
 */
import type { ContentStore } from '../content/index.js';
import type { Descriptor, Digest } from '../oci/index.js';
import type { Platform } from '../platform/index.js';
import { addLocalReferrers, referrersOf, writeArtifact } from './attach.js';
import type { AttestRequest } from './options.js';
import { type BuildInfo, provenanceStatement } from './provenance.js';
import { imageSubjects, inTotoStatement, SPDX_PREDICATE, spdxDocument } from './sbom.js';
import { type ScanResult, scanLayers } from './scan.js';

export * from './attach.js';
export * from './options.js';
export * from './provenance.js';
export * from './read.js';
export * from './sbom.js';
export * from './scan.js';

/** Annotation on a local referrers entry: made by default (min provenance), not asked for. */
export const DEFAULT_ATTESTATION_ANNOTATION = 'vnd.polyarch.attestation.default';

export interface AttestContext {
  request: AttestRequest;
  build: BuildInfo;
  /** Whether the provenance is buildx's default (no flag asked for it). */
  defaultProvenance?: boolean;
}

export interface PlatformImageRef {
  platform: Platform;
  manifest: Descriptor;
  layers: Descriptor[];
  diffIds: Digest[];
}

export interface AttestImageOptions extends AttestContext {
  names: readonly string[];
  sourceDateEpoch?: number;
  warn?: (m: string) => void;
}

const scans = new Map<string, Promise<ScanResult>>();

/** Makes and stores the requested attestations of each platform; returns them by platform manifest digest. */
export async function attestImage(
  store: ContentStore,
  platforms: readonly PlatformImageRef[],
  opts: AttestImageOptions,
): Promise<Map<Digest, Descriptor[]>> {
  const out = new Map<Digest, Descriptor[]>();
  const { request } = opts;
  if (!request.sbom && !request.provenance) return out;
  const created =
    opts.sourceDateEpoch !== undefined
      ? new Date(opts.sourceDateEpoch * 1000).toISOString().replace(/\.000Z$/, 'Z')
      : new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  for (const p of platforms) {
    const { platform: _p, ...subject } = p.manifest;
    const subjects = imageSubjects(opts.names, p.platform, subject.digest);
    const arts: Descriptor[] = [];
    if (request.sbom) {
      const key = `${store.dir}\0${p.diffIds.join(',')}`;
      let scan = scans.get(key);
      if (!scan) {
        if (scans.size >= 64) scans.clear();
        scan = scanLayers(store, p.layers);
        scans.set(key, scan);
        scan.catch(() => scans.delete(key));
      }
      const doc = spdxDocument(await scan, {
        names: opts.names,
        platform: p.platform,
        manifestDigest: subject.digest,
        created,
      });
      arts.push(await writeArtifact(store, subject, inTotoStatement(SPDX_PREDICATE, subjects, doc)));
    }
    if (request.provenance) {
      const stmt = provenanceStatement(opts.build, {
        platform: p.platform,
        subjects,
        mode: request.provenance.mode,
        ...(request.provenance.builderId ? { builderId: request.provenance.builderId } : {}),
      });
      const d = await writeArtifact(store, subject, stmt);
      arts.push(
        opts.defaultProvenance
          ? { ...d, annotations: { ...d.annotations, [DEFAULT_ATTESTATION_ANNOTATION]: 'true' } }
          : d,
      );
    }
    await addLocalReferrers(store, subject.digest, arts);
    out.set(subject.digest, arts);
  }
  if (request.sbom?.generator && !/buildkit-syft-scanner|^polyarch$/.test(request.sbom.generator))
    opts.warn?.(
      `--attest type=sbom,generator=${request.sbom.generator}: the local builder does not run generator images; the SBOM is polyarch's own scan`,
    );
  return out;
}

/**
 * The attestations an image archive (OCI layout) carries for these platform manifests: those
 * asked for. The default provenance stays in the store and goes to registries, but not into
 * archives, whose index.json would then list more than the image (which tools like skopeo refuse).
 */
export async function archiveReferrers(store: ContentStore, subjects: Digest[]): Promise<Descriptor[]> {
  return (await referrersOf(store, subjects)).filter(
    (d) => d.annotations?.[DEFAULT_ATTESTATION_ANNOTATION] !== 'true',
  );
}
