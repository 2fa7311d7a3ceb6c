/**
 * `polyarch container run|ls|ps|logs|stop|kill|exec|wait|inspect|rm|prune` — docker's `docker
 * container` group: the same commands as at the top level (`container ls` is `ps`), plus
 * `container prune`, which removes stopped containers only.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import * as inspect from './container-inspect.js';
import * as rm from './container-rm.js';
import * as run from './run.js';
import * as exec from './exec.js';
import * as kill from './kill.js';
import * as logs from './logs.js';
import * as ps from './ps.js';
import * as stop from './stop.js';
import * as wait from './wait.js';

export function register(program: Command, ctx: CliContext): void {
  const group = program
    .command('container')
    .description('Manage containers (docker container): ls, logs, stop, rm, prune, …');
  group.enablePositionalOptions(); // `container run IMAGE CMD -x` passes -x to CMD, as `run` does
  for (const m of [run, ps, logs, stop, kill, exec, wait, inspect, rm]) m.register(group, ctx);
  group.commands.find((c) => c.name() === 'ps')?.aliases(['ls', 'list']);
  group
    .command('prune')
    .description('Remove all stopped containers')
    .option('-f, --force', 'Do not prompt for confirmation (polyarch never prompts)')
    .action(async () => {
      const { stateRoot } = await import('../../content/paths.js');
      const { pruneContainers } = await import('../../exec/containers.js');
      const gone = await pruneContainers(stateRoot(ctx.env));
      ctx.out.write(`Deleted Containers:\n${gone.map((id) => `${id}\n`).join('')}\n`);
    });
}
