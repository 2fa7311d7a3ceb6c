/**
 * `polyarch create [--name N] [--driver local|remote|ssh] [--driver-opt K=V,...] [--platform LIST]
 * [--append] [--node N] [--use] [--bootstrap] [ENDPOINT]`: make a builder instance (buildx create) and print its name.
 */
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';

interface CreateFlags {
  name?: string;
  driver?: string;
  driverOpt?: string[];
  platform?: string[];
  append?: boolean;
  leave?: boolean;
  node?: string;
  use?: boolean;
  bootstrap?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `--driver-opt cacert=a,cert=b` (repeatable) → { cacert: 'a', cert: 'b' }. */
export function parseDriverOpts(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values)
    for (const part of v.split(',')) {
      const eq = part.indexOf('=');
      if (eq <= 0) throw new UsageError(`invalid --driver-opt "${part}": expected key=value`);
      out[part.slice(0, eq).trim()] = part.slice(eq + 1);
    }
  return out;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('create')
    .description('Create a new builder instance')
    .argument(
      '[ENDPOINT]',
      'Node endpoint: "local" for the local driver; unix:///path, tcp://host:port or ssh://[user@]host[:port][/socket] for remote; ssh://[user@]host[:port] for ssh',
    )
    .option('--name <name>', 'Builder instance name (default: a generated adjective_noun)')
    .option('--driver <driver>', 'Driver to use: local, remote or ssh (default: local)')
    .option(
      '--driver-opt <opts>',
      'Options for the driver: remote cacert=,cert=,key=,servername=; ssh key=,polyarch=,root= (repeatable)',
      collect,
    )
    .option(
      '--platform <list>',
      'Fixed platforms for the node, e.g. linux/arm64,linux/arm/v7 (repeatable)',
      collect,
    )
    .option('--append', 'Append a node to the builder instead of changing it')
    .option('--leave', 'Remove a node from the builder (with --name and --node)')
    .option('--node <name>', 'Create or modify the node with this name')
    .option('--use', 'Set the current builder instance')
    .option('--bootstrap', 'Boot the builder after creation')
    .action(async (endpoint: string | undefined, flags: CreateFlags) => {
      const { createBuilder, leaveBuilder } = await import('../../builder/index.js');
      if (flags.leave) {
        if (flags.name === undefined || flags.node === undefined)
          throw new UsageError('--leave requires --name and --node');
        if (flags.append || endpoint !== undefined)
          throw new UsageError('--leave takes no endpoint and cannot be combined with --append');
        const b = await leaveBuilder(flags.name, flags.node, { env: ctx.env });
        ctx.out.write(`${b.name}\n`);
        return;
      }
      const b = await createBuilder({
        env: ctx.env,
        ...(flags.name !== undefined ? { name: flags.name } : {}),
        ...(flags.driver !== undefined ? { driver: flags.driver } : {}),
        ...(flags.platform ? { platforms: flags.platform } : {}),
        ...(flags.driverOpt ? { driverOpts: parseDriverOpts(flags.driverOpt) } : {}),
        ...(flags.node !== undefined ? { node: flags.node } : {}),
        ...(endpoint !== undefined ? { endpoint } : {}),
        append: flags.append === true,
        use: flags.use === true,
        bootstrap: flags.bootstrap === true,
      });
      ctx.out.write(`${b.name}\n`);
    });
}
