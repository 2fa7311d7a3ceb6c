/**
 * `polyarch save [-o FILE] [--format oci|docker] [--platform P] IMAGE...`: write images of the
 * local store to a tar archive — an oci-archive by default, or a docker-archive (`docker load`'s
 * format, one platform per image). Without -o the archive goes to stdout unless it is a terminal.
 */
import { Writable } from 'node:stream';
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';

interface SaveFlags {
  output?: string;
  format: string;
  platform?: string;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('save')
    .description('Save one or more images to a tar archive (oci-archive by default)')
    .argument('<IMAGE...>', 'Images in the local store')
    .option('-o, --output <file>', 'Write to a file, instead of STDOUT')
    .option('--format <format>', 'Archive format: oci or docker', 'oci')
    .option(
      '--platform <platform>',
      'docker format: the platform to save from a multi-platform image (default: this host)',
    )
    .action(async (refs: string[], flags: SaveFlags) => {
      if (flags.format !== 'oci' && flags.format !== 'docker')
        throw new UsageError(`invalid --format "${flags.format}": use oci or docker`);
      let output: string | Writable;
      if (flags.output !== undefined && flags.output !== '-') output = flags.output;
      else if (ctx.out instanceof Writable && !(ctx.out as { isTTY?: boolean }).isTTY) output = ctx.out;
      else throw new UsageError('refusing to write an archive to a terminal: use -o FILE or redirect stdout');
      const { ContentStore, storeDir } = await import('../../content/index.js');
      const { saveArchive } = await import('../../image/archive.js');
      const store = await ContentStore.open(storeDir(ctx.env));
      await saveArchive({
        store,
        refs,
        output,
        format: flags.format,
        ...(flags.platform !== undefined ? { platform: flags.platform } : {}),
      });
    });
}
