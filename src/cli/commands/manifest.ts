import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  const m = program.command('manifest').description('Inspect manifests and manifest lists in a registry');
  m.command('inspect')
    .description("Show an image manifest or manifest list (docker manifest inspect's JSON)")
    .argument('<ref>', 'image reference')
    .option('-v, --verbose', 'show each manifest with its reference, descriptor and raw bytes')
    .action(async (ref: string, o: { verbose?: boolean }) => {
      const { manifestInspect } = await import('../../image/inspect.js');
      ctx.out.write(await manifestInspect(ref, { verbose: Boolean(o.verbose), env: ctx.env }));
    });
}
