/**
 * `polyarch rm [NAME...] [--all-inactive]`: remove builder instances (buildx rm). With no
 * name, the current builder. `default` cannot be removed. Prints `<name> removed` on stderr.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('rm')
    .description('Remove one or more builder instances')
    .argument('[NAME...]', 'Builder instance names (default: the current builder)')
    .option('--all-inactive', 'Remove all builders with no running node')
    .action(async (names: string[], flags: { allInactive?: boolean }) => {
      const { UsageError } = await import('../../util/errors.js');
      const { removeBuilder, removeInactiveBuilders, resolveBuilder } = await import(
        '../../builder/index.js'
      );
      if (flags.allInactive) {
        if (names.length > 0) throw new UsageError('cannot give builder names with --all-inactive');
        for (const n of await removeInactiveBuilders({ env: ctx.env })) ctx.err.write(`${n} removed\n`);
        return;
      }
      const targets = names.length > 0 ? names : [(await resolveBuilder(undefined, { env: ctx.env })).name];
      for (const n of targets) {
        await removeBuilder(n, { env: ctx.env });
        ctx.err.write(`${n} removed\n`);
      }
    });
}
