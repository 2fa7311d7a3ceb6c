/**
 * The build caches of a builder's BuildKit nodes, as `buildx du` and `buildx prune` see them:
 * every node is asked (DiskUsage / Prune) in parallel and the records come back as the local
 * engine's `CacheRecord`s, so one printer serves both. A node that cannot be reached is an
 * error naming it (buildx fails the command too); `local` nodes are the caller's to add.
 *
 *   const records = await nodesDiskUsage(builder);
 *   const removed = await pruneNodes(builder, { all: true, keepDurationMs: 3_600_000 });
 */
import type { CacheRecord, CacheRecordType } from '../../build/cache.js';
import type { UsageRecord } from '../../buildkit/client.js';
import { type Builder, type BuilderNode, nodeDriver } from '../types.js';
import { connectNode } from './driver.js';

const TYPES = new Set<string>(['regular', 'source.image', 'source.local', 'container', 'exec.cachemount']);

/** polyarch's record types are BuildKit's names; others (`source.git.checkout`…) are regular. */
function recordType(t: string): CacheRecordType {
  return TYPES.has(t) ? (t as CacheRecordType) : 'regular';
}

function toCacheRecord(u: UsageRecord): CacheRecord {
  return {
    id: u.id,
    key: u.description,
    type: recordType(u.recordType),
    size: u.size,
    createdAt: new Date(u.createdAt ?? 0),
    lastUsedAt: u.lastUsedAt !== undefined ? new Date(u.lastUsedAt) : undefined,
    inUse: u.inUse,
    shared: u.shared,
    parents: u.parents,
  };
}

function buildkitNodes(builder: Builder): BuilderNode[] {
  return builder.nodes.filter((n) => nodeDriver(builder, n) === 'remote');
}

async function eachNode<T>(
  builder: Builder,
  fn: (c: Awaited<ReturnType<typeof connectNode>>) => Promise<T[]>,
) {
  const per = await Promise.all(
    buildkitNodes(builder).map(async (node) => {
      const c = await connectNode(node);
      try {
        return await fn(c);
      } finally {
        c.client.close();
      }
    }),
  );
  return per.flat();
}

/** Every BuildKit node's cache records. */
export function nodesDiskUsage(builder: Builder): Promise<CacheRecord[]> {
  return eachNode(builder, async (c) => (await c.client.diskUsage()).map(toCacheRecord));
}

/** Prunes every BuildKit node's cache; resolves to the records removed. */
export function pruneNodes(
  builder: Builder,
  opts: { all?: boolean; keepDurationMs?: number } = {},
): Promise<CacheRecord[]> {
  return eachNode(builder, async (c) =>
    (
      await c.client.prune({
        all: opts.all ?? false,
        ...(opts.keepDurationMs ? { keepDurationNs: opts.keepDurationMs * 1e6 } : {}),
      })
    ).map(toCacheRecord),
  );
}
