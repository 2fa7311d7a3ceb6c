/**
 * The `ssh` driver: a node is any host with sshd, Node.js and polyarch (a Raspberry Pi, an
 * arm64 cloud VM), reached with the system `ssh` client; no daemon runs there. `info` reports
 * an unreachable node `inactive` (buildx's remote driver does the same); `bootstrap` (inspect
 * --bootstrap, create --bootstrap) runs polyarch on the node, checks its protocol version
 * and runc, and reports its native and emulated platforms (pinned first).
 */
import { isAbsolute, resolve } from 'node:path';
import { UsageError } from '../../util/errors.js';
import type { Driver } from '../driver.js';
import { mergePlatforms } from '../driver.js';
import type { BuilderNode, NodeInfo } from '../types.js';

export const SSH_DRIVER_OPTS = ['key', 'polyarch', 'root'] as const;

/** Checks `--driver-opt` values; the identity file is made absolute (it is local). */
export function checkSshDriverOpts(opts: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts)) {
    if (!(SSH_DRIVER_OPTS as readonly string[]).includes(k))
      throw new UsageError(
        `invalid driver option "${k}" for the ssh driver: want one of ${SSH_DRIVER_OPTS.join(', ')}`,
      );
    if (v === '') throw new UsageError(`invalid driver option "${k}" for the ssh driver: empty value`);
    out[k] = k === 'key' && !isAbsolute(v) ? resolve(v) : v;
  }
  return out;
}

const SSH_ENDPOINT = /^ssh:\/\/(?:[^@/\s]+@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Reaches the node, reads what it is, and ends the session. */
export async function probeSshNode(node: BuilderNode, env?: NodeJS.ProcessEnv): Promise<NodeInfo> {
  // The connection code loads only when a node is reached, not with the driver table.
  const { SshNodeConnection } = await import('./connect.js');
  const c = await SshNodeConnection.open(node, env ? { env } : {});
  c.close();
  await c.closed();
  return {
    status: 'running',
    platforms: mergePlatforms(node.platforms, c.hello.platforms),
    version: c.hello.version,
    labels: { 'org.polyarch.native': c.platforms[0] ?? '', 'org.polyarch.runc': c.hello.runc ?? '' },
  };
}

export const sshDriver: Driver = {
  name: 'ssh',
  checkEndpoint(endpoint) {
    if (!SSH_ENDPOINT.test(endpoint))
      throw new UsageError(
        `invalid endpoint "${endpoint}" for the ssh driver: want ssh://[user@]host[:port]`,
      );
    return endpoint;
  },
  async info(node) {
    try {
      return await probeSshNode(node);
    } catch {
      return { status: 'inactive', platforms: node.platforms, version: '' };
    }
  },
  bootstrap(node) {
    return probeSshNode(node);
  },
};
