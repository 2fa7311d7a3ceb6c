/**
 * Overlayfs snapshotter: layer filesystems stacked with the kernel's overlayfs.
 *
 * Usage:
 *   const snaps = await Snapshotter.open({ root: stateRoot });     // state in <root>/snapshots/
 *   await snaps.create(chainIdOfLayer1, [], async (fs) => extractLayer1Into(fs));
 *   await snaps.create(chainIdOfLayer2, [chainIdOfLayer1], async (fs) => extractLayer2Into(fs));
 *   const active = await snaps.prepare('run-xyz', [chainIdOfLayer1, chainIdOfLayer2]);
 *   await active.mount(target); ... await active.unmount();
 *   await snaps.commit('run-xyz', chainIdOfNewLayer);  // the upper dir becomes a committed snapshot
 *
 * A committed snapshot is a directory `<root>/snapshots/<id>/fs` holding ONE layer's content
 * (with overlay whiteouts, as the kernel writes them in an upper dir), plus `meta.json`. An active
 * snapshot is `<id>/fs` (the overlay upper dir) and `<id>/work` (overlay's work dir). `<id>` is a
 * short hash of the caller's key: keys are chain ids (`sha256:…`, whose colon overlay would read
 * as a separator) and short ids keep the mount options under the kernel's one-page (4096 bytes)
 * limit, together with relative paths from a `mount` run with cwd = `<root>/snapshots` (the trick
 * containerd uses).
 *
 * Parent lists are always given in layer order, bottom-most first (the order of an image's
 * `rootfs.diff_ids`); the snapshotter reverses them for overlay's `lowerdir` (top-most first).
 *
 * Crash safety: a snapshot is made in `tmp-<pid>-<rand>/` and renamed to its final name only when
 * complete, so a killed process never leaves a half-made snapshot under its final name;
 * `open()` sweeps temp dirs of dead processes. Creating the same key from two processes is
 * serialised by a lock file (`<id>.lock`, holding the owner's pid; stale locks of dead processes
 * are broken): the second waits, then reuses the first's result.
 *
 * Leases (content/leases.ts): while this process holds a lease on the state root's store
 * (`<root>/store`), every key it looks up (stat, has, create, prepare's parents, commit, paths)
 * is leased first, so `prune` (build/cache.ts) keeps the snapshots a running build or run uses.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { heldLease } from '../content/leases.js';
import { runShort } from '../util/commands.js';
import { mapLimit } from '../util/concurrency.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { acquireLock, pidAlive } from '../util/lock.js';

/** Kernel limit on the mount(2) data page, including the terminating NUL. */
const MOUNT_DATA_MAX = 4095;
/** Overlayfs rejects more lower layers than this (OVL_MAX_STACK). */
const MAX_LOWER_LAYERS = 500;
/** How long to wait for another process preparing the same snapshot (it may be extracting a big layer). */
const LOCK_WAIT_MS = 30 * 60_000;

export type SnapshotKind = 'committed' | 'active';

export interface SnapshotInfo {
  key: string;
  kind: SnapshotKind;
  /** Short directory name under `<root>/snapshots/`. */
  id: string;
  /** Keys of the snapshots below, bottom-most first. */
  parents: string[];
  /** Absolute path of the content dir (committed) or the overlay upper dir (active). */
  fs: string;
  created: string;
}

interface Meta {
  key: string;
  kind: SnapshotKind;
  parents: string[];
  readonly?: boolean;
  /** Active snapshots: the pid of the process that prepared it (for `removeOrphans`). */
  owner?: number;
  created: string;
}

export interface SnapshotterOptions {
  /** polyarch state root; snapshots live in `<root>/snapshots/`. */
  root: string;
}

export interface PrepareOptions {
  /** A read-only view: no upper dir, mounts read-only. Default false. */
  readonly?: boolean;
  /**
   * The key is new and this caller's alone (e.g. random): no other process can prepare it, so
   * its lock is skipped. Default false.
   */
  unique?: boolean;
}

/** Short, colon-free directory name for a key (16 hex chars of its sha256). */
export function snapshotId(key: string): string {
  if (key === '') throw new PolyarchError('INVALID_ARGUMENT', 'invalid snapshot key "": key is empty');
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Run mount/umount (through util/commands' shared shell: a build makes dozens of these calls);
 * errors carry the tool's output.
 */
async function run(cmd: string, args: string[], cwd?: string): Promise<void> {
  await runShort(cmd, args, cwd === undefined ? {} : { cwd });
}

/** Mount points currently listed in /proc/self/mountinfo (octal escapes decoded). */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) =>
      (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    );
}

export async function isMountPoint(path: string): Promise<boolean> {
  return (await mountPoints()).includes(resolve(path));
}

/** Unmount `target` if mounted; retries briefly on EBUSY (a process may still be exiting). */
export async function unmountPath(target: string): Promise<void> {
  const abs = resolve(target);
  for (let attempt = 0; ; attempt++) {
    if (!(await isMountPoint(abs))) return;
    try {
      await run('umount', [abs]);
      return;
    } catch (err) {
      if (attempt >= 20) throw err;
      await sleep(50);
    }
  }
}

let upperOptions: string[] | undefined;

/**
 * Options that keep an upper dir usable as a layer on its own: with `metacopy` a copied-up file
 * may hold only metadata (its data stays in the lower layer), and with `redirect_dir` a renamed
 * directory is a pointer into the lower layer. Both are off by default in most kernels; we ask
 * for off explicitly where the kernel knows the option (its module parameter exists), in case a
 * distribution turned them on.
 */
function selfContainedUpperOptions(): string[] {
  upperOptions ??= ['redirect_dir', 'metacopy']
    .filter((o) => existsSync(`/sys/module/overlay/parameters/${o}`))
    .map((o) => `${o}=off`);
  return upperOptions;
}

/** An active (writable, or read-only view) snapshot: an upper dir over committed parents. */
export class ActiveSnapshot {
  private mounted: string | undefined;

  constructor(
    private readonly snapshotsDir: string,
    readonly info: SnapshotInfo,
    /** Short ids of the parents, top-most first (overlay's lowerdir order). */
    private readonly lowerIds: string[],
    readonly readonly: boolean,
  ) {}

  get key(): string {
    return this.info.key;
  }
  /** The overlay upper dir: what the container changed. */
  get upper(): string {
    return this.info.fs;
  }
  get work(): string {
    return join(this.snapshotsDir, this.info.id, 'work');
  }
  /** Where it is mounted now, if it is. */
  get target(): string | undefined {
    return this.mounted;
  }

  /**
   * The mount(8) arguments, to run with cwd = `<root>/snapshots` (paths are relative to it).
   * Zero parents: a bind of the upper dir. One parent and read-only: a read-only bind. Else
   * overlay (with no upper when read-only; overlay then needs two lowers at least).
   */
  mountArgs(target: string): string[] {
    const abs = resolve(target);
    const lowers = this.lowerIds.map((id) => `${id}/fs`);
    if (this.readonly) {
      if (lowers.length === 0)
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          `read-only snapshot "${this.key}" has no parents to show`,
        );
      if (lowers.length === 1) return ['--bind', '-o', 'ro', lowers[0]!, abs];
      return ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lowers.join(':')}`, abs];
    }
    if (lowers.length === 0) return ['--bind', `${this.info.id}/fs`, abs];
    const data = [
      `lowerdir=${lowers.join(':')}`,
      `upperdir=${this.info.id}/fs`,
      `workdir=${this.info.id}/work`,
      ...selfContainedUpperOptions(),
    ].join(',');
    if (data.length > MOUNT_DATA_MAX)
      throw new PolyarchError(
        'UNSUPPORTED',
        `snapshot "${this.key}": overlay mount options are ${data.length} bytes for ${lowers.length} layers: the kernel limit is ${MOUNT_DATA_MAX}`,
      );
    return ['-t', 'overlay', 'overlay', '-o', data, abs];
  }

  /** Mount at `target` (an existing directory). */
  async mount(target: string): Promise<void> {
    if (this.mounted !== undefined)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `snapshot "${this.key}" is already mounted at ${this.mounted}`,
      );
    const args = this.mountArgs(target);
    await run('mount', args, this.snapshotsDir);
    // A read-only bind needs a remount to take the flag on older mount(8); harmless otherwise.
    if (this.readonly && args[0] === '--bind') await run('mount', ['-o', 'remount,bind,ro', resolve(target)]);
    this.mounted = resolve(target);
  }

  async unmount(): Promise<void> {
    if (this.mounted === undefined) return;
    await unmountPath(this.mounted);
    this.mounted = undefined;
  }
}

export class Snapshotter {
  /** `<root>/snapshots`. */
  readonly dir: string;
  /** `<root>/store`, whose leases name snapshots too. */
  readonly storeDir: string;

  private constructor(dir: string, storeDir: string) {
    this.dir = dir;
    this.storeDir = storeDir;
  }

  /** Open (creating if needed) the snapshot store and sweep temp dirs of dead processes. */
  static async open(opts: SnapshotterOptions): Promise<Snapshotter> {
    const dir = join(resolve(opts.root), 'snapshots');
    await mkdir(dir, { recursive: true });
    const s = new Snapshotter(dir, join(resolve(opts.root), 'store'));
    await s.sweep();
    return s;
  }

  private async sweep(): Promise<void> {
    for (const name of await readdir(this.dir)) {
      const m = /^tmp-(\d+)-/.exec(name);
      if (m && !pidAlive(Number(m[1]))) await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }

  private async readMeta(id: string): Promise<Meta | undefined> {
    try {
      return JSON.parse(await readFile(join(this.dir, id, 'meta.json'), 'utf8')) as Meta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new PolyarchError('IO', `reading snapshot ${id}: ${errorMessage(err)}`, { cause: err });
    }
  }

  private toInfo(id: string, meta: Meta): SnapshotInfo {
    return {
      key: meta.key,
      kind: meta.kind,
      id,
      parents: meta.parents,
      fs: join(this.dir, id, 'fs'),
      created: meta.created,
    };
  }

  /** Leases `keys` when this process holds a lease on the store (see the header); else nothing to do. */
  async protect(keys: readonly string[]): Promise<void> {
    await heldLease(this.storeDir)?.protectSnapshots(keys);
  }

  /** The snapshot stored under `key`, if any (leased first, see the header). */
  async stat(key: string): Promise<SnapshotInfo | undefined> {
    snapshotId(key);
    await this.protect([key]);
    return this.#stat(key);
  }

  async #stat(key: string): Promise<SnapshotInfo | undefined> {
    const id = snapshotId(key);
    const meta = await this.readMeta(id);
    if (meta === undefined) return undefined;
    if (meta.key !== key)
      throw new PolyarchError('INTERNAL', `snapshot id ${id} holds key "${meta.key}", not "${key}"`);
    return this.toInfo(id, meta);
  }

  async list(): Promise<SnapshotInfo[]> {
    const ids = (await readdir(this.dir)).filter((name) => /^[0-9a-f]{16}$/.test(name));
    // Every build lists them (removeOrphans): read the metas many at a time, not one by one.
    const metas = await mapLimit(ids, 16, (id) => this.readMeta(id));
    return ids.flatMap((id, i) => (metas[i] ? [this.toInfo(id, metas[i])] : []));
  }

  private async committed(key: string, role: string): Promise<SnapshotInfo> {
    const info = await this.stat(key);
    if (info === undefined) throw new PolyarchError('NOT_FOUND', `${role} snapshot "${key}" does not exist`);
    if (info.kind !== 'committed')
      throw new PolyarchError('INVALID_ARGUMENT', `${role} snapshot "${key}" is active, not committed`);
    return info;
  }

  /**
   * Hold `<id>.lock` while `fn` runs (util/lock.ts: a dead holder's lock is broken). The wait
   * is long because a holder may be extracting a large layer.
   */
  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const release = await acquireLock(join(this.dir, `${id}.lock`), { timeoutMs: LOCK_WAIT_MS });
    try {
      return await fn();
    } finally {
      await release();
    }
  }

  private async tempDir(): Promise<string> {
    const t = join(this.dir, `tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
    await mkdir(t);
    return t;
  }

  /**
   * Makes snapshot `id` appear whole or not at all: `fill(tmp)` makes its directories in a
   * temp dir, then its meta.json (from `meta()`, called once the content is there) is written
   * and the dir renamed into place. On failure the temp dir is removed.
   */
  private async publish(id: string, fill: (tmp: string) => Promise<void>, meta: () => Meta): Promise<Meta> {
    const tmp = await this.tempDir();
    try {
      await fill(tmp);
      const m = meta();
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(m));
      await rename(tmp, join(this.dir, id));
      return m;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Make a committed snapshot under `key` whose content `fill(fsDir)` writes (e.g. extracts a
   * layer); `parents` (bottom-most first) are recorded for `chain()`. If the key exists already,
   * or another process makes it meanwhile, `fill` is not called and the existing one is returned.
   */
  async create(
    key: string,
    parents: string[],
    fill: (fsDir: string) => Promise<void>,
  ): Promise<SnapshotInfo> {
    const have = await this.stat(key);
    if (have) return have;
    const id = snapshotId(key);
    return this.withLock(id, async () => {
      const again = await this.stat(key);
      if (again) return again;
      await Promise.all(parents.map((p) => this.committed(p, 'parent')));
      const meta = await this.publish(
        id,
        async (tmp) => {
          await mkdir(join(tmp, 'fs'), { mode: 0o755 });
          await fill(join(tmp, 'fs'));
        },
        () => ({ key, kind: 'committed', parents, created: new Date().toISOString() }),
      );
      return this.toInfo(id, meta);
    });
  }

  /**
   * A new active snapshot `key` over the committed `parents` (bottom-most first). Mount it with
   * `mount(target)`; its upper dir receives every change.
   */
  async prepare(key: string, parents: string[], opts: PrepareOptions = {}): Promise<ActiveSnapshot> {
    const id = snapshotId(key);
    // Top-most first, as overlayfs lists lowerdirs.
    const lowerIds = (await Promise.all(parents.map((p) => this.committed(p, 'parent'))))
      .map((i) => i.id)
      .reverse();
    if (lowerIds.length > MAX_LOWER_LAYERS)
      throw new PolyarchError(
        'UNSUPPORTED',
        `snapshot "${key}" has ${lowerIds.length} parents: overlayfs stacks at most ${MAX_LOWER_LAYERS}`,
      );
    const readonly = opts.readonly ?? false;
    const locked = <T>(fn: () => Promise<T>) => (opts.unique ? fn() : this.withLock(id, fn));
    return locked(async () => {
      if (await this.stat(key)) throw new PolyarchError('ALREADY_EXISTS', `snapshot "${key}" already exists`);
      const meta = await this.publish(
        id,
        async (tmp) => {
          await Promise.all([
            mkdir(join(tmp, 'fs'), { mode: 0o755 }),
            mkdir(join(tmp, 'work'), { mode: 0o700 }),
          ]);
        },
        () => ({
          key,
          kind: 'active',
          parents,
          readonly,
          owner: process.pid,
          created: new Date().toISOString(),
        }),
      );
      return new ActiveSnapshot(this.dir, this.toInfo(id, meta), lowerIds, readonly);
    });
  }

  /** A read-only view of `parents` (bottom-most first), e.g. to read files of an image. */
  view(key: string, parents: string[], opts: Omit<PrepareOptions, 'readonly'> = {}): Promise<ActiveSnapshot> {
    return this.prepare(key, parents, { ...opts, readonly: true });
  }

  /** Re-open an active snapshot by key (e.g. in another process). */
  async active(key: string): Promise<ActiveSnapshot> {
    const info = await this.stat(key);
    if (info === undefined || info.kind !== 'active')
      throw new PolyarchError('NOT_FOUND', `active snapshot "${key}" does not exist`);
    const meta = (await this.readMeta(info.id))!;
    const lowerIds = info.parents.map(snapshotId).reverse();
    return new ActiveSnapshot(this.dir, info, lowerIds, meta.readonly ?? false);
  }

  /**
   * Turn the (unmounted) active snapshot's upper dir into the committed snapshot `key`, whose
   * parents are the active's parents; the active snapshot is gone afterwards. If `key` exists
   * already (another build made the same layer), the existing one is kept and returned.
   */
  async commit(activeKey: string, key: string): Promise<SnapshotInfo> {
    const act = await this.stat(activeKey);
    if (act === undefined || act.kind !== 'active')
      throw new PolyarchError('NOT_FOUND', `active snapshot "${activeKey}" does not exist`);
    const actMeta = (await this.readMeta(act.id))!;
    if (actMeta.readonly)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `snapshot "${activeKey}" is a read-only view: nothing to commit`,
      );
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    if (mounts.includes(`upperdir=${act.id}/fs,`) || mounts.includes(`upperdir=${act.fs},`))
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `snapshot "${activeKey}" is still mounted: unmount it first`,
      );
    const id = snapshotId(key);
    const result = await this.withLock(id, async () => {
      const have = await this.stat(key);
      if (have) return have;
      const meta = await this.publish(
        id,
        (tmp) => rename(act.fs, join(tmp, 'fs')),
        () => ({ key, kind: 'committed', parents: act.parents, created: new Date().toISOString() }),
      );
      return this.toInfo(id, meta);
    });
    await this.removeId(act.id);
    return result;
  }

  /** Keys of the whole stack ending with committed `key`, bottom-most first. */
  async chain(key: string): Promise<string[]> {
    const info = await this.committed(key, 'requested');
    return [...info.parents, key];
  }

  /** Absolute fs dirs of `keys`, e.g. to read a layer's content. */
  async paths(keys: string[]): Promise<string[]> {
    return (await Promise.all(keys.map((k) => this.committed(k, 'requested')))).map((i) => i.fs);
  }

  /**
   * Remove a snapshot (committed or active, unmounted). The directory is first renamed to a
   * temp name, so it disappears from view atomically. Missing keys are not an error.
   */
  async remove(key: string): Promise<void> {
    await (await this.detach(key))();
  }

  /**
   * The first half of remove(): the snapshot disappears from view now (one rename); the
   * returned function deletes its files. For prune, which decides and renames under the GC
   * lock and deletes after. A missing key returns a no-op.
   */
  async detach(key: string): Promise<() => Promise<void>> {
    const info = await this.#stat(key);
    if (info === undefined) return async () => undefined;
    return this.detachId(info.id);
  }

  private async removeId(id: string): Promise<void> {
    await (await this.detachId(id))();
  }

  private async detachId(id: string): Promise<() => Promise<void>> {
    const tmp = join(this.dir, `tmp-${process.pid}-rm-${randomBytes(6).toString('hex')}`);
    try {
      await rename(join(this.dir, id), tmp);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return async () => undefined;
      throw err;
    }
    return () => rm(tmp, { recursive: true, force: true });
  }

  /**
   * Remove active snapshots whose preparing process has died and that are not mounted (left by
   * a killed build or run); returns their keys. Committed snapshots are never touched.
   */
  async removeOrphans(): Promise<string[]> {
    const removed: string[] = [];
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    for (const info of await this.list()) {
      if (info.kind !== 'active') continue;
      const meta = await this.readMeta(info.id); // again: it may have changed since the list
      if (meta?.owner === undefined || pidAlive(meta.owner)) continue;
      if (mounts.includes(`${info.id}/fs`)) continue;
      await this.removeId(info.id);
      removed.push(info.key);
    }
    return removed;
  }

  /** Bytes and inodes a snapshot's own directory uses (its layer, or its upper dir). */
  async usage(key: string): Promise<{ size: number; inodes: number }> {
    const info = await this.#stat(key);
    if (info === undefined) throw new PolyarchError('NOT_FOUND', `snapshot "${key}" does not exist`);
    let size = 0;
    let inodes = 0;
    const seen = new Set<number>();
    const walk = async (dir: string): Promise<void> => {
      for (const ent of await readdir(dir, { withFileTypes: true })) {
        const p = join(dir, ent.name);
        const st = await lstat(p);
        if (seen.has(st.ino)) continue; // hard links count once
        seen.add(st.ino);
        inodes++;
        size += st.blocks * 512;
        if (st.isDirectory()) await walk(p);
      }
    };
    await walk(info.fs);
    return { size, inodes };
  }

  /** True when `key` is stored (committed or active). */
  async has(key: string): Promise<boolean> {
    return (await this.stat(key)) !== undefined;
  }
}
