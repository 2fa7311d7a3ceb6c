/**
 * `polyarch build [OPTIONS] [CONTEXT]` — docker buildx build's flags (SPEC.md § Commands).
 * `--check` parses and lints the Dockerfile and prints build-check warnings like buildx,
 * building nothing. Otherwise the build engine (src/build) builds every platform and the
 * exporters (src/build/export) write the requested outputs.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { PolyarchError, UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import { buildFailureReport, cancelOnSignals, parseBuildArgs } from './build-shared.js';

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
  quiet?: boolean;
  provenance?: string;
  sbom?: string;
  attest: string[];
  call?: string;
  ssh: string[];
  buildContext: string[];
  report?: string;
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
    .argument(
      '[context]',
      'build context: a directory, - (a tar on stdin), a git URL (#ref:subdir) or an https URL',
      '.',
    )
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
    .option(
      '--cache-from <spec>',
      'external cache sources (type=registry,ref=R | type=local,src=DIR | R); repeatable',
      collect,
      [],
    )
    .option(
      '--cache-to <spec>',
      'cache export destinations (type=registry,ref=R | type=local,dest=DIR | type=inline; mode=min|max); repeatable',
      collect,
      [],
    )
    .option('--no-cache', 'do not use cache when building')
    .option('--pull', 'always look up base images in the registry')
    .option('--progress <mode>', 'progress output: auto, tty, plain, rawjson or quiet', 'auto')
    .option(
      '--secret <spec>',
      'secret for RUN --mount=type=secret (id=X,src=PATH|env=VAR); repeatable',
      collect,
      [],
    )
    .option(
      '--ssh <spec>',
      'SSH agent or keys for RUN --mount=type=ssh (default|ID[=SOCKET|KEY[,KEY]]); repeatable',
      collect,
      [],
    )
    .option(
      '--build-context <name=value>',
      'named context for FROM/COPY --from/--mount from= (a directory, docker-image://REF, oci-layout://PATH[:tag], a git or https URL); repeatable',
      collect,
      [],
    )
    .option('--label <key=value>', 'set image metadata; repeatable', collect, [])
    .option(
      '--annotation <key=value>',
      'add an annotation to the image (BuildKit builders; the local engine does not support it yet: warned, ignored)',
      collect,
      [],
    )
    .option('--metadata-file <file>', 'write build result metadata (JSON) to this file')
    .option('--report <file>', "write the build's timeline (one self-contained HTML file) to this file")
    .option('--iidfile <file>', 'write the image ID to this file')
    .option('--builder <name>', 'builder instance to use')
    .option('--max-parallelism <n>', 'maximum number of heavy steps run at once (default 16)')
    .option('--network <mode>', 'network mode for RUN: default, host or none')
    .option('--check', 'parse and lint the Dockerfile: print build-check warnings and errors, build nothing')
    .option('--call <method>', 'check = --check (outline and targets are not supported yet)')
    .option('-q, --quiet', 'no progress output; print the image ID on stdout (= --progress quiet)')
    .option(
      '--provenance <value>',
      'provenance attestation: true, false or mode=min|max (default: min for images)',
    )
    .option('--sbom <value>', 'SBOM attestation: true, false or generator=IMAGE')
    .option(
      '--attest <spec>',
      'attestation (type=sbom|provenance[,mode=…][,disabled=true]); repeatable',
      collect,
      [],
    )
    .action(async (context: string, flags: BuildFlags) => {
      (await import('../../attest/options.js')).parseAttestFlags(flags);
      if (flags.call !== undefined) {
        if (flags.call !== 'check' && flags.call !== 'build')
          throw new PolyarchError(
            'UNSUPPORTED',
            `--call ${flags.call}: only check and build are supported yet (outline and targets are not)`,
          );
        if (flags.call === 'check') flags.check = true;
      }
      if (flags.quiet) flags.progress = 'quiet';
      if (flags.check) ctx.exitCode = await runCheck(context, flags, ctx);
      else ctx.exitCode = await runBuild(context, flags, ctx);
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
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
      if (err.warnings.length > 0) ctx.out.write(`${df.formatCheckReport(err.warnings, err.lines)}\n`);
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
  }
  // buildx: any warning makes the check fail (the lint result's status code is 1).
  return plan.warnings.length > 0 ? 1 : 0;
}

/** `--secret id=X,src=PATH|env=VAR` (buildx also takes `type=file|env` and a bare `id=X`). */
export function parseSecret(
  spec: string,
  env: NodeJS.ProcessEnv,
): { id: string; src?: string; env?: string } {
  const kv: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --secret "${spec}": expected key=value pairs`);
    kv[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1);
  }
  const id = kv.id;
  if (!id) throw new UsageError(`invalid --secret "${spec}": id is required`);
  const src = kv.src ?? kv.source;
  if (kv.type === 'env' || (kv.env !== undefined && src === undefined))
    return { id, env: kv.env ?? src ?? id };
  if (src !== undefined) return { id, src };
  // buildx: no source means an env var of that name if set, else a file of that name.
  return env[id] !== undefined ? { id, env: id } : { id, src: id };
}

/** The flags as one build request (src/builder/request.ts): parsing only, nothing is read yet. */
async function buildRequest(
  context: string,
  flags: BuildFlags,
  ctx: CliContext,
): Promise<{ req: import('../../builder/request.js').BuildRequest; warning?: string }> {
  const [
    plat,
    { resolveOutputs },
    { parseCacheSpec },
    { parseSshSpec },
    { stateRoot },
    { parseBuildContext },
  ] = await Promise.all([
    import('../../platform/index.js'),
    import('../../build/export/outputs.js'),
    import('../../build/extcache/spec.js'),
    import('../../build/ssh.js'),
    import('../../content/paths.js'),
    import('../../build/named-context.js'),
  ]);
  let platforms: ReturnType<typeof plat.parsePlatform>[] | undefined;
  try {
    platforms = flags.platform?.map((p) => plat.parsePlatform(p, { normalize: true }));
  } catch (err) {
    throw new UsageError(`--platform: ${(err as Error).message}`);
  }
  let maxParallelism: number | undefined;
  if (flags.maxParallelism !== undefined) {
    maxParallelism = Number(flags.maxParallelism);
    if (!Number.isInteger(maxParallelism) || maxParallelism < 1)
      throw new UsageError(
        `invalid --max-parallelism "${flags.maxParallelism}": expected a positive integer`,
      );
  }
  const network = flags.network ?? 'default';
  if (network !== 'default' && network !== 'host' && network !== 'none')
    throw new UsageError(`invalid --network "${network}": expected default, host or none`);
  const labels: Record<string, string> = {};
  for (const l of flags.label) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --label "${l}": expected key=value`);
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }
  // Outputs are resolved before anything is built, so a bad -o fails fast — and a dest of `/`
  // or the state root is refused before anything could be written there.
  const { outputs, warning } = resolveOutputs({
    output: flags.output,
    ...(flags.push ? { push: true } : {}),
    ...(flags.load ? { load: true } : {}),
    tags: flags.tag,
    stateRoot: stateRoot(ctx.env),
  });
  if (context === '-' && flags.file === '-')
    throw new UsageError('cannot read both the context and the Dockerfile from stdin');
  const req: import('../../builder/request.js').BuildRequest = {
    context,
    ...(context === '-' ? { contextTar: process.stdin } : {}),
    ...(flags.file !== undefined && flags.file !== '-' ? { file: flags.file } : {}),
    ...(flags.file === '-' ? { dockerfileText: await readStdin() } : {}),
    ...(platforms ? { platforms } : {}),
    buildArgs: parseBuildArgs(flags.buildArg, ctx.env),
    ...(flags.target !== undefined ? { target: flags.target } : {}),
    labels,
    noCache: flags.cache === false,
    pull: flags.pull ?? false,
    network,
    secrets: flags.secret.map((s) => parseSecret(s, ctx.env)),
    ssh: flags.ssh.map(parseSshSpec),
    namedContexts: flags.buildContext.map((v) => parseBuildContext(v)),
    cacheFrom: flags.cacheFrom.map((s) => parseCacheSpec(s, 'import')),
    cacheTo: flags.cacheTo.map((s) => parseCacheSpec(s, 'export')),
    annotations: flags.annotation,
    attest: (await import('../../attest/options.js')).parseAttestFlags(flags),
    outputs,
    ...(flags.metadataFile ? { metadataFile: flags.metadataFile } : {}),
    ...(flags.iidfile ? { iidFile: flags.iidfile } : {}),
    ...(maxParallelism !== undefined ? { maxParallelism } : {}),
    env: ctx.env,
    warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
  };
  return { req, ...(warning ? { warning } : {}) };
}

async function runBuild(context: string, flags: BuildFlags, ctx: CliContext): Promise<number> {
  // resolveOutputs' note (e.g. no output given) is printed after the build, as buildx does.
  const { req, warning } = await buildRequest(context, flags, ctx);
  const [{ runBuild: build }, { hasImageOutput }, ui, engine, df] = await Promise.all([
    import('../../builder/run.js'),
    import('../../builder/request.js'),
    import('../ui/index.js'),
    import('../../build/index.js'),
    import('../../dockerfile/index.js'),
  ]);
  // The build history (src/history): a tee in front of the renderer records the build.
  const { resolveBuilder } = await import('../../builder/builders.js');
  const builder = await resolveBuilder(flags.builder, { env: ctx.env });
  const rec = await (await import('./build-history.js')).recordBuild(
    ui.chooseRenderer(flags.progress, { stream: ctx.err, isTTY: ctx.isTTY, env: ctx.env }),
    context,
    flags,
    ctx,
    { builder },
  );
  const renderer = rec.sink;
  // buildx: with no progress drawn, the image ID is printed instead (`IMG=$(polyarch build -q .)`).
  const quiet = ui.resolveProgressMode(flags.progress, { isTTY: ctx.isTTY, env: ctx.env }) === 'quiet';
  // SIGINT/SIGTERM cancel the build: running containers are stopped, mounts and temporary
  // snapshots removed; committed cache entries stay valid.
  const cancel = cancelOnSignals();
  let resp: Awaited<ReturnType<typeof build>>;
  try {
    resp = await build({ ...req, progress: renderer, signal: cancel.signal }, { builder });
  } catch (err) {
    await renderer.close();
    await rec.finish({ error: err, canceled: cancel.signal.aborted });
    const canceled = cancel.canceled((t) => ctx.err.write(t));
    if (canceled !== undefined) return canceled;
    const report = buildFailureReport(err, { engine, df });
    if (report === undefined) throw err;
    ctx.err.write(report);
    return 1;
  } finally {
    cancel.dispose();
  }
  await renderer.close();
  await rec.finish({
    outputs: resp.digest ? { 'containerimage.digest': resp.digest } : {},
    ...(builder.driver !== 'local' && resp.nodes ? { placement: resp.nodes } : {}),
  });
  // buildx prints the image exporters' ID; a local or tar output has none.
  if (quiet && resp.digest && hasImageOutput(req.outputs)) ctx.out.write(`${resp.digest}\n`);
  if (warning) ctx.err.write(`${warning}\n`);
  return 0;
}
