/**
 * `polyarch du`: disk usage of the local store — per image name the blobs it reaches
 * (SIZE) and what removing only that name would free (EXCLUSIVE), then the totals.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { formatTable, humanSize } from './images.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('du')
    .description('Show disk usage of the local store')
    .option('--format <format>', 'Output format: table or json', 'table')
    .action(async (opts: { format: string }) => {
      const { UsageError } = await import('../../util/errors.js');
      if (opts.format !== 'table' && opts.format !== 'json')
        throw new UsageError(`invalid --format "${opts.format}": use table or json`);
      const { ContentStore, diskUsage, storeDir } = await import('../../content/index.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      const usage = await diskUsage(store);
      if (opts.format === 'json') {
        ctx.out.write(`${JSON.stringify({ store: store.dir, ...usage })}\n`);
        return;
      }
      const rows = [['NAME', 'BLOBS', 'SIZE', 'EXCLUSIVE']];
      for (const r of usage.refs)
        rows.push([r.name, String(r.blobs), humanSize(r.bytes), humanSize(r.exclusiveBytes)]);
      if (usage.refs.length > 0) ctx.out.write(`${formatTable(rows)}\n`);
      ctx.out.write(
        formatTable([
          ['Store:', store.dir],
          ['Unreferenced:', `${usage.unreferenced.blobs} blobs, ${humanSize(usage.unreferenced.bytes)}`],
          ['Total:', `${usage.blobs} blobs, ${humanSize(usage.bytes)}`],
        ]),
      );
    });
}
