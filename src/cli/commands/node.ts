/**
 * `polyarch __node serve [--root DIR]`: the node side of the ssh driver, run by `ssh host
 * polyarch __node serve` (src/builder/ssh/serve.ts). Hidden: people never type it. Its
 * stdout carries the protocol's frames only; anything else goes to stderr.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  const node = program.command('__node', { hidden: true }).description('Node side of the ssh driver');
  node
    .command('serve')
    .description('Serve one build session on stdin/stdout')
    .option('--root <dir>', 'State root of this node')
    .action(async (flags: { root?: string }) => {
      const { claimStdout, serveNode } = await import('../../builder/ssh/serve.js');
      const output = claimStdout();
      const env = { ...ctx.env, ...(flags.root ? { POLYARCH_ROOT: flags.root } : {}) };
      const code = await serveNode({ input: process.stdin, output, env });
      await new Promise<void>((res) => output.end(() => res()));
      process.exitCode = code;
    });
}
