/**
 * An inter-process lock file, for short critical sections such as rewriting index.json.
 *
 *   const release = await acquireLock('/store/index.json.lock');
 *   try { …read, modify, write atomically… } finally { await release(); }
 *
 * The lock is a file created with O_EXCL holding `<pid>-<start>-<host> <token>` (see
 * Owner). A lock whose holder no longer runs on this host is stale (its holder was killed)
 * and is broken; the start time keeps a recycled pid from passing for the dead holder.
 * Waiting is bounded: after `timeoutMs` the error names the lock file and its holder.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { link, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
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

/**
 * Who wrote a lock or temp file: pid, its start time (so a recycled pid is not mistaken for
 * the writer) and `host`, 8 hex digits naming the host and pid namespace — a pid is only
 * meaningful there (a store may be shared with a container or over NFS).
 */
export interface Owner {
  pid: number;
  start: string;
  host: string;
}

let self: Owner | undefined;
export function selfOwner(): Owner {
  if (!self) {
    let ns = '';
    try {
      ns = readlinkSync('/proc/self/ns/pid');
    } catch {}
    const host = createHash('sha256').update(`${hostname()}\0${ns}`).digest('hex').slice(0, 8);
    self = { pid: process.pid, start: processStartTime(process.pid), host };
  }
  return self;
}

/** `<pid>-<start>-<host>`: the prefix of temp file names and the first word of lock files. */
export function formatOwner(o: Owner): string {
  return `${o.pid}-${o.start}-${o.host}`;
}

/** Reads an owner from the start of `s` (a file name or lock content), if it has one. */
export function parseOwner(s: string): Owner | undefined {
  const m = /^(\d+)-(\d+)-([0-9a-f]{8})(?:[-\s]|$)/.exec(s);
  return m ? { pid: Number(m[1]), start: m[2]!, host: m[3]! } : undefined;
}

/**
 * Whether `o` still runs: true/false when it lived on this host and pid namespace,
 * undefined when that cannot be told from here.
 */
export function ownerAlive(o: Owner): boolean | undefined {
  if (o.host !== selfOwner().host) return undefined;
  if (!pidAlive(o.pid)) return false;
  if (o.start === '0') return true;
  const now = processStartTime(o.pid);
  return now === '0' || now === o.start;
}

/** Acquires the lock at `path`; resolves to a function that releases it. */
export async function acquireLock(path: string, opts: LockOptions = {}): Promise<() => Promise<void>> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const content = `${formatOwner(selfOwner())} ${randomBytes(8).toString('hex')}\n`;
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
    const owner = parseOwner(held);
    // An empty file is a holder between its create and its write: live unless it stays empty.
    // A holder elsewhere (another host or pid namespace) is never judged dead from here.
    const stale = owner ? ownerAlive(owner) === false : await olderThan(path, 5_000);
    if (stale) {
      await breakStale(path, held);
      continue;
    }
    if (Date.now() >= deadline)
      throw new PolyarchError(
        'IO',
        `timed out after ${Number((timeoutMs / 1000).toFixed(1))}s waiting for lock ${path} held by ${holderText(owner)} (remove the file if that process is gone)`,
      );
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 100);
  }
}

function holderText(o: Owner | undefined): string {
  if (!o) return 'an unknown process';
  return o.host === selfOwner().host ? `pid ${o.pid}` : `pid ${o.pid} on another host or pid namespace`;
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
  const h = parseOwner(took);
  if (took !== judged && (h === undefined || ownerAlive(h) !== false))
    await link(aside, path).catch(() => {});
  await unlink(aside).catch(() => {});
}
