/** `polyarch prune`: remove blobs of the local store that no image name reaches. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { humanSize } from './images.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('prune')
    .description('Remove unreferenced data from the local store')
    .option('-f, --force', 'Do not prompt for confirmation (polyarch never prompts)')
    .action(async () => {
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      const { removed, bytes } = await store.gc();
      ctx.out.write(`Deleted blobs: ${removed}\nTotal reclaimed space: ${humanSize(bytes)}\n`);
    });
}
