/**
 * `polyarch import [--platform P] [-c/--change INSTR]... [-m MSG] SOURCE REF`: make a one-layer
 * image from a rootfs tarball (`-` = stdin) or directory, like `docker import`; importing more
 * platforms under one REF builds an index. Prints the stored root's digest, as docker does.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

interface ImportFlags {
  platform?: string;
  change: string[];
  message?: string;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('import')
    .description('Import the contents from a tarball or directory to create a filesystem image')
    .argument('<SOURCE>', 'A rootfs tar (plain, gzip or zstd; - for stdin) or directory')
    .argument('<REPOSITORY[:TAG]>', 'The name to store the image under')
    .option('--platform <platform>', 'Platform of the image (default: this host)')
    .option(
      '-c, --change <instruction>',
      'Apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('-m, --message <message>', 'Set the history comment (default: "Imported from SOURCE")')
    .action(async (source: string, ref: string, flags: ImportFlags) => {
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const { importImage } = await import('../../image/import.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      const r = await importImage({
        store,
        source,
        ref,
        changes: flags.change,
        env: ctx.env,
        ...(flags.platform !== undefined ? { platform: flags.platform } : {}),
        ...(flags.message !== undefined ? { message: flags.message } : {}),
      });
      ctx.out.write(`${r.descriptor.digest}\n`);
    });
}
