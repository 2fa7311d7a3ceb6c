import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('pull')
    .description('Download an image from a registry into the local store')
    .argument('<ref>', 'image reference (NAME[:TAG|@DIGEST])')
    .option('--platform <list>', 'platforms to fetch, comma-separated (default: the host)')
    .option('-a, --all-platforms', 'fetch every platform of a multi-platform image')
    .option('-q, --quiet', 'print only the image name')
    .action(async (ref: string, o: { platform?: string; allPlatforms?: boolean; quiet?: boolean }) => {
      const { pull } = await import('../../image/pull.js');
      const { parsePlatformList } = await import('../../platform/index.js');
      const { UsageError, errorMessage } = await import('../../util/errors.js');
      try {
        if (o.platform !== undefined) parsePlatformList(o.platform);
      } catch (err) {
        throw new UsageError(errorMessage(err));
      }
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const { TransferProgress } = await import('../../registry/progress.js');
      const { renderTransfers } = await import('../ui/transfer.js');
      const progress = new TransferProgress();
      const done = o.quiet ? () => {} : renderTransfers(progress, ctx.err, ctx.isTTY);
      try {
        const r = await pull(ref, {
          store: () => ContentStore.open(storeDir(ctx.env)),
          ...(o.platform ? { platforms: o.platform.split(',').filter(Boolean) } : {}),
          all: Boolean(o.allPlatforms),
          progress,
          env: ctx.env,
          warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
        });
        done();
        if (!o.quiet) ctx.out.write(`Digest: ${r.descriptor.digest}\n`);
        ctx.out.write(`${r.name}\n`);
      } finally {
        done();
      }
    });
}
