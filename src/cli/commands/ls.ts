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
    .option(
      '--format <format>',
      "'table', 'json' (one object per builder and line), or a Go template (buildx's fields: .Name .DriverEndpoint .Status .Buildkit .Platforms .LastActivity .Error .Builder)",
      'table',
    )
    .action(async (flags: { trunc?: boolean; format: string }) => {
      const { formatRows } = await import('../../util/formatter.js');
      const custom = flags.format !== 'table' && flags.format !== 'json';
      // A bad template fails before any builder is asked.
      if (custom) formatRows(flags.format, []);
      const { builderJson, formatBuilderTable, listBuilders, lsRows, LS_HEADER, nodeStates } = await import(
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
      if (custom) {
        const table = flags.format.startsWith('table');
        const rows = lsRows(builders, current, states, { table, noTrunc: flags.trunc === false });
        ctx.out.write(formatRows(flags.format, rows, { header: LS_HEADER }));
        const failed = [...states].flatMap(([name, ns]) =>
          ns
            .filter((s) => s.error || !s.info)
            .map(
              (s) =>
                `Failed to get status for ${name} (${s.node.name}): ${s.error?.message.split('\n')[0] ?? 'no answer'}`,
            ),
        );
        const notes = [...broken, ...(table ? failed : [])];
        if (notes.length > 0) ctx.err.write(`\n${notes.map((n) => `${n}\n`).join('')}`);
        return;
      }
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
