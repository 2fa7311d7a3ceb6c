/**
 * Paths inside a root directory (a container rootfs, a read-only view of a build stage, the
 * build context), resolved as a process chrooted there would see them — the securejoin /
 * BuildKit `fs.RootPath` model — so no path ever reaches the host through a symlink.
 *
 *   const r = resolveInRoot(rootfs, '/etc/passwd');            // follows links, inside rootfs
 *   if (r.missing === undefined) read(r.host);
 *   resolveInRoot(rootfs, '/app/a/b', { mkdir: { mode: 0o755 } });   // mkdir -p, inside rootfs
 *   resolveInRoot(ctx, 'link', { followFinal: false });        // the link itself, not its target
 *
 * The walk goes component by component: `..` stops at the root, a symlink's target replaces
 * it (an absolute target starts again at the root), at most 40 links per lookup (Linux's own
 * limit). A missing component, or one below a non-directory, ends the real part of the walk;
 * what follows is joined lexically (with `mkdir`, missing directories are created instead,
 * through links too: `/a -> /x/y` with `/x` missing creates `/x/y`; a file in the way is
 * replaced by a directory, as COPY and WORKDIR always did here).
 *
 * The result is symlink-free inside the root up to its first missing component. Nothing here
 * guards against the tree changing after the walk: callers open the last component with
 * O_NOFOLLOW/O_EXCL-style calls where they write (see src/build/fsops.ts).
 */
import { chmodSync, lchownSync, lstatSync, mkdirSync, readlinkSync, rmSync } from 'node:fs';
import { PolyarchError } from './errors.js';

/** Linux's limit on symlinks followed in one lookup (MAXSYMLINKS). */
export const MAX_SYMLINKS = 40;

export interface ResolveOptions {
  /** Follow a symlink in the last component. Default true (open/stat semantics). */
  followFinal?: boolean;
  /** Create missing directories (the last component too), each with this mode and owner. */
  mkdir?: { mode?: number; owner?: { uid: number; gid: number } };
}

export interface RootPath {
  /** The resolved host path, inside `root`. */
  host: string;
  /** The same relative to the root, no leading slash ('' = the root itself). */
  rel: string;
  /** The top-most component of `rel` that does not exist (relative path); undefined when it all exists. */
  missing?: string;
}

function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

function makeDir(p: string, mk: NonNullable<ResolveOptions['mkdir']>): void {
  mkdirSync(p, { mode: mk.mode ?? 0o755 });
  // The umask may have taken bits away.
  chmodSync(p, mk.mode ?? 0o755);
  if (mk.owner) lchownSync(p, mk.owner.uid, mk.owner.gid);
}

/** `path` (absolute or relative, both from the root) resolved inside `root`; see the module header. */
export function resolveInRoot(root: string, path: string, opts: ResolveOptions = {}): RootPath {
  const followFinal = opts.followFinal ?? true;
  const mk = opts.mkdir;
  const base = root.endsWith('/') && root.length > 1 ? root.slice(0, -1) : root;
  const abs = (parts: string[]) => (parts.length === 0 ? base : `${base}/${parts.join('/')}`);
  const real: string[] = [];
  // Depth (real.length) at which the first missing component sits, or -1.
  let missingAt = -1;
  const split = (s: string) => s.split('/').filter((c) => c !== '' && c !== '.');
  const todo = split(path).reverse();
  let links = 0;
  while (todo.length > 0) {
    const c = todo.pop()!;
    if (c === '..') {
      real.pop();
      if (missingAt > real.length) missingAt = -1;
      continue;
    }
    const last = todo.length === 0;
    const p = abs([...real, c]);
    if (missingAt >= 0) {
      real.push(c);
      continue;
    }
    const st = lstatOrNull(p);
    if (st === null) {
      if (mk) makeDir(p, mk);
      else missingAt = real.length + 1;
      real.push(c);
      continue;
    }
    if (st.isSymbolicLink() && (followFinal || !last)) {
      if (++links > MAX_SYMLINKS)
        throw new PolyarchError('INVALID_ARGUMENT', `resolving "${path}": too many levels of symbolic links`);
      const target = readlinkSync(p);
      if (target.startsWith('/')) real.length = 0;
      todo.push(...split(target).reverse());
      continue;
    }
    // mkdir -p over a file (or a link it does not follow): the directory replaces it.
    if (mk && !st.isDirectory()) {
      rmSync(p, { force: true });
      makeDir(p, mk);
    }
    real.push(c);
  }
  const rel = real.join('/');
  return {
    host: abs(real),
    rel,
    ...(missingAt >= 0 ? { missing: real.slice(0, missingAt).join('/') } : {}),
  };
}

/** Whether `path` resolves (see `resolveInRoot`) to an existing entry inside `root`. */
export function existsInRoot(root: string, path: string, followFinal = true): boolean {
  const r = resolveInRoot(root, path, { followFinal });
  return r.missing === undefined && lstatOrNull(r.host) !== null;
}
