/**
 * `polyarch compose [-f FILE]... [-p NAME] [--env-file FILE] build [OPTIONS] [SERVICE...]` —
 * docker compose's build, honouring `build.platforms` (SPEC.md § Commands). The project is
 * loaded by src/compose (files, `.env`, interpolation, validation, merging); every selected
 * service with `build:` is built for its platforms into the local store, and with `--push`
 * pushed. `-f`/`-p`/`--env-file` are accepted before or after `build`, like compose's.
 */
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { buildFailureReport, cancelOnSignals, parseBuildArgs } from './build-shared.js';
import { type ComposeFlags, loadComposeProject, registerComposeRun } from './compose-run.js';

interface ComposeBuildFlags {
  push?: boolean;
  cache?: boolean;
  pull?: boolean;
  progress: string;
  buildArg: string[];
  quiet?: boolean;
  maxParallelism?: string;
  builder?: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function register(program: Command, ctx: CliContext): void {
  const compose = program
    .command('compose')
    .description('Build, run and push the services of a compose project')
    .option(
      '-f, --file <path>',
      'compose configuration file; repeatable, later files override earlier ones',
      collect,
      [],
    )
    .option('-p, --project-name <name>', 'project name (default: name:, else the project directory name)')
    .option('--project-directory <dir>', 'project directory (default: the first compose file directory)')
    .option('--env-file <path>', 'environment file for interpolation (default: PROJECT_DIR/.env)');
  compose
    .command('build')
    .description(
      'Build the services that have a build section, for their build.platforms (-f, -p, --env-file: see polyarch compose --help; accepted here too)',
    )
    .argument('[services...]', 'services to build (default: every service with build:)')
    .option('--push', 'push every built image to its registry')
    .option('--no-cache', 'do not use cache when building')
    .option('--pull', 'always look up base images in the registry')
    .option('--progress <mode>', 'progress output: auto, tty, plain, rawjson or quiet', 'auto')
    .option('-q, --quiet', 'print nothing but errors (--progress quiet)')
    .option('--build-arg <key=value>', 'set a build-time variable for every service; repeatable', collect, [])
    .option('--max-parallelism <n>', 'maximum number of heavy steps run at once, per service (default 16)')
    .option('--builder <name>', 'builder instance to use (default: the current one)')
    .action(async (services: string[], flags: ComposeBuildFlags, cmd: Command) => {
      ctx.exitCode = await runComposeBuild(services, flags, cmd.parent!.opts() as ComposeFlags, ctx);
    });
  registerComposeRun(compose, ctx); // up, down, ps, logs, push, config
}

async function runComposeBuild(
  services: string[],
  flags: ComposeBuildFlags,
  top: ComposeFlags,
  ctx: CliContext,
): Promise<number> {
  const [lib, ui, df, engine] = await Promise.all([
    import('../../compose/index.js'),
    import('../ui/index.js'),
    import('../../dockerfile/index.js'),
    import('../../build/index.js'),
  ]);
  let maxParallelism: number | undefined;
  if (flags.maxParallelism !== undefined) {
    maxParallelism = Number(flags.maxParallelism);
    if (!Number.isInteger(maxParallelism) || maxParallelism < 1)
      throw new UsageError(
        `invalid --max-parallelism "${flags.maxParallelism}": expected a positive integer`,
      );
  }
  const warn = (m: string) => ctx.err.write(`WARNING: ${m}\n`);
  const project = await loadComposeProject(top, ctx);
  const builds = lib.planBuilds(project, {
    services,
    buildArgs: parseBuildArgs(flags.buildArg, ctx.env),
    noCache: flags.cache === false,
    pull: flags.pull ?? false,
    warn,
  });
  if (builds.length === 0) {
    warn('no service to build: none of the selected services has a build section');
    return 0;
  }

  // The build history (src/history): one record for the project's build.
  const { resolveBuilder } = await import('../../builder/builders.js');
  const rec = await (await import('./build-history.js')).recordCompose(
    ui.chooseRenderer(flags.quiet ? 'quiet' : flags.progress, {
      stream: ctx.err,
      isTTY: ctx.isTTY,
      env: ctx.env,
    }),
    project,
    builds,
    ctx,
    {
      noCache: flags.cache === false,
      push: flags.push ?? false,
      builder: await resolveBuilder(flags.builder, { env: ctx.env }),
    },
  );
  const renderer = rec.sink;
  const cancel = cancelOnSignals();
  let results: Awaited<ReturnType<typeof lib.buildServices>>;
  try {
    results = await lib.buildServices(builds, {
      ...(flags.push ? { push: true } : {}),
      progress: renderer,
      signal: cancel.signal,
      env: ctx.env,
      warn,
      ...(flags.builder !== undefined ? { builder: flags.builder } : {}),
      ...(maxParallelism !== undefined ? { maxParallelism } : {}),
    });
  } catch (err) {
    await renderer.close();
    await rec.finish({ error: err, canceled: cancel.signal.aborted });
    const canceled = cancel.canceled((t) => ctx.err.write(t));
    if (canceled !== undefined) return canceled;
    if (err instanceof lib.ServiceBuildError) {
      const report = buildFailureReport(err.cause, { engine, df });
      if (report !== undefined) {
        ctx.err.write(`ERROR: service "${err.service}" failed to build\n${report}`);
        return 1;
      }
    }
    throw err;
  } finally {
    cancel.dispose();
  }
  await renderer.close();
  await rec.finish();
  if (!flags.quiet && flags.progress !== 'quiet')
    for (const r of results)
      ctx.err.write(` Service ${r.service}  Built  ${r.names.join(', ')} (${r.platforms.join(', ')})\n`);
  return 0;
}
