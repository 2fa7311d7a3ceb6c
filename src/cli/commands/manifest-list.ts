/**
 * `polyarch manifest create [--amend] LIST SOURCE... | annotate | push [--purge] | rm LIST...`:
 * docker manifest's local lists (src/image/manifest-list.ts), kept in the state root.
 * `manifest inspect LIST` shows a local list first, as docker does.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

export function registerManifestLists(m: Command, ctx: CliContext): void {
  m.command('create')
    .description('Create a local manifest list from images in a registry (for annotate, then push)')
    .argument('<list>', 'the manifest list name (where push puts it)')
    .argument('<manifest...>', 'single-platform images, by tag or digest')
    .option('-a, --amend', 'amend an existing manifest list')
    .option('--insecure', 'accepted for docker compatibility (registries.toml decides)')
    .action(async (list: string, sources: string[], o: { amend?: boolean }) => {
      const { stateRoot } = await import('../../content/paths.js');
      const { createList } = await import('../../image/manifest-list.js');
      const r = await createList(stateRoot(ctx.env), list, sources, {
        amend: Boolean(o.amend),
        env: ctx.env,
      });
      ctx.out.write(`Created manifest list ${r.name}\n`);
    });
  m.command('annotate')
    .description("Set an entry's platform in a local manifest list")
    .argument('<list>', 'the manifest list')
    .argument('<manifest>', 'the entry, as given to create')
    .option('--os <os>', 'operating system')
    .option('--arch <arch>', 'architecture')
    .option('--variant <variant>', 'architecture variant')
    .option('--os-version <version>', 'operating system version')
    .option('--os-features <features>', 'operating system features, comma-separated')
    .action(
      async (
        list: string,
        source: string,
        o: { os?: string; arch?: string; variant?: string; osVersion?: string; osFeatures?: string },
      ) => {
        const { stateRoot } = await import('../../content/paths.js');
        const { annotateList } = await import('../../image/manifest-list.js');
        await annotateList(stateRoot(ctx.env), list, source, {
          ...(o.os !== undefined ? { os: o.os } : {}),
          ...(o.arch !== undefined ? { arch: o.arch } : {}),
          ...(o.variant !== undefined ? { variant: o.variant } : {}),
          ...(o.osVersion !== undefined ? { osVersion: o.osVersion } : {}),
          ...(o.osFeatures !== undefined ? { osFeatures: o.osFeatures.split(',').filter(Boolean) } : {}),
        });
      },
    );
  m.command('push')
    .description('Push a local manifest list to its registry; prints its digest')
    .argument('<list>', 'the manifest list')
    .option('-p, --purge', 'remove the local manifest list after the push')
    .option('--insecure', 'accepted for docker compatibility (registries.toml decides)')
    .action(async (list: string, o: { purge?: boolean }) => {
      const { stateRoot } = await import('../../content/paths.js');
      const { pushList } = await import('../../image/manifest-list.js');
      const r = await pushList(stateRoot(ctx.env), list, { purge: Boolean(o.purge), env: ctx.env });
      ctx.out.write(`${r.digest}\n`);
    });
  m.command('rm')
    .description('Delete one or more local manifest lists')
    .argument('<list...>', 'manifest lists')
    .action(async (lists: string[]) => {
      const { stateRoot } = await import('../../content/paths.js');
      const { removeList } = await import('../../image/manifest-list.js');
      for (const l of lists) await removeList(stateRoot(ctx.env), l);
    });
}

/** The local list `ref` names as docker manifest inspect prints it, if there is one. */
export async function inspectLocalList(ref: string, ctx: CliContext): Promise<string | undefined> {
  const { stateRoot } = await import('../../content/paths.js');
  const { listIndex, readList } = await import('../../image/manifest-list.js');
  let list: Awaited<ReturnType<typeof readList>>;
  try {
    list = await readList(stateRoot(ctx.env), ref);
  } catch {
    return undefined; // not a reference a list can have: the registry lookup says why
  }
  return list && `${JSON.stringify(listIndex(list), null, 3)}\n`;
}
