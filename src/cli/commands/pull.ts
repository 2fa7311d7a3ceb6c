import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('pull')
    .description('Download an image from a registry into the local store')
    .argument('<ref>', 'image reference (NAME[:TAG|@DIGEST])')
    .option('--platform <list>', 'platforms to fetch, comma-separated (default: the host)')
    .option('-a, --all-platforms', 'fetch every platform of a multi-platform image')
    .option('--progress <mode>', 'progress output: auto, tty, plain, rawjson or quiet (default: auto)')
    .option('-q, --quiet', 'print only the image name (implies --progress quiet)')
    .action(
      async (
        ref: string,
        o: { platform?: string; allPlatforms?: boolean; progress?: string; quiet?: boolean },
      ) => {
        const { UsageError, errorMessage } = await import('../../util/errors.js');
        const { parsePlatformList } = await import('../../platform/index.js');
        try {
          if (o.platform !== undefined) parsePlatformList(o.platform);
        } catch (err) {
          throw new UsageError(errorMessage(err));
        }
        const { chooseRenderer } = await import('../ui/choose.js');
        const renderer = chooseRenderer(o.quiet ? 'quiet' : o.progress, {
          stream: ctx.err,
          isTTY: ctx.isTTY,
          env: ctx.env,
          phase: 'Pulling',
        });
        const { ProgressWriter } = await import('../../progress/writer.js');
        const { pull } = await import('../../image/pull.js');
        const { ContentStore, storeDir } = await import('../../content/index.js');
        const progress = new ProgressWriter(renderer);
        let r: Awaited<ReturnType<typeof pull>>;
        try {
          r = await pull(ref, {
            store: () => ContentStore.open(storeDir(ctx.env)),
            ...(o.platform ? { platforms: o.platform.split(',').filter(Boolean) } : {}),
            all: Boolean(o.allPlatforms),
            progress,
            env: ctx.env,
            warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
          });
        } finally {
          // The final frame (and a failed vertex's error) prints before the CLI's ERROR line.
          await progress.close();
        }
        if (!o.quiet) ctx.out.write(`Digest: ${r.descriptor.digest}\n`);
        ctx.out.write(`${r.name}\n`);
      },
    );
}
