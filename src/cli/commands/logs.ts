/**
 * `polyarch logs [-f] [--tail N] [-t] CONTAINER`: what a detached container wrote, stdout to
 * stdout and stderr to stderr, as `docker logs`. `-f` follows until the container exits.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('logs')
    .description('Fetch the logs of a container')
    .argument('<container>', 'Container name or ID')
    .option('-f, --follow', 'Follow log output')
    .option('-n, --tail <n>', 'Number of lines to show from the end of the logs ("all")', 'all')
    .option('-t, --timestamps', 'Show timestamps')
    .action(async (ref: string, flags: { follow?: boolean; tail: string; timestamps?: boolean }) => {
      const { UsageError } = await import('../../util/errors.js');
      let tail: number | undefined;
      if (flags.tail !== 'all') {
        if (!/^\d+$/.test(flags.tail))
          throw new UsageError(`invalid --tail "${flags.tail}": use a number or all`);
        tail = Number(flags.tail);
      }
      const { stateRoot } = await import('../../content/paths.js');
      const { findContainer } = await import('../../exec/containers.js');
      const { readLogs } = await import('../../exec/logs.js');
      const root = stateRoot(ctx.env);
      const rec = await findContainer(root, ref);
      await readLogs(root, rec, {
        ...(tail !== undefined ? { tail } : {}),
        follow: Boolean(flags.follow),
        write: (e) =>
          (e.stream === 'stderr' ? ctx.err : ctx.out).write(flags.timestamps ? `${e.time} ${e.log}` : e.log),
      });
    });
}
