/**
 * `--network bridge`: a network namespace per container, connected by Debian's `pasta` (the
 * `passt` package), with published ports.
 *
 *   const ports = ['127.0.0.1:8080:80', '53/udp'].map(parsePublish);   // exit 125 on bad input
 *   const net = await setupNetwork({ id, ports: await assignHostPorts(ports) });
 *   // runc joins net.netnsPath (runContainer's editSpec); /etc/resolv.conf = net.resolvConf
 *   await teardownNetwork(id);                                     // idempotent, by id alone
 *
 * Why pasta and not slirp4netns (both are in Debian 12 and both work here): pasta takes the
 * whole configuration on its command line — it attaches to a named netns (`--netns`), copies
 * the host's addresses and routes into it (`--config-net`), forwards published ports with
 * `-t [IP/]HOST:CTR` / `-u`, maps a DNS address to the host's resolver (`--dns-forward`) and
 * reports a port it cannot bind as an error before it detaches, so a taken port fails the
 * `run` cleanly. slirp4netns needs a control socket and one JSON request per published port
 * after it started, and a PID (or a path) handshake. pasta also splices TCP instead of running
 * a user-space TCP stack for it.
 *
 * Inside, the container sees the host's address on `eth0`, a default route via the host's
 * gateway address, which pasta maps to the host itself (so a server on the host's loopback is
 * reachable at the gateway address), and `nameserver 169.254.1.1`, forwarded to the host's
 * first resolver. Ports bound on the host are not forwarded into the container (`-T none`).
 *
 * State: the netns is `/run/netns/polyarch-<id12>`, pasta's pid file `<root>/net/<id12>.pid`.
 * `teardownNetwork` kills pasta and deletes the netns; `sweepNetworks` removes those whose
 * container is gone.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runShort } from '../util/commands.js';
import { errorMessage, PolyarchError, UsageError } from '../util/errors.js';
import { formatOwner, ownerAlive, parseOwner, selfOwner } from '../util/lock.js';

const execFileP = promisify(execFile);

/** The pasta binary; `$POLYARCH_PASTA` overrides. */
const PASTA = process.env.POLYARCH_PASTA || 'pasta';
/** Address the container resolves names with; pasta forwards it to the host's resolver. */
export const DNS_ADDRESS = '169.254.1.1';
const NETNS_DIR = '/run/netns';

export type NetworkMode = 'bridge' | 'host' | 'none';
export type Proto = 'tcp' | 'udp';

export interface PortMapping {
  /** Host address to listen on; undefined = every address (docker's 0.0.0.0). */
  hostIp?: string;
  /** 0 = choose a free port (`-p 80`, `-P`). */
  hostPort: number;
  containerPort: number;
  proto: Proto;
}

/** docker run's flag errors end with 125, as docker's do. */
function badPublish(message: string): PolyarchError {
  return new PolyarchError('INVALID_ARGUMENT', message, { exitCode: 125 });
}

export function parseNetworkMode(v: string): NetworkMode {
  if (v === 'bridge' || v === 'default') return 'bridge';
  if (v === 'host' || v === 'none') return v;
  throw new UsageError(`invalid --network "${v}": use bridge, host or none`);
}

function port(text: string, what: string, flag: string): number {
  if (/^\d+-\d+$/.test(text)) throw badPublish(`invalid -p "${flag}": port ranges are not supported yet`);
  const n = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= 65535))
    throw badPublish(`invalid -p "${flag}": ${what} port "${text}" is not a number from 1 to 65535`);
  return n;
}

/** One `-p [IP:][HOST:]CONTAINER[/tcp|udp]` value, docker's grammar (`[::1]:80:80` for IPv6). */
export function parsePublish(spec: string): PortMapping {
  let rest = spec;
  let proto: Proto = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== 'tcp' && p !== 'udp')
      throw badPublish(`invalid -p "${spec}": protocol "${p}" is not tcp or udp`);
    proto = p;
    rest = rest.slice(0, slash);
  }
  let hostIp: string | undefined;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(.*)$/.exec(rest);
  if (v6) {
    hostIp = v6[1]!;
    rest = v6[2]!;
    if (!rest.includes(':')) rest = `:${rest}`;
  }
  const parts = rest.split(':');
  if (
    parts.length > 3 ||
    (v6 && parts.length !== 2) ||
    parts.some((p, i) => p === '' && i === parts.length - 1)
  )
    throw badPublish(`invalid -p "${spec}": use [IP:][HOST:]CONTAINER[/tcp|udp]`);
  const containerPort = port(parts[parts.length - 1]!, 'container', spec);
  const hostText = parts.length >= 2 ? parts[parts.length - 2]! : '';
  if (parts.length === 3) hostIp = parts[0]!;
  if (hostIp !== undefined && hostIp !== '' && !isIp(hostIp))
    throw badPublish(`invalid -p "${spec}": "${hostIp}" is not an IP address`);
  if (hostIp === '' || hostIp === '0.0.0.0') hostIp = undefined;
  const hostPort = hostText === '' ? 0 : port(hostText, 'host', spec);
  return { ...(hostIp !== undefined ? { hostIp } : {}), hostPort, containerPort, proto };
}

function isIp(s: string): boolean {
  if (/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(s))
    return s.split('.').every((o) => Number(o) <= 255);
  return /^[0-9a-fA-F:]+$/.test(s) && s.includes(':');
}

/** `-P`: every port the image exposes (`80/tcp` keys of ExposedPorts), on free host ports. */
export function exposedPorts(exposed: Record<string, unknown> | undefined): PortMapping[] {
  return Object.keys(exposed ?? {}).flatMap((k) => {
    const m = /^(\d+)(?:\/(tcp|udp))?$/.exec(k);
    return m ? [{ hostPort: 0, containerPort: Number(m[1]), proto: (m[2] ?? 'tcp') as Proto }] : [];
  });
}

/** A port free on `ip` now (the kernel's choice). */
async function freePort(ip: string | undefined, proto: Proto): Promise<number> {
  if (proto === 'udp') {
    const { createSocket } = await import('node:dgram');
    const s = createSocket(ip?.includes(':') ? 'udp6' : 'udp4');
    return new Promise((res, rej) => {
      s.once('error', rej);
      s.bind(0, ip, () => {
        const p = s.address().port;
        s.close(() => res(p));
      });
    });
  }
  const srv = createServer();
  return new Promise((res, rej) => {
    srv.once('error', rej);
    srv.listen(0, ip, () => {
      const addr = srv.address();
      srv.close(() => res(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** Fails (exit 125) when `p`'s host port cannot be bound now. */
async function checkFree(p: PortMapping): Promise<void> {
  const fail = (err: unknown) => {
    throw new PolyarchError(
      'START_FAILED',
      `connecting the container's network: host port ${formatPort(p).replace(/->.*$/, '')}/${p.proto} is not free: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
      { cause: err, exitCode: 125 },
    );
  };
  if (p.proto === 'udp') {
    const { createSocket } = await import('node:dgram');
    const s = createSocket(p.hostIp?.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((res, rej) => {
      s.once('error', rej);
      s.bind(p.hostPort, p.hostIp ?? '0.0.0.0', () => s.close(() => res()));
    }).catch(fail);
    return;
  }
  const srv = createServer();
  await new Promise<void>((res, rej) => {
    srv.once('error', rej);
    srv.listen({ port: p.hostPort, host: p.hostIp ?? '0.0.0.0', exclusive: true }, () =>
      srv.close(() => res()),
    );
  }).catch(fail);
}

/** The mappings with every `hostPort: 0` replaced by a port free now. */
export async function assignHostPorts(ports: readonly PortMapping[]): Promise<PortMapping[]> {
  return Promise.all(
    ports.map(async (p) => (p.hostPort === 0 ? { ...p, hostPort: await freePort(p.hostIp, p.proto) } : p)),
  );
}

/** `0.0.0.0:8080->80/tcp` (docker ps's PORTS). */
export function formatPort(p: PortMapping): string {
  const ip = p.hostIp === undefined ? '0.0.0.0' : p.hostIp.includes(':') ? `[${p.hostIp}]` : p.hostIp;
  return `${ip}:${p.hostPort}->${p.containerPort}/${p.proto}`;
}

/** pasta's `-t`/`-u` value for mappings of one protocol, or `none`. */
function pastaPorts(ports: readonly PortMapping[], proto: Proto): string {
  const list = ports
    .filter((p) => p.proto === proto)
    .map((p) => `${p.hostIp !== undefined ? `${p.hostIp}/` : ''}${p.hostPort}:${p.containerPort}`);
  return list.length > 0 ? list.join(',') : 'none';
}

export interface Network {
  /** For the runtime spec's network namespace. */
  netnsPath: string;
  /** The container's /etc/resolv.conf. */
  resolvConf: string;
  ports: PortMapping[];
}

function shortId(id: string): string {
  return id.replace(/^polyarch-/, '').slice(0, 12);
}

export function netnsName(id: string): string {
  return `polyarch-${shortId(id)}`;
}

function pidFile(root: string, id: string): string {
  return join(root, 'net', `${shortId(id)}.pid`);
}

async function hostResolvConf(): Promise<string> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const keep = text.split('\n').filter((l) => /^\s*(search|domain|options)\b/.test(l));
  return [`nameserver ${DNS_ADDRESS}`, ...keep, ''].join('\n');
}

/**
 * A new network namespace for container `id`, connected by pasta with `ports` published
 * (host ports already chosen: `assignHostPorts`). A port pasta cannot bind is an error (exit
 * 125) naming it; nothing is left behind on failure.
 */
export async function setupNetwork(opts: {
  root: string;
  id: string;
  ports: PortMapping[];
}): Promise<Network> {
  const name = netnsName(opts.id);
  const netnsPath = join(NETNS_DIR, name);
  const pid = pidFile(opts.root, opts.id);
  // pasta binds IPv4 and IPv6 and fails only when it can bind neither: a port taken on IPv4
  // alone would be silently shadowed, so check each one here first.
  for (const p of opts.ports) await checkFree(p);
  await mkdir(join(opts.root, 'net'), { recursive: true, mode: 0o700 });
  await teardownNetwork(opts.root, opts.id); // a leftover of the same id would make `add` fail
  // Who set it up: a process killed with -9 leaves the namespace and pasta behind, and the
  // next command of any kind tears them down (sweepDeadNetworks) once nothing runs in it.
  await writeFile(ownerFile(opts.root, opts.id), formatOwner(selfOwner()), { mode: 0o600 });
  try {
    // Through the shared shell (util/commands): a fork of it costs far less than one of node.
    await runShort('ip', ['netns', 'add', name]);
  } catch (err) {
    throw new PolyarchError('START_FAILED', `creating network namespace ${name}: ${stderrOf(err)}`, {
      cause: err,
      exitCode: 125,
    });
  }
  const args = [
    '--config-net',
    '--netns',
    netnsPath,
    '--netns-only',
    '--runas',
    '0',
    '--quiet',
    '--no-dhcp',
    '--dns-forward',
    DNS_ADDRESS,
    '-T',
    'none',
    '-U',
    'none',
    '-t',
    pastaPorts(opts.ports, 'tcp'),
    '-u',
    pastaPorts(opts.ports, 'udp'),
    '-P',
    pid,
  ];
  try {
    await execFileP(PASTA, args, { timeout: 10_000 });
  } catch (err) {
    await teardownNetwork(opts.root, opts.id);
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? `${PASTA} is not installed (Debian package passt; or use --network host)`
        : stderrOf(err).replace(
            /^Failed to bind any port for '-[tu] ([^']*)'.*$/m,
            'host port $1 is not free',
          );
    throw new PolyarchError('START_FAILED', `connecting the container's network: ${why}`, {
      cause: err,
      exitCode: 125,
    });
  }
  return { netnsPath, resolvConf: await hostResolvConf(), ports: opts.ports };
}

function stderrOf(err: unknown): string {
  const e = err as { stderr?: unknown; output?: unknown };
  const text = String(e.stderr ?? e.output ?? '')
    .split('\n')
    .filter((l) => l.trim() !== '' && !/syslog/.test(l))
    .join('; ');
  return text || errorMessage(err);
}

/**
 * Whether process `pid` still runs: a zombie (exited, not yet reaped — daemons such as pasta and
 * the monitors are reaped by whatever pid 1 is here, whenever it gets to it) does not.
 */
export function pidRunning(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** Stop pasta and delete the netns of container `id`; idempotent. */
export async function teardownNetwork(root: string, id: string): Promise<void> {
  const pid = Number(await readFile(pidFile(root, id), 'utf8').catch(() => '0'));
  if (pid > 0 && pidRunning(pid)) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(netnsName(id))) {
      process.kill(pid, 'SIGTERM');
      // pasta exits within a few milliseconds: look soon, then less often (a second in all).
      for (
        let waited = 0, step = 1;
        waited < 1000 && pidRunning(pid);
        waited += step, step = Math.min(step * 2, 25)
      )
        await new Promise((r) => setTimeout(r, step));
      if (pidRunning(pid)) process.kill(pid, 'SIGKILL');
    }
  }
  await rm(pidFile(root, id), { force: true });
  // Only when it is there: a run tears down first (a leftover would make `add` fail), and
  // almost always finds nothing, which costs no process then.
  if (existsSync(join(NETNS_DIR, netnsName(id))))
    await runShort('ip', ['netns', 'del', netnsName(id)]).catch(() => undefined);
  await rm(ownerFile(root, id), { force: true });
}

function ownerFile(root: string, id: string): string {
  return join(root, 'net', `${shortId(id)}.owner`);
}

/** Processes other than `except` whose network namespace is the file `netns`. */
function netnsInUse(netns: string, except: number): boolean {
  let ino: number;
  try {
    ino = statSync(netns).ino;
  } catch {
    return false;
  }
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === except) continue;
    try {
      if (statSync(`/proc/${pid}/ns/net`).ino === ino) return true;
    } catch {
      // gone, or not ours to see
    }
  }
  return false;
}

/**
 * Tears down the networks whose owner (the process that set it up: a `run`, or a detached
 * container's monitor) is dead and in which nothing but pasta runs any more: what a kill -9
 * left. Returns their ids.
 */
export async function sweepDeadNetworks(root: string): Promise<string[]> {
  const names = await readdir(join(root, 'net')).catch(() => [] as string[]);
  const gone: string[] = [];
  for (const n of names) {
    if (!n.endsWith('.owner')) continue;
    const id12 = n.slice(0, -'.owner'.length);
    const owner = parseOwner(await readFile(join(root, 'net', n), 'utf8').catch(() => ''));
    if (!owner || ownerAlive(owner) !== false) continue;
    const pasta = Number(await readFile(pidFile(root, id12), 'utf8').catch(() => '0'));
    // A container just deleted (runc delete -f) may take a moment to leave the namespace.
    const netns = join(NETNS_DIR, netnsName(id12));
    let busy = netnsInUse(netns, pasta);
    for (let i = 0; busy && i < 20; i++) {
      await new Promise((r) => setTimeout(r, 50));
      busy = netnsInUse(netns, pasta);
    }
    if (busy) continue;
    await teardownNetwork(root, id12);
    gone.push(id12);
  }
  return gone;
}

/** Whether container `id` still has a network namespace (for tests and `rm`'s checks). */
export async function hasNetwork(id: string): Promise<boolean> {
  return (await readdir(NETNS_DIR).catch(() => [] as string[])).includes(netnsName(id));
}

/** Tear down the networks (pid files in `<root>/net`) whose id `keep` does not keep. */
export async function sweepNetworks(root: string, keep: (id12: string) => boolean): Promise<string[]> {
  const names = await readdir(join(root, 'net')).catch(() => [] as string[]);
  const gone: string[] = [];
  for (const n of names) {
    const id12 = n.replace(/\.pid$/, '');
    if (keep(id12)) continue;
    await teardownNetwork(root, id12);
    gone.push(id12);
  }
  return gone;
}

/** What a container run needs for `mode`: extra runContainer options and how to undo them. */
export interface ContainerNetwork {
  /** runContainer's `resolvConf` (bridge only). */
  resolvConf?: string;
  /** runContainer's `editSpec`: joins the namespace (bridge only). */
  editSpec?: (spec: { linux: { namespaces: { type: string }[] } }) => void;
  ports: PortMapping[];
  release(): Promise<void>;
}

/**
 * `host` and `none` need nothing here (spec.ts shares the host's network or makes a namespace
 * with only `lo`); `bridge` sets up a namespace connected by pasta (`setupNetwork`).
 */
export async function containerNetwork(
  root: string,
  id: string,
  mode: NetworkMode,
  ports: readonly PortMapping[],
): Promise<ContainerNetwork> {
  if (mode !== 'bridge') {
    if (ports.length > 0) throw badPublish(`published ports need --network bridge (not ${mode})`);
    return { ports: [], release: async () => undefined };
  }
  const net = await setupNetwork({ root, id, ports: [...ports] });
  return {
    resolvConf: net.resolvConf,
    editSpec: (spec) => {
      (spec.linux.namespaces as { type: string; path?: string }[]).push({
        type: 'network',
        path: net.netnsPath,
      });
    },
    ports: net.ports,
    release: () => teardownNetwork(root, id),
  };
}

/**
 * The ports of platform `index` of a run: `-p` mappings plus (`-P`) the image's exposed ports
 * on free host ports. When a matrix's platforms run together (`-d`, `--parallel`), the first
 * keeps the host ports asked for and every other platform gets free ones (printed by the CLI);
 * one after the other, each uses the same ports in turn.
 */
export function planPorts(
  requested: readonly PortMapping[],
  exposed: readonly PortMapping[],
  index: number,
  together: boolean,
): PortMapping[] {
  const own = requested.map((p) => (together && index > 0 ? { ...p, hostPort: 0 } : p));
  const seen = new Set(own.map((p) => `${p.containerPort}/${p.proto}`));
  return [...own, ...exposed.filter((p) => !seen.has(`${p.containerPort}/${p.proto}`))];
}
