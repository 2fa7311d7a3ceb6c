/**
 * `polyarch stop [-t S] [-s SIG] CONTAINER...`: the stop signal (the image's StopSignal, else
 * SIGTERM), then SIGKILL after S seconds (default 10), as `docker stop`; prints each name given.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('stop')
    .description('Stop one or more running containers')
    .argument('<container...>', 'Container names or IDs')
    .option('-t, --time <seconds>', 'Seconds to wait before killing the container', '10')
    .option('-s, --signal <signal>', 'Signal to send to the container')
    .action(async (refs: string[], flags: { time: string; signal?: string }) => {
      const { UsageError } = await import('../../util/errors.js');
      if (!/^\d+$/.test(flags.time))
        throw new UsageError(`invalid --time "${flags.time}": use whole seconds`);
      const { stateRoot } = await import('../../content/paths.js');
      const { findContainer, stopContainer } = await import('../../exec/containers.js');
      const root = stateRoot(ctx.env);
      await eachContainer(ctx, refs, async (ref) => {
        const rec = await findContainer(root, ref);
        await stopContainer(root, rec, {
          timeoutS: Number(flags.time),
          ...(flags.signal !== undefined ? { signal: flags.signal } : {}),
        });
      });
    });
}

/**
 * Docker's way with several containers: do each, print its name on success, an error line
 * for each that failed, exit 1 if any did.
 */
export async function eachContainer(
  ctx: CliContext,
  refs: string[],
  step: (ref: string) => Promise<void>,
  print = true,
): Promise<void> {
  const { errorMessage } = await import('../../util/errors.js');
  let failed = false;
  for (const ref of refs) {
    try {
      await step(ref);
      if (print) ctx.out.write(`${ref}\n`);
    } catch (err) {
      failed = true;
      ctx.err.write(`ERROR: ${errorMessage(err)}\n`);
    }
  }
  if (failed) ctx.exitCode = 1;
}
