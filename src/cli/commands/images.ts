/**
 * `polyarch images [REPOSITORY[:TAG]]` (also `polyarch image ls`): one row per image and
 * platform in the local store, like `docker images` with a PLATFORM column. Also exports
 * the table and size formatting the other store commands (du, prune, rmi) print with.
 */
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';

/** Docker's human sizes (go-units HumanSizeWithPrecision(n, 3)): decimal units, 3 significant digits. */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let n = bytes;
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${Number(n.toPrecision(3))}${units[i]}`;
}

/**
 * Aligns columns like docker's tabwriter (min width 10, padding 3); the last column is not
 * padded, so lines carry no trailing spaces.
 */
export function formatTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length + 3, 10);
    });
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join(''))
    .map((line) => `${line}\n`)
    .join('');
}

interface ImagesOptions {
  quiet?: boolean;
  noTrunc?: boolean;
  all?: boolean;
  digests?: boolean;
  format?: string;
}

async function action(ctx: CliContext, filter: string | undefined, opts: ImagesOptions): Promise<void> {
  const format = opts.format ?? 'table';
  if (format !== 'table' && format !== 'json')
    throw new UsageError(`invalid --format "${format}": use table or json`);
  const { ContentStore, listImages, storeDir, familiarName, normalizeName } = await import(
    '../../content/index.js'
  );
  const store = await ContentStore.open(storeDir(ctx.env));
  let rows = await listImages(store, { all: Boolean(opts.all) });
  if (filter !== undefined) {
    // `busybox` matches every tag of the repository; `busybox:1` one tag.
    const hasTag = filter.lastIndexOf(':') > filter.lastIndexOf('/');
    const want = familiarName(normalizeName(filter));
    rows = rows.filter((r) => r.repository === want.repository && (!hasTag || r.tag === want.tag));
  }
  const id = (digest: string) => (opts.noTrunc ? digest : digest.slice(7, 19));
  if (opts.quiet) {
    for (const r of new Set(rows.map((r) => id(r.digest)))) ctx.out.write(`${r}\n`);
    return;
  }
  if (format === 'json') {
    for (const r of rows)
      ctx.out.write(
        `${JSON.stringify({
          Repository: r.repository,
          Tag: r.tag,
          Platform: r.platform,
          ID: id(r.digest),
          Digest: r.digest,
          ManifestDigest: r.manifestDigest ?? '',
          Size: humanSize(r.size),
          VirtualSize: r.size,
          Name: r.name,
        })}\n`,
      );
    return;
  }
  const header = ['REPOSITORY', 'TAG', ...(opts.digests ? ['DIGEST'] : []), 'PLATFORM', 'IMAGE ID', 'SIZE'];
  const table = [header];
  for (const r of rows)
    table.push([
      r.repository,
      r.tag,
      ...(opts.digests ? [r.digest] : []),
      r.platform,
      id(r.digest),
      humanSize(r.size),
    ]);
  ctx.out.write(formatTable(table));
}

function declare(cmd: Command, ctx: CliContext): Command {
  return cmd
    .argument('[REPOSITORY[:TAG]]', 'Only images of this repository (and tag)')
    .option('-a, --all', 'Show untagged images too (<none>)')
    .option('-q, --quiet', 'Only show image IDs')
    .option('--no-trunc', "Don't truncate output")
    .option('--digests', 'Show digests')
    .option('--format <format>', 'Output format: table or json (one object per line)', 'table')
    .action((filter: string | undefined, opts: ImagesOptions & { trunc?: boolean }) =>
      action(ctx, filter, { ...opts, noTrunc: opts.trunc === false }),
    );
}

export function register(program: Command, ctx: CliContext): void {
  declare(program.command('images').description('List images in the local store, one row per platform'), ctx);
  const image = program.command('image').description('Manage images in the local store');
  declare(
    image.command('ls').alias('list').description('List images in the local store, one row per platform'),
    ctx,
  );
}
