/**
 * OCI runtime spec (runc's config.json) for running a command in an image's root filesystem.
 *
 * Usage:
 *   const user = await resolveUser(rootfs, imageConfig.config?.User ?? '');
 *   const spec = buildSpec({ rootfs, config: imageConfig.config, args: ['uname', '-m'], user,
 *                            hostLimits: await readHostLimits(), etcFiles });
 * or `await createSpec(opts)`, which resolves the user and reads host limits itself.
 *
 * The result mirrors what `docker run` gives a container, minus seccomp/AppArmor profiles:
 * Docker's Entrypoint/Cmd rules, Env with a default PATH and HOSTNAME, the WorkingDir, the User
 * resolved from the rootfs's /etc/passwd and /etc/group, pid/ipc/uts/mount namespaces (plus a
 * network namespace with only `lo` for `network: 'none'`; the host network otherwise), Docker's
 * default capabilities, masked and read-only /proc and /sys paths, the standard /proc, /dev,
 * /dev/pts, /dev/shm, /dev/mqueue, /sys mounts, and rlimits clamped to the host's hard limits
 * (a spec may lower limits but runc fails when asked to raise them).
 */
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import type { ContainerConfig } from '../oci/types.js';
import { errorMessage, PolyarchError, UsageError } from '../util/errors.js';
import { secureJoin } from './stubs.js';

/** Docker's PATH when the image sets none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's default capability set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const;

/** Docker's default masked paths (moby oci/defaults.go). */
export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

/** Docker's default read-only paths. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export interface RuntimeMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface Rlimit {
  type: string;
  hard: number;
  soft: number;
}

/** The part of the OCI runtime spec polyarch writes (runtime-spec v1.0.2). */
export interface RuntimeSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<'bounding' | 'effective' | 'permitted', string[]>;
    rlimits: Rlimit[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: RuntimeMount[];
  linux: {
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
    cgroupsPath?: string;
    resources: { devices: { allow: boolean; access: string }[] };
  };
}

/** A user-requested bind (`-v SRC:DST[:ro]`) or tmpfs mount. */
export type MountRequest =
  | { type: 'bind'; source: string; destination: string; readonly?: boolean }
  | { type: 'tmpfs'; destination: string; options?: string[] };

/** Parse `-v SRC:DST[:ro|rw]`; SRC must be an absolute host path. */
export function parseVolume(spec: string): MountRequest {
  const parts = spec.split(':');
  const [source, destination, mode] = parts;
  if (parts.length < 2 || parts.length > 3 || !source || !destination)
    throw new UsageError(`invalid volume "${spec}": expected SRC:DST[:ro]`);
  if (!source.startsWith('/'))
    throw new UsageError(
      `invalid volume "${spec}": source must be an absolute host path (named volumes are not supported)`,
    );
  if (!destination.startsWith('/'))
    throw new UsageError(`invalid volume "${spec}": destination must be absolute`);
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw')
    throw new UsageError(`invalid volume "${spec}": mode must be ro or rw, not "${mode}"`);
  return { type: 'bind', source, destination, readonly: mode === 'ro' };
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** From /etc/passwd when found, else `/`. */
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

function parsePasswd(text: string): PasswdEntry[] {
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 7 && f[0] && !f[0].startsWith('#'))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' }));
}

function parseGroup(text: string): GroupEntry[] {
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 4 && f[0] && !f[0].startsWith('#'))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}

const NUMERIC = /^\d+$/;

/**
 * Resolve a Docker `User` (`''`, `uid`, `name`, `uid:gid`, `name:group`, …) against the
 * rootfs's /etc/passwd and /etc/group (the files, as runc's libcontainer/user does; no NSS).
 * A numeric uid needs no passwd entry; a name must have one. Additional gids are the groups
 * listing the user's name as a member.
 */
export function resolveUserFrom(user: string, passwdText: string, groupText: string): ResolvedUser {
  const [u = '', g] = user === '' ? ['0'] : user.split(':', 2);
  if (u === '') throw new PolyarchError('INVALID_ARGUMENT', `invalid user "${user}": user part is empty`);
  const passwd = parsePasswd(passwdText);
  const groups = parseGroup(groupText);
  const entry = NUMERIC.test(u) ? passwd.find((p) => p.uid === Number(u)) : passwd.find((p) => p.name === u);
  if (!NUMERIC.test(u) && entry === undefined)
    throw new PolyarchError('NOT_FOUND', `unable to find user ${u}: no matching entries in passwd file`);
  const uid = NUMERIC.test(u) ? Number(u) : entry!.uid;
  let gid = entry?.gid ?? 0;
  if (g !== undefined) {
    if (g === '') throw new PolyarchError('INVALID_ARGUMENT', `invalid user "${user}": group part is empty`);
    if (NUMERIC.test(g)) gid = Number(g);
    else {
      const ge = groups.find((x) => x.name === g);
      if (ge === undefined)
        throw new PolyarchError('NOT_FOUND', `unable to find group ${g}: no matching entries in group file`);
      gid = ge.gid;
    }
  }
  const additionalGids =
    entry === undefined
      ? []
      : [...new Set(groups.filter((x) => x.members.includes(entry.name) && x.gid !== gid).map((x) => x.gid))];
  return { uid, gid, additionalGids, home: entry?.home ?? '/' };
}

async function readOptional(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw new PolyarchError('IO', `reading ${path}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * `resolveUserFrom` with the files of `rootfs` (missing files count as empty); symlinks are
 * resolved inside the rootfs, never to the host's files.
 */
export async function resolveUser(rootfs: string, user: string): Promise<ResolvedUser> {
  const [passwd, group] = await Promise.all([
    secureJoin(rootfs, '/etc/passwd').then(readOptional),
    secureJoin(rootfs, '/etc/group').then(readOptional),
  ]);
  return resolveUserFrom(user, passwd, group);
}

/** Hard limits of this process, by RLIMIT_ name (`unlimited` = Infinity). */
export type HostLimits = Record<string, number>;

const LIMIT_NAMES: Record<string, string> = {
  'Max cpu time': 'RLIMIT_CPU',
  'Max file size': 'RLIMIT_FSIZE',
  'Max data size': 'RLIMIT_DATA',
  'Max stack size': 'RLIMIT_STACK',
  'Max core file size': 'RLIMIT_CORE',
  'Max resident set': 'RLIMIT_RSS',
  'Max processes': 'RLIMIT_NPROC',
  'Max open files': 'RLIMIT_NOFILE',
  'Max locked memory': 'RLIMIT_MEMLOCK',
  'Max address space': 'RLIMIT_AS',
  'Max file locks': 'RLIMIT_LOCKS',
  'Max pending signals': 'RLIMIT_SIGPENDING',
  'Max msgqueue size': 'RLIMIT_MSGQUEUE',
  'Max nice priority': 'RLIMIT_NICE',
  'Max realtime priority': 'RLIMIT_RTPRIO',
  'Max realtime timeout': 'RLIMIT_RTTIME',
};

/** Parse /proc/<pid>/limits into hard limits. */
export function parseLimits(text: string): HostLimits {
  const out: HostLimits = {};
  for (const line of text.split('\n').slice(1)) {
    const name = Object.keys(LIMIT_NAMES).find((n) => line.startsWith(n));
    if (name === undefined) continue;
    const fields = line.slice(name.length).trim().split(/\s+/);
    const hard = fields[1];
    if (hard !== undefined) out[LIMIT_NAMES[name]!] = hard === 'unlimited' ? Infinity : Number(hard);
  }
  return out;
}

export async function readHostLimits(): Promise<HostLimits> {
  return parseLimits(await readFile('/proc/self/limits', 'utf8'));
}

/** Open files: soft 1024 (select()-safe, as containerd), hard up to 1048576 (Docker's). */
const DEFAULT_RLIMITS: Rlimit[] = [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1048576 }];

/** Clamp requested limits to the host's hard limits (raising them would make runc fail). */
export function clampRlimits(wanted: Rlimit[], host: HostLimits): Rlimit[] {
  return wanted.map((r) => {
    const max = host[r.type] ?? Infinity;
    const hard = Math.min(r.hard, max);
    return { type: r.type, hard, soft: Math.min(r.soft, hard) };
  });
}

/** Files bind-mounted over /etc/{hosts,hostname,resolv.conf} (host paths). */
export interface EtcFiles {
  hosts?: string;
  hostname?: string;
  resolvConf?: string;
}

export interface SpecOptions {
  /** Root filesystem path (the mounted snapshot). */
  rootfs: string;
  /** The image's container config (`config` of the image config). */
  config?: ContainerConfig;
  /** Command override (`docker run IMAGE CMD...`); empty or absent = the image's Cmd. */
  args?: string[];
  /** Entrypoint override: `[]` or `['']` clears it; the image's Cmd is then dropped too (Docker). */
  entrypoint?: string[];
  /**
   * `K=V` overrides, applied over the image Env. A bare `K` is ignored: the CLI resolves
   * `-e K` from its own environment first, as Docker does.
   */
  env?: string[];
  /** Overrides WorkingDir (default: the image's, else `/`). */
  workingDir?: string;
  /** Already-resolved user; see `resolveUser`. Default root. */
  user?: ResolvedUser;
  /** Container hostname. Default `polyarch`. */
  hostname?: string;
  /** `host` (default) shares the host network; `none` gives a namespace with only `lo`. */
  network?: 'host' | 'none';
  mounts?: MountRequest[];
  etcFiles?: EtcFiles;
  /** Default false: output goes through pipes. */
  terminal?: boolean;
  /** Read-only root filesystem. Default false. */
  readonlyRootfs?: boolean;
  /** Default true: setuid binaries gain nothing. */
  noNewPrivileges?: boolean;
  /** Extra or replacement limits; all are clamped to `hostLimits`. */
  rlimits?: Rlimit[];
  /** The host's hard limits. Default: none known (no clamping); `createSpec` reads them. */
  hostLimits?: HostLimits;
  /** Extra environment that the image and `env` may override (e.g. build proxies). */
  baseEnv?: string[];
  /** Default: runc's own (`/<container id>` in each v1 hierarchy). */
  cgroupsPath?: string;
}

/** Docker's argv: (entrypoint override or image Entrypoint) + (args or image Cmd). */
export function resolveArgs(
  config: ContainerConfig | undefined,
  args?: string[],
  entrypoint?: string[],
): string[] {
  let ep: string[];
  let cmd: string[];
  if (entrypoint !== undefined) {
    ep = entrypoint.length === 1 && entrypoint[0] === '' ? [] : entrypoint;
    cmd = args ?? [];
  } else {
    ep = config?.Entrypoint ?? [];
    cmd = args !== undefined && args.length > 0 ? args : (config?.Cmd ?? []);
  }
  const argv = [...ep, ...cmd];
  if (argv.length === 0)
    throw new UsageError('no command specified: the image has no Entrypoint or Cmd and none was given');
  return argv;
}

/** Merge `K=V` lists, later lists overriding earlier ones by key, keeping first-seen order. */
export function mergeEnv(...lists: (string[] | undefined)[]): string[] {
  const m = new Map<string, string>();
  for (const list of lists)
    for (const kv of list ?? []) {
      const i = kv.indexOf('=');
      if (i <= 0) continue;
      m.set(kv.slice(0, i), kv);
    }
  return [...m.values()];
}

/** Absolute, normalised, without a trailing slash (`srv/app/` → `/srv/app`). */
function cleanPath(p: string): string {
  const n = posix.normalize(posix.join('/', p));
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

export function buildSpec(opts: SpecOptions): RuntimeSpec {
  const cfg = opts.config;
  const hostname = opts.hostname ?? 'polyarch';
  const user = opts.user ?? { uid: 0, gid: 0, additionalGids: [], home: '/' };
  let env = mergeEnv(opts.baseEnv, cfg?.Env, opts.env);
  if (!env.some((e) => e.startsWith('PATH='))) env = [`PATH=${DEFAULT_PATH}`, ...env];
  if (!env.some((e) => e.startsWith('HOSTNAME=')))
    env = [...env.slice(0, 1), `HOSTNAME=${hostname}`, ...env.slice(1)];
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);
  const caps = [...DEFAULT_CAPABILITIES];

  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (opts.network === 'none') namespaces.push({ type: 'network' });

  const mounts: RuntimeMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
    },
  ];
  const etc = opts.etcFiles ?? {};
  for (const [dst, src] of [
    ['/etc/resolv.conf', etc.resolvConf],
    ['/etc/hosts', etc.hosts],
    ['/etc/hostname', etc.hostname],
  ] as const)
    if (src !== undefined)
      mounts.push({ destination: dst, type: 'bind', source: src, options: ['rbind', 'rprivate'] });
  for (const m of opts.mounts ?? []) {
    if (m.type === 'bind')
      mounts.push({
        destination: cleanPath(m.destination),
        type: 'bind',
        source: m.source,
        options: ['rbind', 'rprivate', m.readonly ? 'ro' : 'rw'],
      });
    else
      mounts.push({
        destination: cleanPath(m.destination),
        type: 'tmpfs',
        source: 'tmpfs',
        options: m.options ?? ['nosuid', 'nodev', 'mode=1777'],
      });
  }

  const wanted = new Map(DEFAULT_RLIMITS.map((r) => [r.type, r]));
  for (const r of opts.rlimits ?? []) wanted.set(r.type, r);

  return {
    ociVersion: '1.0.2',
    process: {
      terminal: opts.terminal ?? false,
      user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
      args: resolveArgs(cfg, opts.args, opts.entrypoint),
      env,
      cwd: cleanPath(opts.workingDir || cfg?.WorkingDir || '/'),
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: clampRlimits([...wanted.values()], opts.hostLimits ?? {}),
      noNewPrivileges: opts.noNewPrivileges ?? true,
    },
    root: { path: opts.rootfs, readonly: opts.readonlyRootfs ?? false },
    hostname,
    mounts,
    linux: {
      namespaces,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
      ...(opts.cgroupsPath === undefined ? {} : { cgroupsPath: opts.cgroupsPath }),
      // Deny all device access but what runc always allows (null, zero, tty, random, …).
      resources: { devices: [{ allow: false, access: 'rwm' }] },
    },
  };
}

/**
 * `buildSpec` after resolving a user string (`SpecOptions.user` as text, against the rootfs)
 * and reading the host's limits.
 */
export async function createSpec(
  opts: Omit<SpecOptions, 'user'> & { user?: string | ResolvedUser },
): Promise<RuntimeSpec> {
  const userText = typeof opts.user === 'string' ? opts.user : undefined;
  const user =
    typeof opts.user === 'object'
      ? opts.user
      : await resolveUser(opts.rootfs, userText ?? opts.config?.User ?? '');
  return buildSpec({ ...opts, user, hostLimits: opts.hostLimits ?? (await readHostLimits()) });
}
