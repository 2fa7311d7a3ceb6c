/** `polyarch wait CONTAINER...`: block until each container stops, then print its exit code. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { eachContainer } from './stop.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('wait')
    .description('Block until one or more containers stop, then print their exit codes')
    .argument('<container...>', 'Container names or IDs')
    .action(async (refs: string[]) => {
      const { stateRoot } = await import('../../content/paths.js');
      const { findContainer, noSuchContainer, waitExited } = await import('../../exec/containers.js');
      const root = stateRoot(ctx.env);
      await eachContainer(
        ctx,
        refs,
        async (ref) => {
          const rec = await findContainer(root, ref);
          const done = await waitExited(root, rec.Id);
          if (!done) throw noSuchContainer(ref); // removed while waiting (--rm)
          ctx.out.write(`${done.State.ExitCode}\n`);
        },
        false,
      );
    });
}
