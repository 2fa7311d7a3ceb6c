/**
 * `runBuild(request, { builder })`: the one library call every build goes through. The
 * builder (`--builder`, $POLYARCH_BUILDER, the current one) decides the driver: a builder of
 * only this machine builds with the local engine (local-build.ts); one with BuildKit nodes
 * spreads the platforms over its nodes, this machine's engine included when it is one of
 * them (remote/build.ts). Either way the same request, the same response.
 */
import { resolveBuilder, touchBuilder } from './builders.js';
import { prepareInputs } from './prepare.js';
import type { BuildRequest, BuildResponse } from './request.js';
import { type Builder, hasRemoteNodes } from './types.js';

export interface RunBuildOptions {
  /** A builder, or its name; default the current one. */
  builder?: Builder | string;
}

export async function runBuild(req: BuildRequest, opts: RunBuildOptions = {}): Promise<BuildResponse> {
  const env = req.env ?? process.env;
  const builder =
    typeof opts.builder === 'object' ? opts.builder : await resolveBuilder(opts.builder, { env });
  const resp = hasRemoteNodes(builder) ? await buildOnNodes(builder, req) : await buildHere(req);
  await touchBuilder(builder, { env }).catch(() => undefined);
  return resp;
}

async function buildHere(req: BuildRequest): Promise<BuildResponse> {
  const { buildLocally } = await import('./local-build.js');
  return buildLocally(req);
}

/** BuildKit's `attest:*` frontend attributes for what the request asked (no default added). */
async function remoteAttestAttrs(req: BuildRequest): Promise<Record<string, string>> {
  const { attestFrontendAttrs, withDefaultAttestations } = await import('../attest/options.js');
  return attestFrontendAttrs(withDefaultAttestations(req.attest ?? {}, { imageOutput: false }));
}

/** A builder with BuildKit nodes: the request as remote/build.ts takes it. */
async function buildOnNodes(builder: Builder, req: BuildRequest): Promise<BuildResponse> {
  const [remote, { writeBuildFiles }, { resolve }] = await Promise.all([
    import('./remote/build.js'),
    import('../build/export/files.js'),
    import('node:path'),
  ]);
  const inputs = await prepareInputs(req);
  try {
    const r = await remote.remoteBuild(builder, {
      contextDir: resolve(inputs.contextDir),
      ...(inputs.dockerfilePath
        ? { dockerfilePath: inputs.dockerfilePath }
        : { dockerfileText: inputs.dockerfile }),
      dockerfileName: inputs.dockerfileName,
      ...(req.platforms ? { platforms: req.platforms } : {}),
      buildArgs: req.buildArgs ?? {},
      ...(req.target !== undefined ? { target: req.target } : {}),
      labels: req.labels ?? {},
      noCache: req.noCache ?? false,
      pull: req.pull ?? false,
      network: req.network ?? 'default',
      secrets: req.secrets ?? [],
      ...(req.ssh?.length ? { ssh: req.ssh } : {}),
      ...(req.namedContexts?.length ? { namedContexts: req.namedContexts } : {}),
      cacheFrom: (req.cacheFrom ?? []).map((c) => c.raw),
      cacheTo: (req.cacheTo ?? []).map((c) => c.raw),
      annotations: req.annotations ?? [],
      ...(req.attest ? { attest: await remoteAttestAttrs(req) } : {}),
      outputs: req.outputs,
      progress: req.progress ?? { write() {}, close() {} },
      ...(req.signal ? { signal: req.signal } : {}),
      ...(req.env ? { env: req.env } : {}),
      ...(req.warn ? { warn: req.warn } : {}),
    });
    await writeBuildFiles(r, {
      ...(req.metadataFile ? { metadataFile: req.metadataFile } : {}),
      ...(req.iidFile ? { iidFile: req.iidFile } : {}),
    });
    return {
      ...(r.digest ? { digest: r.digest } : {}),
      names: [...new Set(req.outputs.flatMap((o) => o.names))],
      platforms: Object.keys(r.nodes),
      nodes: r.nodes,
      metadata: r.metadata,
    };
  } finally {
    await inputs.cleanup();
  }
}
