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
    .option('--format <format>', 'Output format: table or json (one object per builder and line)', 'table')
    .action(async (flags: { trunc?: boolean; format: string }) => {
      const { UsageError } = await import('../../util/errors.js');
      if (flags.format !== 'table' && flags.format !== 'json')
        throw new UsageError(`invalid --format "${flags.format}": use table or json`);
      const { builderJson, formatBuilderTable, listBuilders, nodeStates } = await import(
        '../../builder/index.js'
      );
      const broken: string[] = [];
      const { builders, current } = await listBuilders({
        env: ctx.env,
        onError: (name, err) => broken.push(`Cannot load builder ${name}: ${err.message}`),
      });
      const states = new Map(
        await Promise.all(builders.map(async (b) => [b.name, await nodeStates(b)] as const)),
      );
      if (flags.format === 'json') {
        for (const b of builders)
          ctx.out.write(`${JSON.stringify(builderJson(b, states.get(b.name) ?? [], b.name === current))}\n`);
        if (broken.length > 0) ctx.err.write(broken.map((n) => `${n}\n`).join(''));
        return;
      }
      const { table, problems } = formatBuilderTable(builders, current, states, {
        noTrunc: flags.trunc === false,
      });
      ctx.out.write(table);
      const notes = [...broken, ...problems];
      if (notes.length > 0) ctx.err.write(`\n${notes.map((n) => `${n}\n`).join('')}`);
    });
}
