/** `polyarch kill [-s SIG] CONTAINER...`: signal running containers (default SIGKILL), as docker. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { eachContainer } from './stop.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('kill')
    .description('Kill one or more running containers')
    .argument('<container...>', 'Container names or IDs')
    .option('-s, --signal <signal>', 'Signal to send to the container', 'KILL')
    .action(async (refs: string[], flags: { signal: string }) => {
      const { stateRoot } = await import('../../content/paths.js');
      const { findContainer, killContainer, normalizeSignal } = await import('../../exec/containers.js');
      normalizeSignal(flags.signal); // a bad signal fails before anything is signalled
      const root = stateRoot(ctx.env);
      await eachContainer(ctx, refs, async (ref) =>
        killContainer(root, await findContainer(root, ref), flags.signal),
      );
    });
}
