/**
 * The `remote` driver (buildx's name and options): a node is a buildkitd polyarch reaches
 * at `unix:///path`, `tcp://host:port` (mutual TLS with `--driver-opt
 * cacert=…,cert=…,key=…,servername=…`) or `ssh://[user@]host[:port][/socket]`. Nothing is
 * started: `bootstrap` asks the daemon (ListWorkers, Info) and fails when it cannot be
 * reached; `info` reports such a node `inactive`, as buildx does.
 *
 *   const n = await connectNode(node);   // { client, workers, version, native, platforms }
 *   n.client.close();
 */
import { isAbsolute, resolve } from 'node:path';
import type { BuildkitClient, WorkerInfo } from '../../buildkit/client.js';
import { parseEndpoint, type TlsOptions } from '../../buildkit/endpoint.js';
import type { Platform } from '../../platform/index.js';
import { errorMessage, PolyarchError, UsageError } from '../../util/errors.js';
import type { Driver } from '../driver.js';
import type { BuilderNode, NodeInfo } from '../types.js';

/** `--driver-opt` keys of the remote driver. */
export const REMOTE_DRIVER_OPTS = ['cacert', 'cert', 'key', 'servername'] as const;

export function tlsOptions(node: BuilderNode): TlsOptions {
  const o = node.driverOpts ?? {};
  return {
    ...(o.cacert ? { cacert: o.cacert } : {}),
    ...(o.cert ? { cert: o.cert } : {}),
    ...(o.key ? { key: o.key } : {}),
    ...(o.servername ? { servername: o.servername } : {}),
  };
}

export interface ConnectedNode {
  node: BuilderNode;
  client: BuildkitClient;
  workers: WorkerInfo[];
  /** BuildKit version, e.g. `v0.23.2`. */
  version: string;
  /** The default worker's own platform. */
  native?: Platform;
  /** Pinned first, then every worker's platforms. */
  platforms: Platform[];
}

function mergeAll(lists: readonly (readonly Platform[])[]): Platform[] {
  const seen = new Set<string>();
  const out: Platform[] = [];
  for (const l of lists)
    for (const p of l) {
      const k = `${p.os}/${p.architecture}/${p.variant ?? ''}`;
      if (!seen.has(k)) {
        seen.add(k);
        out.push(p);
      }
    }
  return out;
}

/** Connects to a node and asks what it is; errors name the node and endpoint. */
export async function connectNode(
  node: BuilderNode,
  opts: { timeoutMs?: number } = {},
): Promise<ConnectedNode> {
  let client: BuildkitClient | undefined;
  try {
    // Loaded here, not with the builder module: local builds never need it.
    const { BuildkitClient } = await import('../../buildkit/client.js');
    client = await BuildkitClient.connect(node.endpoint, {
      tls: tlsOptions(node),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    });
    const [workers, info] = await Promise.all([client.listWorkers(), client.info()]);
    if (workers.length === 0) throw new PolyarchError('UNAVAILABLE', 'the daemon has no workers');
    const native = workers[0]!.platforms[0];
    return {
      node,
      client,
      workers,
      version: info.version,
      ...(native ? { native } : {}),
      platforms: mergeAll([node.platforms, ...workers.map((w) => w.platforms)]),
    };
  } catch (err) {
    client?.close();
    throw new PolyarchError(
      (err as PolyarchError).code ?? 'UNAVAILABLE',
      `node ${node.name} (${node.endpoint}): ${errorMessage(err)}`,
      { cause: err },
    );
  }
}

export const remoteDriver: Driver = {
  name: 'remote',
  checkEndpoint(endpoint) {
    parseEndpoint(endpoint);
    return endpoint;
  },
  // buildx's remote driver: a daemon that cannot be reached is `inactive`, not an error;
  // bootstrap (inspect --bootstrap, create --bootstrap) fails with the reason.
  async info(node): Promise<NodeInfo> {
    try {
      return await this.bootstrap(node);
    } catch {
      return { status: 'inactive', platforms: node.platforms, version: '' };
    }
  },
  async bootstrap(node): Promise<NodeInfo> {
    const n = await connectNode(node);
    n.client.close();
    const w = n.workers[0]!;
    return {
      status: 'running',
      platforms: n.platforms,
      version: n.version,
      ...(Object.keys(w.labels).length > 0 ? { labels: w.labels } : {}),
      ...(w.gcPolicy.length > 0 ? { gcPolicy: w.gcPolicy } : {}),
    };
  },
};

/** Checks `--driver-opt` values and makes file paths absolute (they are used from any directory). */
export function checkRemoteDriverOpts(opts: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts)) {
    if (!(REMOTE_DRIVER_OPTS as readonly string[]).includes(k))
      throw new UsageError(
        `invalid driver option "${k}" for the remote driver: want one of ${REMOTE_DRIVER_OPTS.join(', ')}`,
      );
    out[k] = k !== 'servername' && !isAbsolute(v) ? resolve(v) : v;
  }
  return out;
}
