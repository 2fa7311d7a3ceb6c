/**
 * Run one command in a container with runc, natively or under QEMU user emulation.
 *
 * Usage:
 *   const active = await snapshots.prepare(`run-${id}`, chain);
 *   const { exitCode } = await runContainer({
 *     root: stateRoot, rootfs: active, platform: 'linux/arm64', canExecute,
 *     spec: { config: image.config, args: ['uname', '-m'], network: 'none' },
 *     stdout: (b) => log(b), stderr: (b) => log(b), signal: abortSignal,
 *   });
 *   await snapshots.commit(`run-${id}`, newChainId);   // a RUN step keeps the changes
 *
 * Foreign binaries run through binfmt_misc handlers registered with the F flag (the kernel
 * holds the interpreter open), so nothing is copied into the rootfs; `canExecute(platform)`
 * from the caller says beforehand whether an emulator works, and a clear error names the fix.
 *
 * The bundle lives in `<root>/exec/<id>/` (config.json, rootfs mount point and generated
 * /etc/hosts, /etc/hostname, /etc/resolv.conf); runc keeps its state in `<root>/runc`. The
 * bundle is mode 0700 under a 0700 `exec/` and config.json is 0600: it holds the process's
 * environment, secrets passed as env included. A process killed before cleaning up leaves a
 * marker that makes the next polyarch command of any kind remove its bundles (reap.ts,
 * cleanupStale). Whatever
 * happens (exit, error, abort, timeout, SIGINT/SIGTERM to this process) the container is
 * deleted, the rootfs unmounted and the bundle removed. SIGINT/SIGTERM received by this process
 * are forwarded to running containers; once they have all ended and been cleaned up, the signal
 * is re-raised if nobody else listens for it, so the process ends as it would have.
 *
 * Mount points runc has to create in the rootfs (e.g. /etc/resolv.conf in an image without one)
 * are removed afterwards when still empty, as BuildKit does, so they do not leak into layers.
 */
import { type ChildProcess, execFile, execFileSync, spawn, type StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { PlatformSpec } from '../oci/types.js';
import { type ActiveSnapshot, unmountPath } from '../snapshot/overlay.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { formatOwner, ownerAlive, parseOwner, pidAlive, selfOwner } from '../util/lock.js';
import { holdProcessState, VOLATILE_DIR_MODE } from './reap.js';
import { createSpec, type ResolvedUser, type RuntimeSpec, type SpecOptions } from './spec.js';
import { findStubs, removeStubs } from './stubs.js';

const execFileP = promisify(execFile);

/** The runc binary; `$POLYARCH_RUNC` overrides. */
const RUNC = process.env.POLYARCH_RUNC || 'runc';
/** After a forwarded SIGINT/SIGTERM, containers still running this long later are killed. */
const SIGNAL_GRACE_MS = 10_000;

export type OutputSink = 'inherit' | 'ignore' | ((chunk: Buffer) => void);

export interface RunContainerOptions {
  /** polyarch state root: runc state in `<root>/runc`, bundles in `<root>/exec/<id>`. */
  root: string;
  /**
   * The root filesystem: an active snapshot (mounted for the run at `<bundle>/rootfs`, then
   * unmounted) or the path of a directory that is already a complete rootfs.
   */
  rootfs: string | ActiveSnapshot;
  /** What to run; see spec.ts. `user` may be a Docker user string resolved in the rootfs. */
  spec: Omit<SpecOptions, 'rootfs' | 'user' | 'etcFiles'> & { user?: string | ResolvedUser };
  /** The image's platform; with `canExecute`, checked before anything starts. */
  platform?: string | PlatformSpec;
  /** Whether this host can execute binaries of a platform (natively or emulated). */
  canExecute?: (platform: string) => boolean;
  /** Container id. Default `polyarch-<12 hex>`. */
  id?: string;
  /** Default 'ignore' (/dev/null). */
  stdin?: 'inherit' | 'ignore' | string | Buffer | NodeJS.ReadableStream;
  /** Default 'inherit'. A function receives chunks as they come (for progress streaming). */
  stdout?: OutputSink;
  stderr?: OutputSink;
  /** Aborting kills the container, cleans up and rejects with code `ABORTED`. */
  signal?: AbortSignal;
  /** Kill after this many ms and reject with code `TIMEOUT`. Default none. */
  timeoutMs?: number;
  /** Forward SIGINT/SIGTERM received by this process to the container. Default true. */
  forwardSignals?: boolean;
  /** Contents of the container's /etc/hosts. Default: localhost entries and the hostname. */
  hosts?: string;
  /** Contents of /etc/resolv.conf. Default: the host's. */
  resolvConf?: string;
  /** Called with the spec before it is written, to adjust it. */
  editSpec?: (spec: RuntimeSpec) => void;
  /**
   * Network settings still being made (pasta starting: tens of milliseconds), called once the
   * rootfs is mounted and awaited before the spec is written, so both are made at once; its
   * `resolvConf` and `editSpec` take the place of the options of the same names.
   */
  network?: () => Promise<Pick<RunContainerOptions, 'resolvConf' | 'editSpec'>>;
}

export interface RunResult {
  id: string;
  /** The process's exit code; 128+N when it was killed by signal N. */
  exitCode: number;
}

/** `os/arch[/variant]` of a platform value. */
export function platformString(p: string | PlatformSpec): string {
  if (typeof p === 'string') return p;
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** Fail before starting anything when the platform cannot execute here. */
export function checkExecutable(
  platform: string | PlatformSpec,
  canExecute: (platform: string) => boolean,
): void {
  const p = platformString(platform);
  if (canExecute(p)) return;
  const arch = p.split('/')[1] ?? p;
  throw new PolyarchError('NO_EMULATOR', `no emulator for ${p}: run \`polyarch binfmt --install ${arch}\``);
}

export function newContainerId(): string {
  return `polyarch-${randomBytes(6).toString('hex')}`;
}

// ---- live containers: signal forwarding and last-resort cleanup --------------------------------

interface Live {
  id: string;
  runcRoot: string;
  forward: boolean;
  /** Synchronous cleanup for process exit: delete the container, unmount the rootfs. */
  cleanupSync: () => void;
}

const live = new Map<string, Live>();
let handlersInstalled = false;
let pendingSignal: NodeJS.Signals | undefined;
let graceTimer: NodeJS.Timeout | undefined;

function runcKill(l: Live, sig: string): void {
  execFile(RUNC, ['--root', l.runcRoot, 'kill', l.id, sig], () => undefined);
}

function onSignal(sig: NodeJS.Signals): void {
  const targets = [...live.values()].filter((l) => l.forward);
  if (targets.length === 0) {
    maybeReraise(sig);
    return;
  }
  const second = pendingSignal !== undefined;
  pendingSignal = sig;
  for (const l of targets) runcKill(l, second ? 'KILL' : sig);
  if (!graceTimer) {
    graceTimer = setTimeout(() => {
      for (const l of live.values()) if (l.forward) runcKill(l, 'KILL');
    }, SIGNAL_GRACE_MS);
    graceTimer.unref();
  }
}

/** After the last container of a forwarded signal is gone, end as the signal would have. */
function maybeReraise(sig: NodeJS.Signals): void {
  if (graceTimer) clearTimeout(graceTimer);
  graceTimer = undefined;
  pendingSignal = undefined;
  if (process.listenerCount(sig) > 1) return; // someone else decides what the signal means
  uninstallHandlers();
  process.kill(process.pid, sig);
}

function onExit(): void {
  for (const l of live.values()) {
    try {
      l.cleanupSync();
    } catch {
      // Best effort while exiting.
    }
  }
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('exit', onExit);
}

function register(l: Live): void {
  live.set(l.id, l);
  installHandlers();
}

function unregister(id: string): void {
  live.delete(id);
  if (live.size > 0) return;
  const sig = pendingSignal;
  if (sig !== undefined) maybeReraise(sig);
  else uninstallHandlers();
}

// ---- running ------------------------------------------------------------------------------------

function defaultHosts(hostname: string): string {
  return [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'ff00::0\tip6-mcastprefix',
    'ff02::1\tip6-allnodes',
    'ff02::2\tip6-allrouters',
    `127.0.1.1\t${hostname}`,
    '',
  ].join('\n');
}

function stdioFor(sink: OutputSink | undefined): 'inherit' | 'ignore' | 'pipe' {
  if (sink === undefined || sink === 'inherit') return 'inherit';
  if (sink === 'ignore') return 'ignore';
  return 'pipe';
}

async function runcQuiet(runcRoot: string, args: string[]): Promise<void> {
  await execFileP(RUNC, ['--root', runcRoot, ...args]).catch(() => undefined);
}

/** Run a container to completion; resolves with its exit code. See the module header. */
export async function runContainer(opts: RunContainerOptions): Promise<RunResult> {
  if (opts.platform !== undefined && opts.canExecute) checkExecutable(opts.platform, opts.canExecute);
  const id = opts.id ?? newContainerId();
  if (opts.signal?.aborted) throw abortedError(id, opts.signal);
  if (!/^[\w][\w+.-]*$/.test(id)) throw new PolyarchError('INVALID_ARGUMENT', `invalid container id "${id}"`);
  const root = resolve(opts.root);
  const runcRoot = join(root, 'runc');
  const bundle = join(root, 'exec', id);
  const mountTarget = join(bundle, 'rootfs');
  const logFile = join(bundle, 'runc.log');
  const snapshot = typeof opts.rootfs === 'string' ? undefined : opts.rootfs;
  const rootfs = typeof opts.rootfs === 'string' ? resolve(opts.rootfs) : mountTarget;
  let stubs: string[] = [];
  let child: ChildProcess | undefined;
  // Before anything is made: a kill from here on leaves a marker for the next command to act on.
  const releaseHold = await holdProcessState(root);

  const cleanupSync = () => {
    if (child?.exitCode === null) child.kill('SIGKILL');
    try {
      execFileSync(RUNC, ['--root', runcRoot, 'delete', '-f', id], { stdio: 'ignore' });
    } catch {}
    if (snapshot?.target !== undefined)
      try {
        execFileSync('umount', ['-l', snapshot.target], { stdio: 'ignore' });
      } catch {}
  };
  register({ id, runcRoot, forward: opts.forwardSignals ?? true, cleanupSync });

  try {
    // Independent steps run together: each is a thread-pool round trip, and a build waits on
    // them for every RUN. The owner file comes before the mount (cleanupStale reads it).
    await settled([
      mkdir(runcRoot, { recursive: true, mode: VOLATILE_DIR_MODE }),
      (async () => {
        await mkdir(mountTarget, { recursive: true, mode: VOLATILE_DIR_MODE });
        await writeFile(join(bundle, 'owner'), formatOwner(selfOwner()));
        if (snapshot) await snapshot.mount(mountTarget);
      })(),
    ]);

    const late = opts.network?.();
    const hostname = opts.spec.hostname ?? (opts.spec.network === 'none' ? id.slice(-12) : osHostname());
    const etcFiles = {
      hosts: join(bundle, 'hosts'),
      hostname: join(bundle, 'hostname'),
      resolvConf: join(bundle, 'resolv.conf'),
    };
    const [spec] = await settled([
      createSpec({ ...opts.spec, hostname, rootfs, etcFiles }),
      writeFile(etcFiles.hosts, opts.hosts ?? defaultHosts(hostname)),
      writeFile(etcFiles.hostname, `${hostname}\n`),
      (async () => {
        const resolvConf = (await late)?.resolvConf ?? opts.resolvConf;
        await writeFile(
          etcFiles.resolvConf,
          resolvConf ?? (await readFile('/etc/resolv.conf', 'utf8').catch(() => '')),
        );
      })(),
    ]);
    const net = await late;
    (net ? net.editSpec : opts.editSpec)?.(spec);
    const [, found] = await settled([
      // The environment (secrets passed as env included) is in here: owner-only.
      writeFile(join(bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 }),
      spec.root.readonly
        ? Promise.resolve([])
        : findStubs(
            rootfs,
            spec.mounts.map((m) => m.destination),
          ),
    ]);
    stubs = found;

    return await new Promise<RunResult>((resolveRun, rejectRun) => {
      const stdinOpt = opts.stdin ?? 'ignore';
      const stdio: StdioOptions = [
        stdinOpt === 'inherit' || stdinOpt === 'ignore' ? stdinOpt : 'pipe',
        stdioFor(opts.stdout),
        stdioFor(opts.stderr),
      ];
      const c = spawn(
        RUNC,
        ['--root', runcRoot, '--log', logFile, '--log-format', 'json', 'run', '--bundle', bundle, id],
        {
          stdio,
        },
      );
      child = c;
      if (typeof opts.stdout === 'function') c.stdout!.on('data', opts.stdout);
      if (typeof opts.stderr === 'function') c.stderr!.on('data', opts.stderr);
      if (c.stdin) {
        c.stdin.on('error', () => undefined); // the container may not read all of it
        if (typeof stdinOpt === 'string' || Buffer.isBuffer(stdinOpt)) c.stdin.end(stdinOpt);
        else if (typeof stdinOpt === 'object') (stdinOpt as NodeJS.ReadableStream).pipe(c.stdin);
      }

      let stopped: PolyarchError | undefined;
      const stop = (err: PolyarchError) => {
        if (stopped) return;
        stopped = err;
        // Kill again until runc is gone: a container still being created ignores the first kill.
        const kill = () => {
          if (c.exitCode !== null || c.signalCode !== null) return clearInterval(again);
          runcKill(live.get(id)!, 'KILL');
        };
        const again = setInterval(kill, 250);
        kill();
        // If runc itself hangs, do not wait for it forever.
        setTimeout(() => {
          clearInterval(again);
          if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        }, 3000).unref();
      };
      const onAbort = () => stop(abortedError(id, opts.signal!));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.signal?.aborted) onAbort(); // aborted while the bundle was being made
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(
              () =>
                stop(new PolyarchError('TIMEOUT', `container ${id}: timed out after ${opts.timeoutMs}ms`)),
              opts.timeoutMs,
            );

      c.on('error', (err) =>
        rejectRun(new PolyarchError('IO', `starting ${RUNC}: ${errorMessage(err)}`, { cause: err })),
      );
      c.on('close', (code, sig) => {
        opts.signal?.removeEventListener('abort', onAbort);
        if (timer) clearTimeout(timer);
        if (stopped) return rejectRun(stopped);
        const exitCode = code ?? 128 + signalNumber(sig);
        if (exitCode !== 1) return resolveRun({ id, exitCode });
        // Exit code 1 is also runc's own failure (e.g. the command does not exist): its log says.
        startFailure(logFile, id).then(
          (err) => (err ? rejectRun(err) : resolveRun({ id, exitCode })),
          rejectRun,
        );
      });
    });
  } finally {
    // Always: container gone, stubs removed, rootfs unmounted, bundle removed. `runc run`
    // removes its own state when the container ends, so `runc delete` (one more process on
    // every run) is needed only when that state is still there: runc killed, or failed early.
    if (
      await stat(join(runcRoot, id)).then(
        () => true,
        () => false,
      )
    )
      await runcQuiet(runcRoot, ['delete', '-f', id]);
    await removeStubs(rootfs, stubs).catch(() => undefined);
    if (snapshot) await snapshot.unmount();
    else await unmountPath(mountTarget).catch(() => undefined);
    await rm(bundle, { recursive: true, force: true });
    unregister(id);
    releaseHold();
  }
}

/**
 * Like Promise.all, but a failure is thrown only once every step has ended: the clean-up that
 * follows must not race a step still writing into the bundle.
 */
async function settled<T extends readonly unknown[]>(
  steps: [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  const results = await Promise.allSettled(steps);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

function abortedError(id: string, signal: AbortSignal): PolyarchError {
  return new PolyarchError('ABORTED', `container ${id}: aborted: ${errorMessage(signal.reason)}`, {
    cause: signal.reason,
  });
}

/**
 * The error runc logged when it could not start the process, if it did. Its exit code follows
 * Docker's: 127 when the command is not found, 126 when it cannot be executed, else 125.
 */
async function startFailure(logFile: string, id: string): Promise<PolyarchError | undefined> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  let msg: string | undefined;
  for (const line of text.split('\n')) {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === 'error' || entry.level === 'fatal') msg = entry.msg;
    } catch {
      // Not JSON: runc wrote something else; ignore.
    }
  }
  if (msg === undefined) return undefined;
  const why = msg.replace(/^runc run failed: /, '').replace(/^unable to start container process: /, '');
  const exitCode = /no such file or directory|not found/.test(why)
    ? 127
    : /permission denied|exec format error/.test(why)
      ? 126
      : 125;
  return new PolyarchError('START_FAILED', `container ${id}: cannot start the process: ${why}`, { exitCode });
}

function signalNumber(sig: NodeJS.Signals | null): number {
  if (sig === null) return 0;
  const n = (
    { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 } as Record<
      string,
      number
    >
  )[sig];
  return n ?? 0;
}

/** Bundles younger than this with no owner file may be being made right now. */
const OWNERLESS_GRACE_MS = 60_000;

/**
 * Clean up after processes that died without cleaning up (SIGKILL, power loss): for every
 * bundle in `<root>/exec/` whose owner process is gone, delete the container (killing it if it
 * still runs), unmount its rootfs and remove the bundle. Returns the ids cleaned. Their active
 * snapshots are the snapshotter's `removeOrphans()`'s business.
 */
export async function cleanupStale(root: string): Promise<string[]> {
  const execDir = join(resolve(root), 'exec');
  const runcRoot = join(resolve(root), 'runc');
  const names = await readdir(execDir).catch(() => [] as string[]);
  const cleaned: string[] = [];
  for (const id of names) {
    if (live.has(id)) continue;
    const bundle = join(execDir, id);
    // `<pid>-<start>-<host>` (a recycled pid is not the owner), or a bare pid (older bundles).
    const text = await readFile(join(bundle, 'owner'), 'utf8').catch(() => '');
    const o = parseOwner(text);
    const owner = o?.pid ?? (Number(text) || 0);
    if (o ? ownerAlive(o) !== false : owner > 0 && pidAlive(owner)) continue;
    if (owner === 0) {
      const st = await stat(bundle).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs < OWNERLESS_GRACE_MS) continue;
    }
    await runcQuiet(runcRoot, ['delete', '-f', id]);
    await unmountPath(join(bundle, 'rootfs'));
    await rm(bundle, { recursive: true, force: true });
    cleaned.push(id);
  }
  return cleaned;
}

/** Ids of containers runc knows in `<root>/runc` (for tests and `prune`). */
export async function listContainers(root: string): Promise<string[]> {
  try {
    const { stdout } = await execFileP(RUNC, ['--root', join(resolve(root), 'runc'), 'list', '-q']);
    return stdout.split('\n').filter(Boolean);
  } catch {
    return [];
  }
}
