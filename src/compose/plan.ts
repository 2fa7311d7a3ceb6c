/**
 * What `compose build` builds: a loaded project → one `ServiceBuild` per selected service that
 * has `build:`, pure (no I/O).
 *
 *   const builds = planBuilds(project, { services: ['web'], buildArgs: { V: '2' }, host: 'linux/amd64' });
 *
 * Per service: context relative to the project directory; Dockerfile relative to the context
 * (or `dockerfile_inline`); args = `build.args` then `buildArgs` (the `--build-arg`s);
 * platforms = `build.platforms`, else the service's `platform`, else the host's; image name =
 * `image:`, else `<project>-<service>` (compose v2's default), plus `build.tags`.
 */
import { isAbsolute, join, resolve } from 'node:path';
import { type CacheSpec, parseCacheSpec } from '../build/extcache/spec.js';
import { type NamedContextSpec, parseBuildContext } from '../build/named-context.js';
import { PolyarchError, UsageError } from '../util/errors.js';
import type { ComposeProject } from './project.js';
import { BUILD_KEYS } from './schema.js';

export interface ServiceBuild {
  service: string;
  /** The image name (`image:` or `<project>-<service>`) first, then `build.tags`. */
  tags: string[];
  contextDir: string;
  /** Dockerfile on disk, absent with `dockerfile_inline`. */
  dockerfilePath?: string;
  dockerfileInline?: string;
  buildArgs: Record<string, string>;
  target?: string;
  /** As written (`build.platforms`, `platform`); empty = the host's. */
  platforms: string[];
  labels: Record<string, string>;
  noCache: boolean;
  pull: boolean;
  secrets: { id: string; src?: string; env?: string }[];
  network?: 'default' | 'host' | 'none';
  /** Other services of this plan to build first (`depends_on` among built services). */
  after: string[];
  /** `build.cache_from` / `build.cache_to` (buildx's specs; local dirs relative to the project). */
  cacheFrom: CacheSpec[];
  cacheTo: CacheSpec[];
  /**
   * `build.additional_contexts` as `--build-context`s: paths relative to the project directory;
   * `service:NAME` is that service's image (`docker-image://`), built first when it is built here.
   */
  namedContexts: NamedContextSpec[];
}

export interface PlanOptions {
  /** Services named on the command line; default every service with `build:`. */
  services?: string[];
  /** `--build-arg`s, over each service's `build.args`. */
  buildArgs?: Record<string, string>;
  noCache?: boolean;
  pull?: boolean;
  warn?: (message: string) => void;
}

function cacheSpecs(
  service: string,
  key: string,
  specs: string[] | undefined,
  dir: string,
  direction: 'import' | 'export',
): CacheSpec[] {
  return (specs ?? []).map((s) => {
    try {
      return parseCacheSpec(s, direction, dir);
    } catch (err) {
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `service "${service}": build.${key}: ${(err as Error).message}`,
      );
    }
  });
}

/** `<project>-<service>` as compose v2 names an image built without `image:`. */
export function defaultImageName(project: string, service: string): string {
  return `${project}-${service}`.toLowerCase();
}

export function planBuilds(project: ComposeProject, opts: PlanOptions = {}): ServiceBuild[] {
  const names = opts.services && opts.services.length > 0 ? opts.services : Object.keys(project.services);
  for (const n of names) if (!(n in project.services)) throw new UsageError(`no such service: ${n}`);
  const selected = names.filter((n) => project.services[n]!.build !== undefined);
  const out: ServiceBuild[] = [];
  for (const service of selected) {
    const s = project.services[service]!;
    const b = s.build!;
    for (const key of Object.keys(b))
      if (!(BUILD_KEYS as readonly string[]).includes(key))
        opts.warn?.(`service "${service}": build.${key} is not supported and is ignored`);
    const contextDir = resolve(project.dir, b.context ?? '.');
    if (/^[a-z]+:\/\//.test(b.context ?? '') || (b.context ?? '').startsWith('git@'))
      throw new PolyarchError(
        'UNSUPPORTED',
        `service "${service}": build.context "${b.context}": remote contexts are not supported`,
      );
    const buildArgs: Record<string, string> = {};
    for (const [k, v] of Object.entries(b.args ?? {})) if (v !== undefined) buildArgs[k] = v;
    Object.assign(buildArgs, opts.buildArgs ?? {});
    const platforms =
      b.platforms && b.platforms.length > 0 ? [...b.platforms] : s.platform ? [s.platform] : [];
    // compose: with both, the service's platform must be one of build.platforms.
    if (s.platform && b.platforms && b.platforms.length > 0 && !b.platforms.includes(s.platform))
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `service "${service}": platform "${s.platform}" is not in build.platforms [${b.platforms.join(', ')}]`,
      );
    const tags = [s.image ?? defaultImageName(project.name, service), ...(b.tags ?? [])];
    const secrets = (b.secrets ?? []).map((ref) => {
      const def = project.secrets[ref.source];
      if (!def)
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          `service "${service}": build.secrets: undefined secret "${ref.source}"`,
        );
      const id = ref.target ?? ref.source;
      if (def.environment !== undefined) return { id, env: def.environment };
      if (def.file !== undefined) return { id, src: resolve(project.dir, def.file) };
      throw new PolyarchError('INVALID_ARGUMENT', `secrets.${ref.source}: needs "file" or "environment"`);
    });
    let network: ServiceBuild['network'];
    if (b.network !== undefined) {
      if (!['default', 'host', 'none'].includes(b.network))
        throw new PolyarchError(
          'UNSUPPORTED',
          `service "${service}": build.network "${b.network}": only default, host and none are supported`,
        );
      network = b.network as ServiceBuild['network'];
    }
    const after = (s.depends_on ?? []).filter((d) => selected.includes(d) && d !== service);
    const namedContexts = Object.entries(b.additional_contexts ?? {}).map(([name, value]) => {
      const bad = (why: string) =>
        new PolyarchError(
          'INVALID_ARGUMENT',
          `service "${service}": build.additional_contexts.${name}: ${why}`,
        );
      let v = value ?? '';
      if (v.startsWith('service:')) {
        const other = v.slice('service:'.length);
        const o = project.services[other];
        if (!o?.build) throw bad(`"${other}" is not a service with a build section`);
        if (other === service) throw bad('a service cannot be its own context');
        v = `docker-image://${o.image ?? defaultImageName(project.name, other)}`;
        if (selected.includes(other) && !after.includes(other)) after.push(other);
      }
      try {
        return parseBuildContext(`${name}=${v}`, project.dir);
      } catch (err) {
        throw bad((err as Error).message);
      }
    });
    const build: ServiceBuild = {
      service,
      tags: [...new Set(tags)],
      contextDir,
      buildArgs,
      platforms,
      labels: { ...(b.labels ?? {}) },
      noCache: opts.noCache || b.no_cache === true,
      pull: opts.pull || b.pull === true,
      secrets,
      after,
      cacheFrom: cacheSpecs(service, 'cache_from', b.cache_from, project.dir, 'import'),
      cacheTo: cacheSpecs(service, 'cache_to', b.cache_to, project.dir, 'export'),
      namedContexts,
    };
    if (b.dockerfile_inline !== undefined) build.dockerfileInline = b.dockerfile_inline;
    else {
      const df = b.dockerfile ?? 'Dockerfile';
      build.dockerfilePath = isAbsolute(df) ? df : join(contextDir, df);
    }
    if (b.target !== undefined) build.target = b.target;
    if (network) build.network = network;
    out.push(build);
  }
  checkCycles(out);
  return out;
}

function checkCycles(builds: ServiceBuild[]): void {
  const by = new Map(builds.map((b) => [b.service, b]));
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]) => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting')
      throw new PolyarchError('INVALID_ARGUMENT', `dependency cycle: ${[...path, name].join(' -> ')}`);
    state.set(name, 'visiting');
    for (const d of by.get(name)?.after ?? []) visit(d, [...path, name]);
    state.set(name, 'done');
  };
  for (const b of builds) visit(b.service, []);
}
