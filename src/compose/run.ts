/**
 * Runs a compose build plan with the build engine and the exporters:
 *
 *   const results = await buildServices(planBuilds(project, opts), {
 *     push, progress: renderer, env, signal, warn, concurrency: 2 });
 *
 * Each service's image goes into the local store under its tags; with `push` it is also
 * pushed (buildx bake semantics: every tag to its registry). Services build side by side
 * (at most `concurrency` at once), each after the services it `depends_on`; progress from all
 * of them goes to one sink with vertex names prefixed by the service (`[web linux/arm64 2/5]
 * RUN …`) and digests made distinct per service. The first failure cancels the other
 * services and is thrown as a `ServiceBuildError` naming the service, the engine's error as
 * its cause.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { attestContext } from '../build/attest.js';
import { build } from '../build/index.js';
import { exportBuild, resolveOutputs } from '../build/export/index.js';
import { ContentStore, stateRoot, storeDir } from '../content/index.js';
import { parseReference } from '../oci/reference.js';
import { formatPlatform, parsePlatform } from '../platform/index.js';
import type { ProgressSink, SolveStatus } from '../progress/index.js';
import { Snapshotter } from '../snapshot/index.js';
import { Semaphore } from '../util/concurrency.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import type { ServiceBuild } from './plan.js';

export interface ComposeBuildOptions {
  /** Also push every built image to its registry. Default false. */
  push?: boolean;
  progress?: ProgressSink;
  signal?: AbortSignal;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  warn?: (message: string) => void;
  /** Services built at once. Default 2: each build already runs its platforms in parallel. */
  concurrency?: number;
  /** Heavy steps at once, per build; default the engine's. */
  maxParallelism?: number;
}

export interface ServiceResult {
  service: string;
  names: string[];
  digest?: string;
  platforms: string[];
}

/** A service's build failed; `cause` is the engine's error (BuildStepError, DockerfileError…). */
export class ServiceBuildError extends PolyarchError {
  readonly service: string;
  constructor(service: string, cause: unknown) {
    super('BUILD_FAILED', `service "${service}" failed to build: ${errorMessage(cause)}`, { cause });
    this.name = 'ServiceBuildError';
    this.service = service;
  }
}

/** True when a reference names its registry (`host.tld/x`, `host:port/x`, `localhost/x`). */
export function hasRegistry(name: string): boolean {
  const slash = name.indexOf('/');
  if (slash < 0) return false;
  const first = name.slice(0, slash);
  return first.includes('.') || first.includes(':') || first === 'localhost';
}

/** Renames a service's progress: `[web linux/arm64 2/5] RUN …`, digests prefixed `web/`. */
export function prefixProgress(sink: ProgressSink, service: string): ProgressSink {
  const id = (d: string) => `${service}/${d}`;
  const name = (n: string) => (n.startsWith('[') ? `[${service} ${n.slice(1)}` : `[${service}] ${n}`);
  return {
    write: (s: SolveStatus) =>
      sink.write({
        vertexes: (s.vertexes ?? []).map((v) => ({
          ...v,
          digest: id(v.digest),
          name: name(v.name),
          inputs: v.inputs.map(id),
        })),
        statuses: (s.statuses ?? []).map((x) => ({ ...x, vertex: id(x.vertex) })),
        logs: (s.logs ?? []).map((x) => ({ ...x, vertex: id(x.vertex) })),
        warnings: (s.warnings ?? []).map((x) => ({ ...x, vertex: id(x.vertex) })),
      }),
    // The shared sink is closed by whoever opened it, once every service is done.
    close: () => undefined,
  };
}

export async function buildServices(
  builds: ServiceBuild[],
  opts: ComposeBuildOptions = {},
): Promise<ServiceResult[]> {
  const env = opts.env ?? process.env;
  // Everything that can be checked is checked before anything is built.
  if (opts.push)
    for (const b of builds)
      for (const t of b.tags)
        if (!hasRegistry(t))
          throw new PolyarchError(
            'INVALID_ARGUMENT',
            `service "${b.service}": cannot push image "${t}": the name has no registry (set image: to REGISTRY/NAME)`,
          );
  const prepared = builds.map((b) => {
    const platforms = b.platforms.map((p) => {
      try {
        return parsePlatform(p, { normalize: true });
      } catch (err) {
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          `service "${b.service}": platform "${p}": ${errorMessage(err)}`,
          {
            cause: err,
          },
        );
      }
    });
    const tags = b.tags.map((t) => {
      try {
        parseReference(t);
        return t;
      } catch (err) {
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          `service "${b.service}": invalid image name "${t}": ${errorMessage(err)}`,
          {
            cause: err,
          },
        );
      }
    });
    const { outputs } = resolveOutputs({
      output: ['type=image'],
      tags,
      ...(opts.push ? { push: true } : {}),
    });
    return { b, platforms, outputs };
  });

  const root = stateRoot(env);
  const store = await ContentStore.open(storeDir(env));
  const snapshotter = await Snapshotter.open({ root });
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const sem = new Semaphore(opts.concurrency ?? 2);
  const done = new Map<string, Promise<ServiceResult>>();
  let first: unknown;

  const runOne = async (p: (typeof prepared)[number]): Promise<ServiceResult> => {
    const { b } = p;
    const sink = opts.progress ? prefixProgress(opts.progress, b.service) : undefined;
    let dockerfile: string;
    if (b.dockerfileInline !== undefined) dockerfile = b.dockerfileInline;
    else
      try {
        dockerfile = await readFile(b.dockerfilePath!, 'utf8');
      } catch (err) {
        throw new PolyarchError(
          'NOT_FOUND',
          `failed to read dockerfile ${b.dockerfilePath}: ${errorMessage(err)}`,
          {
            cause: err,
          },
        );
      }
    const warn = opts.warn ? (m: string) => opts.warn!(`service "${b.service}": ${m}`) : undefined;
    const extcache =
      b.cacheFrom.length > 0 || b.cacheTo.length > 0 ? await import('../build/extcache/index.js') : undefined;
    const cacheImport =
      extcache && b.cacheFrom.length > 0 && !b.noCache
        ? extcache.ImportedCache.open(b.cacheFrom, { env, ...(warn ? { warn } : {}) })
        : undefined;
    const startedOn = new Date();
    try {
      const result = await build({
        ...(cacheImport ? { cacheImport } : {}),
        dockerfile,
        dockerfileName: b.dockerfilePath ? basename(b.dockerfilePath) : 'Dockerfile',
        ...(b.dockerfilePath ? { dockerfilePath: b.dockerfilePath } : {}),
        contextDir: b.contextDir,
        ...(p.platforms.length > 0 ? { platforms: p.platforms } : {}),
        buildArgs: b.buildArgs,
        ...(b.target !== undefined ? { target: b.target } : {}),
        noCache: b.noCache,
        pull: b.pull,
        secrets: b.secrets,
        labels: b.labels,
        ...(b.network ? { network: b.network } : {}),
        ...(opts.maxParallelism !== undefined ? { maxParallelism: opts.maxParallelism } : {}),
        ...(sink ? { progress: sink } : {}),
        signal: abort.signal,
        env,
        ...(opts.warn ? { warn: (m: string) => opts.warn!(`service "${b.service}": ${m}`) } : {}),
      });
      const epoch = env.SOURCE_DATE_EPOCH ?? b.buildArgs.SOURCE_DATE_EPOCH;
      const inline = b.cacheTo.some((s) => s.type === 'inline');
      const attest = attestContext({
        spec: b.attest,
        outputs: p.outputs,
        env,
        output: result,
        dockerfile: { name: b.dockerfilePath ? basename(b.dockerfilePath) : 'Dockerfile', text: dockerfile },
        buildArgs: b.buildArgs,
        ...(b.target !== undefined ? { target: b.target } : {}),
        secrets: b.secrets,
        ssh: [],
        labels: b.labels,
        noCache: b.noCache,
        ...(b.network ? { network: b.network } : {}),
        startedOn,
      });
      const resp = await exportBuild(result, p.outputs, {
        ...(attest ? { attest } : {}),
        ...(inline ? { inlineCache: result.cache } : {}),
        store,
        snapshotter,
        stateRoot: root,
        ...(sink ? { progress: sink } : {}),
        ...(epoch !== undefined && /^\d+$/.test(epoch) ? { sourceDateEpoch: Number(epoch) } : {}),
        signal: abort.signal,
        env,
        ...(opts.warn ? { warn: (m: string) => opts.warn!(`service "${b.service}": ${m}`) } : {}),
      });
      if (extcache && b.cacheTo.some((s) => s.type !== 'inline'))
        await extcache.exportCache(result.cache, b.cacheTo, {
          store,
          snapshotter,
          stateRoot: root,
          env,
          ...(epoch !== undefined && /^\d+$/.test(epoch) ? { sourceDateEpoch: Number(epoch) } : {}),
          ...(warn ? { warn } : {}),
          ...(cacheImport ? { imported: cacheImport } : {}),
        });
      return {
        service: b.service,
        names: resp.names,
        ...(resp.digest ? { digest: resp.digest } : {}),
        platforms: result.platforms.map((x) => formatPlatform(x.platform)),
      };
    } finally {
      await cacheImport?.close();
    }
  };

  const byName = new Map(prepared.map((p) => [p.b.service, p]));
  const schedule = (name: string): Promise<ServiceResult> => {
    let pr = done.get(name);
    if (pr) return pr;
    const p = byName.get(name)!;
    pr = (async () => {
      await Promise.all(p.b.after.map(schedule));
      try {
        return await sem.run(async () => {
          if (abort.signal.aborted) throw abort.signal.reason;
          return await runOne(p);
        });
      } catch (err) {
        if (first === undefined) {
          first = new ServiceBuildError(name, err);
          abort.abort(first);
        }
        throw err;
      }
    })();
    done.set(name, pr);
    return pr;
  };
  try {
    const settled = await Promise.allSettled(prepared.map((p) => schedule(p.b.service)));
    if (first !== undefined) throw first;
    return settled.map((s) => (s as PromiseFulfilledResult<ServiceResult>).value);
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}
