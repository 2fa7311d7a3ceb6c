/**
 * Registry client: references, registries.toml, Docker credentials, the HTTP transport
 * (TLS, mirrors, auth, retries), and manifest/blob operations.
 *
 *   const ref = parseReference('busybox');                      // docker.io/library/busybox:latest
 *   const client = new RegistryClient({ config: await loadRegistryConfig() });
 *   const { bytes, digest } = await client.getManifest(ref);
 */
export * from './client.js';
export * from './config.js';
export * from './credentials.js';
export * from './errors.js';
export * from './progress.js';
export * from '../oci/reference.js';
export {
  header,
  netReason,
  parseChallenge,
  pullScope,
  pushScope,
  Transport,
  type TransportOptions,
} from './transport.js';
