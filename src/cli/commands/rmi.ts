/**
 * `polyarch rmi IMAGE...`: untag images in the local store, then remove the blobs no
 * remaining name reaches. Every name must exist, or nothing is removed.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { humanSize } from './images.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('rmi')
    .description('Remove one or more images from the local store')
    .argument('<IMAGE...>', 'Image names')
    .option('-f, --force', 'Accepted for docker compatibility (no containers hold images)')
    .action(async (refs: string[]) => {
      const { ContentStore, removeImages, storeDir } = await import('../../content/index.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      const { untagged, freed } = await removeImages(store, refs);
      for (const u of untagged) ctx.out.write(`Untagged: ${u.name}\n`);
      if (freed.removed > 0) ctx.out.write(`Deleted: ${freed.removed} blobs, ${humanSize(freed.bytes)}\n`);
    });
}
