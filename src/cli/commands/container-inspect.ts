/**
 * `polyarch inspect CONTAINER...`: docker inspect's JSON array for containers (Id, Name, State,
 * Config, Platform, NetworkSettings.Ports, …). Builders moved to `polyarch builder inspect`: a
 * builder's name here says so.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { notContainer } from './container-rm.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('inspect')
    .description('Show low-level information on containers (builders: polyarch builder inspect)')
    .argument('<container...>', 'Container names or IDs')
    .option('--bootstrap', 'Moved: polyarch builder inspect --bootstrap')
    .option('-f, --format <template>', "a Go template over each container's JSON (e.g. {{.State.Status}})")
    .action(async (refs: string[], flags: { bootstrap?: boolean; format?: string }) => {
      const { PolyarchError, errorMessage } = await import('../../util/errors.js');
      const { formatRows } = await import('../../util/formatter.js');
      if (flags.format) formatRows(flags.format, []);
      if (flags.bootstrap)
        throw new PolyarchError('MOVED', 'builders moved: use `polyarch builder inspect --bootstrap`');
      const { stateRoot } = await import('../../content/paths.js');
      const { inspectView, lookupContainer } = await import('../../exec/containers.js');
      const root = stateRoot(ctx.env);
      const found: unknown[] = [];
      let failed = false;
      for (const ref of refs) {
        const rec = await lookupContainer(root, ref);
        if (rec) {
          found.push(inspectView(rec));
          continue;
        }
        failed = true;
        const err = await notContainer(
          ctx,
          ref,
          'inspect',
          new PolyarchError('NOT_FOUND', `No such object: ${ref}`),
        );
        ctx.err.write(`ERROR: ${errorMessage(err)}\n`);
      }
      // docker: with --format each object through the template, one per line; else a JSON array.
      if (flags.format) ctx.out.write(formatRows(flags.format, found));
      else ctx.out.write(`${JSON.stringify(found, null, 4)}\n`);
      if (failed) ctx.exitCode = 1;
    });
}
