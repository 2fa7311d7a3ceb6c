/**
 * Writing a finished tree INTO a destination directory, as BuildKit's local exporter does:
 *
 *   await mergeInto(stagedDir, '/out');   // stagedDir is consumed (its entries are moved)
 *
 * What the destination already holds and the tree does not is kept; an entry the tree has
 * replaces the destination's entry of the same path (a directory over a directory merges, a
 * directory keeps its place and takes the tree's mode, owner and times). Every entry is
 * written whole: moved with one rename from the staged tree (same file system), or, across
 * file systems (a mount point inside or at the destination), copied to a temp name in its
 * final directory (`.tmp-<name>-<pid>-<hex>`) and renamed over — so a failure leaves each path
 * as it was or as the image has it, never a partial file.
 *
 * Containment: writes only ever land in directories this walk has checked (lstat, never
 * followed) or made itself, starting from the destination. A symlink already in the
 * destination where the tree has an entry is replaced, never followed — `dest/etc -> /etc`
 * does not send the image's /etc over the host's. The tree's own symlinks are written as links
 * and nothing is written beneath them (a staged tree has no entries under a symlink).
 * Concurrent changes to the destination by another process while it is written are not
 * defended against.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Dirent, Stats } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  unlink,
  utimes,
} from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readAllXattrs, setXattrs, type XattrWrite } from '../../layer/index.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';

const execFileP = promisify(execFile);
const isRoot = process.getuid?.() === 0;

/** A temp name in `dir` for an entry about to replace `name` there. */
function tempIn(dir: string, name: string): string {
  return join(dir, `.tmp-${name.slice(0, 64)}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

interface MergeState {
  signal: AbortSignal | undefined;
  /** Copied (not moved) files by `dev:ino` of the staged inode → their destination path, for hardlinks. */
  copied: Map<string, string>;
  /** xattrs of the staged tree, read once when the first entry has to be copied. */
  xattrs?: Promise<Map<string, Map<string, Buffer>>>;
  stagedRoot: string;
  pendingXattrs: XattrWrite[];
}

async function applyMeta(path: string, st: Stats, symlinkEntry: boolean): Promise<void> {
  if (isRoot) await lchown(path, st.uid, st.gid);
  if (!symlinkEntry) await chmod(path, st.mode & 0o7777);
  if (symlinkEntry) await lutimes(path, st.atime, st.mtime);
  else await utimes(path, st.atime, st.mtime);
}

async function queueXattrs(s: MergeState, staged: string, dest: string): Promise<void> {
  s.xattrs ??= readAllXattrs(s.stagedRoot).catch(() => new Map<string, Map<string, Buffer>>());
  const m = (await s.xattrs).get(staged);
  if (m) for (const [name, value] of m) s.pendingXattrs.push({ path: dest, name, value });
}

/** Writes the non-directory `staged` at `target` in `dir` by copying, then renaming over. */
async function copyEntry(s: MergeState, staged: string, st: Stats, dir: string, name: string): Promise<void> {
  const target = join(dir, name);
  const tmp = tempIn(dir, name);
  try {
    const key = `${st.dev}:${st.ino}`;
    const first = st.isFile() && st.nlink > 1 ? s.copied.get(key) : undefined;
    if (first !== undefined) await link(first, tmp);
    else if (st.isFile()) {
      await copyFile(staged, tmp);
      await applyMeta(tmp, st, false);
    } else if (st.isSymbolicLink()) {
      await symlink(await readlink(staged), tmp);
      await applyMeta(tmp, st, true);
    } else {
      // Devices, fifos, sockets: Node has no mknod; cp makes the same kind of node.
      await execFileP('cp', ['-a', '--no-dereference', '--', staged, tmp]);
    }
    await rename(tmp, target);
    if (st.isFile() && st.nlink > 1 && first === undefined) s.copied.set(key, target);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  if (!st.isSymbolicLink()) await queueXattrs(s, staged, target);
}

async function mergeDir(s: MergeState, staged: string, dir: string): Promise<void> {
  const entries: Dirent[] = await readdir(staged, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    s.signal?.throwIfAborted();
    const from = join(staged, e.name);
    const target = join(dir, e.name);
    const st = await lstat(from);
    const have = await lstatOrUndefined(target);
    if (st.isDirectory()) {
      if (have?.isDirectory()) {
        await mergeDir(s, from, target);
        await applyMeta(target, st, false);
        continue;
      }
      if (have) await unlink(target); // a file or a symlink: replaced, never followed
      if (await moved(from, target)) continue;
      await mkdir(target);
      await mergeDir(s, from, target);
      await applyMeta(target, st, false);
      await queueXattrs(s, from, target);
      continue;
    }
    // A directory where the image has a file or link: the image's entry replaces it.
    if (have?.isDirectory()) await removeDir(target);
    if (await moved(from, target)) continue;
    await copyEntry(s, from, st, dir, e.name);
  }
}

/**
 * Removes a destination directory the image replaces with a file — but never one with a mount
 * point in it: `rm -r` would descend into the mounted file system (a bind of a host directory).
 */
async function removeDir(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8').catch(() => ''))
    .split('\n')
    .map((l) =>
      (l.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) =>
        String.fromCharCode(Number.parseInt(o, 8)),
      ),
    );
  const inside = mounts.find((m) => m === dir || m.startsWith(`${dir}/`));
  if (inside !== undefined)
    throw new PolyarchError(
      'IO',
      `writing ${dir}: the image has a file there, and the directory it would replace holds the mount point ${inside}: not removed`,
    );
  await rm(dir, { recursive: true, force: true });
}

/** One rename from the staged tree (atomic, replaces a file or symlink); false across file systems. */
async function moved(from: string, target: string): Promise<boolean> {
  try {
    await rename(from, target);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EXDEV') return false;
    throw err;
  }
}

/**
 * Moves (or copies) every entry of `staged` into the existing directory `dest`; see the
 * module comment. `dest` itself keeps its own mode, owner and times.
 */
export async function mergeInto(staged: string, dest: string, signal?: AbortSignal): Promise<void> {
  const st = await lstat(dest);
  if (!st.isDirectory())
    throw new PolyarchError('IO', `writing into ${dest}: it exists and is not a directory`);
  const s: MergeState = { signal, copied: new Map(), stagedRoot: staged, pendingXattrs: [] };
  try {
    await mergeDir(s, staged, dest);
    await setXattrs(s.pendingXattrs).catch(() => undefined);
  } catch (err) {
    throw err instanceof PolyarchError
      ? err
      : new PolyarchError('IO', `writing into ${dest}: ${errorMessage(err)}`, { cause: err });
  }
}
