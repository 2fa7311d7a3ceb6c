/**
 * Shared helpers for moving images between a registry and the local store: the registry
 * client built from the user's config, error wrapping with the operation's context, and
 * the walk over an index's children.
 */
import { type Descriptor, isIndexType, isManifestType, MediaType } from '../oci/index.js';
import { loadRegistryConfig } from '../registry/config.js';
import { RegistryClient, type ClientOptions } from '../registry/client.js';
import { PolyarchError, errorMessage, isPolyarchError } from '../util/errors.js';
import { formatPlatform, type PlatformSpec } from '../platform/index.js';

/** Default number of blobs moved at once. */
export const DEFAULT_CONCURRENCY = 4;

/** A client configured from `$POLYARCH_CONFIG` / registries.toml and Docker's credentials. */
export async function openClient(
  opts: Omit<ClientOptions, 'config'> & { env?: NodeJS.ProcessEnv } = {},
): Promise<RegistryClient> {
  const config = await loadRegistryConfig(opts.env ?? process.env);
  return new RegistryClient({ ...opts, config });
}

/** Prefixes an error with the operation (`pulling <ref>`), keeping its code; one line. */
export function withContext(context: string, err: unknown): PolyarchError {
  const message = `${context}: ${errorMessage(err).split('\n')[0]}`;
  if (isPolyarchError(err)) {
    const e = new PolyarchError(err.code, message, { cause: err, exitCode: err.exitCode });
    return e;
  }
  return new PolyarchError('INTERNAL', message, { cause: err });
}

/** Attestation manifests (BuildKit's provenance/SBOM) are listed as unknown/unknown. */
export function isAttestation(d: Descriptor): boolean {
  return (
    d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
    (d.platform?.os === 'unknown' && d.platform.architecture === 'unknown')
  );
}

export function descriptorPlatform(d: Descriptor): PlatformSpec | undefined {
  if (!d.platform) return undefined;
  const { os, architecture, variant } = d.platform;
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function platformList(ds: Descriptor[]): string {
  const names = ds
    .filter((d) => !isAttestation(d) && d.platform)
    .map((d) => formatPlatform(descriptorPlatform(d)!));
  return names.length ? names.join(', ') : 'none';
}

export function isImageDocType(mt: string): boolean {
  return isIndexType(mt) || isManifestType(mt);
}

/** OCI → Docker schema 2 media types, for registries that refuse OCI documents. */
const TO_DOCKER: Record<string, string> = {
  [MediaType.OciIndex]: MediaType.DockerManifestList,
  [MediaType.OciManifest]: MediaType.DockerManifest,
  [MediaType.OciConfig]: MediaType.DockerConfig,
  [MediaType.OciLayerGzip]: MediaType.DockerLayerGzip,
  [MediaType.OciLayerNondistributableGzip]: MediaType.DockerLayerForeignGzip,
};

export function dockerMediaType(mt: string, what: string): string {
  if (Object.values(TO_DOCKER).includes(mt)) return mt;
  const d = TO_DOCKER[mt];
  if (!d) throw new PolyarchError('UNSUPPORTED', `${what}: ${mt} has no Docker schema 2 equivalent`);
  return d;
}
