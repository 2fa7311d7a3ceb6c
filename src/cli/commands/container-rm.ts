/**
 * `polyarch rm [-f] CONTAINER...`: remove containers, as `docker rm` (a running one only with
 * -f). Builders moved to `polyarch builder rm`: a builder's name here says so.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { eachContainer } from './stop.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('rm')
    .description('Remove one or more containers (builders: polyarch builder rm)')
    .argument('<container...>', 'Container names or IDs')
    .option('-f, --force', 'Force the removal of a running container (uses SIGKILL)')
    .option('--all-inactive', 'Moved: polyarch builder rm --all-inactive')
    .action(async (refs: string[], flags: { force?: boolean; allInactive?: boolean }) => {
      const { PolyarchError } = await import('../../util/errors.js');
      if (flags.allInactive)
        throw new PolyarchError('MOVED', 'builders moved: use `polyarch builder rm --all-inactive`');
      const { stateRoot } = await import('../../content/paths.js');
      const { lookupContainer, noSuchContainer, removeContainer } = await import('../../exec/containers.js');
      const root = stateRoot(ctx.env);
      await eachContainer(ctx, refs, async (ref) => {
        const rec = await lookupContainer(root, ref);
        if (!rec) throw await notContainer(ctx, ref, 'rm', noSuchContainer(ref));
        await removeContainer(root, rec, { force: Boolean(flags.force) });
      });
    });
}

/** `ref` is no container: when it names a builder, say where builder commands went. */
export async function notContainer(
  ctx: CliContext,
  ref: string,
  verb: string,
  otherwise: Error,
): Promise<Error> {
  const { PolyarchError } = await import('../../util/errors.js');
  const { resolveBuilder } = await import('../../builder/index.js');
  const isBuilder = await resolveBuilder(ref, { env: ctx.env }).then(
    () => true,
    () => false,
  );
  if (!isBuilder) return otherwise;
  return new PolyarchError(
    'MOVED',
    `"${ref}" is a builder, not a container: use \`polyarch builder ${verb} ${ref}\``,
  );
}
