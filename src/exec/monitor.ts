/**
 * The monitor of one detached container (like containerd's shim or podman's conmon, kept
 * tiny): `node monitor.js <root> <id>`, started by `startDetached` (detach.ts) in its own
 * session, with fd 3 a pipe to the starting CLI.
 *
 * It prepares the container's snapshot, connects its network, runs it with runContainer
 * (runc.ts), and
 *   - once runc's init process exists, records State running/Pid/StartedAt and writes
 *     `{"pid":N}` to fd 3 — or `{"error":"…","exitCode":N}` when it could not start — and
 *     closes fd 3, so the CLI that started it can exit;
 *   - writes the container's stdout/stderr to its log (docker's json-file format);
 *   - when the container ends, releases the network, keeps the changes as the snapshot
 *     `container:<id>` (or, with --rm, removes everything) and records ExitCode/FinishedAt.
 * SIGTERM/SIGINT sent to the monitor are forwarded to the container (runContainer), which then
 * ends the normal way.
 */
import { closeSync, createWriteStream, writeSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Snapshotter } from '../snapshot/overlay.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import {
  type ContainerRecord,
  containersDir,
  exitedRecord,
  type LogEntry,
  logPath,
  processStartTime,
  readRecord,
  writeRecord,
} from './containers.js';
import { containerNetwork } from './network.js';
import { runContainer } from './runc.js';

function tell(message: object): void {
  try {
    writeSync(3, `${JSON.stringify(message)}\n`);
    closeSync(3);
  } catch {
    // The CLI is gone (killed): nobody to tell.
  }
}

/** Splits a stream into docker json-file entries, one per line. */
function logSink(write: (e: LogEntry) => void, stream: LogEntry['stream']) {
  let rest = '';
  const decoder = new TextDecoder();
  return {
    push(chunk: Buffer): void {
      const text = rest + decoder.decode(chunk, { stream: true });
      const lines = text.split('\n');
      rest = lines.pop()!;
      for (const l of lines) write({ log: `${l}\n`, stream, time: new Date().toISOString() });
    },
    flush(): void {
      if (rest) write({ log: rest, stream, time: new Date().toISOString() });
      rest = '';
    },
  };
}

async function main(rootArg: string, id: string): Promise<void> {
  const root = resolve(rootArg);
  let rec = await readRecord(root, id);
  if (!rec) return tell({ error: `container ${id}: no record`, exitCode: 125 });
  // Writes one after the other: a late "running" must never replace "exited".
  let saving = Promise.resolve();
  const save = (patch: (r: ContainerRecord) => ContainerRecord) =>
    (saving = saving.then(async () => {
      rec = patch(rec!);
      await writeRecord(root, rec);
    }));
  await save((r) => ({
    ...r,
    Polyarch: { ...r.Polyarch, MonitorPid: process.pid, MonitorStart: processStartTime(process.pid) ?? '' },
  }));
  // A signal sent to the monitor goes to the container (runContainer forwards it); listening
  // here keeps runContainer from re-raising it before the exit is recorded.
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);

  const launch = rec.Polyarch.Launch;
  const log = createWriteStream(logPath(root, id), { flags: 'a' });
  const write = (e: LogEntry) => log.write(`${JSON.stringify(e)}\n`);
  const out = logSink(write, 'stdout');
  const err = logSink(write, 'stderr');
  const snaps = await Snapshotter.open({ root });
  const key = `run:${id}`;
  let prepared = false;
  let told = false;
  let exitCode = 125;
  let error = '';
  let release = async () => undefined as unknown;
  try {
    const active = await snaps.prepare(key, launch.chain);
    prepared = true;
    const net = launch.joinNetns
      ? {
          resolvConf: launch.joinNetns.resolvConf,
          editSpec: (spec: { linux: { namespaces: { type: string; path?: string }[] } }) => {
            spec.linux.namespaces.push({ type: 'network', path: launch.joinNetns!.path });
          },
          release: async () => undefined,
        }
      : await containerNetwork(root, id, launch.network, launch.ports);
    release = net.release;
    const run = runContainer({
      root,
      id,
      rootfs: active,
      platform: rec.Platform,
      spec: { ...launch.spec, ...(rec.Config.Hostname ? { hostname: rec.Config.Hostname } : {}) },
      ...(net.resolvConf !== undefined ? { resolvConf: net.resolvConf } : {}),
      ...(net.editSpec ? { editSpec: net.editSpec } : {}),
      ...(launch.hosts !== undefined ? { hosts: launch.hosts } : {}),
      stdout: (b) => out.push(b),
      stderr: (b) => err.push(b),
    });
    // Started once runc's init process exists (or the container already ended normally).
    const statePath = join(root, 'runc', id, 'state.json');
    let ended = false;
    const started = (async () => {
      while (!ended) {
        const st = await readFile(statePath, 'utf8').then(
          (t) => JSON.parse(t) as { init_process_pid?: number },
          () => undefined,
        );
        if (st?.init_process_pid) return st.init_process_pid;
        await new Promise((r) => setTimeout(r, 20));
      }
      return 0;
    })();
    const onStart = async (pid: number) => {
      if (told) return;
      told = true;
      const now = new Date().toISOString();
      await save((r) => ({
        ...r,
        State: { ...r.State, Status: 'running', Running: true, Pid: pid, StartedAt: now },
      }));
      tell({ pid });
    };
    void started.then((pid) => (pid > 0 ? onStart(pid) : undefined));
    try {
      exitCode = (await run).exitCode;
      ended = true;
      if (!told) await onStart(0);
    } finally {
      ended = true;
    }
  } catch (cause) {
    error = errorMessage(cause);
    exitCode = cause instanceof PolyarchError && cause.exitCode !== 1 ? cause.exitCode : 125;
    if (!told) {
      told = true;
      tell({ error, exitCode });
    }
  } finally {
    out.flush();
    err.flush();
    await new Promise((r) => log.end(r));
    await release().catch(() => undefined);
    if (prepared) {
      if (launch.autoRemove) await snaps.remove(key).catch(() => undefined);
      else await snaps.commit(key, `container:${id}`).catch(() => undefined);
    }
  }
  if (launch.autoRemove) {
    await rm(join(containersDir(root), id), { recursive: true, force: true });
    return;
  }
  await save((r) => exitedRecord(r, exitCode, error));
}

const [rootArg, id] = process.argv.slice(2);
if (rootArg && id)
  main(rootArg, id).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`monitor ${id}: ${errorMessage(e)}\n`);
      tell({ error: errorMessage(e), exitCode: 125 });
      process.exit(1);
    },
  );
