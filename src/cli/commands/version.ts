import type { Command } from 'commander';
import { VERSION } from '../../version.js';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('version')
    .description('Show the polyarch version')
    .action(() => {
      ctx.out.write(`polyarch v${VERSION}\n`);
    });
}
