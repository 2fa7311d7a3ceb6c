/**
 * `polyarch ps [-a] [-q] [--no-trunc] [--format table|json]`: containers as `docker ps` lists
 * them (running ones; `-a` all), newest first, with a PLATFORM column. `json` prints one
 * object per line with docker's field names (ID, Image, Platform, Command, CreatedAt,
 * RunningFor, Status, State, Ports, Names).
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

interface PsFlags {
  all?: boolean;
  quiet?: boolean;
  trunc?: boolean;
  format: string;
}

/** docker ps's column titles, for `table …` templates. */
const PS_HEADER: Readonly<Record<string, string>> = {
  ID: 'CONTAINER ID',
  Image: 'IMAGE',
  Platform: 'PLATFORM',
  Command: 'COMMAND',
  CreatedAt: 'CREATED AT',
  RunningFor: 'CREATED',
  Status: 'STATUS',
  State: 'STATE',
  Ports: 'PORTS',
  Names: 'NAMES',
};

export function register(program: Command, ctx: CliContext): void {
  program
    .command('ps')
    .description('List containers')
    .option('-a, --all', 'Show all containers (default shows just running)')
    .option('-q, --quiet', 'Only display container IDs')
    .option('--no-trunc', "Don't truncate output")
    .option(
      '--format <format>',
      "table, json (one object per line), or a Go template with docker's fields (.ID .Image .Names …)",
      'table',
    )
    .action(async (flags: PsFlags) => {
      const { formatRows } = await import('../../util/formatter.js');
      const custom = flags.format !== 'table' && flags.format !== 'json' && flags.format !== '';
      // Parse the template before any work, so a bad one fails fast.
      if (custom) formatRows(flags.format, [], { header: PS_HEADER });
      const { stateRoot } = await import('../../content/paths.js');
      const { isRunning, listContainers, psRow } = await import('../../exec/containers.js');
      const { formatTable } = await import('./images.js');
      const all = await listContainers(stateRoot(ctx.env));
      const shown = flags.all ? all : all.filter(isRunning);
      const noTrunc = flags.trunc === false;
      const rows = shown.map((rec) => {
        const row = psRow(rec);
        if (noTrunc) row.ID = rec.Id;
        if (noTrunc) row.Command = JSON.stringify([rec.Path, ...rec.Args].filter(Boolean).join(' '));
        return row;
      });
      if (flags.quiet) {
        ctx.out.write(rows.map((r) => `${r.ID}\n`).join(''));
        return;
      }
      if (custom) {
        ctx.out.write(formatRows(flags.format, rows, { header: PS_HEADER }));
        return;
      }
      if (flags.format === 'json') {
        ctx.out.write(rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
        return;
      }
      ctx.out.write(
        formatTable([
          ['CONTAINER ID', 'IMAGE', 'PLATFORM', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'],
          ...rows.map((r) => [
            r.ID,
            r.Image,
            r.Platform,
            r.Command,
            r.RunningFor,
            r.Status,
            r.Ports,
            r.Names,
          ]),
        ]),
      );
    });
}
