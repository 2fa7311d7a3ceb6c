/**
 * `polyarch build` on a builder whose driver is not `local`: the flags become a
 * RemoteBuildRequest (src/builder/remote/build.ts) and BuildKit's progress is drawn by the
 * same renderers as a local build.
 */
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { Builder } from '../../builder/index.js';
import { PolyarchError, UsageError } from '../../util/errors.js';
import type { CliContext } from '../context.js';
import type { BuildFlags } from './build.js';
import { cancelOnSignals, parseBuildArgs } from './build-shared.js';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The builder `build` would use (see resolveBuilder), when any of its nodes is a BuildKit one. */
export async function remoteBuilder(name: string | undefined, ctx: CliContext): Promise<Builder | undefined> {
  const [{ resolveBuilder }, { hasRemoteNodes }] = await Promise.all([
    import('../../builder/builders.js'),
    import('../../builder/types.js'),
  ]);
  const b = await resolveBuilder(name, { env: ctx.env });
  return hasRemoteNodes(b) ? b : undefined;
}

export async function runRemoteBuild(
  context: string,
  flags: BuildFlags,
  ctx: CliContext,
  builder: Builder,
): Promise<number> {
  const [plat, exp, ui, remote, fsu, { parseSecret }] = await Promise.all([
    import('../../platform/index.js'),
    import('../../build/export/outputs.js'),
    import('../ui/index.js'),
    import('../../builder/remote/build.js'),
    import('../../util/fs.js'),
    import('./build.js'),
  ]);
  let platforms: ReturnType<typeof plat.parsePlatform>[] | undefined;
  try {
    platforms = flags.platform?.map((p) => plat.parsePlatform(p, { normalize: true }));
  } catch (err) {
    throw new UsageError(`--platform: ${(err as Error).message}`);
  }
  const network = flags.network ?? 'default';
  if (!['default', 'host', 'none'].includes(network))
    throw new UsageError(`invalid --network "${network}": expected default, host or none`);
  const labels: Record<string, string> = {};
  for (const l of flags.label) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --label "${l}": expected key=value`);
    labels[l.slice(0, eq)] = l.slice(eq + 1);
  }
  const { outputs, warning } = exp.resolveOutputs({
    output: flags.output,
    ...(flags.push ? { push: true } : {}),
    ...(flags.load ? { load: true } : {}),
    tags: flags.tag,
  });
  if (context === '-')
    throw new PolyarchError('UNSUPPORTED', 'a context on stdin is not supported on remote builders yet');
  const st = await stat(context).catch(() => undefined);
  if (!st?.isDirectory())
    throw new PolyarchError('NOT_FOUND', `unable to prepare context: path "${context}" not found`);
  let dockerfilePath: string | undefined;
  let dockerfileText: string | undefined;
  if (flags.file === '-') dockerfileText = await readStdin();
  else {
    const path = flags.file ?? join(context, 'Dockerfile');
    dockerfilePath = isAbsolute(path) ? path : resolve(path);
    await readFile(dockerfilePath).catch((err) => {
      throw new PolyarchError(
        'NOT_FOUND',
        `failed to read dockerfile: open ${flags.file ?? 'Dockerfile'}: no such file or directory`,
        { cause: err },
      );
    });
  }
  const renderer = ui.chooseRenderer(flags.progress, { stream: ctx.err, isTTY: ctx.isTTY, env: ctx.env });
  const cancel = cancelOnSignals();
  let result: Awaited<ReturnType<typeof remote.remoteBuild>>;
  try {
    result = await remote.remoteBuild(builder, {
      contextDir: resolve(context),
      ...(dockerfilePath ? { dockerfilePath } : {}),
      ...(dockerfileText !== undefined ? { dockerfileText } : {}),
      dockerfileName: 'Dockerfile',
      ...(platforms ? { platforms } : {}),
      buildArgs: parseBuildArgs(flags.buildArg, ctx.env),
      ...(flags.target !== undefined ? { target: flags.target } : {}),
      labels,
      noCache: flags.cache === false,
      pull: flags.pull ?? false,
      network: network as 'default' | 'host' | 'none',
      secrets: flags.secret.map((s) => parseSecret(s, ctx.env)),
      cacheFrom: flags.cacheFrom,
      cacheTo: flags.cacheTo,
      annotations: flags.annotation,
      attest: (await import('../../attest/options.js')).attestFrontendAttrs(
        (await import('../../attest/options.js')).withDefaultAttestations(
          (await import('../../attest/options.js')).parseAttestFlags(flags),
          { imageOutput: false },
        ),
      ),
      outputs,
      progress: renderer,
      signal: cancel.signal,
      env: ctx.env,
      warn: (m) => ctx.err.write(`WARNING: ${m}\n`),
    });
  } catch (err) {
    await renderer.close();
    const canceled = cancel.canceled((t) => ctx.err.write(t));
    if (canceled !== undefined) return canceled;
    throw err;
  } finally {
    cancel.dispose();
  }
  await renderer.close();
  if (flags.metadataFile)
    await fsu.writeFileAtomic(resolve(flags.metadataFile), `${JSON.stringify(result.metadata, null, 2)}\n`, {
      createParents: true,
    });
  if (flags.iidfile) {
    if (!result.digest)
      throw new PolyarchError('INVALID_ARGUMENT', `--iidfile ${flags.iidfile}: the build exported no image`);
    await fsu.writeFileAtomic(resolve(flags.iidfile), result.digest, { createParents: true });
  }
  const { touchBuilder } = await import('../../builder/index.js');
  await touchBuilder(builder, { env: ctx.env }).catch(() => undefined);
  if (warning) ctx.err.write(`${warning}\n`);
  return 0;
}
