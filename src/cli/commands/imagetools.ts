import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function register(program: Command, ctx: CliContext): void {
  const it = program.command('imagetools').description('Work on images in a registry');
  it.command('inspect')
    .description('Show details of an image in the registry')
    .argument('<ref>', 'image reference')
    .option('--raw', "print the registry's manifest bytes unchanged")
    .option('--format <format>', 'json, or a template such as "{{json .Manifest}}" or "{{json .Image}}"')
    .action(async (ref: string, o: { raw?: boolean; format?: string }) => {
      const { inspectImage } = await import('../../image/inspect.js');
      const out = await inspectImage(ref, {
        raw: Boolean(o.raw),
        ...(o.format !== undefined ? { format: o.format } : {}),
        env: ctx.env,
      });
      // --raw bytes go out unchanged (process.stdout accepts a Buffer).
      ctx.out.write(out as string);
    });
  it.command('create')
    .description('Create a new image index from images in registries and push it')
    .argument('[source...]', 'source images (indexes or manifests)')
    .option('-t, --tag <ref>', 'reference to push the index to (repeatable)', collect, [])
    .option('--append', "add the first tag's existing manifests")
    .option('--dry-run', 'print the index instead of pushing it')
    .option('--annotation <annotation>', '[index:|manifest-descriptor:]key=value (repeatable)', collect, [])
    .option('--platform <list>', 'keep only these platforms of index sources', collect, [])
    .action(
      async (
        sources: string[],
        o: { tag: string[]; append?: boolean; dryRun?: boolean; annotation: string[]; platform: string[] },
      ) => {
        const { createIndex, describeIndex } = await import('../../image/create.js');
        const r = await createIndex({
          sources,
          tags: o.tag,
          append: Boolean(o.append),
          dryRun: Boolean(o.dryRun),
          annotations: o.annotation,
          platforms: o.platform.flatMap((p) => p.split(',')).filter(Boolean),
          env: ctx.env,
        });
        if (o.dryRun) ctx.out.write(describeIndex(r));
        else for (const p of r.pushed) ctx.out.write(`${p}\n`);
      },
    );
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
