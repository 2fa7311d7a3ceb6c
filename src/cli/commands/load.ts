/**
 * `polyarch load [-i FILE] [-q]`: load images from an oci-archive or docker-archive (plain,
 * gzip or zstd) into the local store, from stdin without -i. Every blob is verified before
 * anything is stored or tagged. Prints `Loaded image: NAME` per name, as docker does.
 */
import type { Readable } from 'node:stream';
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';

interface LoadFlags {
  input?: string;
  quiet?: boolean;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('load')
    .description('Load images from a tar archive (oci-archive or docker-archive) or STDIN')
    .option('-i, --input <file>', 'Read from a tar archive file, instead of STDIN')
    .option('-q, --quiet', 'Suppress the load output')
    .action(async (flags: LoadFlags) => {
      let input: string | Readable;
      if (flags.input !== undefined && flags.input !== '-') input = flags.input;
      else if (!process.stdin.isTTY) input = process.stdin;
      else
        throw new UsageError(
          'requested load from stdin, but stdin is a terminal: use -i FILE or redirect stdin',
        );
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const { loadArchive } = await import('../../image/archive.js');
      const { familiarReference, parseReference } = await import('../../oci/reference.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      const r = await loadArchive({ store, input, warn: (m) => ctx.err.write(`WARNING: ${m}\n`) });
      if (flags.quiet) return;
      for (const img of r.images)
        ctx.out.write(
          img.name
            ? `Loaded image: ${familiarReference(parseReference(img.name))}\n`
            : `Loaded image ID: ${img.descriptor.digest}\n`,
        );
    });
}
