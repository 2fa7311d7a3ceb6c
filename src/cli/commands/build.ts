/**
 * `polyarch build [OPTIONS] [CONTEXT]` — docker buildx build's flags (SPEC.md § Commands).
 * `--check` parses and lints the Dockerfile and prints build-check warnings like buildx,
 * building nothing; the build engine itself is not wired in yet.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { PolyarchError, UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';

export interface BuildFlags {
  platform?: string[];
  tag: string[];
  file?: string;
  buildArg: string[];
  target?: string;
  push?: boolean;
  load?: boolean;
  output: string[];
  cacheFrom: string[];
  cacheTo: string[];
  cache?: boolean;
  pull?: boolean;
  progress: string;
  secret: string[];
  label: string[];
  annotation: string[];
  metadataFile?: string;
  iidfile?: string;
  builder?: string;
  maxParallelism?: string;
  network?: string;
  check?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];
const list = (v: string, prev: string[] | undefined) => [
  ...(prev ?? []),
  ...v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
];

export function register(program: Command, ctx: CliContext): void {
  program
    .command('build')
    .description('Build an image from a Dockerfile, for one or more platforms')
    .argument('[context]', 'build context: a directory, - (tar on stdin) or a git URL', '.')
    .option('--platform <list>', 'target platforms, comma-separated (default: the host)', list)
    .option('-t, --tag <name>', 'name and optionally a tag (name:tag); repeatable', collect, [])
    .option('-f, --file <path>', 'Dockerfile (default: CONTEXT/Dockerfile; - reads stdin)')
    .option('--build-arg <key=value>', 'set a build-time variable; repeatable', collect, [])
    .option('--target <stage>', 'build this stage instead of the last one')
    .option('--push', 'shorthand for --output=type=registry')
    .option('--load', 'shorthand for --output=type=image')
    .option(
      '-o, --output <spec>',
      'output destination (type=image|registry|oci|docker|local|tar,...)',
      collect,
      [],
    )
    .option('--cache-from <spec>', 'external cache sources; repeatable', collect, [])
    .option('--cache-to <spec>', 'cache export destinations; repeatable', collect, [])
    .option('--no-cache', 'do not use cache when building')
    .option('--pull', 'always look up base images in the registry')
    .option('--progress <mode>', 'progress output: auto, tty, plain, rawjson or quiet', 'auto')
    .option(
      '--secret <spec>',
      'secret for RUN --mount=type=secret (id=X,src=PATH|env=VAR); repeatable',
      collect,
      [],
    )
    .option('--label <key=value>', 'set image metadata; repeatable', collect, [])
    .option('--annotation <key=value>', 'add an annotation to the image; repeatable', collect, [])
    .option('--metadata-file <file>', 'write build result metadata (JSON) to this file')
    .option('--iidfile <file>', 'write the image ID to this file')
    .option('--builder <name>', 'builder instance to use')
    .option('--max-parallelism <n>', 'maximum number of steps run at once')
    .option('--network <mode>', 'network mode for RUN: default, host or none')
    .option('--check', 'parse and lint the Dockerfile: print build-check warnings and errors, build nothing')
    .action(async (context: string, flags: BuildFlags) => {
      if (!flags.check)
        throw new PolyarchError('UNSUPPORTED', 'build: the build engine is not implemented yet');
      ctx.exitCode = await runCheck(context, flags, ctx);
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function parseBuildArgs(values: string[], env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid --build-arg "${v}": the name is empty`);
    if (eq < 0) {
      // buildx: `--build-arg NAME` takes the value from the environment, or is skipped.
      const fromEnv = env[v];
      if (fromEnv !== undefined) out[v] = fromEnv;
    } else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

async function runCheck(context: string, flags: BuildFlags, ctx: CliContext): Promise<number> {
  const df = await import('../../dockerfile/index.js');
  let text: string;
  let file: string;
  if (flags.file === '-') {
    text = await readStdin();
    file = 'Dockerfile';
  } else {
    const path = flags.file ?? join(context, 'Dockerfile');
    const abs = isAbsolute(path) ? path : resolve(path);
    try {
      text = await readFile(abs, 'utf8');
    } catch (err) {
      throw new PolyarchError('NOT_FOUND', `reading Dockerfile ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    file = path.split('/').pop() || 'Dockerfile';
  }
  const { parsePlatformList } = await import('../../platform/index.js');
  let platforms: ReturnType<typeof parsePlatformList> | undefined;
  try {
    platforms = flags.platform && parsePlatformList(flags.platform);
  } catch (err) {
    throw new UsageError(`--platform: ${(err as Error).message}`);
  }
  const buildArgs = parseBuildArgs(flags.buildArg, ctx.env);
  let plan: ReturnType<typeof df.planBuild>;
  try {
    plan = df.planBuild(text, {
      file,
      buildArgs,
      ...(platforms ? { platforms } : {}),
      ...(flags.target !== undefined ? { target: flags.target } : {}),
    });
  } catch (err) {
    if (df.isDockerfileError(err)) {
      for (const w of err.warnings) ctx.out.write(`${df.formatWarning(w, err.lines)}\n\n`);
      ctx.err.write(df.formatDockerfileError(err));
      return 1;
    }
    throw err;
  }
  const syntax = plan.directives.syntax;
  if (syntax && !/^(?:docker\.io\/)?docker\/dockerfile(?:-upstream)?(?::[\w.-]+)?(?:@\S+)?$/.test(syntax))
    ctx.err.write(`WARNING: # syntax=${syntax} is ignored: polyarch uses its built-in Dockerfile frontend\n`);
  ctx.out.write(df.formatCheckReport(plan.warnings, plan.lines));
  if (plan.unusedBuildArgs.length > 0)
    ctx.err.write(`WARNING: One or more build-args [${plan.unusedBuildArgs.join(' ')}] were not consumed\n`);
  if (plan.check.error && plan.warnings.length > 0) {
    const rules = [...new Set(plan.warnings.map((w) => w.rule))].join(', ');
    ctx.err.write(`ERROR: lint violation found for rules: ${rules}\n`);
    return 1;
  }
  return 0;
}
