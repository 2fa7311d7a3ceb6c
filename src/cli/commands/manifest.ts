import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { inspectLocalList, registerManifestLists } from './manifest-list.js';

export function register(program: Command, ctx: CliContext): void {
  const m = program
    .command('manifest')
    .description('Inspect manifests and manifest lists; create, annotate and push lists by hand');
  m.command('inspect')
    .description("Show an image manifest or manifest list (docker manifest inspect's JSON)")
    .argument('<ref>', 'image reference')
    .option('-v, --verbose', 'show each manifest with its reference, descriptor and raw bytes')
    .action(async (ref: string, o: { verbose?: boolean }) => {
      const local = await inspectLocalList(ref, ctx); // a local list (manifest create) first
      if (local !== undefined) return void ctx.out.write(local);
      const { manifestInspect } = await import('../../image/inspect.js');
      ctx.out.write(await manifestInspect(ref, { verbose: Boolean(o.verbose), env: ctx.env }));
    });
  registerManifestLists(m, ctx); // create, annotate, push, rm
}
