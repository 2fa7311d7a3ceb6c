/**
 * `polyarch du [--verbose] [--format table|json]`: disk usage, like `docker buildx du` for the
 * build cache (one row per record: ID, RECLAIMABLE, SIZE, LAST ACCESSED, then `Shared:`,
 * `Private:`, `Reclaimable:`, `Total:`) followed by the local store: per image name the blobs it
 * reaches (SIZE) and what removing only that name would free (EXCLUSIVE), then its totals
 * (`Unreferenced:` says how many of those blobs running operations use: prune keeps them).
 */
import type { Command } from 'commander';
import type { CacheRecord } from '../../build/index.js';
import type { CliContext } from '../context.js';
import { humanDuration } from '../../util/gofmt.js';
import { formatTable, humanSize } from './images.js';

function lastAccessed(r: CacheRecord, now: number): string {
  if (r.inUse) return 'now';
  const t = Math.max(r.createdAt.getTime(), r.lastUsedAt?.getTime() ?? 0);
  return `${humanDuration(now - t)} ago`;
}

/** Records as buildx prints them: a table, or with `verbose` one block per record. */
export function formatCacheRecords(
  records: readonly CacheRecord[],
  verbose: boolean,
  now = Date.now(),
): string {
  if (records.length === 0) return '';
  if (!verbose) {
    const rows = [['ID', 'RECLAIMABLE', 'SIZE', 'LAST ACCESSED']];
    for (const r of records) rows.push([r.id, String(!r.inUse), humanSize(r.size), lastAccessed(r, now)]);
    return formatTable(rows);
  }
  return records
    .map((r) =>
      formatTable([
        ['ID:', r.id],
        ['Key:', r.key],
        ...(r.parents.length > 0 ? [['Parent:', r.parents.at(-1)!]] : []),
        ['Created at:', r.createdAt.toISOString()],
        ['Reclaimable:', String(!r.inUse)],
        ['Shared:', String(r.shared)],
        ['Size:', humanSize(r.size)],
        ...(r.lastUsedAt ? [['Last used:', `${humanDuration(now - r.lastUsedAt.getTime())} ago`]] : []),
        ['Type:', r.type],
      ]),
    )
    .join('\n');
}

function cacheTotals(c: { shared: number; private: number; reclaimable: number; total: number }): string {
  return formatTable([
    ['Shared:', humanSize(c.shared)],
    ['Private:', humanSize(c.private)],
    ['Reclaimable:', humanSize(c.reclaimable)],
    ['Total:', humanSize(c.total)],
  ]);
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('du')
    .description('Show disk usage of the build cache and the local store')
    .option('--format <format>', 'Output format: table or json', 'table')
    .option('--verbose', 'Show every detail of each build cache record')
    .option('--builder <name>', 'builder instance whose caches to show (default: the current one)')
    .action(async (opts: { format: string; verbose?: boolean; builder?: string }) => {
      const { UsageError } = await import('../../util/errors.js');
      if (opts.format !== 'table' && opts.format !== 'json')
        throw new UsageError(`invalid --format "${opts.format}": use table or json`);
      const { ContentStore, diskUsage, storeDir } = await import('../../content/index.js');
      const { listCacheRecords } = await import('../../build/index.js');
      const { resolveBuilder, hasRemoteNodes, nodeDriver } = await import('../../builder/index.js');
      const builder = await resolveBuilder(opts.builder, { env: ctx.env });
      const here = builder.nodes.some((n) => nodeDriver(builder, n) === 'local');
      const store = await ContentStore.open(storeDir(ctx.env));
      const records = here ? await listCacheRecords({ env: ctx.env, store }) : [];
      // A builder with BuildKit nodes: their caches too (buildx du asks every node).
      if (hasRemoteNodes(builder)) {
        const { nodesDiskUsage } = await import('../../builder/remote/cache.js');
        records.push(...(await nodesDiskUsage(builder)));
      }
      const sum = (rs: CacheRecord[]) => rs.reduce((n, r) => n + r.size, 0);
      const cache = {
        shared: sum(records.filter((r) => r.shared)),
        private: sum(records.filter((r) => !r.shared)),
        reclaimable: sum(records.filter((r) => !r.inUse)),
        total: sum(records),
      };
      if (!here) {
        // Only BuildKit nodes: their caches are all there is to show (buildx du's layout).
        if (opts.format === 'json') {
          ctx.out.write(`${JSON.stringify({ buildCache: { ...cache, records } })}\n`);
          return;
        }
        if (records.length > 0) ctx.out.write(`${formatCacheRecords(records, opts.verbose ?? false)}\n`);
        ctx.out.write(cacheTotals(cache));
        return;
      }
      const usage = await diskUsage(store);
      if (opts.format === 'json') {
        ctx.out.write(
          `${JSON.stringify({ store: store.dir, ...usage, buildCache: { ...cache, records } })}\n`,
        );
        return;
      }
      if (records.length > 0) ctx.out.write(`${formatCacheRecords(records, opts.verbose ?? false)}\n`);
      ctx.out.write(cacheTotals(cache));
      ctx.out.write('\n');
      const rows = [['NAME', 'BLOBS', 'SIZE', 'EXCLUSIVE']];
      for (const r of usage.refs)
        rows.push([r.name, String(r.blobs), humanSize(r.bytes), humanSize(r.exclusiveBytes)]);
      if (usage.refs.length > 0) ctx.out.write(`${formatTable(rows)}\n`);
      ctx.out.write(
        formatTable([
          ['Store:', store.dir],
          [
            'Unreferenced:',
            `${usage.unreferenced.blobs} blobs, ${humanSize(usage.unreferenced.bytes)}${usage.inUse.blobs > 0 ? ` (${usage.inUse.blobs} in use by running operations)` : ''}`,
          ],
          ['Total:', `${usage.blobs} blobs, ${humanSize(usage.bytes)}`],
        ]),
      );
    });
}
