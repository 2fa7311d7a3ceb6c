/**
 * Drivers: how polyarch reaches a builder node.
 *
 *   const d = driverFor('local');
 *   const info = await d.info(node);        // status without starting anything
 *   const ready = await d.bootstrap(node);  // make sure the node is up, then report
 *
 * The `local` driver is this machine: always running, and it builds for its native
 * platforms plus every platform a working QEMU emulator covers (`executablePlatforms`).
 * The `remote` driver (src/builder/remote) is a buildkitd reached over unix://, tcp:// (mutual
 * TLS) or ssh:// (system `ssh` running `buildctl dial-stdio`, as buildx does). The `ssh`
 * driver (src/builder/ssh) runs polyarch itself on the remote host over system `ssh`, with
 * no daemon there.
 */
import { executablePlatforms, formatPlatform, hostPlatform, type Platform } from '../platform/index.js';
import { UsageError } from '../util/errors.js';
import { VERSION } from '../version.js';
import { remoteDriver } from './remote/driver.js';
import { sshDriver } from './ssh/driver.js';
import type { BuilderNode, DriverName, NodeInfo } from './types.js';

export interface Driver {
  readonly name: DriverName;
  /** Endpoint a new node gets when `create` is given none; undefined = an endpoint is required. */
  readonly defaultEndpoint?: string;
  /** Checks an endpoint given to `create`; returns it in canonical form or throws a UsageError. */
  checkEndpoint(endpoint: string): string;
  /** The node's state without starting it. */
  info(node: BuilderNode): Promise<NodeInfo>;
  /** Makes sure the node is up (starting it if the driver has something to start), then reports. */
  bootstrap(node: BuilderNode): Promise<NodeInfo>;
}

/** The version string nodes report (the BUILDKIT column of `ls`). */
export const ENGINE_VERSION = `polyarch/v${VERSION}`;

/** Pinned platforms first, then detected ones not already listed (buildx's order). */
export function mergePlatforms(pinned: readonly Platform[], detected: readonly Platform[]): Platform[] {
  const seen = new Set<string>();
  const out: Platform[] = [];
  for (const p of [...pinned, ...detected]) {
    const key = formatPlatform(p);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(p);
  }
  return out;
}

/** This machine. Nothing to start: info and bootstrap are the same. */
export const localDriver: Driver = {
  name: 'local',
  defaultEndpoint: 'local',
  checkEndpoint(endpoint) {
    if (endpoint !== 'local')
      throw new UsageError(
        `invalid endpoint "${endpoint}" for the local driver: it only has "local" (use --driver ssh for ssh://...)`,
      );
    return endpoint;
  },
  async info(node) {
    // The host's own platform first (BuildKit's order), then the rest of what runs here.
    const detected = mergePlatforms([hostPlatform()], await executablePlatforms());
    return {
      status: 'running',
      platforms: mergePlatforms(node.platforms, detected),
      version: ENGINE_VERSION,
    };
  },
  bootstrap(node) {
    return this.info(node);
  },
};

export { sshDriver };

export function driverFor(name: DriverName): Driver {
  // Looked up per call: remote/driver.ts imports this module's types.
  return name === 'local' ? localDriver : name === 'ssh' ? sshDriver : remoteDriver;
}
