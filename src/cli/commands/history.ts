/**
 * `polyarch history ls|inspect|logs|rm|export|import|open` (also `polyarch buildx history …`):
 * docker buildx history's commands over the local build records (src/history). A REF is a
 * build ref, a unique prefix of one, or `^N` (`^0` the newest); no REF means the newest.
 * `export` writes a JSON bundle (mediaType application/vnd.polyarch.build-history.v1+json,
 * whole records); `open` writes the record's self-contained HTML timeline and prints its path
 * (running `$BROWSER` on it when set).
 */
import type { Command } from 'commander';
import type { BuildRecord } from '../../history/index.js';
import type { CliContext } from '../context.js';

const LS_TABLE = 'table {{.Ref}}\t{{.Name}}\t{{.Status}}\t{{.CreatedAt}}\t{{.Duration}}';
const LS_HEADER = {
  Ref: 'BUILD ID',
  Name: 'NAME',
  Status: 'STATUS',
  CreatedAt: 'CREATED AT',
  Duration: 'DURATION',
};

const STATUS: Record<BuildRecord['status'], string> = {
  running: 'Running',
  completed: 'Completed',
  error: 'Error',
  canceled: 'Canceled',
};

async function historyStore(ctx: CliContext) {
  const [{ HistoryStore }, { stateRoot }] = await Promise.all([
    import('../../history/index.js'),
    import('../../content/paths.js'),
  ]);
  return new HistoryStore(stateRoot(ctx.env));
}

function trimBeginning(s: string, n: number): string {
  return s.length <= n ? s : `..${s.slice(s.length - n + 2)}`;
}

function counts(r: BuildRecord) {
  const shown = r.steps.filter((s) => s.started !== undefined);
  return {
    total: r.steps.length,
    completed: shown.filter((s) => s.completed !== undefined).length,
    cached: shown.filter((s) => s.cached).length,
  };
}

export function register(program: Command, ctx: CliContext): void {
  const history = program
    .command('history')
    .description('Inspect past builds: ls, inspect, logs, rm, export, import, open');

  history
    .command('ls')
    .description('List build records')
    .option(
      '--format <format>',
      "'table', 'json' or a Go template (.Ref .Name .Status .CreatedAt .Duration)",
      'table',
    )
    .option('--no-trunc', "Don't truncate output")
    .option(
      '--filter <filter>',
      'status=VALUE or name=VALUE (repeatable)',
      (v: string, a: string[]) => [...a, v],
      [],
    )
    .action(async (flags: { format: string; trunc?: boolean; filter: string[] }) => {
      const [{ formatRows }, { UsageError }, { formatDuration }, { humanDuration }] = await Promise.all([
        import('../../util/formatter.js'),
        import('../../util/errors.js'),
        import('../../history/index.js'),
        import('../../util/gofmt.js'),
      ]);
      const filters = flags.filter.map((f) => {
        const m = /^(status|name)(!?=)(.*)$/.exec(f);
        if (!m) throw new UsageError(`invalid --filter "${f}": expected status=VALUE or name=VALUE`);
        return { key: m[1] as 'status' | 'name', neg: m[2] === '!=', value: m[3]! };
      });
      const custom = flags.format !== 'table' && flags.format !== 'json';
      if (custom) formatRows(flags.format, []);
      const now = Date.now();
      const records = (await (await historyStore(ctx)).list())
        .filter((r) =>
          filters.every((f) => {
            const v = f.key === 'status' ? STATUS[r.status].toLowerCase() : r.name;
            return (f.key === 'status' ? v === f.value.toLowerCase() : v === f.value) !== f.neg;
          }),
        )
        .sort(
          (a, b) =>
            Number(b.status === 'running') - Number(a.status === 'running') || b.createdAt - a.createdAt,
        );
      if (flags.format === 'json') {
        for (const r of records) {
          const c = counts(r);
          ctx.out.write(
            `${JSON.stringify({
              ref: r.ref,
              name: r.name,
              status: STATUS[r.status],
              created_at: new Date(r.createdAt).toISOString(),
              ...(r.completedAt !== undefined ? { completed_at: new Date(r.completedAt).toISOString() } : {}),
              total_steps: c.total,
              completed_steps: c.completed,
              cached_steps: c.cached,
            })}\n`,
          );
        }
        return;
      }
      const table = flags.format === 'table' || flags.format.startsWith('table');
      const rows = records.map((r) => ({
        Ref: r.ref,
        Name: table && flags.trunc !== false ? trimBeginning(r.name, 36) : r.name,
        Status: STATUS[r.status],
        CreatedAt: `${humanDuration(now - r.createdAt)} ago`,
        Duration: `${formatDuration((r.completedAt ?? now) - r.createdAt)}${r.status === 'running' ? '+' : ''}`,
      }));
      ctx.out.write(formatRows(flags.format, rows, { defaultTable: LS_TABLE, header: LS_HEADER }));
    });

  history
    .command('inspect')
    .description('Inspect a build record')
    .argument('[ref]', 'build ref, ^N (^0 = newest); default the newest')
    .option('--format <format>', "'pretty', 'json' or a Go template over the json fields", 'pretty')
    .action(async (ref: string | undefined, flags: { format: string }) => {
      const r = await (await historyStore(ctx)).resolve(ref);
      const out = inspectOutput(r, await import('../../history/index.js'));
      if (flags.format === 'json') {
        ctx.out.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      if (flags.format !== 'pretty') {
        const { formatRows } = await import('../../util/formatter.js');
        ctx.out.write(formatRows(flags.format, [out]));
        return;
      }
      const { tabwrite } = await import('../../util/gofmt.js');
      ctx.out.write(prettyInspect(r, out, ref === undefined || ref === '', tabwrite));
    });

  history
    .command('logs')
    .description('Print the logs of a build record')
    .argument('[ref]', 'build ref, ^N (^0 = newest); default the newest')
    .option('--progress <mode>', 'plain, rawjson or tty', 'plain')
    .action(async (ref: string | undefined, flags: { progress: string }) => {
      const { UsageError } = await import('../../util/errors.js');
      if (!['plain', 'rawjson', 'tty'].includes(flags.progress))
        throw new UsageError(`invalid --progress "${flags.progress}": expected plain, rawjson or tty`);
      const r = await (await historyStore(ctx)).resolve(ref);
      const [{ replayBatches }, ui] = await Promise.all([
        import('../../history/index.js'),
        import('../ui/index.js'),
      ]);
      const renderer = ui.chooseRenderer(flags.progress, { stream: ctx.out, isTTY: false, env: ctx.env });
      for (const s of replayBatches(r)) renderer.write(s);
      await renderer.close();
    });

  history
    .command('rm')
    .description('Remove build records')
    .argument('[refs...]', 'build refs or ^N')
    .option('--all', 'Remove all build records')
    .action(async (refs: string[], flags: { all?: boolean }) => {
      const { UsageError } = await import('../../util/errors.js');
      const store = await historyStore(ctx);
      if (!flags.all && refs.length === 0)
        throw new UsageError('history rm: name at least one REF, or --all');
      const records = flags.all ? await store.list() : await Promise.all(refs.map((x) => store.resolve(x)));
      await store.remove(records.map((r) => r.ref));
      for (const r of records) ctx.out.write(`${r.ref}\n`);
    });

  history
    .command('export')
    .description('Export build records into a JSON bundle (application/vnd.polyarch.build-history.v1+json)')
    .argument('[refs...]', 'build refs or ^N; default the newest')
    .option('-o, --output <file>', 'Output file path (- for stdout)')
    .option('--all', 'Export all build records')
    .action(async (refs: string[], flags: { output?: string; all?: boolean }) => {
      const [{ PolyarchError }, { makeBundle }, { writeFileAtomic }, { resolve }] = await Promise.all([
        import('../../util/errors.js'),
        import('../../history/index.js'),
        import('../../util/fs.js'),
        import('node:path'),
      ]);
      const toStdout = flags.output === '-' || (flags.output === undefined && !process.stdout.isTTY);
      if (!toStdout && flags.output === undefined)
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          'refusing to write to console, use --output to specify a file',
        );
      const store = await historyStore(ctx);
      const records = flags.all
        ? await store.list()
        : await Promise.all((refs.length > 0 ? refs : ['']).map((x) => store.resolve(x)));
      const text = `${JSON.stringify(makeBundle(records))}\n`;
      if (toStdout) ctx.out.write(text);
      else await writeFileAtomic(resolve(flags.output!), text, { createParents: true, mode: 0o600 });
    });

  history
    .command('import')
    .description('Import build records from a bundle made by history export')
    .argument('<file>', 'bundle file (- for stdin)')
    .action(async (file: string) => {
      const [{ PolyarchError }, { readBundle }, { readFile }] = await Promise.all([
        import('../../util/errors.js'),
        import('../../history/index.js'),
        import('node:fs/promises'),
      ]);
      let text: string;
      try {
        text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
      } catch (err) {
        throw new PolyarchError('NOT_FOUND', `reading ${file}: ${(err as Error).message}`);
      }
      const bundle = readBundle(text, file);
      const store = await historyStore(ctx);
      for (const r of bundle.records) await store.save(r);
      for (const r of bundle.records) ctx.out.write(`${r.ref}\n`);
    });

  history
    .command('open')
    .description("Write a build record's timeline as one HTML file and print its path")
    .argument('[ref]', 'build ref, ^N (^0 = newest); default the newest')
    .option('-o, --output <file>', 'where to write the HTML (default: beside the record in the state root)')
    .action(async (ref: string | undefined, flags: { output?: string }) => {
      const [{ renderReport }, { writeFileAtomic }, { resolve }] = await Promise.all([
        import('../../history/index.js'),
        import('../../util/fs.js'),
        import('node:path'),
      ]);
      const store = await historyStore(ctx);
      const r = await store.resolve(ref);
      const path = flags.output ? resolve(flags.output) : store.reportPath(r.ref);
      await writeFileAtomic(path, renderReport(r), { createParents: true, mode: 0o600 });
      ctx.out.write(`${path}\n`);
      const browser = ctx.env.BROWSER;
      if (browser) {
        const { spawn } = await import('node:child_process');
        try {
          const child = spawn(browser, [path], { stdio: 'ignore', detached: true });
          child.on('error', () => ctx.err.write(`WARNING: $BROWSER ${browser} could not be started\n`));
          child.unref();
        } catch {
          ctx.err.write(`WARNING: $BROWSER ${browser} could not be started\n`);
        }
      }
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

type HistoryModule = typeof import('../../history/index.js');

/** buildx's inspect JSON (its field names), plus polyarch's per-platform sums and steps. */
function inspectOutput(r: BuildRecord, h: HistoryModule) {
  const c = counts(r);
  const kv = (m: Record<string, string> | undefined) =>
    m && Object.keys(m).length > 0 ? Object.entries(m).map(([Name, Value]) => ({ Name, Value })) : undefined;
  const end = r.completedAt ?? Date.now();
  return {
    ...(r.name ? { Name: r.name } : {}),
    Ref: r.ref,
    Context: r.request.context,
    ...(r.request.dockerfile ? { Dockerfile: r.request.dockerfile } : {}),
    ...(r.request.target ? { Target: r.request.target } : {}),
    ...(r.platforms.length > 0 ? { Platform: r.platforms.map((p) => p.platform) } : {}),
    StartedAt: new Date(r.createdAt).toISOString(),
    ...(r.completedAt !== undefined ? { CompletedAt: new Date(r.completedAt).toISOString() } : {}),
    Duration: (end - r.createdAt) * 1e6,
    Status: r.status,
    ...(r.error ? { Error: { Message: r.error } } : {}),
    NumCompletedSteps: c.completed,
    NumTotalSteps: c.total,
    NumCachedSteps: c.cached,
    ...(kv(r.request.buildArgs) ? { BuildArgs: kv(r.request.buildArgs) } : {}),
    ...(kv(r.request.labels) ? { Labels: kv(r.request.labels) } : {}),
    Config: {
      ...(r.request.network && r.request.network !== 'default' ? { Network: r.request.network } : {}),
      ...(r.platforms.length > 1 ? { MultiPlatform: true } : {}),
      ...(r.request.noCache ? { NoCache: true } : {}),
    },
    ...(r.outputs ? { Outputs: r.outputs } : {}),
    Platforms: h.platformSummaries(r).map((s) => ({
      Platform: s.platform,
      ...(s.native !== undefined ? { Native: s.native } : {}),
      ...(s.node ? { Node: s.node } : {}),
      Steps: s.steps,
      CachedSteps: s.cached,
      WallTimeMs: s.wallTime,
      StepTimeMs: s.stepTime,
      ...(s.slowest ? { SlowestStep: s.slowest.name, SlowestStepMs: s.slowest.ms } : {}),
    })),
    CriticalPath: h.criticalPath(r).map((s) => s.name),
  };
}

function prettyInspect(
  r: BuildRecord,
  out: ReturnType<typeof inspectOutput>,
  showRef: boolean,
  tabwrite: (t: string, o?: { minwidth?: number; padding?: number }) => string,
): string {
  const tw = (lines: string[]) =>
    lines.length > 0 ? tabwrite(`${lines.join('\n')}\n`, { minwidth: 1, padding: 1 }) : '';
  const fmt = (ms: number) =>
    ms < 60_000
      ? `${(ms / 1000).toFixed(1)}s`
      : `${Math.floor(ms / 60_000)}m ${String(Math.floor(ms / 1000) % 60).padStart(2, ' ')}s`;
  const a: string[] = [];
  if (out.Name) a.push(`Name:\t${out.Name}`);
  if (showRef) a.push(`Ref:\t${out.Ref}`);
  a.push(`Context:\t${out.Context}`);
  if (out.Dockerfile) a.push(`Dockerfile:\t${out.Dockerfile}`);
  if (out.Target) a.push(`Target:\t${out.Target}`);
  if (out.Platform) a.push(`Platforms:\t${out.Platform.join(', ')}`);
  const b: string[] = [];
  b.push(`Started:\t${new Date(r.createdAt).toISOString().replace('T', ' ').slice(0, 19)}`);
  b.push(`Duration:\t${fmt(out.Duration / 1e6)}${r.status === 'running' ? ' (running)' : ''}`);
  if (r.status === 'error') b.push(`Error:\t${r.error ?? 'unknown'}`);
  if (r.status === 'canceled') b.push('Status:\tCanceled');
  const pct = out.NumTotalSteps > 0 ? Math.round((out.NumCachedSteps / out.NumTotalSteps) * 100) : 0;
  b.push(`Build Steps:\t${out.NumCompletedSteps}/${out.NumTotalSteps} (${pct}% cached)`);
  const c: string[] = [];
  if (out.Config.Network) c.push(`Network:\t${out.Config.Network}`);
  if (out.Config.MultiPlatform) c.push('Multi-Platform:\ttrue');
  if (out.Config.NoCache) c.push('No Cache:\ttrue');
  let text = `${tw(a)}\n${tw(b)}\n`;
  if (c.length > 0) text += `${tw(c)}\n`;
  for (const [title, list] of [
    ['BUILD ARG', out.BuildArgs],
    ['LABEL', out.Labels],
  ] as const)
    if (list) text += `${tw([`${title}\tVALUE`, ...list.map((k) => `${k.Name}\t${k.Value}`)])}\n`;
  const p = out.Platforms.map(
    (s) =>
      `${s.Platform}\t${s.Native === true ? 'native' : s.Native === false ? 'emulated' : 'remote'}\t${s.Steps}\t${s.CachedSteps}\t${fmt(s.WallTimeMs)}\t${fmt(s.StepTimeMs)}\t${s.SlowestStep ?? ''}`,
  );
  if (p.length > 0)
    text += `${tw(['PLATFORM\tRUNS\tSTEPS\tCACHED\tWALL TIME\tSTEP TIME\tSLOWEST STEP', ...p])}\n`;
  if (out.Outputs) text += `${tw(Object.entries(out.Outputs).map(([k, v]) => `${k}:\t${v}`))}\n`;
  text += `Print build logs: polyarch history logs ${r.ref}\n`;
  text += `View the timeline: polyarch history open ${r.ref}\n`;
  return text;
}
