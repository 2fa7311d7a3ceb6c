/**
 * `polyarch images [REPOSITORY[:TAG]]` (also `polyarch image ls`): one row per image and
 * platform in the local store, like `docker images` with a PLATFORM column; `--format` takes
 * docker's templates and field names (util/template.ts), `--filter` reference/dangling/
 * platform, `--tree` docker 28's tree view. Also exports the table and size formatting the
 * other store commands (du, prune, rmi) print with.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import type { ImageView, TreeImage } from '../../image/list.js';
import { UsageError } from '../../util/errors.js';
import { GO_JSON, GO_TYPE, goJson, goTimeString, humanDuration, RawJson } from '../../util/gofmt.js';
import { formatRows } from '../../util/formatter.js';
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
  filter: string[];
  tree?: boolean;
}

/** docker's default, with polyarch's PLATFORM column (one row per platform). */
const DEFAULT_TABLE =
  'table {{.Repository}}\t{{.Tag}}\t{{.Platform}}\t{{.ID}}\t{{if .CreatedSince}}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}';
const DEFAULT_TABLE_DIGESTS =
  'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.Platform}}\t{{.ID}}\t{{if .CreatedSince}}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}';

/** Column titles by field (docker's imageContext header, plus polyarch's fields). */
export const IMAGE_HEADER: Readonly<Record<string, string>> = {
  ID: 'IMAGE ID',
  Repository: 'REPOSITORY',
  Tag: 'TAG',
  Digest: 'DIGEST',
  CreatedSince: 'CREATED',
  CreatedAt: 'CREATED AT',
  Size: 'SIZE',
  Containers: 'CONTAINERS',
  SharedSize: 'SHARED SIZE',
  UniqueSize: 'UNIQUE SIZE',
  VirtualSize: 'SIZE',
  ContentSize: 'CONTENT SIZE',
  Platform: 'PLATFORM',
  ManifestDigest: 'MANIFEST DIGEST',
  Name: 'NAME',
};

/**
 * One row as docker's template sees it (`*formatter.imageContext`): docker's fields with
 * its values (`Size` unpacked, `Containers`/`SharedSize`/`UniqueSize` "N/A" as in
 * `docker images`), plus ContentSize (compressed), Platform, ManifestDigest and Name.
 * `{{json .}}` gives the fields with sorted keys and HTML escapes, as docker's does.
 */
export function imageContext(v: ImageView, opts: { trunc: boolean; now: number }): Record<string, unknown> {
  const created = v.created === undefined ? Number.NaN : Date.parse(v.created);
  const fields: Record<string, string> = {
    Containers: 'N/A',
    ContentSize: humanSize(v.size),
    CreatedAt: Number.isNaN(created) ? '' : goTimeString(new Date(created)),
    CreatedSince: Number.isNaN(created) ? '' : `${humanDuration(opts.now - created)} ago`,
    Digest: v.digest,
    ID: opts.trunc ? v.digest.slice(7, 19) : v.digest,
    ManifestDigest: v.manifestDigest ?? '',
    Name: v.name,
    Platform: v.platform,
    Repository: v.repository,
    SharedSize: 'N/A',
    Size: humanSize(v.unpacked),
    Tag: v.tag,
    UniqueSize: 'N/A',
    VirtualSize: humanSize(v.unpacked),
  };
  return {
    [GO_TYPE]: '*formatter.imageContext',
    ...fields,
    [GO_JSON]: () => new RawJson(goJson(new Map(Object.entries(fields)))),
  };
}

/**
 * docker 28's `images --tree` (as docker prints it to a pipe: no legend, no colours): a
 * line per image, its platforms beneath with `├─`/`└─`, DISK USAGE (unpacked) and CONTENT
 * SIZE (compressed) right-aligned, a blank line after each image.
 */
export function formatTree(images: readonly TreeImage[]): string {
  const sp = '   ';
  const nameLen = (s: string) => [...s].length;
  // docker measures the branch prefix in bytes (7 for "└─ "), so its first column is that wide.
  const width = Math.max(
    'IMAGE'.length,
    ...images.flatMap((i) => [
      ...(i.names.length ? i.names : ['<untagged>']).map(nameLen),
      ...i.children.map((c) => nameLen(c.platform) + Buffer.byteLength('└─ ')),
    ]),
  );
  const padEnd = (s: string, w: number) => s + ' '.repeat(Math.max(0, w - nameLen(s)));
  const details = (id: string, unpacked: number, content: number) =>
    `${sp}${padEnd(id.slice(7, 19), 12)}${sp}${humanSize(unpacked).padStart(10)}${sp}${humanSize(content).padStart(12)}${sp}${''.padEnd(5)}`;
  const lines: string[] = [
    `${padEnd('IMAGE', width)}${sp}${padEnd('ID', 12)}${sp}${'DISK USAGE'.padStart(10)}${sp}${'CONTENT SIZE'.padStart(12)}${sp}EXTRA`,
  ];
  const spacing = images.some((i) => i.children.length > 0);
  for (const img of images) {
    const names = img.names.length ? img.names : ['<untagged>'];
    lines.push(...names.slice(0, -1));
    lines.push(padEnd(names[names.length - 1]!, width) + details(img.id, img.unpacked, img.content));
    img.children.forEach((c, i) => {
      const branch = i === img.children.length - 1 ? '└─ ' : '├─ ';
      lines.push(padEnd(branch + c.platform, width) + details(c.id, c.unpacked, c.content));
    });
    if (spacing) lines.push('');
  }
  return lines.map((l) => `${l.trimEnd()}\n`).join('');
}

async function action(ctx: CliContext, filter: string | undefined, opts: ImagesOptions): Promise<void> {
  const format = opts.format || 'table';
  if (opts.tree) {
    const clash = opts.quiet
      ? '--quiet'
      : opts.noTrunc
        ? '--no-trunc'
        : opts.digests
          ? '--digests'
          : opts.format
            ? '--format'
            : undefined;
    if (clash) throw new UsageError(`${clash} is not yet supported with --tree`);
  }
  const { ContentStore, listImages, storeDir, stateRoot, familiarName, normalizeName } = await import(
    '../../content/index.js'
  );
  const { LayerSizes, filterImages, imageTree, imageViews, parseImageFilters } = await import(
    '../../image/list.js'
  );
  const filters = parseImageFilters(opts.filter);
  // Parse the template before any work, so a bad one fails fast.
  if (!opts.tree && format !== 'table') formatRows(format, [], { header: IMAGE_HEADER });
  const store = await ContentStore.open(storeDir(ctx.env));
  let rows = await listImages(store, { all: Boolean(opts.all) || filters.dangling === true });
  if (filter !== undefined) {
    // `busybox` matches every tag of the repository; `busybox:1` one tag.
    const hasTag = filter.lastIndexOf(':') > filter.lastIndexOf('/');
    const want = familiarName(normalizeName(filter));
    rows = rows.filter((r) => r.repository === want.repository && (!hasTag || r.tag === want.tag));
  }
  rows = filterImages(rows, filters);
  const id = (digest: string) => (opts.noTrunc ? digest : digest.slice(7, 19));
  if (opts.quiet && format === 'table') {
    for (const r of new Set(rows.map((r) => id(r.digest)))) ctx.out.write(`${r}\n`);
    return;
  }
  const sizes = await LayerSizes.open(join(stateRoot(ctx.env), 'layer-sizes.json'));
  const views = await imageViews(store, rows, sizes);
  await sizes.save();
  for (const p of sizes.problems) ctx.err.write(`WARNING: ${p}: its compressed size is shown\n`);
  if (opts.tree) {
    ctx.out.write(formatTree(await imageTree(store, views)));
    return;
  }
  let fmt = format;
  if (fmt !== 'table' && fmt.startsWith('table') && opts.digests && !fmt.includes('{{.Digest}}'))
    fmt += '\t{{.Digest}}';
  const now = Date.now();
  ctx.out.write(
    formatRows(
      fmt,
      views.map((v) => imageContext(v, { trunc: !opts.noTrunc, now })),
      { header: IMAGE_HEADER, defaultTable: opts.digests ? DEFAULT_TABLE_DIGESTS : DEFAULT_TABLE },
    ),
  );
}

function declare(cmd: Command, ctx: CliContext): Command {
  return cmd
    .argument('[REPOSITORY[:TAG]]', 'Only images of this repository (and tag)')
    .option('-a, --all', 'Show untagged images too (<none>)')
    .option('-q, --quiet', 'Only show image IDs')
    .option('--no-trunc', "Don't truncate output")
    .option('--digests', 'Show digests')
    .option(
      '-f, --filter <filter>',
      'Filter: reference=PATTERN, dangling=true|false, platform=P (repeatable)',
      collect,
      [],
    )
    .option('--format <format>', "'table', 'table TEMPLATE', 'json' or a Go TEMPLATE (docker's fields)")
    .option('--tree', 'List multi-platform images as a tree, platforms beneath')
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

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}
