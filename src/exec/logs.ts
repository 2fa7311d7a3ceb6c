/**
 * `logs [-f] [--tail N] [-t]` of a container: its json-file log (containers.ts), read from the
 * start (or the last N lines) and, with `follow`, read on as it grows until the container
 * has exited and everything it wrote has been read.
 *
 *   await readLogs(root, rec, { tail: 10, follow: true, write: (e) => out(e.stream, e.log) });
 */
import { open } from 'node:fs/promises';
import { type ContainerRecord, type LogEntry, logPath, readRecord, reconcile } from './containers.js';

export interface ReadLogsOptions {
  /** Only the last N lines first (default all). */
  tail?: number;
  follow?: boolean;
  write: (entry: LogEntry) => void;
  signal?: AbortSignal;
}

/** Poll interval while following. */
const FOLLOW_MS = 100;

export async function readLogs(root: string, rec: ContainerRecord, opts: ReadLogsOptions): Promise<void> {
  const fh = await open(logPath(root, rec.Id), 'r').catch(() => undefined);
  let pos = 0;
  let partial = '';
  const readNew = async (): Promise<LogEntry[]> => {
    if (!fh) return [];
    const entries: LogEntry[] = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      const lines = (partial + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
      partial = lines.pop()!;
      for (const l of lines) {
        try {
          entries.push(JSON.parse(l) as LogEntry);
        } catch {
          // A line cut by a crash: skip it.
        }
      }
    }
    return entries;
  };
  try {
    let first = await readNew();
    if (opts.tail !== undefined) first = opts.tail <= 0 ? [] : first.slice(-opts.tail);
    for (const e of first) opts.write(e);
    if (!opts.follow) return;
    for (;;) {
      if (opts.signal?.aborted) return;
      const cur = await reconcile(root, (await readRecord(root, rec.Id)) ?? rec);
      const exited = cur.State.Status === 'exited';
      for (const e of await readNew()) opts.write(e);
      if (exited) return; // the monitor closed the log before recording the exit
      await new Promise((r) => setTimeout(r, FOLLOW_MS));
    }
  } finally {
    await fh?.close();
  }
}
