/**
 * A build on the `local` driver: this machine's engine (src/build) builds every platform and
 * the exporters (src/build/export) write the outputs. Layers are packed for the outputs while
 * later steps still run (a layer when its step commits it, a platform's when it is done), so
 * the export finds them packed; external caches are imported before and exported after.
 * A build lease is held until the export is done, so a concurrent prune keeps its layers.
 */
import type { BuildOutput } from '../build/build.js';
import { prepareInputs } from './prepare.js';
import type { BuildRequest, BuildResponse } from './request.js';

export async function buildLocally(req: BuildRequest): Promise<BuildResponse> {
  const env = req.env ?? process.env;
  const warn = req.warn ?? (() => undefined);
  const plat = await import('../platform/index.js');
  const { emulatorProofFile, stateRoot } = await import('../content/paths.js');
  // The engine asks whether each target platform runs here (one test program per foreign
  // architecture, memoised for the process): start those probes now, so their processes run
  // while the modules below load. A failure surfaces where the engine awaits the same answer.
  const proofCache = emulatorProofFile(env);
  for (const p of req.platforms ?? []) plat.runsHere(p, { proofCache }).catch(() => undefined);
  // A push needs the registry client: load it while the build goes on (the exporter awaits
  // the same module).
  if (req.outputs.some((o) => o.push)) import('../image/push.js').catch(() => undefined);
  const [engine, exp, content, { Snapshotter }] = await Promise.all([
    import('../build/index.js'),
    import('../build/export/index.js'),
    import('../content/index.js'),
    import('../snapshot/index.js'),
  ]);
  const root = stateRoot(env);
  const cacheFrom = req.cacheFrom ?? [];
  const cacheTo = req.cacheTo ?? [];
  if ((req.annotations ?? []).length > 0)
    warn('--annotation is not supported yet on the local engine: no annotations are added');

  const inputs = await prepareInputs(req);
  const cleanup: (() => Promise<void>)[] = [inputs.cleanup];
  try {
    cleanup.push(await engine.holdBuildLease(root));
    const buildArgs = { ...(req.buildArgs ?? {}) };
    const epoch = env.SOURCE_DATE_EPOCH ?? buildArgs.SOURCE_DATE_EPOCH;
    const exportCtx = async () => ({
      store: await content.ContentStore.open(content.storeDir(env)),
      snapshotter: await Snapshotter.open({ root }),
      stateRoot: root,
      ...(req.progress ? { progress: req.progress } : {}),
      ...(epoch !== undefined && /^\d+$/.test(epoch) ? { sourceDateEpoch: Number(epoch) } : {}),
      ...(req.signal ? { signal: req.signal } : {}),
      env,
      warn,
    });
    // Early packing: started by the engine's callbacks, awaited before the export (and on
    // failure, so nothing is left half-written).
    const preparing: Promise<void>[] = [];
    let early: ReturnType<typeof exportCtx> | undefined;
    const prepare = (pack: (c: Awaited<ReturnType<typeof exportCtx>>) => Promise<void>) => {
      early ??= exportCtx();
      preparing.push(early.then(pack).catch(() => undefined));
    };
    const extcache =
      cacheFrom.length > 0 || cacheTo.length > 0 ? await import('../build/extcache/index.js') : undefined;
    const cacheImport =
      extcache && cacheFrom.length > 0 && !req.noCache
        ? extcache.ImportedCache.open([...cacheFrom], { env, warn })
        : undefined;
    if (cacheImport) cleanup.push(() => cacheImport.close());
    const outputs = [...req.outputs];
    let result: BuildOutput;
    try {
      result = await engine.build({
        dockerfile: inputs.dockerfile,
        dockerfileName: inputs.dockerfileName,
        ...(inputs.dockerfilePath ? { dockerfilePath: inputs.dockerfilePath } : {}),
        contextDir: inputs.contextDir,
        ...(req.platforms ? { platforms: [...req.platforms] } : {}),
        buildArgs,
        ...(req.target !== undefined ? { target: req.target } : {}),
        noCache: req.noCache ?? false,
        pull: req.pull ?? false,
        secrets: [...(req.secrets ?? [])],
        ssh: [...(req.ssh ?? [])],
        ...(req.namedContexts?.length ? { namedContexts: [...req.namedContexts] } : {}),
        labels: { ...(req.labels ?? {}) },
        network: req.network ?? 'default',
        ...(req.maxParallelism !== undefined ? { maxParallelism: req.maxParallelism } : {}),
        ...(req.progress ? { progress: req.progress } : {}),
        ...(req.signal ? { signal: req.signal } : {}),
        env,
        warn,
        ...(cacheImport ? { cacheImport } : {}),
        ...(outputs.length > 0
          ? {
              onLayerCommitted: (key: string) => prepare((c) => exp.prepareLayer(key, outputs, c)),
              onPlatformResult: (r) => prepare((c) => exp.prepareLayers(r, outputs, c)),
            }
          : {}),
      });
    } finally {
      await Promise.all(preparing);
    }
    const platforms = result.platforms.map((p) => plat.formatPlatform(p.platform));
    let resp: BuildResponse = { names: [], platforms, metadata: {} };
    if (outputs.length > 0) {
      exp.checkOutputs(result, outputs);
      const ectx = await (early ?? exportCtx());
      const inline = cacheTo.some((s) => s.type === 'inline');
      const out = await exp.exportBuild(result, outputs, {
        ...ectx,
        ...(inline ? { inlineCache: result.cache } : {}),
      });
      await exp.writeBuildFiles(out, {
        ...(req.metadataFile ? { metadataFile: req.metadataFile } : {}),
        ...(req.iidFile ? { iidFile: req.iidFile } : {}),
      });
      resp = {
        ...(out.digest ? { digest: out.digest } : {}),
        names: out.names,
        platforms,
        metadata: out.metadata,
      };
    }
    if (extcache && cacheTo.some((s) => s.type !== 'inline')) {
      const ectx = await (early ?? exportCtx());
      const { ProgressWriter } = await import('../progress/index.js');
      const write = () =>
        extcache.exportCache(result.cache, [...cacheTo], {
          ...ectx,
          ...(cacheImport ? { imported: cacheImport } : {}),
        });
      if (req.progress)
        await new ProgressWriter(req.progress).run(
          { digest: 'exporter:cache', name: 'exporting cache' },
          write,
        );
      else await write();
    }
    return resp;
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  }
}
