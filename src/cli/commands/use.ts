/** `polyarch use NAME`: make NAME the current builder instance (buildx use). */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('use')
    .description('Set the current builder instance')
    .argument('<NAME>', 'Builder instance name ("default" for the built-in one)')
    .action(async (name: string) => {
      const { useBuilder } = await import('../../builder/index.js');
      await useBuilder(name, { env: ctx.env });
    });
}
