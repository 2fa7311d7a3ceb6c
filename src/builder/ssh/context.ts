/**
 * The build context of an ssh node, sent by content: the client lists every file the
 * context's `.dockerignore` keeps with its sha256, the node answers with the digests its
 * cache lacks, and only those files travel. A rebuild after a one-file change sends one file.
 *
 *   const entries = await listContext(dir, dockerfilePath, memoFile);  // client side
 *   const missing = await missingBlobs(cacheDir, entries);             // node side
 *   await syncContext(cacheDir, entries, treeDir, indexFile);          // node side
 *
 * The node's cache is `<root>/node/context/sha256/<hex>`, files written to a temp name and
 * renamed once their digest checked, so an interrupted transfer leaves no wrong entry.
 * The tree a build sees is kept per client context (`syncContext`: only what changed since
 * the last build is rewritten, so the engine's own checksum memo still holds for the rest);
 * a build that finds it in use by another gets its own copy (`materialise`). The client
 * keeps its file digests by path, size, mtime and inode (`memoFile`), so an unchanged file
 * is not read again.
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
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  unlink,
  utimes,
  writeFile,
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

interface HashMemo {
  [abs: string]: { size: number; mtimeMs: number; ino: number; digest: string };
}

/**
 * Every entry of `dir` that `.dockerignore` keeps, parents before children. With `memoFile`,
 * digests of files whose size, mtime and inode did not change are taken from it, and it is
 * rewritten (atomically) with this listing's.
 */
export async function listContext(
  dir: string,
  dockerfilePath?: string,
  memoFile?: string,
): Promise<ContextEntry[]> {
  let memo: HashMemo = {};
  if (memoFile)
    try {
      memo = JSON.parse(await readFile(memoFile, 'utf8')) as HashMemo;
    } catch {
      // None yet, or damaged: hash everything.
    }
  const next: HashMemo = {};
  try {
    const out = await walkContext(dir, dockerfilePath, memo, next);
    if (memoFile) {
      await mkdir(dirname(memoFile), { recursive: true, mode: 0o700 });
      const tmp = `${memoFile}.${randomBytes(4).toString('hex')}.tmp`;
      await writeFile(tmp, JSON.stringify(next));
      await rename(tmp, memoFile);
    }
    return out;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new PolyarchError(
      'IO',
      `unable to prepare context: ${e.code ?? 'error'} ${e.path ? relative(dir, e.path) || '.' : e.message}`,
      { cause: err },
    );
  }
}

async function walkContext(
  dir: string,
  dockerfilePath: string | undefined,
  memo: HashMemo,
  next: HashMemo,
): Promise<ContextEntry[]> {
  const digestOf = async (p: string, st: { size: number; mtimeMs: number; ino: number }) => {
    const m = memo[p];
    const digest =
      m && m.size === st.size && m.mtimeMs === st.mtimeMs && m.ino === st.ino ? m.digest : await hashFile(p);
    next[p] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, digest };
    return digest;
  };
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
      } else if (st.isFile())
        out.push({ ...base, type: 'file', digest: await digestOf(p, st), size: st.size });
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

/**
 * The file digests of `entries` the cache does not hold, each once. Those it holds are
 * touched: `gcBlobs` removes what no build used for a while.
 */
export async function missingBlobs(cacheDir: string, entries: readonly ContextEntry[]): Promise<string[]> {
  const out = new Set<string>();
  const seen = new Set<string>();
  const now = new Date();
  for (const e of entries) {
    if (e.type !== 'file' || seen.has(e.digest!)) continue;
    seen.add(e.digest!);
    const p = blobPath(cacheDir, e.digest!);
    const st = await lstat(p).catch(() => undefined);
    if (!st || st.size !== e.size) out.add(e.digest!);
    else await utimes(p, now, now).catch(() => {});
  }
  return [...out];
}

/** Removes cached files no build has used for `maxAgeMs` (and temp files of cut transfers). */
export async function gcBlobs(cacheDir: string, maxAgeMs: number): Promise<number> {
  const dir = join(cacheDir, 'sha256');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  const limit = Date.now() - maxAgeMs;
  let removed = 0;
  for (const n of names) {
    const st = await lstat(join(dir, n)).catch(() => undefined);
    if (st && st.mtimeMs < limit) {
      await unlink(join(dir, n)).catch(() => {});
      removed++;
    }
  }
  return removed;
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
export function materialise(cacheDir: string, entries: readonly ContextEntry[], dest: string): Promise<void> {
  return layOut(cacheDir, entries, dest, () => true);
}

function sameEntry(a: ContextEntry, b: ContextEntry): boolean {
  return (
    a.type === b.type &&
    a.mode === b.mode &&
    a.mtimeMs === b.mtimeMs &&
    a.digest === b.digest &&
    a.size === b.size &&
    a.target === b.target
  );
}

/**
 * Brings `dest` (a tree only this caller writes, under its lock) to `entries`: what the
 * index of its last sync says is unchanged stays, what changed is rewritten, what is gone is
 * removed. The index is removed first and written last, so a sync cut short is followed by
 * a full one. Resolves to the number of files written.
 */
export async function syncContext(
  cacheDir: string,
  entries: readonly ContextEntry[],
  dest: string,
  indexFile: string,
): Promise<number> {
  let old: Record<string, ContextEntry> | undefined;
  try {
    old = JSON.parse(await readFile(indexFile, 'utf8')) as Record<string, ContextEntry>;
  } catch {}
  await rm(indexFile, { force: true });
  if (!old) await rm(dest, { recursive: true, force: true });
  const want = new Map(entries.map((e) => [e.path, e]));
  // What is gone or changed type goes first, deepest first.
  const stale = new Set(
    Object.values(old ?? {})
      .filter((o) => {
        const n = want.get(o.path);
        return !n || n.type !== o.type || (o.type === 'symlink' && n.target !== o.target);
      })
      .map((o) => o.path),
  );
  for (const p of [...stale].sort((a, b) => b.length - a.length))
    await rm(join(dest, safeRel(p)), { recursive: true, force: true });
  let written = 0;
  await layOut(cacheDir, entries, dest, (e) => {
    const o = old?.[e.path];
    const write = !o || stale.has(e.path) || !sameEntry(o, e);
    if (write && e.type === 'file') written++;
    return write;
  });
  await mkdir(dirname(indexFile), { recursive: true });
  const tmp = `${indexFile}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(Object.fromEntries(want)));
  await rename(tmp, indexFile);
  return written;
}

async function layOut(
  cacheDir: string,
  entries: readonly ContextEntry[],
  dest: string,
  changed: (e: ContextEntry) => boolean,
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
    if (e.type === 'dir') dirs.push(e);
    if (!changed(e)) continue;
    await mkdir(dirname(p), { recursive: true });
    if (e.type === 'dir') {
      await mkdir(p, { recursive: true });
    } else if (e.type === 'file') {
      await rm(p, { force: true });
      await copyFile(blobPath(cacheDir, e.digest!), p);
      await chmod(p, e.mode);
      await utimes(p, e.mtimeMs / 1000, e.mtimeMs / 1000);
    } else if (e.type === 'symlink') {
      await rm(p, { force: true });
      await symlink(e.target!, p);
    }
  }
  // Directories last (their children changed their mtimes), deepest first.
  for (const d of dirs.reverse()) {
    const p = join(dest, d.path);
    await chmod(p, d.mode);
    await utimes(p, d.mtimeMs / 1000, d.mtimeMs / 1000);
  }
}
