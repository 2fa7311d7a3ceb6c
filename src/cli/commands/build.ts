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
    .option('--label <key=value>', 'set image metadata; repeatable', collect, [])
    .option(
      '--annotation <key=value>',
      'add an annotation to the image (not supported yet: warned, ignored)',
      collect,
      [],
    )
    .option('--metadata-file <file>', 'write build result metadata (JSON) to this file')
    .option('--iidfile <file>', 'write the image ID to this file')
    .option('--builder <name>', 'builder instance to use')
    .option('--max-parallelism <n>', 'maximum number of heavy steps run at once (default 16)')
    .option('--network <mode>', 'network mode for RUN: default, host or none')
    .option('--check', 'parse and lint the Dockerfile: print build-check warnings and errors, build nothing')
    .option('--call <method>', 'check = --check (outline and targets are not supported yet)')
    .option('-q, --quiet', 'no progress output; print the image ID on stdout (= --progress quiet)')
    .option('--provenance <value>', 'provenance attestation: only false (the default here) is supported yet')
    .option('--sbom <value>', 'SBOM attestation: only false (the default here) is supported yet')
    .option(
      '--attest <spec>',
      'attestations (type=sbom|provenance,...): only disabled=true is supported yet',
      collect,
      [],
    )
    .action(async (context: string, flags: BuildFlags) => {
      checkAttestations(flags);
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

/** buildx's spellings of "no": `false`, `0`, `no`, `off` (strconv.ParseBool and friends). */
function isFalse(v: string): boolean {
  return /^(false|0|no|off)$/i.test(v.trim());
}

/**
 * `--provenance`, `--sbom` and `--attest`: polyarch makes no attestations yet, so asking for
 * none (`--provenance=false`, `--sbom=false`, `--attest type=…,disabled=true`) just works, and
 * asking for one is refused, never silently dropped.
 */
function checkAttestations(flags: BuildFlags): void {
  for (const [flag, value] of [
    ['--provenance', flags.provenance],
    ['--sbom', flags.sbom],
  ] as const) {
    if (value === undefined || isFalse(value)) continue;
    throw new PolyarchError(
      'UNSUPPORTED',
      `${flag}=${value}: attestations are not supported yet (use ${flag}=false)`,
    );
  }
  for (const spec of flags.attest) {
    const kv = new Map(
      spec.split(',').map((p) => {
        const eq = p.indexOf('=');
        return eq < 0 ? [p.trim(), ''] : [p.slice(0, eq).trim(), p.slice(eq + 1).trim()];
      }),
    );
    const type = kv.get('type');
    if (type !== 'sbom' && type !== 'provenance')
      throw new UsageError(`invalid --attest "${spec}": type must be sbom or provenance`);
    if (/^(true|1)$/i.test(kv.get('disabled') ?? '')) continue;
    throw new PolyarchError('UNSUPPORTED', `--attest ${spec}: attestations are not supported yet`);
  }
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

async function readStdinBuffer(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function runBuild(context: string, flags: BuildFlags, ctx: CliContext): Promise<number> {
  // A builder with BuildKit nodes: src/cli/commands/build-remote.ts (before any local probes).
  const remote = await (await import('./build-remote.js')).remoteBuilder(flags.builder, ctx);
  if (remote) return (await import('./build-remote.js')).runRemoteBuild(context, flags, ctx, remote);
  const plat = await import('../../platform/index.js');
  let platforms: ReturnType<typeof plat.parsePlatform>[] | undefined;
  try {
    platforms = flags.platform?.map((p) => plat.parsePlatform(p, { normalize: true }));
  } catch (err) {
    throw new UsageError(`--platform: ${(err as Error).message}`);
  }
  // The engine asks whether each target platform runs here (one test program per foreign
  // architecture, memoised for the process): start those probes now, so their processes run
  // while the modules below load. A failure surfaces where the engine awaits the same answer.
  const { emulatorProofFile } = await import('../../content/paths.js');
  const proofCache = emulatorProofFile(ctx.env);
  for (const p of platforms ?? []) plat.runsHere(p, { proofCache }).catch(() => undefined);
  const [df, engine, exp, ui, fsp, os] = await Promise.all([
    import('../../dockerfile/index.js'),
    import('../../build/index.js'),
    import('../../build/export/index.js'),
    import('../ui/index.js'),
    import('node:fs/promises'),
    import('node:os'),
  ]);
  let maxParallelism: number | undefined;
  if (flags.maxParallelism !== undefined) {
    maxParallelism = Number(flags.maxParallelism);
    if (!Number.isInteger(maxParallelism) || maxParallelism < 1)
      throw new UsageError(
        `invalid --max-parallelism "${flags.maxParallelism}": expected a positive integer`,
      );
  }
  const network = flags.network ?? 'default';
  if (!['default', 'host', 'none'].includes(network))
    throw new UsageError(`invalid --network "${network}": expected default, host or none`);
  const secrets = flags.secret.map((s) => parseSecret(s, ctx.env));
  const { parseSshSpec } = await import('../../build/ssh.js');
  const ssh = flags.ssh.map(parseSshSpec);
  const buildArgs = parseBuildArgs(flags.buildArg, ctx.env);
  const labels: Record<string, string> = {};
  for (const l of flags.label) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --label "${l}": expected key=value`);
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }

  // External caches (build/extcache): specs checked before anything is built.
  const { parseCacheSpec } = await import('../../build/extcache/spec.js');
  const cacheFrom = flags.cacheFrom.map((s) => parseCacheSpec(s, 'import'));
  const cacheTo = flags.cacheTo.map((s) => parseCacheSpec(s, 'export'));
  // Accepted for buildx compatibility, not implemented yet: say so instead of ignoring them.
  if (flags.annotation.length > 0)
    ctx.err.write('WARNING: --annotation is not supported yet: no annotations are added\n');

  // The builder instance (`--builder`, $POLYARCH_BUILDER, the current one): this engine is
  // the local driver's (remote builders went to build-remote.ts above).
  const { resolveBuilder, touchBuilder } = await import('../../builder/index.js');
  const builder = await resolveBuilder(flags.builder, { env: ctx.env });

  // Outputs are resolved before anything is built, so a bad -o fails fast — and a dest of `/`
  // or the state root is refused before anything could be written there.
  const { outputs, warning } = exp.resolveOutputs({
    output: flags.output,
    ...(flags.push ? { push: true } : {}),
    ...(flags.load ? { load: true } : {}),
    tags: flags.tag,
    stateRoot: (await import('../../content/paths.js')).stateRoot(ctx.env),
  });

  // The context: a directory, or a tar on stdin unpacked into a temporary directory.
  let contextDir = context;
  let tmpContext: string | undefined;
  let text: string;
  let dockerfilePath: string | undefined;
  let fileName = 'Dockerfile';
  const cleanup: (() => Promise<void>)[] = [];
  try {
    // A git repository or an http(s) URL: fetched into a directory the build reads as usual.
    const { prepareRemoteContext } = await import('../../build/remote/index.js');
    const { stateRoot: stateRootOf } = await import('../../content/index.js');
    const remote = await prepareRemoteContext(context, {
      stateRoot: stateRootOf(ctx.env),
      env: ctx.env,
      secrets,
      buildArgs,
    });
    if (remote) {
      cleanup.push(remote.cleanup);
      contextDir = remote.dir;
    }
    // The Dockerfile's path inside a remote context, resolved there (a link in a repository
    // must not name a file of this machine); -f names a local file when there is one.
    let inContext: string | undefined;
    if (remote) {
      const { resolveInRoot } = await import('../../util/rootpath.js');
      const local = flags.file !== undefined && (await fsp.stat(flags.file).catch(() => undefined));
      if (flags.file !== '-' && !local)
        inContext = resolveInRoot(remote.dir, flags.file ?? 'Dockerfile').host;
    } else if (context === '-') {
      if (flags.file === '-')
        throw new UsageError('cannot read both the context and the Dockerfile from stdin');
      tmpContext = await fsp.mkdtemp(join(os.tmpdir(), 'polyarch-context-'));
      cleanup.push(() => fsp.rm(tmpContext!, { recursive: true, force: true }));
      const { applyLayerBlob } = await import('../../layer/index.js');
      const { Readable } = await import('node:stream');
      await applyLayerBlob(Readable.from(await readStdinBuffer()), tmpContext, { sameOwner: false });
      contextDir = tmpContext;
    } else {
      const st = await fsp.stat(contextDir).catch(() => undefined);
      if (!st?.isDirectory())
        throw new PolyarchError('NOT_FOUND', `unable to prepare context: path "${context}" not found`);
    }
    if (flags.file === '-') text = await readStdin();
    else {
      const path = inContext ?? flags.file ?? join(contextDir, 'Dockerfile');
      dockerfilePath = isAbsolute(path) ? path : resolve(path);
      fileName = path.split('/').pop() || 'Dockerfile';
      try {
        text = await readFile(dockerfilePath, 'utf8');
      } catch (err) {
        throw new PolyarchError(
          'NOT_FOUND',
          `failed to read dockerfile: open ${flags.file ?? 'Dockerfile'}: no such file or directory`,
          { cause: err },
        );
      }
    }

    const renderer = ui.chooseRenderer(flags.progress, { stream: ctx.err, isTTY: ctx.isTTY, env: ctx.env });
    // buildx: with no progress drawn, the image ID is printed instead (`IMG=$(polyarch build -q .)`).
    const quiet = ui.resolveProgressMode(flags.progress, { isTTY: ctx.isTTY, env: ctx.env }) === 'quiet';
    let imageId: string | undefined;
    // SIGINT/SIGTERM cancel the build: running containers are stopped, mounts and temporary
    // snapshots removed; committed cache entries stay valid.
    const cancel = cancelOnSignals();
    let result: Awaited<ReturnType<typeof engine.build>>;
    // Held until the export is done too, so a concurrent prune keeps this build's layers.
    const { stateRoot: rootOf } = await import('../../content/index.js');
    cleanup.push(await engine.holdBuildLease(rootOf(ctx.env)));
    // A push needs the registry client: load it while the build waits on the disk (the
    // exporter awaits the same module).
    if (outputs.some((o) => o.push)) import('../../image/push.js').catch(() => undefined);
    const { ContentStore, stateRoot, storeDir } = await import('../../content/index.js');
    const { Snapshotter } = await import('../../snapshot/index.js');
    const root = stateRoot(ctx.env);
    const epoch = ctx.env.SOURCE_DATE_EPOCH ?? buildArgs.SOURCE_DATE_EPOCH;
    const exportCtx = async () => ({
      store: await ContentStore.open(storeDir(ctx.env)),
      snapshotter: await Snapshotter.open({ root }),
      stateRoot: root,
      progress: renderer,
      ...(epoch !== undefined && /^\d+$/.test(epoch) ? { sourceDateEpoch: Number(epoch) } : {}),
      signal: cancel.signal,
      env: ctx.env,
      warn: (m: string) => ctx.err.write(`WARNING: ${m}\n`),
    });
    // Layers are packed for the outputs while the build goes on (see below); the export then
    // finds them packed.
    const preparing: Promise<void>[] = [];
    let early: ReturnType<typeof exportCtx> | undefined;
    const prepare = (pack: (c: Awaited<ReturnType<typeof exportCtx>>) => Promise<void>) => {
      early ??= exportCtx();
      preparing.push(early.then(pack).catch(() => undefined));
    };
    const warnOut = (m: string) => ctx.err.write(`WARNING: ${m}\n`);
    const extcache =
      cacheFrom.length > 0 || cacheTo.length > 0 ? await import('../../build/extcache/index.js') : undefined;
    const cacheImport =
      extcache && cacheFrom.length > 0 && flags.cache !== false
        ? extcache.ImportedCache.open(cacheFrom, { env: ctx.env, warn: warnOut })
        : undefined;
    if (cacheImport) cleanup.push(() => cacheImport.close());
    const inline = cacheTo.some((s) => s.type === 'inline');
    try {
      result = await engine.build({
        dockerfile: text,
        dockerfileName: fileName,
        ...(dockerfilePath ? { dockerfilePath } : {}),
        contextDir,
        ...(platforms ? { platforms } : {}),
        buildArgs,
        ...(flags.target !== undefined ? { target: flags.target } : {}),
        noCache: flags.cache === false,
        pull: flags.pull ?? false,
        secrets,
        ssh,
        labels,
        network: network as 'default' | 'host' | 'none',
        ...(maxParallelism !== undefined ? { maxParallelism } : {}),
        progress: renderer,
        signal: cancel.signal,
        env: ctx.env,
        warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
        ...(cacheImport ? { cacheImport } : {}),
        ...(outputs.length > 0
          ? {
              // A layer as soon as its step has made it; a platform's (cached ones too) when it is done.
              onLayerCommitted: (key) => prepare((c) => exp.prepareLayer(key, outputs, c)),
              onPlatformResult: (r) => prepare((c) => exp.prepareLayers(r, outputs, c)),
            }
          : {}),
      });
      await Promise.all(preparing);
      if (outputs.length > 0) {
        exp.checkOutputs(result, outputs);
        const ectx = await (early ?? exportCtx());
        const resp = await exp.exportBuild(result, outputs, {
          ...ectx,
          ...(inline ? { inlineCache: result.cache } : {}),
        });
        // buildx prints the image exporters' ID; a local or tar output has none.
        if (outputs.some((o) => ['image', 'registry', 'oci', 'docker'].includes(o.type)))
          imageId = resp.digest;
        await exp.writeBuildFiles(resp, {
          ...(flags.metadataFile ? { metadataFile: flags.metadataFile } : {}),
          ...(flags.iidfile ? { iidFile: flags.iidfile } : {}),
        });
      }
      if (extcache && cacheTo.some((s) => s.type !== 'inline')) {
        const ectx = await (early ?? exportCtx());
        const { ProgressWriter } = await import('../../progress/index.js');
        const built = result;
        await new ProgressWriter(renderer).run({ digest: 'exporter:cache', name: 'exporting cache' }, () =>
          extcache.exportCache(built.cache, cacheTo, {
            ...ectx,
            ...(cacheImport ? { imported: cacheImport } : {}),
          }),
        );
      }
    } catch (err) {
      // Early packing stops with the build (signal) or finishes: nothing is left half-written.
      await Promise.all(preparing);
      await renderer.close();
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
    if (quiet && imageId) ctx.out.write(`${imageId}\n`);
    await touchBuilder(builder, { env: ctx.env }).catch(() => undefined);
    if (warning) ctx.err.write(`${warning}\n`);
    return 0;
  } finally {
    for (const c of cleanup) await c().catch(() => undefined);
  }
}
