/**
 * `polyarch create [--name N] [--driver local|ssh] [--platform LIST] [--append] [--node N]
 * [--use] [--bootstrap] [ENDPOINT]`: make a builder instance (buildx create) and print its name.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

interface CreateFlags {
  name?: string;
  driver?: string;
  platform?: string[];
  append?: boolean;
  node?: string;
  use?: boolean;
  bootstrap?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function register(program: Command, ctx: CliContext): void {
  program
    .command('create')
    .description('Create a new builder instance')
    .argument('[ENDPOINT]', 'Node endpoint: "local" for the local driver, ssh://[user@]host[:port] for ssh')
    .option('--name <name>', 'Builder instance name (default: a generated adjective_noun)')
    .option('--driver <driver>', 'Driver to use: local or ssh (default: local)')
    .option(
      '--platform <list>',
      'Fixed platforms for the node, e.g. linux/arm64,linux/arm/v7 (repeatable)',
      collect,
    )
    .option('--append', 'Append a node to the builder instead of changing it')
    .option('--node <name>', 'Create or modify the node with this name')
    .option('--use', 'Set the current builder instance')
    .option('--bootstrap', 'Boot the builder after creation')
    .action(async (endpoint: string | undefined, flags: CreateFlags) => {
      const { createBuilder } = await import('../../builder/index.js');
      const b = await createBuilder({
        env: ctx.env,
        ...(flags.name !== undefined ? { name: flags.name } : {}),
        ...(flags.driver !== undefined ? { driver: flags.driver } : {}),
        ...(flags.platform ? { platforms: flags.platform } : {}),
        ...(flags.node !== undefined ? { node: flags.node } : {}),
        ...(endpoint !== undefined ? { endpoint } : {}),
        append: flags.append === true,
        use: flags.use === true,
        bootstrap: flags.bootstrap === true,
      });
      ctx.out.write(`${b.name}\n`);
    });
}
