/** `polyarch inspect [--bootstrap] [NAME]`: show a builder instance in buildx inspect's layout. */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('inspect')
    .description('Inspect a builder instance (default: the current one)')
    .argument('[NAME]', 'Builder instance name')
    .option('--bootstrap', 'Ensure the builder has booted before inspecting')
    .option('--builder <name>', 'Override the configured builder instance')
    .action(async (name: string | undefined, flags: { bootstrap?: boolean; builder?: string }) => {
      const { bootstrapBuilder, formatBuilderInspect, nodeStates, resolveBuilder } = await import(
        '../../builder/index.js'
      );
      const b = await resolveBuilder(name ?? flags.builder, { env: ctx.env });
      // --bootstrap fails on an unreachable node; plain inspect shows the node's error instead.
      const states = flags.bootstrap ? await bootstrapBuilder(b) : await nodeStates(b);
      ctx.out.write(formatBuilderInspect(b, states));
    });
}
