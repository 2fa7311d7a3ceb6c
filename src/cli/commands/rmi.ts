/**
 * `polyarch rmi IMAGE...`: untag images in the local store, then remove the blobs no
 * remaining name reaches. Every name must exist, or nothing is removed. An image ID
 * (as `images` prints it) removes its one name, or all its names with --force. Blobs a running
 * pull, build or run leases stay (`Kept N blobs in use by running operations`).
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { humanSize } from './images.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('rmi')
    .description('Remove one or more images from the local store')
    .argument('<IMAGE...>', 'Image names')
    .option('-f, --force', 'Let an image ID remove every name of that image')
    .action(async (refs: string[], opts: { force?: boolean }) => {
      const { ContentStore, removeImages, storeDir } = await import('../../content/index.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      const { untagged, freed } = await removeImages(store, refs, { force: opts.force === true });
      for (const u of untagged) ctx.out.write(`Untagged: ${u.name}\n`);
      if (freed.removed > 0) ctx.out.write(`Deleted: ${freed.removed} blobs, ${humanSize(freed.bytes)}\n`);
      if (freed.kept > 0)
        ctx.out.write(
          `Kept ${freed.kept} blobs in use by running operations (${humanSize(freed.keptBytes)})\n`,
        );
    });
}
