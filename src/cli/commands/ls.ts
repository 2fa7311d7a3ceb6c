/**
 * `polyarch ls`: list builder instances and their nodes in buildx ls's table; nodes that
 * fail to answer show `error` and get a line on stderr after the table.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('ls')
    .description('List builder instances')
    .option('--no-trunc', "Don't truncate output (list every platform)")
    .action(async (flags: { trunc?: boolean }) => {
      const { formatBuilderTable, listBuilders, nodeStates } = await import('../../builder/index.js');
      const broken: string[] = [];
      const { builders, current } = await listBuilders({
        env: ctx.env,
        onError: (name, err) => broken.push(`Cannot load builder ${name}: ${err.message}`),
      });
      const states = new Map(
        await Promise.all(builders.map(async (b) => [b.name, await nodeStates(b)] as const)),
      );
      const { table, problems } = formatBuilderTable(builders, current, states, {
        noTrunc: flags.trunc === false,
      });
      ctx.out.write(table);
      const notes = [...broken, ...problems];
      if (notes.length > 0) ctx.err.write(`\n${notes.map((n) => `${n}\n`).join('')}`);
    });
}
