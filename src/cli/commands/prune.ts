/**
 * `polyarch prune [-a] [--filter until=DURATION] [--keep-storage SIZE] [-f] [--verbose]`: first
 * (top level only, not `builder prune`) remove stopped containers, printing `Deleted Containers:`
 * as `docker container prune`; then, like `docker buildx prune`, remove build cache records not in use (src/build/cache.ts: by default
 * build step results and base layers no stored image needs; `--all` also shared base layers,
 * kept `run` containers and `RUN --mount=type=cache` dirs), printing the removed records and
 * `Total:`; then, as before, garbage-collect blobs of the local store that no image name reaches,
 * and drop layer memo entries (src/build/export/layers.ts) whose blob went with them. What a
 * running pull, build or run leases (src/content/leases.ts) is kept, and the output says so:
 * `Kept N build cache records in use by running operations`, `Kept N blobs in use by running
 * operations`. Build records (`history ls`) are pruned too: finished ones older than 48h (or
 * `until`), all finished ones with `--all`.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { formatCacheRecords } from './du.js';
import { formatTable, humanSize } from './images.js';

interface PruneFlags {
  all?: boolean;
  filter: string[];
  keepStorage?: string;
  force?: boolean;
  verbose?: boolean;
  builder?: string;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('prune')
    .description('Remove build cache and unreferenced data from the local store')
    .option('-a, --all', 'Include shared base layers, kept containers and cache mounts')
    .option(
      '--filter <filter>',
      'Provide filter values (until=DURATION: only records unused for that long)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--keep-storage <size>', 'Amount of disk space to keep for cache (most recently used)')
    .option('-f, --force', 'Do not prompt for confirmation (polyarch never prompts)')
    .option('--verbose', 'Provide a more verbose output')
    .option('--builder <name>', 'builder instance whose caches to prune (default: the current one)')
    .action(async (flags: PruneFlags) => {
      const { PolyarchError, UsageError, errorMessage } = await import('../../util/errors.js');
      const { parseDuration, parseSize, pruneCache } = await import('../../build/index.js');
      let untilMs = 0;
      for (const f of flags.filter) {
        const m = /^until=(.*)$/.exec(f);
        if (!m) throw new UsageError(`invalid --filter "${f}": only until=DURATION is supported`);
        try {
          untilMs = parseDuration(m[1]!);
        } catch (err) {
          throw new UsageError(`invalid --filter "${f}": ${errorMessage(err)}`);
        }
      }
      let keepBytes = 0;
      if (flags.keepStorage !== undefined)
        try {
          keepBytes = parseSize(flags.keepStorage);
        } catch (err) {
          throw new UsageError(`invalid --keep-storage: ${errorMessage(err)}`);
        }
      // A builder with BuildKit nodes: each node prunes its own cache (buildx prune).
      const { resolveBuilder, hasRemoteNodes, nodeDriver } = await import('../../builder/index.js');
      const builder = await resolveBuilder(flags.builder, { env: ctx.env });
      if (hasRemoteNodes(builder) && keepBytes > 0)
        throw new PolyarchError(
          'UNSUPPORTED',
          '--keep-storage is not supported yet on BuildKit nodes (use --filter until=…)',
        );
      const { ContentStore, storeDir, stateRoot } = await import('../../content/index.js');
      if (program.name() === 'polyarch') {
        // Top-level prune also removes stopped containers (`builder prune` is the cache only).
        const { pruneContainers } = await import('../../exec/containers.js');
        const gone = await pruneContainers(stateRoot(ctx.env));
        if (gone.length > 0) ctx.out.write(`Deleted Containers:\n${gone.map((id) => `${id}\n`).join('')}\n`);
      }
      if (hasRemoteNodes(builder)) {
        const { pruneNodes } = await import('../../builder/remote/cache.js');
        const gone = await pruneNodes(builder, { all: flags.all ?? false, keepDurationMs: untilMs });
        if (gone.length > 0)
          ctx.out.write(`${formatCacheRecords(gone, flags.verbose ?? false)}${flags.verbose ? '\n' : ''}`);
        ctx.out.write(formatTable([['Total:', humanSize(gone.reduce((n, r) => n + r.size, 0))]]));
        if (!builder.nodes.some((n) => nodeDriver(builder, n) === 'local')) return;
      }
      const store = await ContentStore.open(storeDir(ctx.env));
      const r = await pruneCache({ env: ctx.env, store, all: flags.all ?? false, untilMs, keepBytes });
      if (r.removed.length > 0)
        ctx.out.write(`${formatCacheRecords(r.removed, flags.verbose ?? false)}${flags.verbose ? '\n' : ''}`);
      ctx.out.write(formatTable([['Total:', humanSize(r.bytes)]]));
      if (r.kept.length > 0)
        ctx.out.write(
          `Kept ${r.kept.length} build cache records in use by running operations (${humanSize(r.kept.reduce((n, k) => n + k.size, 0))})\n`,
        );
      // Build records (src/history) go with the cache: all finished ones with --all, else
      // those older than --filter until= (default 48h, BuildKit's history max age).
      const { HistoryStore } = await import('../../history/index.js');
      const records = await new HistoryStore(stateRoot(ctx.env)).prune({
        ...(flags.all ? { all: true } : {}),
        ...(untilMs > 0 ? { olderThanMs: untilMs } : {}),
      });
      if (records.length > 0) ctx.out.write(`Deleted build records: ${records.length}\n`);
      const { removed, bytes, kept, keptBytes } = await store.gc();
      const { LayerMemo } = await import('../../build/export/layers.js');
      const memo = await LayerMemo.open(stateRoot(ctx.env));
      await memo.prune((d) => store.has(d));
      ctx.out.write(`Deleted blobs: ${removed}\nTotal reclaimed space: ${humanSize(bytes)}\n`);
      if (kept > 0)
        ctx.out.write(`Kept ${kept} blobs in use by running operations (${humanSize(keptBytes)})\n`);
    });
}
