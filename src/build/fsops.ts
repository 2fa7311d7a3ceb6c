/**
 * File operations of COPY/ADD/WORKDIR, done inside a mounted root filesystem (an active
 * snapshot's overlay mount, so the result is an overlay diff like RUN's).
 *
 *   await copyTree({ srcRoot, srcRel: 'src', rootfs: mountDir, dest: '/app/src', owner, filter });
 *
 * Destination paths are container paths resolved with `secureJoin` (symlinks in the image are
 * followed inside the rootfs only). Sources are real directories (the build context, or a
 * read-only view of a stage or image). A directory source copies its contents; modes and
 * modification times are kept; ownership is `owner` when given (COPY --chown, or 0:0 from the
 * context), else the source's own.
 */
import {
  copyFile,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readlink,
  rm,
  symlink,
  chmod,
} from 'node:fs/promises';
import { join, posix } from 'node:path';
import { secureJoin } from '../exec/stubs.js';
import { mapLimit } from '../util/concurrency.js';

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopyTreeOptions {
  /** Real directory the source path is relative to. */
  srcRoot: string;
  /** Source path relative to `srcRoot` ('' = the root itself). */
  srcRel: string;
  /** Mounted rootfs being written. */
  rootfs: string;
  /** Container path the source (or, for a directory, its contents) goes to. */
  dest: string;
  owner?: Owner;
  /** COPY --chmod: applied to every file and directory copied. */
  mode?: number;
  /** Return false to leave a source entry (relative to `srcRoot`) out. */
  filter?: (rel: string) => boolean;
}

async function lstatOrNull(p: string) {
  try {
    return await lstat(p);
  } catch {
    return null;
  }
}

/** mkdir -p of a container path inside `rootfs`; created directories get `owner`. */
/** Entries of one directory copied at once. */
const COPY_CONCURRENCY = 8;

export async function mkdirAll(rootfs: string, path: string, owner?: Owner, mode = 0o755): Promise<string> {
  const parts = posix.normalize(`/${path}`).split('/').filter(Boolean);
  let cur = '/';
  let host = rootfs;
  for (const p of parts) {
    cur = posix.join(cur, p);
    host = await secureJoin(rootfs, cur);
    const st = await lstatOrNull(host);
    if (st?.isDirectory()) continue;
    if (st) await rm(host, { force: true });
    await mkdir(host, { mode });
    await chmod(host, mode);
    if (owner) await lchown(host, owner.uid, owner.gid);
  }
  return host;
}

async function copyEntry(src: string, dst: string, opts: CopyTreeOptions): Promise<boolean> {
  const st = await lstat(src);
  const have = await lstatOrNull(dst);
  if (st.isDirectory()) {
    if (have && !have.isDirectory()) await rm(dst, { force: true });
    if (!have?.isDirectory()) await mkdir(dst);
  } else {
    if (have) await rm(dst, { recursive: true, force: true });
    if (st.isSymbolicLink()) await symlink(await readlink(src), dst);
    else if (st.isFile()) await copyFile(src, dst);
    else return false; // devices, sockets, fifos: not copied (BuildKit copies them; rare in contexts)
  }
  const owner = opts.owner ?? { uid: st.uid, gid: st.gid };
  await lchown(dst, owner.uid, owner.gid);
  if (!st.isSymbolicLink()) await chmod(dst, opts.mode ?? st.mode & 0o7777);
  await lutimes(dst, st.atime, st.mtime);
  return st.isDirectory();
}

/** Copies one source (file, symlink or directory tree) to a container path. */
export async function copyTree(opts: CopyTreeOptions): Promise<void> {
  const srcTop = join(opts.srcRoot, opts.srcRel);
  const st = await lstat(srcTop);
  const destHost = st.isDirectory()
    ? await mkdirAll(opts.rootfs, opts.dest, opts.owner)
    : await (async () => {
        await mkdirAll(opts.rootfs, posix.dirname(posix.normalize(`/${opts.dest}`)), opts.owner);
        return secureJoin(opts.rootfs, opts.dest);
      })();
  if (!st.isDirectory()) {
    await copyEntry(srcTop, destHost, opts);
    return;
  }
  const dirTimes: [string, Date, Date][] = [];
  // The entries of a directory are copied a few at a time: each is a handful of file system
  // calls, all thread-pool round trips, and a build waits on them.
  const walk = async (rel: string, destPath: string): Promise<void> => {
    const names = (await readdir(join(opts.srcRoot, rel))).sort();
    await mapLimit(names, COPY_CONCURRENCY, async (name) => {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      if (opts.filter && !opts.filter(childRel)) {
        const cst = await lstat(join(opts.srcRoot, childRel));
        // Filtered directories may still hold re-included entries (`!` patterns): look inside.
        if (!cst.isDirectory()) return;
        const childDest = posix.join(destPath, name);
        await walkFiltered(childRel, childDest);
        return;
      }
      const childDest = posix.join(destPath, name);
      const host = await secureJoin(opts.rootfs, childDest);
      if (await copyEntry(join(opts.srcRoot, childRel), host, opts)) {
        await walk(childRel, childDest);
        const s = await lstat(join(opts.srcRoot, childRel));
        dirTimes.push([host, s.atime, s.mtime]);
      }
    });
  };
  const walkFiltered = async (rel: string, destPath: string) => {
    for (const name of (await readdir(join(opts.srcRoot, rel))).sort()) {
      const childRel = `${rel}/${name}`;
      const cst = await lstat(join(opts.srcRoot, childRel));
      const childDest = posix.join(destPath, name);
      if (opts.filter && !opts.filter(childRel)) {
        if (cst.isDirectory()) await walkFiltered(childRel, childDest);
        continue;
      }
      await mkdirAll(opts.rootfs, destPath, opts.owner);
      const host = await secureJoin(opts.rootfs, childDest);
      if (await copyEntry(join(opts.srcRoot, childRel), host, opts)) await walk(childRel, childDest);
    }
  };
  await walk(opts.srcRel, posix.normalize(`/${opts.dest}`));
  // Directory times last, deepest first: creating their children changed them.
  dirTimes.sort((x, y) => y[0].length - x[0].length);
  for (const [p, a, m] of dirTimes) await lutimes(p, a, m);
}
