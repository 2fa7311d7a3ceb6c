/**
 * File operations of COPY/ADD/WORKDIR, done inside a mounted root filesystem (an active
 * snapshot's overlay mount, so the result is an overlay diff like RUN's).
 *
 *   const src = resolveSource(contextDir, 'link/src');     // inside the context, or undefined
 *   await copyTree({ src: src.host, srcRel: src.rel, rootfs: mountDir, dest: '/app/src', owner });
 *
 * Every path is resolved inside its own root (src/util/rootpath.ts): a source inside the
 * context or the read-only view of a stage or image, a destination inside the rootfs being
 * written; symlinks are followed as a container would see them and never reach the host. The
 * source named by the step is followed when it is a link (BuildKit's FollowSymlinks for COPY);
 * links below it are copied as links. In the destination, an existing link where a directory
 * is copied is followed (inside the rootfs), one where a file or link is copied is replaced;
 * files and links are created with O_EXCL semantics, so a last component swapped for a link
 * is never written through. A directory source copies its contents; modes and modification
 * times are kept; ownership is `owner` when given (COPY --chown, or 0:0 from the context),
 * else the source's own.
 */
import { constants, lstatSync } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readlink,
  rm,
  symlink,
} from 'node:fs/promises';
import { join, posix } from 'node:path';
import { mapLimit } from '../util/concurrency.js';
import { PolyarchError } from '../util/errors.js';
import { resolveInRoot } from '../util/rootpath.js';

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopyTreeOptions {
  /** Host path of the source, resolved inside its root (`resolveSource`): file, link or directory. */
  src: string;
  /** Its path relative to its root ('' = the root itself), the base of the names `filter` sees. */
  srcRel: string;
  /** Mounted rootfs being written. */
  rootfs: string;
  /** Container path the source (or, for a directory, its contents) goes to. */
  dest: string;
  owner?: Owner;
  /** COPY --chmod: applied to every file and directory copied. */
  mode?: number;
  /** Return false to leave a source entry (named relative to its root) out. */
  filter?: (rel: string) => boolean;
}

export interface SourcePath {
  /** Host path inside the root, symlink-free (but for a dangling link, which is itself). */
  host: string;
  /** The same relative to the root. */
  rel: string;
}

/**
 * A source path (as a step names it: relative or absolute, from `root`) resolved inside
 * `root`, the last link followed; a link whose target is not inside `root` is the link itself.
 * Undefined when nothing is there.
 */
export function resolveSource(root: string, path: string): SourcePath | undefined {
  const r = resolveInRoot(root, path);
  if (r.missing === undefined && lstatSync(r.host, { throwIfNoEntry: false }))
    return { host: r.host, rel: r.rel };
  const link = resolveInRoot(root, path, { followFinal: false });
  if (link.missing === undefined && lstatSync(link.host, { throwIfNoEntry: false })?.isSymbolicLink())
    return { host: link.host, rel: link.rel };
  return undefined;
}

async function lstatOrNull(p: string) {
  try {
    return await lstat(p);
  } catch {
    return null;
  }
}

/** Entries of one directory copied at once. */
const COPY_CONCURRENCY = 8;

/**
 * mkdir -p of a container path inside `rootfs` (links followed inside it); created
 * directories get `owner` and `mode`. Returns the directory's host path.
 */
export async function mkdirAll(rootfs: string, path: string, owner?: Owner, mode = 0o755): Promise<string> {
  return resolveInRoot(rootfs, path, { mkdir: { mode, ...(owner ? { owner } : {}) } }).host;
}

/**
 * The host path a non-directory copied to container path `dest` is written at: the last
 * component followed when it is a link (inside the rootfs), missing parents created.
 */
function fileTarget(rootfs: string, dest: string, owner?: Owner): string {
  const r = resolveInRoot(rootfs, dest);
  if (r.rel === '')
    throw new PolyarchError('INVALID_ARGUMENT', `copying to "${dest}": it is the root directory, not a file`);
  if (r.missing === undefined) return r.host;
  // A missing parent, perhaps through a link to a path that does not exist yet: `r.rel` is
  // link-free, so its parent can be made as it is.
  const parent = posix.dirname(`/${r.rel}`);
  const dir = resolveInRoot(rootfs, parent, { mkdir: { mode: 0o755, ...(owner ? { owner } : {}) } });
  return join(dir.host, posix.basename(`/${r.rel}`));
}

/** Copies `src` to the host path `dst` (already resolved); true when it was a directory. */
async function copyEntry(src: string, dst: string, opts: CopyTreeOptions): Promise<boolean> {
  const st = await lstat(src);
  const have = await lstatOrNull(dst);
  if (st.isDirectory()) {
    if (have && !have.isDirectory()) await rm(dst, { force: true });
    if (!have?.isDirectory()) await mkdir(dst);
  } else {
    if (have) await rm(dst, { recursive: true, force: true });
    // Both fail on anything at `dst` (a link put there since included): never written through.
    if (st.isSymbolicLink()) await symlink(await readlink(src), dst);
    else if (st.isFile()) await copyFile(src, dst, constants.COPYFILE_EXCL);
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
  const st = await lstat(opts.src);
  if (!st.isDirectory()) {
    await copyEntry(opts.src, fileTarget(opts.rootfs, opts.dest, opts.owner), opts);
    return;
  }
  const mk = { mkdir: { mode: 0o755, ...(opts.owner ? { owner: opts.owner } : {}) } };
  const top = resolveInRoot(opts.rootfs, opts.dest, mk);
  const dirTimes: [string, Date, Date][] = [];
  const name = (rel: string, n: string) => (rel === '' ? n : `${rel}/${n}`);
  /**
   * Where a child of the destination directory `dir` (host path, `dirRel` inside the rootfs)
   * goes: a directory through an existing link (followed inside the rootfs, made when
   * missing), anything else at the entry itself, which it replaces.
   */
  const childTarget = (dirHost: string, dirRel: string, n: string, isDir: boolean) => {
    const at = join(dirHost, n);
    if (!isDir || !lstatSync(at, { throwIfNoEntry: false })?.isSymbolicLink())
      return { host: at, rel: name(dirRel, n) };
    const r = resolveInRoot(opts.rootfs, name(dirRel, n), mk);
    return { host: r.host, rel: r.rel };
  };
  // The entries of a directory are copied a few at a time: each is a handful of file system
  // calls, all thread-pool round trips, and a build waits on them.
  const walk = async (srcHost: string, rel: string, dirHost: string, dirRel: string): Promise<void> => {
    const names = (await readdir(srcHost)).sort();
    await mapLimit(names, COPY_CONCURRENCY, async (n) => {
      const childRel = name(rel, n);
      const childSrc = join(srcHost, n);
      const cst = await lstat(childSrc);
      if (opts.filter && !opts.filter(childRel)) {
        // Filtered directories may still hold re-included entries (`!` patterns): look inside.
        if (cst.isDirectory()) await walkFiltered(childSrc, childRel, name(dirRel, n));
        return;
      }
      const t = childTarget(dirHost, dirRel, n, cst.isDirectory());
      if (await copyEntry(childSrc, t.host, opts)) {
        await walk(childSrc, childRel, t.host, t.rel);
        dirTimes.push([t.host, cst.atime, cst.mtime]);
      }
    });
  };
  /** A filtered-out directory: its destination `destRel` is made only for entries re-included below it. */
  const walkFiltered = async (srcHost: string, rel: string, destRel: string) => {
    let dir: { host: string; rel: string } | undefined;
    for (const c of (await readdir(srcHost)).sort()) {
      const childRel = `${rel}/${c}`;
      const childSrc = join(srcHost, c);
      const cst = await lstat(childSrc);
      if (opts.filter && !opts.filter(childRel)) {
        if (cst.isDirectory()) await walkFiltered(childSrc, childRel, `${destRel}/${c}`);
        continue;
      }
      dir ??= resolveInRoot(opts.rootfs, destRel, mk);
      const t = childTarget(dir.host, dir.rel, c, cst.isDirectory());
      if (await copyEntry(childSrc, t.host, opts)) await walk(childSrc, childRel, t.host, t.rel);
    }
  };
  await walk(opts.src, opts.srcRel, top.host, top.rel);
  // Directory times last, deepest first: creating their children changed them.
  dirTimes.sort((x, y) => y[0].length - x[0].length);
  for (const [p, a, m] of dirTimes) await lutimes(p, a, m);
}
