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
import { resolveOutputs } from '../build/export/index.js';
import { runBuild } from '../builder/run.js';
import { parseReference } from '../oci/reference.js';
import { parsePlatform } from '../platform/index.js';
import type { ProgressSink, SolveStatus } from '../progress/index.js';
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
  /** The builder (or its name); default the current one. */
  builder?: string;
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

  const abort = new AbortController();
  const onOuterAbort = () => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  const sem = new Semaphore(opts.concurrency ?? 2);
  const done = new Map<string, Promise<ServiceResult>>();
  let first: unknown;

  // Each service is one build request on the current builder (src/builder/run.ts), as
  // `polyarch build` makes it.
  const runOne = async (p: (typeof prepared)[number]): Promise<ServiceResult> => {
    const { b } = p;
    const sink = opts.progress ? prefixProgress(opts.progress, b.service) : undefined;
    const warn = opts.warn ? (m: string) => opts.warn!(`service "${b.service}": ${m}`) : undefined;
    const resp = await runBuild(
      {
        context: b.contextDir,
        ...(b.dockerfileInline !== undefined
          ? { dockerfileText: b.dockerfileInline }
          : { file: b.dockerfilePath! }),
        ...(p.platforms.length > 0 ? { platforms: p.platforms } : {}),
        buildArgs: b.buildArgs,
        ...(b.target !== undefined ? { target: b.target } : {}),
        noCache: b.noCache,
        pull: b.pull,
        secrets: b.secrets,
        labels: b.labels,
        ...(b.network ? { network: b.network } : {}),
        cacheFrom: b.cacheFrom,
        cacheTo: b.cacheTo,
        ...(b.namedContexts.length > 0 ? { namedContexts: b.namedContexts } : {}),
        outputs: p.outputs,
        ...(opts.maxParallelism !== undefined ? { maxParallelism: opts.maxParallelism } : {}),
        ...(sink ? { progress: sink } : {}),
        signal: abort.signal,
        env,
        ...(warn ? { warn } : {}),
      },
      opts.builder !== undefined ? { builder: opts.builder } : {},
    );
    return {
      service: b.service,
      names: resp.names,
      ...(resp.digest ? { digest: resp.digest } : {}),
      platforms: resp.platforms,
    };
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
