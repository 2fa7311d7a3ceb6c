import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('push')
    .description('Upload an image from the local store to a registry')
    .argument('<ref>', 'image reference in the local store')
    .argument('[target]', 'push under another reference (default: REF itself)')
    .option('-q, --quiet', 'print only the digest')
    .action(async (ref: string, target: string | undefined, o: { quiet?: boolean }) => {
      const { push } = await import('../../image/push.js');
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const { TransferProgress } = await import('../../registry/progress.js');
      const { renderTransfers } = await import('../ui/transfer.js');
      const progress = new TransferProgress();
      const done = o.quiet ? () => {} : renderTransfers(progress, ctx.err, ctx.isTTY);
      try {
        const store = await ContentStore.open(storeDir(ctx.env));
        const r = await push(ref, {
          store,
          ...(target ? { target } : {}),
          progress,
          env: ctx.env,
          warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
        });
        done();
        ctx.out.write(o.quiet ? `${r.digest}\n` : `${r.name}: digest: ${r.digest} size: ${r.size}\n`);
      } finally {
        done();
      }
    });
}
