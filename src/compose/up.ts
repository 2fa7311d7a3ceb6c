/**
 * `compose up -d`, `down`, `ps`, `logs` for services with an image (or built by `compose
 * build`), each on its own `platform:`, as containers (exec/containers.ts).
 *
 *   const started = await composeUp(project, { root, env });   // depends_on order
 *   await composeDown(project, { root });                       // stop, rm, network gone
 *
 * The project network is one network namespace shared by every service (a pod, as podman
 * makes one), connected by pasta (exec/network.ts) with every service's `ports:` published.
 * Services reach each other by name: each container's /etc/hosts maps every service name
 * to 127.0.0.1 — so two services cannot listen on the same port, which compose's own
 * per-service addresses would allow. Containers are named `<project>-<service>-1` and
 * labelled `com.docker.compose.project` / `com.docker.compose.service`, as compose does.
 */
import { createHash } from 'node:crypto';
import { runImage } from '../exec/container.js';
import {
  type ContainerRecord,
  isRunning,
  listContainers,
  removeContainer,
  stopContainer,
} from '../exec/containers.js';
import { type PortMapping, parsePublish, setupNetwork, teardownNetwork } from '../exec/network.js';
import { PolyarchError, UsageError } from '../util/errors.js';
import { defaultImageName } from './plan.js';
import type { ComposeProject, ComposeService } from './project.js';

export const PROJECT_LABEL = 'com.docker.compose.project';
export const SERVICE_LABEL = 'com.docker.compose.service';

/** The id of a project's network (network.ts names the namespace and pid file by it). */
export function projectNetworkId(project: string): string {
  return createHash('sha256').update(`compose-network:${project}`).digest('hex');
}

/** The services of `names` (default all) with those they depend on, dependencies first. */
export function serviceOrder(project: ComposeProject, names: readonly string[] = []): string[] {
  for (const n of names) if (!(n in project.services)) throw new UsageError(`no such service: ${n}`);
  const want = names.length > 0 ? names : Object.keys(project.services);
  const out: string[] = [];
  const visiting = new Set<string>();
  const visit = (n: string, from?: string) => {
    if (out.includes(n)) return;
    if (!(n in project.services))
      throw new PolyarchError('INVALID_ARGUMENT', `service "${from}" depends on undefined service "${n}"`);
    if (visiting.has(n)) throw new PolyarchError('INVALID_ARGUMENT', `dependency cycle at service "${n}"`);
    visiting.add(n);
    for (const d of project.services[n]!.depends_on ?? []) visit(d, n);
    visiting.delete(n);
    out.push(n);
  };
  for (const n of want) visit(n);
  return out;
}

/** A compose `command:`/`entrypoint:`: a list as is, a string split as a shell would (quotes). */
export function commandWords(v: unknown, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) return v.map(String);
  if (typeof v !== 'string')
    throw new PolyarchError('INVALID_ARGUMENT', `${what}: expected a string or a list`);
  const words: string[] = [];
  let cur = '';
  let quote: string | undefined;
  let inWord = false;
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < v.length) cur += v[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < v.length) {
      cur += v[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new PolyarchError('INVALID_ARGUMENT', `${what}: unterminated quote`);
  if (inWord) words.push(cur);
  return words;
}

function environmentOf(svc: ComposeService, name: string): string[] {
  const env = svc.environment;
  if (env === undefined || env === null) return [];
  if (Array.isArray(env)) return env.map(String).filter((kv) => kv.includes('='));
  if (typeof env === 'object')
    return Object.entries(env as Record<string, unknown>).flatMap(([k, v]) =>
      v === null || v === undefined ? [] : [`${k}=${String(v)}`],
    );
  throw new PolyarchError('INVALID_ARGUMENT', `service "${name}": environment must be a map or a list`);
}

/** `ports:` short (`"8080:80"`, `80`) and long (`{target, published, protocol, host_ip}`) syntax. */
export function portsOf(svc: ComposeService, name: string): PortMapping[] {
  const ports = svc.ports;
  if (ports === undefined || ports === null) return [];
  if (!Array.isArray(ports))
    throw new PolyarchError('INVALID_ARGUMENT', `service "${name}": ports must be a list`);
  return ports.map((p) => {
    if (typeof p === 'number' || typeof p === 'string') return parsePublish(String(p));
    const o = p as { target?: number; published?: number | string; protocol?: string; host_ip?: string };
    if (typeof o.target !== 'number')
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `service "${name}": a long-syntax port needs a numeric target`,
      );
    const host = o.published === undefined ? '' : `${String(o.published)}:`;
    const ip = o.host_ip ? `${o.host_ip.includes(':') ? `[${o.host_ip}]` : o.host_ip}:` : '';
    return parsePublish(`${ip}${ip && !host ? ':' : ''}${host}${o.target}/${o.protocol ?? 'tcp'}`);
  });
}

function hostsFile(project: ComposeProject): string {
  const names = Object.keys(project.services).join(' ');
  return `127.0.0.1\tlocalhost ${names}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

export interface ComposeRunOptions {
  root: string;
  env?: NodeJS.ProcessEnv;
  services?: string[];
  /** Called as each service's container starts. */
  onStart?: (service: string, rec: { id: string; name: string; platform: string }) => void;
  warn?: (m: string) => void;
}

/** The project's containers (labels), newest first. */
export async function projectContainers(root: string, project: string): Promise<ContainerRecord[]> {
  return (await listContainers(root)).filter((c) => c.Config.Labels?.[PROJECT_LABEL] === project);
}

/** `compose up -d`: create the project network, then start each service, dependencies first. */
export async function composeUp(project: ComposeProject, opts: ComposeRunOptions): Promise<string[]> {
  const order = serviceOrder(project, opts.services);
  const existing = await projectContainers(opts.root, project.name);
  const plan = order.map((name) => {
    const svc = project.services[name]!;
    const image = svc.image ?? (svc.build ? defaultImageName(project.name, name) : undefined);
    if (image === undefined)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `service "${name}" has neither an image nor a build section`,
      );
    return { name, svc, image, ports: portsOf(svc, name) };
  });
  const netId = projectNetworkId(project.name);
  const running = existing.filter(isRunning);
  // The namespace stays while any service runs; a fresh up (re)creates it with every port.
  let net: { path: string; resolvConf: string };
  if (running.length === 0) {
    const made = await setupNetwork({ root: opts.root, id: netId, ports: plan.flatMap((p) => p.ports) });
    net = { path: made.netnsPath, resolvConf: made.resolvConf };
  } else {
    const first = running[0]!.Polyarch.Launch.joinNetns;
    if (!first) throw new PolyarchError('INTERNAL', `project ${project.name}: its network is unknown`);
    net = first;
  }
  const started: string[] = [];
  for (const p of plan) {
    const cname = `${project.name}-${p.name}-1`;
    const old = existing.find((c) => c.Name === `/${cname}`);
    if (old && isRunning(old)) continue; // up again: running services are left alone
    if (old) await removeContainer(opts.root, old);
    const r = await runImage({
      image: p.image,
      ...(p.svc.platform ? { platforms: [p.svc.platform] } : {}),
      ...(commandWords(p.svc.command, `service "${p.name}": command`)?.length
        ? { args: commandWords(p.svc.command, `service "${p.name}": command`)! }
        : {}),
      ...(p.svc.entrypoint !== undefined
        ? { entrypoint: (commandWords(p.svc.entrypoint, `service "${p.name}": entrypoint`) ?? []).join(' ') }
        : {}),
      env: environmentOf(p.svc, p.name),
      ...(typeof p.svc.working_dir === 'string' ? { workingDir: p.svc.working_dir } : {}),
      ...(typeof p.svc.user === 'string' ? { user: p.svc.user } : {}),
      root: opts.root,
      ...(opts.env ? { processEnv: opts.env } : {}),
      ...(opts.warn ? { warn: opts.warn } : {}),
      detach: true,
      name: cname,
      compose: {
        joinNetns: net,
        hosts: hostsFile(project),
        labels: { [PROJECT_LABEL]: project.name, [SERVICE_LABEL]: p.name },
        ports: p.ports,
      },
    });
    const res = r.results[0]!;
    opts.onStart?.(p.name, { id: res.containerId, name: cname, platform: res.platform });
    started.push(res.containerId);
  }
  return started;
}

/** `compose down`: stop and remove the project's containers, then its network. */
export async function composeDown(
  project: ComposeProject,
  opts: { root: string; timeoutS?: number; onRemoved?: (name: string) => void },
): Promise<void> {
  const cs = await projectContainers(opts.root, project.name);
  // Dependents first: the reverse of up's order.
  const order = serviceOrder(project).reverse();
  cs.sort(
    (a, b) =>
      order.indexOf(a.Config.Labels?.[SERVICE_LABEL] ?? '') -
      order.indexOf(b.Config.Labels?.[SERVICE_LABEL] ?? ''),
  );
  for (const c of cs) {
    await stopContainer(opts.root, c, { timeoutS: opts.timeoutS ?? 10 });
    await removeContainer(opts.root, c);
    opts.onRemoved?.(c.Name.slice(1));
  }
  await teardownNetwork(opts.root, projectNetworkId(project.name));
}
