/**
 * Leases: what a running operation (pull, push, build, run, import, load, save) uses or is about to use, so garbage
 * collection (`rmi`, `prune`: ContentStore.gc, build/cache.ts pruneCache) keeps it. This is
 * containerd's lease model, on disk and between processes.
 *
 *   const lease = await takeLease(store.dir, 'pull');   // or store.lease('pull'); one per process and store, shared
 *   try {
 *     // every blob or snapshot this process looks at from now on is leased before it is
 *     // looked at (ContentStore.size/readBlob/openRead/commit, Snapshotter.stat call protect())
 *   } finally { await lease.release(); }
 *
 *   await withGcLock(store.dir, async (live) => { ...mark with live.content, sweep... });
 *
 * A lease is the file `<store>/leases/<pid>-<start>-<host>-<rand>.json`, a log of JSON lines
 * appended as resources are added: `{"owner","created"}` first, then `{"k":[kinds]}` (the
 * operations holding it; the last such line counts), `{"c":[digests],"s":[snapshot keys]}`.
 * Each add is one write(2) of whole lines; a reader ignores a last line without its newline
 * (a write in progress: its adder has not looked at those resources yet, see below). Its
 * owner is in the name, so the lease of a holder that died (kill -9) is recognised as
 * stale (util/lock.ts: a recycled pid does not pass for the dead holder); GC ignores and
 * removes it. A holder in another host or pid namespace cannot be judged from here: its lease
 * counts until it has been left untouched for a day.
 *
 * Not racy: GC holds `<store>/leases/gc.lock` from reading the leases until its sweep is done.
 * An operation adds a resource first (appends it to its lease file) and then, if a GC holds the
 * lock, waits until that GC is over; only then does it look at the resource (does
 * the blob exist? read it). Either GC read the lease after it was written and keeps the
 * resource, or GC read it before, and then it held the lock when the add was done, so the look
 * comes after its sweep and sees what it left. A resource may be leased before it exists (a
 * blob about to be committed, a snapshot about to be created). Adds within one process are
 * batched: those made while a write is in flight go into one next write. The children of a
 * leased image document that was read need no add of their own: GC keeps what a leased
 * document reaches (ContentStore.readBlob notes them with `cover`).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join, resolve } from 'node:path';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { acquireLock, formatOwner, ownerAlive, parseOwner, selfOwner } from '../util/lock.js';

/** What holds a lease; a live `build` lease also keeps cache mounts and the context memo. */
export type LeaseKind = 'pull' | 'push' | 'build' | 'run' | 'import' | 'load' | 'save';

/**
 * How long a lease add waits for a GC in progress. Default 10 min: GC holds the lock for its
 * mark and sweep (reading manifests, unlinking blobs, renaming snapshots away), never for the
 * removal of a snapshot's files.
 */
const GC_LOCK_WAIT_MS = 10 * 60_000;
/** A lease whose owner cannot be judged from here (another host or pid namespace) counts this long after its last write. */
const UNJUDGED_LEASE_MAX_AGE_MS = 24 * 3600_000;

/** One line of a lease file. */
interface LeaseLine {
  owner?: string;
  created?: number;
  k?: LeaseKind[];
  c?: string[];
  s?: string[];
}

/** The leases directory of a content store. */
export function leasesDir(storeDir: string): string {
  return join(resolve(storeDir), 'leases');
}

const gcLockPath = (dir: string): string => join(dir, 'gc.lock');

/** This process's lease on one store: resources only grow until it is released. */
export class Lease {
  readonly path: string;
  readonly #dir: string;
  readonly #created = Date.now();
  readonly #kinds = new Map<LeaseKind, number>();
  /** The kinds the file says now (its last `k` line). */
  #writtenKinds = '';
  #fd: number | undefined;
  /** Item (`c:<digest>`, `s:<key>`) → the write that records it. */
  readonly #writes = new Map<string, Promise<void>>();
  #batch: { items: string[]; done: Promise<void> } | undefined;
  #chain: Promise<void> = Promise.resolve();
  #released = false;

  constructor(dir: string) {
    this.#dir = dir;
    this.path = join(dir, `${formatOwner(selfOwner())}-${randomBytes(6).toString('hex')}.json`);
  }

  get kinds(): LeaseKind[] {
    return [...this.#kinds.keys()];
  }

  /** Leases blobs by digest (they need not exist yet). Resolves once GC is sure to see it. */
  protectContent(digests: readonly string[]): Promise<void> {
    return this.#add(digests.map((d) => `c:${d}`));
  }

  /**
   * Notes blobs that need no write of their own: children of a leased image document, which
   * GC keeps with it while it is present (call only after reading that document).
   */
  cover(digests: readonly string[]): void {
    for (const d of digests) if (!this.#writes.has(`c:${d}`)) this.#writes.set(`c:${d}`, Promise.resolve());
  }

  /** Leases snapshots by key (they need not exist yet). */
  protectSnapshots(keys: readonly string[]): Promise<void> {
    return this.#add(keys.map((k) => `s:${k}`));
  }

  /** @internal */
  async _hold(kind: LeaseKind): Promise<void> {
    const first = this.#kinds.size === 0;
    const had = this.#kinds.has(kind);
    this.#kinds.set(kind, (this.#kinds.get(kind) ?? 0) + 1);
    if (first || !had) await this.#add([]);
  }

  /** @internal Returns true when nothing holds the lease any more. */
  _drop(kind: LeaseKind): boolean {
    const n = (this.#kinds.get(kind) ?? 1) - 1;
    if (n > 0) this.#kinds.set(kind, n);
    else this.#kinds.delete(kind);
    return this.#kinds.size === 0;
  }

  #add(items: readonly string[]): Promise<void> {
    if (this.#released) return Promise.resolve();
    const waits: Promise<void>[] = [];
    const fresh = items.length === 0;
    for (const it of items) {
      const w = this.#writes.get(it);
      if (w) waits.push(w);
      else waits.push(this.#enqueue(it));
    }
    if (fresh) waits.push(this.#enqueue(undefined));
    return Promise.all(waits).then(() => undefined);
  }

  #enqueue(item: string | undefined): Promise<void> {
    if (!this.#batch) {
      const batch: { items: string[]; done: Promise<void> } = { items: [], done: Promise.resolve() };
      batch.done = this.#chain.then(async () => {
        if (this.#batch === batch) this.#batch = undefined;
        try {
          await this.#write(batch.items);
        } catch (err) {
          for (const it of batch.items) this.#writes.delete(it);
          throw err;
        }
      });
      this.#chain = batch.done.catch(() => undefined);
      this.#batch = batch;
    }
    const b = this.#batch;
    if (item !== undefined) {
      b.items.push(item);
      this.#writes.set(item, b.done);
    }
    return b.done;
  }

  /** Appends `items` (and the kinds, if they changed) to the lease file, then waits out a GC in progress. */
  async #write(items: string[]): Promise<void> {
    if (this.#released) return;
    let text = '';
    if (this.#fd === undefined)
      text += `${JSON.stringify({ owner: formatOwner(selfOwner()), created: this.#created } satisfies LeaseLine)}\n`;
    const kinds = JSON.stringify(this.kinds.sort());
    if (kinds !== this.#writtenKinds) text += `{"k":${kinds}}\n`;
    const c = items.filter((it) => it.startsWith('c:')).map((it) => it.slice(2));
    const sn = items.filter((it) => it.startsWith('s:')).map((it) => it.slice(2));
    if (c.length > 0 || sn.length > 0) text += `${JSON.stringify({ c, s: sn } satisfies LeaseLine)}\n`;
    // Synchronous, one write(2): the thread pool may be busy with layers for seconds, and a
    // build waits on each add. No fsync: a lease only matters while its holder runs, and a
    // crash ends the holder.
    try {
      if (this.#fd === undefined) {
        mkdirSync(this.#dir, { recursive: true });
        this.#fd = openSync(this.path, 'wx', 0o644);
      }
      const buf = Buffer.from(text);
      for (let off = 0; off < buf.length; ) off += writeSync(this.#fd, buf, off);
    } catch (err) {
      throw new PolyarchError('IO', `cannot write lease ${this.path}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    this.#writtenKinds = kinds;
    await gcOver(this.#dir);
  }

  /** @internal Removes the lease file: from now on GC may collect what only it protected. */
  async _remove(): Promise<void> {
    await this.#chain;
    this.#released = true;
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    await unlink(this.path).catch(() => undefined);
  }
}

export interface LeaseHandle {
  /** The shared lease of this process on that store. */
  readonly lease: Lease;
  /** Ends this hold; the lease file goes when the last hold of the process ends. Idempotent. */
  release(): Promise<void>;
}

const held = new Map<string, Lease>();

/**
 * Takes (or joins) this process's lease on the store at `storeDir`, for an operation of
 * `kind`; written to disk before this resolves. Holds of one process share one lease.
 */
export async function takeLease(storeDir: string, kind: LeaseKind): Promise<LeaseHandle> {
  const dir = leasesDir(storeDir);
  let lease = held.get(dir);
  if (!lease) {
    lease = new Lease(dir);
    held.set(dir, lease);
  }
  const l = lease;
  try {
    await l._hold(kind);
  } catch (err) {
    if (l._drop(kind) && held.get(dir) === l) {
      held.delete(dir);
      await l._remove();
    }
    throw err;
  }
  let done = false;
  return {
    lease: l,
    release: async () => {
      if (done) return;
      done = true;
      if (l._drop(kind) && held.get(dir) === l) {
        held.delete(dir);
        await l._remove();
      }
    },
  };
}

/** This process's lease on the store at `storeDir`, if it holds one (what protect() calls go to). */
export function heldLease(storeDir: string): Lease | undefined {
  return held.get(leasesDir(storeDir));
}

async function gcLock(dir: string): Promise<() => Promise<void>> {
  return acquireLock(gcLockPath(dir), { timeoutMs: GC_LOCK_WAIT_MS });
}

/**
 * Resolves once no GC that held the lock when this was called holds it still (see the module
 * header): at once when the lock is free, else when it is released, taken over by a later
 * GC (which reads the leases after) or left by a holder that died.
 */
async function gcOver(dir: string): Promise<void> {
  const path = gcLockPath(dir);
  const read = () => readFile(path, 'utf8').catch(() => undefined);
  let held: string | undefined;
  try {
    held = readFileSync(path, 'utf8');
  } catch {
    return; // no GC runs (the common case, answered without the thread pool)
  }
  if (held === undefined) return;
  const deadline = Date.now() + GC_LOCK_WAIT_MS;
  const since = Date.now();
  let delay = 2;
  for (;;) {
    if (held === undefined) return;
    const owner = parseOwner(held);
    if (owner && ownerAlive(owner) === false) return;
    // An empty lock is a GC between creating and writing it: it counts, unless it stays empty.
    if (held === '' && Date.now() - since > 5_000) return;
    if (Date.now() >= deadline)
      throw new PolyarchError(
        'IO',
        `timed out after ${GC_LOCK_WAIT_MS / 60_000} min waiting for a garbage collection to finish (lock ${path}${owner ? `, pid ${owner.pid}` : ''}; remove the file if that process is gone)`,
      );
    await sleep(delay + Math.random() * delay);
    delay = Math.min(delay * 2, 100);
    const now = await read();
    if (now !== held && held !== '') return; // released, or a later GC
    held = now;
  }
}

/** What the live leases of a store name, as GC reads them. */
export interface LiveLeases {
  content: Set<string>;
  snapshots: Set<string>;
  /** Kinds of the operations holding live leases (`build` keeps cache mounts). */
  kinds: Set<LeaseKind>;
  /** Pids of live holders (this host), for messages. */
  holders: number[];
  /** A live lease could not be read: keep everything. */
  unreadable: boolean;
}

/**
 * The live leases of the store at `storeDir`; the lease files of dead holders are removed
 * when `sweep`. Call it under withGcLock to act on the answer.
 */
export async function readLeases(storeDir: string, opts: { sweep?: boolean } = {}): Promise<LiveLeases> {
  const dir = leasesDir(storeDir);
  const out: LiveLeases = {
    content: new Set(),
    snapshots: new Set(),
    kinds: new Set(),
    holders: [],
    unreadable: false,
  };
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    if (!name.endsWith('.json') || name.startsWith('.')) continue;
    const path = join(dir, name);
    const owner = parseOwner(name);
    let alive = owner ? ownerAlive(owner) : undefined;
    if (alive === undefined) {
      const st = await stat(path).catch(() => undefined);
      alive = st !== undefined && Date.now() - st.mtimeMs < UNJUDGED_LEASE_MAX_AGE_MS;
    }
    if (!alive) {
      if (opts.sweep) await unlink(path).catch(() => undefined);
      continue;
    }
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
      out.unreadable = true;
      continue;
    }
    // Whole lines only: a last one without its newline is being written (see the header).
    const lines = text
      .slice(0, text.lastIndexOf('\n') + 1)
      .split('\n')
      .filter(Boolean);
    let kinds: LeaseKind[] = [];
    try {
      for (const l of lines) {
        const line = JSON.parse(l) as LeaseLine;
        if (line.k) kinds = line.k;
        for (const c of line.c ?? []) out.content.add(c);
        for (const k of line.s ?? []) out.snapshots.add(k);
      }
    } catch {
      out.unreadable = true;
    }
    for (const k of kinds) out.kinds.add(k);
    if (owner) out.holders.push(owner.pid);
  }
  return out;
}

/**
 * Runs `fn` with the store's live leases while no lease can change: GC's mark and sweep go
 * in `fn`. Dead holders' lease files are removed first.
 */
export async function withGcLock<T>(storeDir: string, fn: (live: LiveLeases) => Promise<T>): Promise<T> {
  const dir = leasesDir(storeDir);
  await mkdir(dir, { recursive: true });
  const release = await gcLock(dir);
  try {
    return await fn(await readLeases(storeDir, { sweep: true }));
  } finally {
    await release();
  }
}
