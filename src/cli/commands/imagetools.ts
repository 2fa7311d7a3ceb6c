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
}
