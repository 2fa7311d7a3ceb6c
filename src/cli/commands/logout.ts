import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('logout')
    .description('Remove the stored credentials of a registry')
    .argument('[registry]', 'registry host (default: docker.io)')
    .action(async (registry: string | undefined) => {
      const { registryHost } = await import('./login.js');
      const { removeCredentials } = await import('../../registry/credentials.js');
      const host = registryHost(registry);
      const removed = await removeCredentials(host, ctx.env);
      ctx.out.write(removed ? `Removing login credentials for ${host}\n` : `Not logged in to ${host}\n`);
    });
}
