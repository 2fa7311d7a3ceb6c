import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('push')
    .description('Upload an image from the local store to a registry')
    .argument('<ref>', 'image reference in the local store')
    .argument('[target]', 'push under another reference (default: REF itself)')
    .option('--progress <mode>', 'progress output: auto, tty, plain, rawjson or quiet (default: auto)')
    .option('-q, --quiet', 'print only the digest (implies --progress quiet)')
    .action(async (ref: string, target: string | undefined, o: { progress?: string; quiet?: boolean }) => {
      const { chooseRenderer } = await import('../ui/choose.js');
      const renderer = chooseRenderer(o.quiet ? 'quiet' : o.progress, {
        stream: ctx.err,
        isTTY: ctx.isTTY,
        env: ctx.env,
        phase: 'Pushing',
      });
      const { ProgressWriter } = await import('../../progress/writer.js');
      const { push } = await import('../../image/push.js');
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const progress = new ProgressWriter(renderer);
      let r: Awaited<ReturnType<typeof push>>;
      try {
        const store = await ContentStore.open(storeDir(ctx.env));
        r = await push(ref, {
          store,
          ...(target ? { target } : {}),
          progress,
          env: ctx.env,
          warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
        });
      } finally {
        await progress.close();
      }
      ctx.out.write(o.quiet ? `${r.digest}\n` : `${r.name}: digest: ${r.digest} size: ${r.size}\n`);
    });
}
