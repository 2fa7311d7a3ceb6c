/**
 * An inter-process lock file, for short critical sections such as rewriting index.json.
 *
 *   const release = await acquireLock('/store/index.json.lock');
 *   try { …read, modify, write atomically… } finally { await release(); }
 *
 * The lock is a file created with O_EXCL holding `<pid> <start> <token>`. A lock whose
 * holder is no longer alive on this host is stale (its holder was killed) and is broken.
 * `<start>` is the holder's start time from /proc, so a recycled pid does not keep a dead
 * holder's lock alive. Waiting is bounded: after `timeoutMs` the error names the lock file
 * and the pid holding it.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { PolyarchError } from '../util/errors.js';

export interface LockOptions {
  /** How long to wait for a live holder before failing. Default 30 s: index updates take milliseconds. */
  timeoutMs?: number;
}

/** True if a process with this pid exists on this host (EPERM means it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), which
 * with the pid identifies one process for the life of the host; '0' where /proc is absent.
 */
export function processStartTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? '0';
  } catch {
    return '0';
  }
}

let ownStart: string | undefined;
/** This process's identity for lock and temp file names: `<pid>-<start>`. */
export function selfId(): string {
  ownStart ??= processStartTime(process.pid);
  return `${process.pid}-${ownStart}`;
}

/** True if the process that wrote `pid` and `start` still runs (not merely a reuse of its pid). */
export function ownerAlive(pid: number, start: string): boolean {
  if (!pidAlive(pid)) return false;
  if (start === '0') return true;
  const now = processStartTime(pid);
  return now === '0' || now === start;
}

function holder(text: string): { pid: number; start: string } {
  const [pid, start] = text.split(' ');
  return { pid: Number.parseInt(pid ?? '', 10), start: /^\d+$/.test(start ?? '') ? start! : '0' };
}

/** Acquires the lock at `path`; resolves to a function that releases it. */
export async function acquireLock(path: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const content = `${selfId().replace('-', ' ')} ${randomBytes(8).toString('hex')}\n`;
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(content);
      } finally {
        await fh.close();
      }
      return async () => {
        // Only remove the lock if it is still ours (a stale-lock breaker may have taken it).
        const now = await readFile(path, 'utf8').catch(() => '');
        if (now === content) await unlink(path).catch(() => {});
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new PolyarchError('IO', `cannot create lock file ${path}: ${(err as Error).message}`, {
          cause: err,
        });
    }
    const held = await readFile(path, 'utf8').catch(() => undefined);
    if (held === undefined) continue; // released between our open and read
    const { pid, start } = holder(held);
    // An empty file is a holder between its create and its write: live unless it stays empty.
    const stale = held === '' ? await olderThan(path, 5_000) : !ownerAlive(pid, start);
    if (stale) {
      await breakStale(path, held);
      continue;
    }
    if (Date.now() >= deadline)
      throw new PolyarchError(
        'IO',
        `timed out after ${Math.round(timeoutMs / 1000)}s waiting for lock ${path} held by pid ${pid} (remove the file if that process is gone)`,
      );
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 100);
  }
}

async function olderThan(path: string, ms: number): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st !== undefined && Date.now() - st.mtimeMs > ms;
}

/**
 * Breaks a lock judged stale. Renaming it away is atomic, so only one breaker wins; if what
 * it took turns out not to be the stale lock it judged (another breaker already replaced it
 * with a live one), it is put back with link(), which never overwrites.
 */
async function breakStale(path: string, judged: string): Promise<void> {
  const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    await rename(path, aside);
  } catch {
    return; // someone else broke or released it
  }
  const took = await readFile(aside, 'utf8').catch(() => '');
  const h = holder(took);
  if (took !== judged && ownerAlive(h.pid, h.start)) await link(aside, path).catch(() => {});
  await unlink(aside).catch(() => {});
}
