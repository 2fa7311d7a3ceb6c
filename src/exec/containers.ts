/**
 * Containers that outlive the command that started them (`run -d`): their records, and
 * `ps`/`stop`/`kill`/`rm`/`wait`/`logs` as a library.
 *
 *   const all = await listContainers(root);                  // reconciled with what still runs
 *   const c = await findContainer(root, 'web');              // id, unique id prefix or name
 *   await stopContainer(root, c, { timeoutS: 10 });
 *   await removeContainer(root, c, { force: true });
 *
 * State: `<root>/containers/<id>/container.json` — one JSON per container in docker inspect's
 * shape (Id, Name, State, Config, Platform, NetworkSettings.Ports, …), replaced atomically —
 * beside its log `<id>/log.jsonl` (docker's json-file format: one `{"log","stream","time"}`
 * object per line) and the monitor's own errors `<id>/monitor.log`. Each running container has
 * a monitor (monitor.ts): a small detached process (its own session) that runs runc, writes the
 * log and records the exit code, so nothing depends on the CLI that started it.
 *
 * Reconciling: a record that says running while its monitor is gone (killed, host crash) is
 * corrected when read: if runc's init process still lives, the container still runs (stop and
 * kill still work through runc); otherwise it is recorded as exited, with exit code 255 and a
 * State.Error saying the code is unknown, and whatever it held (runc state, rootfs mount,
 * network namespace) is released.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Snapshotter, unmountPath } from '../snapshot/overlay.js';
import { PolyarchError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { humanDuration } from '../util/gofmt.js';
import { formatPort, type NetworkMode, type PortMapping, pidRunning, teardownNetwork } from './network.js';
import type { SpecOptions } from './spec.js';

const execFileP = promisify(execFile);
const RUNC = process.env.POLYARCH_RUNC || 'runc';

export type ContainerStatus = 'created' | 'running' | 'exited';

/** What the monitor needs to start the container (not part of docker's shape). */
export interface LaunchConfig {
  /** Snapshot parents (the image's chain ids). */
  chain: string[];
  spec: Omit<SpecOptions, 'rootfs' | 'etcFiles' | 'user'> & { user?: string };
  network: NetworkMode;
  ports: PortMapping[];
  /** `--rm`: the monitor removes the container when it exits. */
  autoRemove: boolean;
  /**
   * Join this existing network namespace (a compose project's, compose/up.ts) instead of
   * making one; `ports` are then published by whoever made it.
   */
  joinNetns?: { path: string; resolvConf: string };
  /** The container's /etc/hosts (default: localhost and its hostname). */
  hosts?: string;
}

export interface ContainerRecord {
  Id: string;
  /** Docker's form: `/name`. */
  Name: string;
  Created: string;
  Path: string;
  Args: string[];
  State: {
    Status: ContainerStatus;
    Running: boolean;
    ExitCode: number;
    Pid: number;
    StartedAt: string;
    FinishedAt: string;
    Error: string;
  };
  /** The image's manifest digest. */
  Image: string;
  Platform: string;
  LogPath: string;
  Config: {
    Hostname: string;
    Image: string;
    Cmd: string[];
    Entrypoint: string[] | null;
    Env: string[];
    WorkingDir: string;
    User: string;
    ExposedPorts: Record<string, object>;
    StopSignal?: string;
    Labels?: Record<string, string>;
  };
  HostConfig: {
    NetworkMode: NetworkMode;
    PortBindings: Record<string, { HostIp: string; HostPort: string }[]>;
    AutoRemove: boolean;
    RestartPolicy: { Name: 'no'; MaximumRetryCount: 0 };
  };
  NetworkSettings: { Ports: Record<string, { HostIp: string; HostPort: string }[] | null> };
  /** polyarch's own: the monitor's pid and what it launches. */
  Polyarch: {
    /** The process that runs runc and records the exit: a monitor, or the `run` in the foreground. */
    MonitorPid: number;
    /** Its start time (/proc/PID/stat field 22), so a reused pid is not taken for it. */
    MonitorStart?: string;
    /** Run in the foreground: its output went to the terminal, not to the log. */
    Foreground?: boolean;
    Launch: LaunchConfig;
  };
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

export function containersDir(root: string): string {
  return join(resolve(root), 'containers');
}

function recordPath(root: string, id: string): string {
  return join(containersDir(root), id, 'container.json');
}

/** A new 64-hex container id (docker's form). */
export function newFullId(): string {
  return randomBytes(32).toString('hex');
}

const ADJECTIVES = [
  'brave',
  'calm',
  'eager',
  'fond',
  'keen',
  'lucid',
  'merry',
  'nifty',
  'quirky',
  'sharp',
  'tender',
  'vivid',
];
const NOUNS = [
  'babbage',
  'curie',
  'darwin',
  'euler',
  'gauss',
  'hopper',
  'lovelace',
  'noether',
  'pascal',
  'ritchie',
  'tesla',
  'turing',
];

/** Docker's default name shape (`adjective_scientist`), with a suffix when taken. */
export async function defaultName(root: string): Promise<string> {
  const taken = new Set((await readRecords(root)).map((r) => r.Name.slice(1)));
  for (let i = 0; ; i++) {
    const base = `${ADJECTIVES[randomBytes(1)[0]! % ADJECTIVES.length]}_${NOUNS[randomBytes(1)[0]! % NOUNS.length]}`;
    const name = i < 20 ? base : `${base}${i}`;
    if (!taken.has(name)) return name;
  }
}

/** Docker's name rule. */
export function checkName(name: string): void {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`,
      {
        exitCode: 125,
      },
    );
}

export function portBindings(ports: readonly PortMapping[]): ContainerRecord['NetworkSettings']['Ports'] {
  const out: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of ports)
    (out[`${p.containerPort}/${p.proto}`] ??= []).push({
      HostIp: p.hostIp ?? '0.0.0.0',
      HostPort: String(p.hostPort),
    });
  return out;
}

export async function writeRecord(root: string, rec: ContainerRecord): Promise<void> {
  await writeFileAtomic(recordPath(root, rec.Id), `${JSON.stringify(rec, null, 2)}\n`, {
    createParents: true,
  });
}

export async function readRecord(root: string, id: string): Promise<ContainerRecord | undefined> {
  try {
    return JSON.parse(await readFile(recordPath(root, id), 'utf8')) as ContainerRecord;
  } catch {
    return undefined;
  }
}

async function readRecords(root: string): Promise<ContainerRecord[]> {
  const ids = await readdir(containersDir(root)).catch(() => [] as string[]);
  const recs = await Promise.all(ids.filter((i) => /^[0-9a-f]{64}$/.test(i)).map((i) => readRecord(root, i)));
  return recs.filter((r): r is ContainerRecord => r !== undefined);
}

/** When process `pid` started (clock ticks after boot), if it exists. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether `pid` is still this container's monitor (not a reused pid). */
async function monitorAlive(rec: ContainerRecord): Promise<boolean> {
  const pid = rec.Polyarch.MonitorPid;
  if (!pidRunning(pid)) return false;
  if (rec.Polyarch.MonitorStart !== undefined) return processStartTime(pid) === rec.Polyarch.MonitorStart;
  const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmd.includes(rec.Id);
}

/** runc's view: the init pid when the container's init process still lives. */
async function runcInitPid(root: string, id: string): Promise<number | undefined> {
  try {
    const st = JSON.parse(await readFile(join(resolve(root), 'runc', id, 'state.json'), 'utf8')) as {
      init_process_pid?: number;
    };
    const pid = st.init_process_pid ?? 0;
    return pidRunning(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Release what a container whose monitor died still holds; keep its changes as a snapshot. */
async function releaseDead(root: string, id: string): Promise<void> {
  const r = resolve(root);
  await execFileP(RUNC, ['--root', join(r, 'runc'), 'delete', '-f', id]).catch(() => undefined);
  await unmountPath(join(r, 'exec', id, 'rootfs')).catch(() => undefined);
  await rm(join(r, 'exec', id), { recursive: true, force: true });
  await teardownNetwork(r, id);
  const snaps = await Snapshotter.open({ root: r });
  if ((await snaps.stat(`run:${id}`))?.kind === 'active')
    await snaps.commit(`run:${id}`, `container:${id}`).catch(() => undefined);
}

/** The record corrected for a monitor that died (see the module header). */
export async function reconcile(root: string, given: ContainerRecord): Promise<ContainerRecord> {
  // What the monitor wrote last, not what the caller read some time ago.
  const rec = (await readRecord(root, given.Id)) ?? given;
  if (rec.State.Status === 'exited') return rec;
  if (await monitorAlive(rec)) return rec;
  // The monitor may have just finished: its last write wins over our guess.
  const fresh = (await readRecord(root, rec.Id)) ?? rec;
  if (fresh.State.Status === 'exited') return fresh;
  if (rec.State.Status === 'running' && (await runcInitPid(root, rec.Id)) !== undefined) return fresh;
  if (rec.State.Status === 'created') {
    // Being started right now by a `run` still alive? Its bundle's owner says.
    const st = await stat(recordPath(root, rec.Id)).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs < 30_000) return fresh;
  }
  await releaseDead(root, rec.Id);
  const done = exitedRecord(
    fresh,
    255,
    fresh.State.Error || "the container's monitor ended unexpectedly; its exit code is unknown",
  );
  await writeRecord(root, done);
  return done;
}

/** `rec` as it is once its process has ended with `exitCode` (now, with `error` if any). */
export function exitedRecord(rec: ContainerRecord, exitCode: number, error = ''): ContainerRecord {
  return {
    ...rec,
    State: {
      ...rec.State,
      Status: 'exited',
      Running: false,
      Pid: 0,
      ExitCode: exitCode,
      FinishedAt: new Date().toISOString(),
      Error: error,
    },
  };
}

/** Every container, newest first, reconciled. */
export async function listContainers(root: string): Promise<ContainerRecord[]> {
  const recs = await Promise.all((await readRecords(root)).map((r) => reconcile(root, r)));
  return recs.sort((a, b) => b.Created.localeCompare(a.Created));
}

export function noSuchContainer(ref: string): PolyarchError {
  return new PolyarchError('NOT_FOUND', `No such container: ${ref}`);
}

/** The container `ref` names: full id, name (`/` optional), or a unique id prefix. */
export async function findContainer(root: string, ref: string): Promise<ContainerRecord> {
  const found = await lookupContainer(root, ref);
  if (!found) throw noSuchContainer(ref);
  return found;
}

export async function lookupContainer(root: string, ref: string): Promise<ContainerRecord | undefined> {
  const recs = await readRecords(root);
  const name = ref.startsWith('/') ? ref : `/${ref}`;
  let hit = recs.find((r) => r.Id === ref) ?? recs.find((r) => r.Name === name);
  if (!hit && /^[0-9a-f]+$/.test(ref)) {
    const byPrefix = recs.filter((r) => r.Id.startsWith(ref));
    if (byPrefix.length > 1)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `multiple containers found with id prefix ${ref}: give more of it`,
      );
    hit = byPrefix[0];
  }
  return hit && reconcile(root, hit);
}

async function runc(root: string, args: string[]): Promise<void> {
  await execFileP(RUNC, ['--root', join(resolve(root), 'runc'), ...args]);
}

/** Signal names and numbers docker accepts (`KILL`, `SIGKILL`, `9`) as runc's form. */
export function normalizeSignal(sig: string): string {
  const s = sig.toUpperCase().replace(/^SIG/, '');
  if (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 64) return s;
  const known = [
    'HUP',
    'INT',
    'QUIT',
    'ILL',
    'TRAP',
    'ABRT',
    'BUS',
    'FPE',
    'KILL',
    'USR1',
    'SEGV',
    'USR2',
    'PIPE',
    'ALRM',
    'TERM',
    'STKFLT',
    'CHLD',
    'CONT',
    'STOP',
    'TSTP',
    'TTIN',
    'TTOU',
    'URG',
    'XCPU',
    'XFSZ',
    'VTALRM',
    'PROF',
    'WINCH',
    'IO',
    'PWR',
    'SYS',
  ];
  if (!known.includes(s)) throw new PolyarchError('INVALID_ARGUMENT', `invalid signal: ${sig}`);
  return s;
}

export function isRunning(rec: ContainerRecord): boolean {
  return rec.State.Status === 'running' || rec.State.Status === 'created';
}

/** Send `signal` to the container's init process. Docker's error when it does not run. */
export async function killContainer(root: string, rec: ContainerRecord, signal = 'KILL'): Promise<void> {
  const sig = normalizeSignal(signal);
  const cur = await reconcile(root, rec);
  if (!isRunning(cur))
    throw new PolyarchError(
      'CONFLICT',
      `cannot kill container: ${rec.Id.slice(0, 12)}: container ${rec.Id} is not running`,
    );
  await runc(root, ['kill', rec.Id, sig]).catch((err: unknown) => {
    if ((cur.State.Status as string) === 'created') return; // not started yet: the monitor decides
    throw new PolyarchError(
      'IO',
      `killing container ${rec.Id.slice(0, 12)}: ${String((err as { stderr?: string }).stderr ?? err).trim()}`,
    );
  });
}

/** Resolves with the exited record, or undefined after `timeoutMs`. */
export async function waitExited(
  root: string,
  id: string,
  timeoutMs = Number.POSITIVE_INFINITY,
): Promise<ContainerRecord | undefined> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const rec = await readRecord(root, id);
    if (rec === undefined) return undefined;
    const cur = await reconcile(root, rec);
    if (cur.State.Status === 'exited') return cur;
    if (Date.now() >= end) return undefined;
    await new Promise((r) => setTimeout(r, Math.min(100, Math.max(1, end - Date.now()))));
  }
}

/** docker stop: the stop signal (default TERM), then KILL after `timeoutS` seconds (default 10). */
export async function stopContainer(
  root: string,
  rec: ContainerRecord,
  opts: { timeoutS?: number; signal?: string } = {},
): Promise<void> {
  const cur = await reconcile(root, rec);
  if (!isRunning(cur)) return; // docker: stopping a stopped container succeeds
  const timeoutMs = (opts.timeoutS ?? 10) * 1000;
  await runc(root, ['kill', rec.Id, normalizeSignal(opts.signal ?? rec.Config.StopSignal ?? 'TERM')]).catch(
    () => undefined,
  );
  if (timeoutMs > 0 && (await waitExited(root, rec.Id, timeoutMs))) return;
  await runc(root, ['kill', rec.Id, 'KILL']).catch(() => undefined);
  if (!(await waitExited(root, rec.Id, 15_000)))
    throw new PolyarchError('TIMEOUT', `container ${rec.Id.slice(0, 12)} did not stop`);
}

/** docker rm: a running container only with `force` (killed first). */
export async function removeContainer(
  root: string,
  rec: ContainerRecord,
  opts: { force?: boolean } = {},
): Promise<void> {
  const cur = await reconcile(root, rec);
  if (isRunning(cur)) {
    if (!opts.force)
      throw new PolyarchError(
        'CONFLICT',
        `cannot remove container "${rec.Name}": container is running: stop the container before removing or force remove`,
      );
    await runc(root, ['kill', rec.Id, 'KILL']).catch(() => undefined);
    if (!(await waitExited(root, rec.Id, 15_000)))
      throw new PolyarchError('TIMEOUT', `container ${rec.Id.slice(0, 12)} did not stop`);
  }
  // The monitor records the exit as its last step: let it end before its files go.
  for (let i = 0; i < 100 && (await monitorAlive(rec)); i++) await new Promise((r) => setTimeout(r, 20));
  await releaseDead(root, rec.Id); // normally nothing is left; after a crash, whatever is
  const snaps = await Snapshotter.open({ root });
  await snaps.remove(`container:${rec.Id}`);
  await snaps.remove(`run:${rec.Id}`);
  await rm(join(containersDir(root), rec.Id), { recursive: true, force: true });
}

/** Remove every stopped container; returns their ids (`prune`). */
export async function pruneContainers(root: string): Promise<string[]> {
  const gone: string[] = [];
  for (const rec of await listContainers(root)) {
    if (isRunning(rec)) continue;
    await removeContainer(root, rec);
    gone.push(rec.Id);
  }
  return gone;
}

// ---- presentation ------------------------------------------------------------------------------

/** docker ps's STATUS: `Up 5 seconds`, `Exited (0) 3 seconds ago`, `Created`. */
export function statusText(rec: ContainerRecord, now = Date.now()): string {
  const s = rec.State;
  if (s.Status === 'running') return `Up ${humanDuration(now - Date.parse(s.StartedAt))}`;
  if (s.Status === 'created') return 'Created';
  if (s.FinishedAt === ZERO_TIME) return 'Created';
  return `Exited (${s.ExitCode}) ${humanDuration(now - Date.parse(s.FinishedAt))} ago`;
}

/** One `ps` row with docker's `--format` field names. */
export interface PsRow {
  ID: string;
  Image: string;
  Platform: string;
  Command: string;
  CreatedAt: string;
  RunningFor: string;
  Status: string;
  State: ContainerStatus;
  Ports: string;
  Names: string;
}

export function psRow(rec: ContainerRecord, now = Date.now()): PsRow {
  const cmd = [...(rec.Path ? [rec.Path] : []), ...rec.Args].join(' ');
  const ports = rec.State.Status === 'running' ? rec.Polyarch.Launch.ports.map(formatPort).join(', ') : '';
  return {
    ID: rec.Id.slice(0, 12),
    Image: rec.Config.Image,
    Platform: rec.Platform,
    Command: `"${cmd.length > 20 ? `${cmd.slice(0, 19)}…` : cmd}"`,
    CreatedAt: rec.Created,
    RunningFor: `${humanDuration(now - Date.parse(rec.Created))} ago`,
    Status: statusText(rec, now),
    State: rec.State.Status,
    Ports: ports,
    Names: rec.Name.slice(1),
  };
}

/** docker inspect's view: the record without polyarch's launch data. */
export function inspectView(rec: ContainerRecord): Omit<ContainerRecord, 'Polyarch'> {
  const { Polyarch: _, ...view } = rec;
  return view;
}

export { ZERO_TIME };

/** `<id>/log.jsonl` entries. */
export interface LogEntry {
  log: string;
  stream: 'stdout' | 'stderr';
  time: string;
}

export function logPath(root: string, id: string): string {
  return join(containersDir(root), id, 'log.jsonl');
}

/** Ensure the container directory exists (before the monitor starts writing into it). */
export async function makeContainerDir(root: string, id: string): Promise<string> {
  const dir = join(containersDir(root), id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return dir;
}
