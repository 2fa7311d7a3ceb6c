/**
 * The build context of an ssh node, sent by content: the client lists every file the
 * context's `.dockerignore` keeps with its sha256, the node answers with the digests its
 * cache lacks, and only those files travel. A rebuild after a one-file change sends one file.
 *
 *   const entries = await listContext(dir, dockerfilePath);     // client side
 *   const missing = await missingBlobs(cacheDir, entries);      // node side
 *   await materialise(cacheDir, entries, buildDir);             // node side, per build
 *
 * The node's cache is `<root>/node/context/sha256/<hex>`, files written to a temp name and
 * renamed once their digest checked, so an interrupted transfer leaves no wrong entry.
 * Each build gets its own copy of the tree (mode and mtime kept), removed when it ends.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  symlink,
  unlink,
  utimes,
} from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { loadDockerignore } from '../../dockerfile/dockerignore.js';
import { PolyarchError } from '../../util/errors.js';

export interface ContextEntry {
  /** Context-relative, `/`-separated. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtimeMs: number;
  /** Files: `sha256:<hex>` and size. */
  digest?: string;
  size?: number;
  /** Symlinks. */
  target?: string;
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Every entry of `dir` that `.dockerignore` keeps, parents before children. */
export async function listContext(dir: string, dockerfilePath?: string): Promise<ContextEntry[]> {
  try {
    return await walkContext(dir, dockerfilePath);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new PolyarchError(
      'IO',
      `unable to prepare context: ${e.code ?? 'error'} ${e.path ? relative(dir, e.path) || '.' : e.message}`,
      { cause: err },
    );
  }
}

async function walkContext(dir: string, dockerfilePath?: string): Promise<ContextEntry[]> {
  const ignore = await loadDockerignore({ contextDir: dir, ...(dockerfilePath ? { dockerfilePath } : {}) });
  const out: ContextEntry[] = [];
  const walk = async (abs: string): Promise<void> => {
    const names = (await readdir(abs)).sort();
    for (const name of names) {
      const p = join(abs, name);
      const rel = relative(dir, p).split(sep).join('/');
      const st = await lstat(p);
      const kept = !ignore.ignores(rel);
      const base = { path: rel, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs };
      if (st.isDirectory()) {
        // An ignored directory may still hold re-included (`!`) paths.
        if (kept) out.push({ ...base, type: 'dir' });
        await walk(p);
      } else if (!kept) {
      } else if (st.isFile()) out.push({ ...base, type: 'file', digest: await hashFile(p), size: st.size });
      else if (st.isSymbolicLink()) out.push({ ...base, type: 'symlink', target: await readlink(p) });
    }
  };
  await walk(dir);
  return out;
}

function hexOf(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new PolyarchError('INVALID_DIGEST', `protocol error: invalid context digest "${digest}"`);
  return m[1]!;
}

export function blobPath(cacheDir: string, digest: string): string {
  return join(cacheDir, 'sha256', hexOf(digest));
}

/** The file digests of `entries` the cache does not hold, each once. */
export async function missingBlobs(cacheDir: string, entries: readonly ContextEntry[]): Promise<string[]> {
  const out = new Set<string>();
  for (const e of entries) {
    if (e.type !== 'file' || out.has(e.digest!)) continue;
    const st = await lstat(blobPath(cacheDir, e.digest!)).catch(() => undefined);
    if (!st || st.size !== e.size) out.add(e.digest!);
  }
  return [...out];
}

/** Writes one file into the cache, checking its digest before it becomes visible. */
export async function putBlob(
  cacheDir: string,
  digest: string,
  chunks: AsyncIterable<Buffer>,
): Promise<void> {
  const dest = blobPath(cacheDir, digest);
  await mkdir(dirname(dest), { recursive: true, mode: 0o700 });
  const tmp = `${dest}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  const h = createHash('sha256');
  try {
    for await (const c of chunks) {
      h.update(c);
      await fh.write(c);
    }
    await fh.close();
    if (`sha256:${h.digest('hex')}` !== digest)
      throw new PolyarchError('DIGEST_MISMATCH', `context file ${digest}: the bytes sent do not match`);
    await rename(tmp, dest);
  } catch (err) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/** Rejects paths that would leave the build directory. */
function safeRel(p: string): string {
  if (p === '' || p.startsWith('/') || p.split('/').some((c) => c === '..' || c === '' || c === '.'))
    throw new PolyarchError('INVALID_ARGUMENT', `protocol error: invalid context path "${p}"`);
  return p;
}

/** Lays the context out under `dest` from the cache. */
export async function materialise(
  cacheDir: string,
  entries: readonly ContextEntry[],
  dest: string,
): Promise<void> {
  await mkdir(dest, { recursive: true, mode: 0o700 });
  const dirs: ContextEntry[] = [];
  const links = new Set<string>();
  for (const e of entries) {
    const p = join(dest, safeRel(e.path));
    // Nothing is written through a link the context itself made.
    const parts = e.path.split('/');
    for (let i = 1; i < parts.length; i++)
      if (links.has(parts.slice(0, i).join('/')))
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          `protocol error: context path "${e.path}" is under a symlink`,
        );
    if (e.type === 'symlink') links.add(e.path);
    await mkdir(dirname(p), { recursive: true });
    if (e.type === 'dir') {
      await mkdir(p, { recursive: true });
      dirs.push(e);
    } else if (e.type === 'file') {
      await copyFile(blobPath(cacheDir, e.digest!), p);
      await chmod(p, e.mode);
      await utimes(p, e.mtimeMs / 1000, e.mtimeMs / 1000);
    } else if (e.type === 'symlink') await symlink(e.target!, p);
  }
  // Directories last (their children changed their mtimes), deepest first.
  for (const d of dirs.reverse()) {
    const p = join(dest, d.path);
    await chmod(p, d.mode);
    await utimes(p, d.mtimeMs / 1000, d.mtimeMs / 1000);
  }
}
