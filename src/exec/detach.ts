/**
 * `run -d`: record a container and hand it to its own monitor process (monitor.ts), which
 * outlives this one; resolves once the container's process runs (or fails to start).
 *
 *   const rec = await startDetached({ root, name: 'web', image: 'busybox', platform: 'linux/arm64',
 *     manifestDigest, chain, imageConfig, spec: { config, args }, network: 'bridge', ports });
 *   rec.Id                                    // 64 hex, as docker prints it
 *
 * A failure to start is a PolyarchError with docker's exit code (125; 126/127 for a command
 * that cannot be executed / is not found); the record then stays as exited with State.Error
 * (docker keeps such a container too), unless `autoRemove`.
 */
import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ImageConfig } from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';
import {
  type ContainerRecord,
  checkName,
  defaultName,
  exitedRecord,
  type LaunchConfig,
  lookupContainer,
  logPath,
  makeContainerDir,
  newFullId,
  portBindings,
  processStartTime,
  readRecord,
  writeRecord,
  ZERO_TIME,
} from './containers.js';
import type { NetworkMode, PortMapping } from './network.js';

export interface DetachOptions {
  root: string;
  /** Default: docker's `adjective_name`. */
  name?: string;
  /** The image as the user named it (Config.Image). */
  image: string;
  manifestDigest: string;
  platform: string;
  chain: string[];
  imageConfig: ImageConfig['config'];
  spec: LaunchConfig['spec'];
  network: NetworkMode;
  ports: PortMapping[];
  autoRemove?: boolean;
  /** Compose: join this namespace (LaunchConfig.joinNetns), /etc/hosts, labels. */
  joinNetns?: LaunchConfig['joinNetns'];
  hosts?: string;
  labels?: Record<string, string>;
  /** Default: a new 64-hex id. */
  id?: string;
}

const MONITOR = join(dirname(fileURLToPath(import.meta.url)), 'monitor.js');

/** Entrypoint and Cmd as the container will run them (docker's Path and Args). */
function commandOf(cfg: ImageConfig['config'], spec: LaunchConfig['spec']): string[] {
  const ep = spec.entrypoint ?? cfg?.Entrypoint ?? [];
  const cleared = spec.entrypoint?.every((e) => e === '');
  const cmd = spec.args?.length ? spec.args : cleared ? [] : (cfg?.Cmd ?? []);
  return [...ep.filter((e) => e !== ''), ...cmd];
}

/** A new record (status created), its name checked and reserved by writing it. */
async function createRecord(opts: DetachOptions): Promise<ContainerRecord> {
  const root = resolve(opts.root);
  const id = opts.id ?? newFullId();
  let name = opts.name;
  if (name !== undefined) {
    checkName(name);
    const other = await lookupContainer(root, name).catch(() => undefined);
    if (other && other.Name === `/${name}`)
      throw new PolyarchError(
        'CONFLICT',
        `the container name "/${name}" is already in use by container "${other.Id}": remove (or rename) that container to reuse the name`,
        { exitCode: 125 },
      );
  } else name = await defaultName(root);
  const cfg = opts.imageConfig ?? {};
  const command = commandOf(cfg, opts.spec);
  const exposed: Record<string, object> = {};
  for (const k of Object.keys(cfg.ExposedPorts ?? {})) exposed[k] = {};
  for (const p of opts.ports) exposed[`${p.containerPort}/${p.proto}`] = {};
  const rec: ContainerRecord = {
    Id: id,
    Name: `/${name}`,
    Created: new Date().toISOString(),
    Path: command[0] ?? '',
    Args: command.slice(1),
    State: {
      Status: 'created',
      Running: false,
      ExitCode: 0,
      Pid: 0,
      StartedAt: ZERO_TIME,
      FinishedAt: ZERO_TIME,
      Error: '',
    },
    Image: opts.manifestDigest,
    Platform: opts.platform,
    LogPath: logPath(root, id),
    Config: {
      Hostname: opts.network === 'host' ? '' : id.slice(0, 12),
      Image: opts.image,
      Cmd: opts.spec.args?.length ? opts.spec.args : (cfg.Cmd ?? []),
      Entrypoint: opts.spec.entrypoint ?? cfg.Entrypoint ?? null,
      Env: [...(cfg.Env ?? []), ...(opts.spec.env ?? [])],
      WorkingDir: opts.spec.workingDir ?? cfg.WorkingDir ?? '',
      User: opts.spec.user ?? cfg.User ?? '',
      ExposedPorts: exposed,
      ...(cfg.StopSignal ? { StopSignal: cfg.StopSignal } : {}),
      ...(opts.labels || cfg.Labels ? { Labels: { ...(cfg.Labels ?? {}), ...(opts.labels ?? {}) } } : {}),
    },
    HostConfig: {
      NetworkMode: opts.network,
      PortBindings: portBindings(opts.ports) as ContainerRecord['HostConfig']['PortBindings'],
      AutoRemove: Boolean(opts.autoRemove),
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
    },
    NetworkSettings: { Ports: portBindings(opts.ports) },
    Polyarch: {
      MonitorPid: 0,
      Launch: {
        chain: opts.chain,
        spec: opts.spec,
        network: opts.network,
        ports: opts.ports,
        autoRemove: Boolean(opts.autoRemove),
        ...(opts.joinNetns ? { joinNetns: opts.joinNetns } : {}),
        ...(opts.hosts !== undefined ? { hosts: opts.hosts } : {}),
      },
    },
  };
  await makeContainerDir(root, id);
  await writeRecord(root, rec);
  return rec;
}

export async function startDetached(opts: DetachOptions): Promise<ContainerRecord> {
  const root = resolve(opts.root);
  const rec = await createRecord(opts);
  const id = rec.Id;
  const dir = join(root, 'containers', id);
  const errLog = await open(join(dir, 'monitor.log'), 'a');
  let message: { pid?: number; error?: string; exitCode?: number } | undefined;
  try {
    const child = spawn(process.execPath, [MONITOR, root, id], {
      detached: true, // its own session: a terminal's signals and this process's end leave it alone
      stdio: ['ignore', 'ignore', errLog.fd, 'pipe'],
    });
    const pipe = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    message = await new Promise((res) => {
      let text = '';
      pipe.on('data', (b: Buffer) => {
        text += b.toString();
        if (text.includes('\n')) res(JSON.parse(text.slice(0, text.indexOf('\n'))));
      });
      pipe.on('error', () => res(undefined));
      pipe.on('close', () => res(undefined));
      child.on('error', (e) => res({ error: `starting the monitor: ${e.message}`, exitCode: 125 }));
    });
    pipe.destroy();
    child.unref();
  } finally {
    await errLog.close();
  }
  if (message?.pid !== undefined) return (await readRecord(root, id)) ?? rec;
  const why =
    message?.error ?? "the container's monitor ended before the container started (see monitor.log)";
  throw new PolyarchError('START_FAILED', why, { exitCode: message?.exitCode ?? 125 });
}

/**
 * A container run in the foreground (`run` without `--rm` or `-d`) gets a record too, as in
 * docker, so `ps -a`, `inspect`, `wait` and `rm` see it; this process is its monitor. Its
 * output goes to the terminal, not to a log. `finish` records the exit.
 */
export async function recordForeground(
  opts: DetachOptions & { id: string },
): Promise<{ rec: ContainerRecord; finish(exitCode: number, error?: string): Promise<void> }> {
  const root = resolve(opts.root);
  const created = await createRecord(opts);
  const rec: ContainerRecord = {
    ...created,
    State: { ...created.State, Status: 'running', Running: true, StartedAt: new Date().toISOString() },
    Polyarch: {
      ...created.Polyarch,
      MonitorPid: process.pid,
      MonitorStart: processStartTime(process.pid) ?? '',
      Foreground: true,
    },
  };
  await writeRecord(root, rec);
  return {
    rec,
    finish: (exitCode, error = '') => writeRecord(root, exitedRecord(rec, exitCode, error)),
  };
}
