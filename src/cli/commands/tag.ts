/** `polyarch tag SOURCE TARGET`: give an image in the local store another name. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('tag')
    .description('Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE in the local store')
    .argument('<SOURCE_IMAGE[:TAG]>', 'An image in the local store')
    .argument('<TARGET_IMAGE[:TAG]>', 'The new name')
    .action(async (src: string, dst: string) => {
      const { ContentStore, storeDir, tagImage } = await import('../../content/index.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      await tagImage(store, src, dst);
    });
}
