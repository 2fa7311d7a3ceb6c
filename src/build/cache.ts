/**
 * The build cache as records: list them with sizes and last use (`du`), remove the unused ones
 * (`prune`), like `docker buildx du` / `docker buildx prune` over BuildKit's cache records.
 *
 *   const records = await listCacheRecords({ root });            // du
 *   const r = await pruneCache({ root, all: false, untilMs: 24 * 3600_000, keepBytes: 0 });
 *   // r.removed (records), r.bytes
 *
 * Records (committed snapshots of `<root>/snapshots`, plus cache mount dirs):
 * - `regular`: build step results `build:<key>` (the build cache). Pruned by default.
 * - `source.image`: base image layers keyed by chain id. Those an image still in the store needs
 *   are `shared` (BuildKit's records shared with the image store) and pruned only with `all`
 *   (running the image unpacks them again); the others are pruned by default.
 * - `container`: layers kept by `run` without `--rm` (`container:<id>`), like Docker's stopped
 *   containers: pruned only with `all`.
 * - `exec.cachemount`: `RUN --mount=type=cache` dirs (`<root>/build/cache-mounts/`): pruned only
 *   with `all` (they hold what users chose to keep between builds, e.g. package caches), and
 *   never while a build runs.
 * - `source.local`: the context checksum memo (`<root>/build/context-index.json`, context.ts),
 *   one record; pruned by default (it only saves re-hashing), never while a build runs.
 * This follows `buildx prune`, whose default keeps internal/frontend and image-shared records and
 * removes every other record not in use; `--all` removes everything not in use.
 *
 * In use, never removed: parents of active snapshots (a running build step, a `run` container,
 * a read-only view), snapshots mounted in this mount namespace, and snapshots a running
 * operation leases (content/leases.ts): a build holds a lease (`holdBuildLease`) for its whole
 * run, a `run` and a `pull` for theirs, and every snapshot key such a process looks up is
 * leased before it looks (snapshot/overlay.ts), so a cache hit, a base image layer or a layer
 * being exported stays. A lease of a process that died no longer counts. While a build holds
 * a lease, cache mounts and the context memo are in use too. A build marks each cache hit and
 * base image it uses (`markUsed`, the mtime of `<root>/build/cache-used/<snapshot id>` = "last
 * used"). Each removal is decided and made (a rename) under the store's GC lock, which lease
 * writes wait on, so nothing leased meanwhile is removed; the files are deleted after. Prunes
 * are serialised by `<root>/build/prune.lock`. Snapshots are removed children first, and a
 * snapshot any kept snapshot stacks on is kept.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ContentStore, stateRoot } from '../content/index.js';
import { heldLease, type LiveLeases, readLeases, takeLease, withGcLock } from '../content/leases.js';
import {
  type Descriptor,
  isIndexType,
  isManifestType,
  parseImageConfig,
  parseImageDocument,
} from '../oci/index.js';
import { chainIds, Snapshotter, snapshotId } from '../snapshot/index.js';
import { PolyarchError } from '../util/errors.js';
import { acquireLock } from '../util/lock.js';

export type CacheRecordType = 'regular' | 'source.image' | 'source.local' | 'container' | 'exec.cachemount';

export interface CacheRecord {
  /** Snapshot directory id (16 hex), or the cache mount's directory name. */
  id: string;
  /** Snapshot key (`build:…`, `sha256:…`, `container:…`), `cache-mount:<dir name>` or `context-index`. */
  key: string;
  type: CacheRecordType;
  /** Own bytes on disk (the snapshot's layer only, not its parents). */
  size: number;
  createdAt: Date;
  /** The last time a build reused it; undefined when never reused since it was made. */
  lastUsedAt: Date | undefined;
  inUse: boolean;
  /** A base layer an image in the store needs. */
  shared: boolean;
  /** Keys of the snapshots below, bottom-most first. */
  parents: string[];
}

export interface CacheOptions {
  /** polyarch state root. Default `stateRoot(env)`. */
  root?: string;
  env?: NodeJS.ProcessEnv;
  /** The image store, to tell shared base layers apart. Default: none (no layer is shared). */
  store?: ContentStore;
}

export interface PruneOptions extends CacheOptions {
  /** Also shared image layers, kept containers and cache mounts. Default false. */
  all?: boolean;
  /** Only records not used for this long (ms). Default 0 (any age). */
  untilMs?: number;
  /** Keep the most recently used records up to this many bytes in total. Default 0 (keep none). */
  keepBytes?: number;
  /** Now, for age filters. Default `Date.now()`. */
  now?: number;
}

export interface PruneResult {
  removed: CacheRecord[];
  bytes: number;
  /** Records the prune would have removed but a running operation uses (leases it). */
  kept: CacheRecord[];
}

/** How long a prune waits for another prune. Default 30 min: a prune of a big cache is slow. */
const PRUNE_LOCK_WAIT_MS = 30 * 60_000;

const rootOf = (o: CacheOptions): string => o.root ?? stateRoot(o.env);
const usedDir = (root: string): string => join(root, 'build', 'cache-used');
/** The store whose leases name this root's snapshots (storeDir of the same environment). */
const storeOf = (root: string): string => join(root, 'store');
const mountsDir = (root: string): string => join(root, 'build', 'cache-mounts');
const contextMemo = (root: string): string => join(root, 'build', 'context-index.json');

/**
 * Records that build steps reused `keys` now (their "last used" time), and leases them when
 * this process holds a lease. Errors of the marks are ignored.
 */
export async function markUsed(root: string, keys: readonly string[]): Promise<void> {
  await heldLease(storeOf(root))?.protectSnapshots(keys);
  const dir = usedDir(root);
  await mkdir(dir, { recursive: true }).catch(() => undefined);
  const now = new Date();
  for (const k of keys) {
    const p = join(dir, snapshotId(k));
    await utimes(p, now, now).catch(() => writeFile(p, '').catch(() => undefined));
  }
}

async function lastUsed(root: string, key: string): Promise<Date | undefined> {
  try {
    return (await stat(join(usedDir(root), snapshotId(key)))).mtime;
  } catch {
    return undefined;
  }
}

/**
 * Declares a build running until the returned release is called (this process's lease on
 * `<root>/store`, content/leases.ts): prune then keeps what the build leases, and its cache
 * mounts. Never waits for a prune to finish, only for a GC lock that is held briefly.
 */
export async function holdBuildLease(root: string): Promise<() => Promise<void>> {
  const h = await takeLease(storeOf(root), 'build');
  return () => h.release();
}

/** Chain ids of every image manifest reachable from the store's index (what `run` would unpack). */
export async function storeChainIds(store: ContentStore): Promise<Set<string>> {
  const out = new Set<string>();
  const seen = new Set<string>();
  const walk = async (desc: Descriptor): Promise<void> => {
    if (seen.has(desc.digest)) return;
    seen.add(desc.digest);
    if (!(await store.has(desc.digest))) return;
    if (isIndexType(desc.mediaType)) {
      for (const c of await store.children(desc)) await walk(c);
      return;
    }
    if (!isManifestType(desc.mediaType)) return;
    const doc = parseImageDocument(await store.readBlob(desc.digest), `manifest ${desc.digest}`);
    if (doc.kind !== 'manifest' || !(await store.has(doc.manifest.config.digest))) return;
    try {
      const cfg = parseImageConfig(await store.readBlob(doc.manifest.config.digest), `config ${desc.digest}`);
      for (const c of chainIds(cfg.rootfs.diff_ids)) out.add(c);
    } catch {
      // Not an image config (an artifact): it has no layers to unpack.
    }
  };
  for (const d of (await store.readIndex()).manifests) await walk(d);
  return out;
}

/** Bytes a directory tree uses (blocks; hard links once). */
async function dirUsage(dir: string): Promise<number> {
  let size = 0;
  const seen = new Set<number>();
  const walk = async (d: string): Promise<void> => {
    for (const ent of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, ent.name);
      const st = await lstat(p).catch(() => undefined);
      if (!st || seen.has(st.ino)) continue;
      seen.add(st.ino);
      size += st.blocks * 512;
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return size;
}

function recordType(key: string): CacheRecordType {
  if (key.startsWith('build:')) return 'regular';
  if (key.startsWith('container:')) return 'container';
  return 'source.image';
}

interface Survey {
  records: CacheRecord[];
  /** Keys of snapshots that must stay (in use, or stacked on by something that is). */
  pinned: Set<string>;
  /** Keys of records in use only because a running operation leases them. */
  leasedOnly: Set<string>;
}

/** Whether a live lease keeps `key`: it names it, or a lease could not be read. */
const leasedKey = (l: LiveLeases, key: string): boolean => l.unreadable || l.snapshots.has(key);
/** Whether live leases keep cache mounts and the context memo: a build runs. */
const building = (l: LiveLeases): boolean => l.unreadable || l.kinds.has('build');

async function survey(opts: CacheOptions, sweepLeases: boolean): Promise<Survey> {
  const root = rootOf(opts);
  const snapshotter = await Snapshotter.open({ root });
  const snaps = await snapshotter.list();
  const shared = opts.store ? await storeChainIds(opts.store) : new Set<string>();
  const leases = await readLeases(storeOf(root), { sweep: sweepLeases });
  const leasedOnly = new Set<string>();
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const pinned = new Set<string>();
  for (const s of snaps)
    if (s.kind === 'active') {
      pinned.add(s.key);
      for (const p of s.parents) pinned.add(p);
    }
  const records: CacheRecord[] = [];
  for (const s of snaps) {
    if (s.kind !== 'committed') continue;
    const createdAt = new Date(s.created);
    const used = await lastUsed(root, s.key);
    const leased = leasedKey(leases, s.key);
    const mounted = mountedIn(mountinfo, snapshotter, s.id);
    if (leased && !pinned.has(s.key) && !mounted) leasedOnly.add(s.key);
    const size = await snapshotter.usage(s.key).then(
      (u) => u.size,
      () => 0,
    );
    records.push({
      id: s.id,
      key: s.key,
      type: recordType(s.key),
      size,
      createdAt,
      lastUsedAt: used,
      inUse: pinned.has(s.key) || mounted || leased,
      shared: shared.has(s.key),
      parents: s.parents,
    });
  }
  for (const r of records)
    if (r.inUse && !leasedOnly.has(r.key)) for (const p of [r.key, ...r.parents]) pinned.add(p);
  // What a lease keeps stacks on what it names: leased too, for the count of kept records.
  for (const r of records)
    if (leasedOnly.has(r.key)) for (const p of r.parents) if (!pinned.has(p)) leasedOnly.add(p);
  for (const r of records) if (leasedOnly.has(r.key)) r.inUse = true;
  const mdir = mountsDir(root);
  for (const name of await readdir(mdir).catch(() => [] as string[])) {
    if (name.endsWith('.lock')) continue;
    const p = join(mdir, name);
    const st = await stat(p).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    records.push({
      id: name.slice(0, 16),
      key: `cache-mount:${name}`,
      type: 'exec.cachemount',
      size: await dirUsage(p),
      createdAt: st.birthtime.getTime() > 0 ? st.birthtime : st.ctime,
      lastUsedAt: st.mtime,
      inUse: building(leases),
      shared: false,
      parents: [],
    });
    if (building(leases)) leasedOnly.add(`cache-mount:${name}`);
  }
  const memo = await stat(contextMemo(root)).catch(() => undefined);
  if (memo)
    records.push({
      id: 'context-index',
      key: 'context-index',
      type: 'source.local',
      size: memo.blocks * 512,
      createdAt: memo.birthtime.getTime() > 0 ? memo.birthtime : memo.ctime,
      lastUsedAt: memo.mtime,
      inUse: building(leases),
      shared: false,
      parents: [],
    });
  if (memo && building(leases)) leasedOnly.add('context-index');
  return { records, pinned, leasedOnly };
}

/** Every build cache record, most recently used first. */
export async function listCacheRecords(opts: CacheOptions = {}): Promise<CacheRecord[]> {
  const { records } = await survey(opts, false);
  return records.sort((a, b) => lastTime(b) - lastTime(a));
}

const lastTime = (r: CacheRecord): number => Math.max(r.createdAt.getTime(), r.lastUsedAt?.getTime() ?? 0);

/** Which records `pruneCache` removes: pure, on a survey's records; see the module header. */
export function selectPrunable(records: readonly CacheRecord[], opts: PruneOptions): CacheRecord[] {
  const now = opts.now ?? Date.now();
  const all = opts.all ?? false;
  const untilMs = opts.untilMs ?? 0;
  const keepBytes = opts.keepBytes ?? 0;
  const eligible = (r: CacheRecord): boolean => {
    if (r.inUse) return false;
    if (untilMs > 0 && now - lastTime(r) < untilMs) return false;
    if (all) return true;
    return r.type === 'regular' || r.type === 'source.local' || (r.type === 'source.image' && !r.shared);
  };
  // Least recently used first, so keep-storage keeps the newest.
  const candidates = records.filter(eligible).sort((a, b) => lastTime(a) - lastTime(b));
  let total = records.reduce((n, r) => n + r.size, 0);
  const remove = new Set<string>();
  for (const r of candidates) {
    if (keepBytes > 0 && total <= keepBytes) break;
    remove.add(r.key);
    total -= r.size;
  }
  // A snapshot something kept stacks on stays.
  const byKey = new Map(records.map((r) => [r.key, r]));
  for (let changed = true; changed; ) {
    changed = false;
    for (const r of records)
      if (!remove.has(r.key)) for (const p of r.parents) if (remove.delete(p)) changed = true;
  }
  return [...remove].map((k) => byKey.get(k)!);
}

/**
 * Removes build cache records per `opts` (see the module header), children first; also drops
 * "last used" marks of snapshots that are gone. Records a running operation leases are kept
 * and returned as `kept`.
 */
export async function pruneCache(opts: PruneOptions = {}): Promise<PruneResult> {
  const root = rootOf(opts);
  await mkdir(join(root, 'build'), { recursive: true });
  const release = await acquireLock(join(root, 'build', 'prune.lock'), { timeoutMs: PRUNE_LOCK_WAIT_MS });
  try {
    const snapshotter = await Snapshotter.open({ root });
    await snapshotter.removeOrphans().catch(() => undefined);
    const s = await survey(opts, true);
    // All records, so keep-storage counts the whole cache; pinned ones are never chosen.
    const chosen = selectPrunable(s.records, opts).filter((r) => !s.pinned.has(r.key));
    // What would go but for the leases of running operations.
    const unleased = s.records.map((r) => (s.leasedOnly.has(r.key) ? { ...r, inUse: false } : r));
    const kept = selectPrunable(unleased, opts).filter(
      (r) => s.leasedOnly.has(r.key) && !s.pinned.has(r.key),
    );
    // Children (longer chains) first.
    chosen.sort((a, b) => b.parents.length - a.parents.length);
    const removed: CacheRecord[] = [];
    for (const r of chosen) {
      // Decided and hidden (renamed) under the GC lock: a lease taken meanwhile waits for it,
      // then finds the record gone; one taken before is seen here. Deleted after the lock.
      const outcome = await withGcLock(storeOf(root), async (live) => {
        if (r.type === 'exec.cachemount' || r.type === 'source.local') {
          if (building(live)) return 'leased';
          if (r.type === 'source.local') {
            await rm(contextMemo(root), { force: true });
            return async () => undefined;
          }
          const name = r.key.slice('cache-mount:'.length);
          const gone = await detachDir(root, join(mountsDir(root), name));
          await rm(join(mountsDir(root), `${name}.lock`), { force: true });
          return gone;
        }
        if (leasedKey(live, r.key)) return 'leased';
        if (!(await stillUnused(snapshotter, root, r))) return 'used';
        return snapshotter.detach(r.key);
      });
      if (outcome === 'leased') kept.push({ ...r, inUse: true });
      if (typeof outcome !== 'function') continue;
      await outcome();
      if (r.type !== 'exec.cachemount' && r.type !== 'source.local')
        await rm(join(usedDir(root), r.id), { force: true });
      removed.push(r);
    }
    await sweepUsedMarks(root, snapshotter);
    return { removed, bytes: removed.reduce((n, r) => n + r.size, 0), kept };
  } finally {
    await release();
  }
}

/**
 * Whether snapshot `id` of this snapshotter is a mount (or an overlay layer of one). By its
 * full path: snapshot ids are the same in every state root, so another root's mounts of the
 * same layer must not pin this one's.
 */
function mountedIn(mountinfo: string, snapshotter: Snapshotter, id: string): boolean {
  return mountinfo.includes(`${snapshotter.dir}/${id}/fs`);
}

/**
 * Moves `dir` out of view into `<root>/build/tmp/<pid>-rm-<rand>` (swept by later builds if
 * this process dies) and returns the deletion of it.
 */
async function detachDir(root: string, dir: string): Promise<() => Promise<void>> {
  const base = join(root, 'build', 'tmp');
  await mkdir(base, { recursive: true });
  const aside = join(base, `${process.pid}-rm-${randomBytes(4).toString('hex')}`);
  try {
    await rename(dir, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return async () => undefined;
    throw err;
  }
  return () => rm(aside, { recursive: true, force: true });
}

/** The last look before removing a snapshot: not reused since the survey, not mounted, no active child. */
async function stillUnused(snapshotter: Snapshotter, root: string, r: CacheRecord): Promise<boolean> {
  const used = await lastUsed(root, r.key);
  if ((used?.getTime() ?? 0) !== (r.lastUsedAt?.getTime() ?? 0)) return false;
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  if (mountedIn(mountinfo, snapshotter, r.id)) return false;
  for (const s of await snapshotter.list()) if (s.parents.includes(r.key)) return false;
  return true;
}

async function sweepUsedMarks(root: string, snapshotter: Snapshotter): Promise<void> {
  const ids = new Set((await snapshotter.list()).map((s) => s.id));
  for (const name of await readdir(usedDir(root)).catch(() => [] as string[]))
    if (!ids.has(name)) await rm(join(usedDir(root), name), { force: true });
}

/** Go-style duration (`24h`, `90m`, `1h30m`, `45s`) in ms, for `--filter until=`. */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * units[m[2]!]!;
    end = re.lastIndex;
  }
  if (text === '' || end !== text.length)
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid duration "${text}": expected e.g. 24h, 90m, 1h30m, 45s`,
    );
  return total;
}

/** A size like docker's (`512MB`, `10gb`, `1.5GiB`, `4096`; binary units as docker's RAMInBytes), in bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(text.trim());
  if (!m)
    throw new PolyarchError('INVALID_ARGUMENT', `invalid size "${text}": expected e.g. 512MB, 10GB, 4096`);
  const pow = ['', 'k', 'm', 'g', 't', 'p'].indexOf(m[2]!.toLowerCase());
  return Math.round(Number(m[1]) * 1024 ** pow);
}
