/**
 * Paths inside a container root filesystem, resolved without escaping it, and the mount-point
 * stubs runc creates there.
 *
 * `secureJoin(rootfs, '/etc/resolv.conf')` resolves symlinks as the container would see them
 * (an absolute link target is relative to `rootfs`, `..` stops at `rootfs`), so a host path is
 * never reached through an image's symlink (Debian's `/var/run -> /run`, or a hostile one).
 *
 * `findStubs(rootfs, destinations)` lists, before a run, the top-most missing path of every
 * mount destination; `removeStubs` deletes them after the run when they are still empty
 * (runc created them as mount points), as BuildKit's mount-stub cleaner does, so that they do
 * not end up in a committed layer.
 */
import { lstat, readdir, realpath, rmdir, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { resolveInRoot } from '../util/rootpath.js';

async function lstatOrNull(p: string) {
  try {
    return await lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
      return null;
    throw err;
  }
}

/** `path` (as the container sees it) resolved to a host path inside `root` (src/util/rootpath.ts). */
export async function secureJoin(root: string, path: string): Promise<string> {
  return resolveInRoot(root, path).host;
}

/** The top-most missing path (inside `rootfs`) of each destination that does not exist. */
export async function findStubs(rootfs: string, destinations: string[]): Promise<string[]> {
  const out = new Set<string>();
  for (const d of destinations) {
    const r = resolveInRoot(rootfs, d);
    if (r.missing !== undefined) out.add(join(rootfs, r.missing));
  }
  return [...out];
}

/** Remove an empty file, or a tree of only empty dirs and files; keep anything with content. */
async function removeIfEmpty(p: string): Promise<void> {
  const st = await lstatOrNull(p);
  if (st === null) return;
  if (st.isDirectory()) {
    for (const name of await readdir(p)) await removeIfEmpty(join(p, name));
    await rmdir(p).catch(() => undefined);
  } else if (st.isFile() && st.size === 0) await unlink(p).catch(() => undefined);
}

/**
 * Remove the stubs `findStubs` listed, when still empty. A stub whose parent no longer
 * resolves to the same place inside `rootfs` (the container swapped a directory for a
 * symlink) is left alone.
 */
export async function removeStubs(rootfs: string, stubs: string[]): Promise<void> {
  const realRoot = await realpath(rootfs);
  for (const s of stubs) {
    const parent = await realpath(dirname(s)).catch(() => undefined);
    if (parent === undefined || parent !== join(realRoot, dirname(s).slice(rootfs.length))) continue;
    await removeIfEmpty(s);
  }
}
