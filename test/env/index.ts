/**
 * What tests import from the test environment.
 *
 *   import { testEnv } from './env/index.js';   // from test/*.test.ts
 *   const env = testEnv();
 *   // env.registry, env.busybox, env.config, ... (see TestEnv)
 *
 * testEnv() reads the POLYARCH_TEST_* variables set by the harness (harness.ts, run by
 * scripts/test.sh) and throws when they are missing: a test that needs a registry must fail
 * loudly outside the harness, never skip. Tests that need a registry of their own (to fill,
 * break or count requests on) use startRegistry() from ./registry.js.
 */
import { BUSYBOX_PLATFORMS, platformString } from './busybox.js';

export {
  BUSYBOX_PLATFORMS,
  type BusyboxPlatform,
  busyboxBinary,
  platformString,
  pushBusybox,
} from './busybox.js';
export { type Registry, type RegistryAuth, type StartRegistryOptions, startRegistry } from './registry.js';

export interface TestEnv {
  /** Anonymous registry, `127.0.0.1:PORT` (plain HTTP). */
  registry: string;
  /** Registry with htpasswd basic auth (user/password below). */
  registryBasic: string;
  /** Registry with Bearer token auth (user/password below; anonymous tokens are pull-only). */
  registryToken: string;
  user: string;
  password: string;
  /** The token registry's realm (token endpoint URL) and service name. */
  tokenRealm: string;
  tokenService: string;
  /** `127.0.0.1:PORT/library/busybox:latest`: an index with the 5 busybox platforms. */
  busybox: string;
  /** Digest of that index (identical in all three registries and in the layout). */
  busyboxDigest: string;
  /** OCI image layout holding tag 'busybox' (the same index). Shared cache: do not write. */
  busyboxLayout: string;
  /** Unpacked rootfs per platform string ('linux/arm64/v8', ...). Shared cache: do not write. */
  busyboxRootfs: Record<string, string>;
  /** registries.toml (buildkitd.toml form): docker.io mirrored to `registry`, hosts as http. */
  config: string;
}

export function testEnv(): TestEnv {
  const get = (name: string): string => {
    const value = process.env[name];
    if (!value) {
      throw new Error(
        `${name} is not set: run the tests through scripts/test.sh ` +
          '(or node dist/test/env/harness.js -- node --test FILE.test.js)',
      );
    }
    return value;
  };
  const busyboxRootfs: Record<string, string> = {};
  for (const p of BUSYBOX_PLATFORMS) {
    busyboxRootfs[platformString(p)] = get(`POLYARCH_TEST_BUSYBOX_ROOTFS_${p.envSuffix}`);
  }
  return {
    registry: get('POLYARCH_TEST_REGISTRY'),
    registryBasic: get('POLYARCH_TEST_REGISTRY_BASIC'),
    registryToken: get('POLYARCH_TEST_REGISTRY_TOKEN'),
    user: get('POLYARCH_TEST_REGISTRY_USER'),
    password: get('POLYARCH_TEST_REGISTRY_PASSWORD'),
    tokenRealm: get('POLYARCH_TEST_TOKEN_REALM'),
    tokenService: get('POLYARCH_TEST_TOKEN_SERVICE'),
    busybox: get('POLYARCH_TEST_BUSYBOX'),
    busyboxDigest: get('POLYARCH_TEST_BUSYBOX_DIGEST'),
    busyboxLayout: get('POLYARCH_TEST_BUSYBOX_LAYOUT'),
    busyboxRootfs,
    config: get('POLYARCH_TEST_CONFIG'),
  };
}
