/**
 * The build commands' side of the history (src/history): the flags as a record's request,
 * the tee in front of the renderer, and `--report FILE` (the record's HTML timeline, written
 * when the build ends, failed or not). build.ts and build-remote.ts call `recordBuild` once
 * and `finish` once (compose.ts: `recordCompose`), so the hook survives their refactoring.
 *
 *   const rec = await recordBuild(ui.chooseRenderer(...), context, flags, ctx, { builder });
 *   const renderer = rec.sink;
 *   ...
 *   await rec.finish({ outputs });   // or rec.finish({ error: err, canceled })
 */
import { resolve } from 'node:path';
import type { Outcome, RecordingSink } from '../../history/index.js';
import type { ProgressSink } from '../../progress/index.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import type { BuildFlags } from './build.js';
import { parseBuildArgs } from './build-shared.js';

export interface BuildHistoryHook {
  readonly sink: RecordingSink;
  /**
   * Writes the record (never failing the build over it) and `--report`: a report that cannot
   * be written after a successful build throws (exit 1, naming the file).
   */
  finish(outcome?: Outcome): Promise<void>;
}

/**
 * A context URL as the record keeps it: no password (`user:xxxxx@`, as every message shows
 * it), and no lone userinfo of an http(s) URL either (`https://TOKEN@host/…` is a token).
 */
export function recordedContext(context: string, maskURL: (t: string) => string): string {
  return maskURL(context).replace(/^(https?:\/\/)[^/\s:@]+@/i, '$1xxxxx@');
}

export async function recordBuild(
  renderer: ProgressSink,
  context: string,
  flags: BuildFlags & { report?: string },
  ctx: CliContext,
  opts: { builder?: { name: string; driver: string; nodes: readonly { name: string }[] } } = {},
): Promise<BuildHistoryHook> {
  // Only what records a build: the report renderer loads when a report is asked for.
  const [h, plat, { stateRoot }, { classifyContext, maskURL }, { existsSync }] = await Promise.all([
    import('../../history/record.js'),
    import('../../platform/index.js'),
    import('../../content/paths.js'),
    import('../../build/remote/url.js'),
    import('node:fs'),
  ]);
  let local = context !== '-';
  try {
    local &&= classifyContext(context, existsSync).kind === 'local';
  } catch {
    local = false; // the build reports a bad context itself
  }
  const localDriver = !opts.builder || opts.builder.driver === 'local';
  let platforms: string[];
  try {
    platforms = (flags.platform ?? []).map((p) =>
      plat.formatPlatform(plat.parsePlatform(p, { normalize: true })),
    );
  } catch {
    platforms = [...(flags.platform ?? [])];
  }
  if (platforms.length === 0) platforms = [plat.formatPlatform(plat.hostPlatform())];
  let buildArgs: Record<string, string> = {};
  try {
    buildArgs = parseBuildArgs(flags.buildArg, ctx.env);
  } catch {
    // The build reports bad build args itself.
  }
  const secretId = (s: string) => /(?:^|,)id=([^,]*)/.exec(s)?.[1] ?? s.split(',')[0]!;
  const request = {
    context: local ? resolve(context) : context === '-' ? context : recordedContext(context, maskURL),
    ...(flags.file !== undefined ? { dockerfile: flags.file } : {}),
    ...(flags.target !== undefined ? { target: flags.target } : {}),
    platforms,
    ...(Object.keys(buildArgs).length > 0 ? { buildArgs } : {}),
    ...(flags.label.length > 0
      ? {
          labels: Object.fromEntries(flags.label.map((l) => [l.split('=')[0]!, l.slice(l.indexOf('=') + 1)])),
        }
      : {}),
    ...(flags.secret.length > 0 ? { secrets: flags.secret.map(secretId) } : {}),
    ...(flags.cache === false ? { noCache: true } : {}),
    ...(flags.pull ? { pull: true } : {}),
    ...(flags.network ? { network: flags.network } : {}),
    // Output types only: a dest or a registry name is the user's, but keep specs short and credential-free.
    ...(flags.output.length > 0 || flags.push || flags.load
      ? {
          outputs: [
            ...flags.output.map((o) => /(?:^|,)type=([^,]*)/.exec(o)?.[1] ?? (o === '-' ? 'tar' : 'local')),
            ...(flags.push ? ['registry'] : []),
            ...(flags.load ? ['image'] : []),
          ],
        }
      : {}),
    ...(flags.tag.length > 0 ? { tags: [...flags.tag] } : {}),
    ...(opts.builder ? { builder: opts.builder.name, driver: opts.builder.driver } : {}),
  };
  const root = stateRoot(ctx.env);
  const rec = await h.startRecord({
    stateRoot: root,
    request,
    platforms: platforms.map((p) => ({
      platform: p,
      ...(localDriver ? { native: plat.isHostArchitecture(plat.parsePlatform(p)) } : {}),
    })),
    nodes: opts.builder?.nodes.map((n) => n.name) ?? [],
    progress: renderer,
  });
  return {
    sink: rec.sink,
    async finish(outcome = {}) {
      const { record, saved } = await rec.finish(outcome);
      if (!saved) ctx.err.write(`WARNING: the build record could not be written under ${root}/history\n`);
      if (!flags.report) return;
      const { writeFileAtomic } = await import('../../util/fs.js');
      try {
        await writeFileAtomic(
          resolve(flags.report),
          (await import('../../history/report.js')).renderReport(record),
          { createParents: true },
        );
      } catch (err) {
        // After a successful build a report that cannot be written fails the command (as
        // --metadata-file does); after a failed one the build's error is what matters.
        const message = `--report ${flags.report}: ${errorMessage(err).replace(/^writing \S+: /, '')}`;
        if (outcome.error === undefined) throw new PolyarchError('IO', message, { cause: err });
        ctx.err.write(`WARNING: ${message}\n`);
      }
    },
  };
}

/** `compose build`: one record for the project, its services' steps on their platforms. */
export async function recordCompose(
  renderer: ProgressSink,
  project: { name: string },
  builds: readonly { service: string; contextDir: string; platforms: readonly string[]; target?: string }[],
  ctx: CliContext,
  opts: {
    noCache?: boolean;
    push?: boolean;
    builder?: { name: string; driver: string; nodes: readonly { name: string }[] };
  } = {},
): Promise<BuildHistoryHook> {
  const localDriver = !opts.builder || opts.builder.driver === 'local';
  const [h, plat, { stateRoot }] = await Promise.all([
    import('../../history/index.js'),
    import('../../platform/index.js'),
    import('../../content/paths.js'),
  ]);
  const host = plat.formatPlatform(plat.hostPlatform());
  const platforms = [
    ...new Set(
      builds.flatMap((b) =>
        b.platforms.length === 0
          ? [host]
          : b.platforms.map((p) => {
              try {
                return plat.formatPlatform(plat.parsePlatform(p, { normalize: true }));
              } catch {
                return p;
              }
            }),
      ),
    ),
  ];
  const root = stateRoot(ctx.env);
  const rec = await h.startRecord({
    stateRoot: root,
    name: project.name,
    request: {
      context: builds[0]!.contextDir,
      platforms,
      services: builds.map((b) => b.service),
      ...(opts.noCache ? { noCache: true } : {}),
      ...(opts.push ? { outputs: ['registry'] } : {}),
      ...(opts.builder ? { builder: opts.builder.name, driver: opts.builder.driver } : {}),
    },
    nodes: opts.builder?.nodes.map((n) => n.name) ?? [],
    platforms: platforms.map((p) => {
      let native: boolean | undefined;
      try {
        if (localDriver) native = plat.isHostArchitecture(plat.parsePlatform(p));
      } catch {}
      return { platform: p, ...(native !== undefined ? { native } : {}) };
    }),
    progress: renderer,
  });
  return {
    sink: rec.sink,
    async finish(outcome = {}) {
      const { saved } = await rec.finish(outcome).catch(() => ({ saved: false }));
      if (!saved) ctx.err.write(`WARNING: the build record could not be written under ${root}/history\n`);
    },
  };
}
