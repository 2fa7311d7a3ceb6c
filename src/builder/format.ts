/**
 * Text renderings of builders in buildx's layouts (pure functions; the CLI prints them).
 *
 *   formatBuilderTable(builders, current, statesByName)  // `ls`
 *   formatBuilderInspect(builder, states)                // `inspect`
 *   builderJson(builder, states)                         // `ls --format json`, one line each
 */
import { formatNodePlatforms, platformLabels } from './builders.js';
import { formatPlatform as formatPlatformLabel, toOciPlatform } from '../platform/index.js';
import type { Builder, NodeState } from './types.js';
import { GO_JSON, GO_TYPE } from '../util/gofmt.js';

/**
 * Aligns columns like docker's formatter tabwriter (min width 10, padding 3). The last
 * column is not padded and trailing blanks are trimmed, so lines carry no trailing spaces.
 */
export function alignTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      if (i < row.length - 1) widths[i] = Math.max(widths[i] ?? 0, cell.length + 3, 10);
    });
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join(''))
    .map((line) => `${line.trimEnd()}\n`)
    .join('');
}

/**
 * `label:` cells padded to the longest plus one (buildx's tabwriter with padding 1), one
 * block; `indent` is buildx's empty first cell (`\tkey:\tvalue` lines).
 */
function alignFields(fields: readonly (readonly [string, string])[], indent = ''): string {
  const width = Math.max(...fields.map(([k]) => k.length + 1)) + 1;
  return fields.map(([k, v]) => `${indent}${`${k}:`.padEnd(width)}${v}`.trimEnd() + '\n').join('');
}

/** Go's time.Duration String() for whole or fractional seconds: `48h0m0s`, `1m30s`, `0s`. */
export function goDuration(ns: number): string {
  if (ns <= 0) return '0s';
  if (ns < 1e9) return ns < 1e3 ? `${ns}ns` : ns < 1e6 ? `${ns / 1e3}µs` : `${ns / 1e6}ms`;
  const totalS = ns / 1e9;
  const h = Math.floor(totalS / 3600);
  const m = Math.floor((totalS - h * 3600) / 60);
  const s = Number((totalS - h * 3600 - m * 60).toFixed(9));
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** docker/go-units BytesSize: binary units, 4 significant digits (`488.3MiB`, `1.863GiB`). */
export function bytesSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB', 'ZiB', 'YiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

/** Go's time.Time String() in UTC without fractions: `2026-11-22 05:07:23 +0000 UTC`. */
export function formatActivity(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} +0000 UTC`;
}

/** The one-line reason a node failed, for the table's stderr notes and inspect's `Error:`. */
function oneLine(err: Error): string {
  return err.message.split('\n')[0]!.trim();
}

/** Platforms buildx puts first within their os/arch group when truncating. */
const POPULAR = [
  'linux/amd64',
  'linux/arm64',
  'linux/arm/v7',
  'linux/ppc64le',
  'linux/s390x',
  'linux/riscv64',
];

/**
 * buildx ls's short PLATFORMS column: platforms grouped by os/arch in first-seen order,
 * each group shown as its most popular (else first) member with `(+N)` for the rest, at
 * most `maxGroups` groups, then `(N more)`. Labels may carry the pinned `*` mark.
 */
export function truncatePlatforms(labels: readonly string[], maxGroups = 4): string {
  const groups = new Map<string, string[]>();
  let shown = 0;
  for (const label of labels) {
    const key = label.replace(/\*$/, '').split('/').slice(0, 2).join('/');
    let g = groups.get(key);
    if (!g) {
      if (groups.size >= maxGroups) continue;
      groups.set(key, (g = []));
    }
    if (POPULAR.includes(label.replace(/\*$/, ''))) g.unshift(label);
    else g.push(label);
    shown++;
  }
  const parts = [...groups.values()].map((g) => (g.length > 1 ? `${g[0]} (+${g.length - 1})` : g[0]!));
  if (shown < labels.length) parts.push(`(${labels.length - shown} more)`);
  return parts.join(', ');
}

export interface TableOptions {
  /** Show every platform instead of buildx's grouped summary. Default false. */
  noTrunc?: boolean;
}

export interface TableResult {
  /** The table, for stdout. */
  table: string;
  /** One line per node that failed to answer (buildx prints these after the table, on stderr). */
  problems: string[];
}

/**
 * buildx ls's table: a row per builder (current one marked `*`), then ` \_ ` rows per node
 * with status, engine version and platforms (pinned ones marked `*`).
 */
export function formatBuilderTable(
  builders: readonly Builder[],
  current: string,
  states: ReadonlyMap<string, readonly NodeState[]>,
  opts: TableOptions = {},
): TableResult {
  const rows: string[][] = [['NAME/NODE', 'DRIVER/ENDPOINT', 'STATUS', 'BUILDKIT', 'PLATFORMS']];
  const problems: string[] = [];
  for (const b of builders) {
    rows.push([b.name === current ? `${b.name}*` : b.name, b.driver, '', '', '']);
    for (const s of states.get(b.name) ?? []) {
      const name = ` \\_ ${s.node.name}`;
      const endpoint = ` \\_ ${s.node.endpoint}`;
      if (s.error || !s.info) {
        rows.push([name, endpoint, 'error', '', '']);
        problems.push(
          `Failed to get status for ${b.name} (${s.node.name}): ${s.error ? oneLine(s.error) : 'no answer'}`,
        );
      } else {
        const labels = platformLabels(s.node, s.info.platforms);
        const platforms = opts.noTrunc ? labels.join(', ') : truncatePlatforms(labels);
        rows.push([name, endpoint, s.info.status, s.info.version, platforms]);
      }
    }
  }
  return { table: alignTable(rows), problems };
}

/** buildx inspect's text: the builder's fields, a blank line, `Nodes:`, then one block per node. */
export function formatBuilderInspect(b: Builder, states: readonly NodeState[]): string {
  const head: [string, string][] = [
    ['Name', b.name],
    ['Driver', b.driver],
  ];
  if (b.lastActivity) head.push(['Last Activity', formatActivity(b.lastActivity)]);
  const blocks = states.map((s) => {
    const f: [string, string][] = [
      ['Name', s.node.name],
      ['Endpoint', s.node.endpoint],
    ];
    const opts = Object.entries(s.node.driverOpts ?? {});
    if (opts.length > 0) f.push(['Driver Options', opts.map(([k, v]) => `${k}="${v}"`).join(' ')]);
    if (s.error || !s.info) f.push(['Error', s.error ? oneLine(s.error) : 'no answer']);
    else {
      f.push(['Status', s.info.status]);
      if (s.node.flags && s.node.flags.length > 0) f.push(['BuildKit daemon flags', s.node.flags.join(' ')]);
      if (s.info.version) f.push(['BuildKit version', s.info.version]);
      const platforms = formatNodePlatforms(s.node, s.info.platforms);
      if (platforms) f.push(['Platforms', platforms]);
    }
    let text = alignFields(f);
    // buildx's tabwriter: each indented list is its own column block, one blank first cell.
    const labels = Object.keys(s.info?.labels ?? {}).sort();
    if (labels.length > 0)
      text += `Labels:\n${alignFields(
        labels.map((k) => [k, s.info!.labels![k]!] as const),
        ' ',
      )}`;
    (s.info?.gcPolicy ?? []).forEach((r, i) => {
      const g: [string, string][] = [['All', String(r.all)]];
      if (r.filters.length > 0) g.push(['Filters', r.filters.join(' ')]);
      if (r.keepDuration > 0) g.push(['Keep Duration', goDuration(r.keepDuration)]);
      if (r.reservedSpace > 0) g.push(['Reserved Space', bytesSize(r.reservedSpace)]);
      if (r.maxUsedSpace > 0) g.push(['Max Used Space', bytesSize(r.maxUsedSpace)]);
      if (r.minFreeSpace > 0) g.push(['Min Free Space', bytesSize(r.minFreeSpace)]);
      text += `GC Policy rule#${i}:\n${alignFields(g, ' ')}`;
    });
    return text;
  });
  return `${alignFields(head)}\nNodes:\n${blocks.join('\n')}`;
}

/**
 * One builder as `ls --format json` prints it (buildx's field names): Name, Driver,
 * LastActivity, Dynamic, Nodes[] with Name, Endpoint, Status, Version, Platforms (OCI
 * platform objects, pinned first), Pinned (the `--platform` ones, as strings), and Error
 * instead of Status/Version/Platforms when the node did not answer.
 */
export function builderJson(
  b: Builder,
  states: readonly NodeState[],
  current: boolean,
): Record<string, unknown> {
  return {
    Name: b.name,
    Driver: b.driver,
    Current: current,
    ...(b.lastActivity ? { LastActivity: b.lastActivity } : {}),
    Dynamic: false,
    Nodes: states.map((s) => ({
      Name: s.node.name,
      Endpoint: s.node.endpoint,
      Pinned: s.node.platforms.map((p) => formatPlatformLabel(p)),
      ...(s.info
        ? {
            Status: s.info.status,
            Version: s.info.version,
            Platforms: s.info.platforms.map((p) => toOciPlatform(p)),
          }
        : { Error: s.error ? oneLine(s.error) : 'no answer' }),
    })),
  };
}

/** Column titles of `ls --format 'table …'` (buildx's lsContext header). */
export const LS_HEADER: Readonly<Record<string, string>> = {
  Name: 'NAME/NODE',
  DriverEndpoint: 'DRIVER/ENDPOINT',
  LastActivity: 'LAST ACTIVITY',
  Status: 'STATUS',
  Buildkit: 'BUILDKIT',
  Platforms: 'PLATFORMS',
};

export interface LsRowOptions {
  /** A `table …` format: node rows get buildx's ` \_ ` indent, the current builder its `*`. */
  table: boolean;
  /** Every platform instead of the grouped summary (tables only). Default false. */
  noTrunc?: boolean;
}

/**
 * The rows buildx ls runs a `--format` template on (`*commands.lsContext`): one per builder
 * then one per node, with Name, DriverEndpoint, LastActivity (RFC 3339, builder rows),
 * Status, Buildkit, Platforms, Error, and Builder (the `ls --format json` object).
 */
export function lsRows(
  builders: readonly Builder[],
  current: string,
  states: ReadonlyMap<string, readonly NodeState[]>,
  opts: LsRowOptions,
): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  const indent = (s: string) => (opts.table ? ` \\_ ${s}` : s);
  for (const b of builders) {
    const nodes = states.get(b.name) ?? [];
    const builder = builderJson(b, nodes, b.name === current);
    const base = { [GO_TYPE]: '*commands.lsContext', Builder: builder, [GO_JSON]: () => builder };
    rows.push({
      ...base,
      Name: b.name === current && opts.table ? `${b.name}*` : b.name,
      DriverEndpoint: b.driver,
      LastActivity: b.lastActivity ? new Date(b.lastActivity).toISOString().replace(/\.\d+Z$/, 'Z') : '',
      Status: '',
      Buildkit: '',
      Platforms: '',
      Error: '',
    });
    for (const s of nodes) {
      const labels = s.info ? platformLabels(s.node, s.info.platforms) : [];
      rows.push({
        ...base,
        Name: indent(s.node.name),
        DriverEndpoint: indent(s.node.endpoint),
        LastActivity: '',
        Status: s.error || !s.info ? 'error' : s.info.status,
        Buildkit: s.info?.version ?? '',
        Platforms: opts.table && !opts.noTrunc ? truncatePlatforms(labels) : labels.join(', '),
        Error: s.error ? oneLine(s.error) : s.info ? '' : 'no answer',
      });
    }
  }
  return rows;
}
