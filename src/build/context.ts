/**
 * The local build context: a directory seen through `.dockerignore`, its source patterns
 * matched like BuildKit (Go's filepath.Match per path component), and content checksums.
 *
 *   const ctx = await BuildContext.open({ dir, dockerfilePath, stateRoot });
 *   const matches = await ctx.match(['src/*.c'], { exclude: [] });  // context-relative paths
 *   const sum = await ctx.checksum(matches);                        // content digest of them all
 *   await ctx.save();                                               // keeps the hash memo
 *
 * File contents are hashed once and memoised by path, size, mtime and inode in a persistent
 * index (`<state root>/build/context-index.json`), so a warm rebuild of a large context does not
 * read its files again. Ownership is not part of a checksum (COPY from the context sets it).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rename, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { type DockerignoreMatcher, loadDockerignore } from '../dockerfile/index.js';
import { PolyarchError } from '../util/errors.js';
import { existsInRoot, resolveInRoot } from '../util/rootpath.js';
import { resolveSource, type SourcePath } from './fsops.js';

interface MemoEntry {
  size: number;
  mtimeMs: number;
  ino: number;
  hash: string;
}

export interface ContextOptions {
  dir: string;
  /** Path of the Dockerfile on disk, for `<Dockerfile>.dockerignore`. */
  dockerfilePath?: string;
  /** polyarch state root, for the checksum memo. */
  stateRoot: string;
}

/** Converts one Go filepath.Match pattern component into a RegExp. */
export function componentRegex(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 1);
      if (end < 0) throw new PolyarchError('INVALID_ARGUMENT', `invalid pattern "${pattern}": unclosed [`);
      let cls = pattern.slice(i + 1, end);
      if (cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < pattern.length) {
      re += pattern[++i]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    } else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`${re}$`);
}

export function hasWildcard(p: string): boolean {
  return /[*?[]/.test(p);
}

/**
 * Matches `pattern` (a path relative to `root`, wildcards per component) against a real tree,
 * every component resolved inside `root` (links followed there, never out of it). Returns the
 * matching paths as written (not their link targets), sorted per component.
 */
export async function matchPaths(root: string, pattern: string): Promise<string[]> {
  const parts = posix
    .normalize(`/${pattern}`)
    .split('/')
    .filter((p) => p !== '' && p !== '.');
  let current = [''];
  for (const part of parts) {
    const next: string[] = [];
    for (const base of current) {
      if (!hasWildcard(part)) {
        const p = base === '' ? part : `${base}/${part}`;
        if (existsInRoot(root, p, false)) next.push(p);
        continue;
      }
      const re = componentRegex(part);
      let names: string[] = [];
      try {
        const dir = resolveInRoot(root, base);
        if (dir.missing !== undefined) continue;
        names = await readdir(dir.host);
      } catch {
        continue;
      }
      for (const n of names.sort()) if (re.test(n)) next.push(base === '' ? n : `${base}/${n}`);
    }
    current = next;
  }
  return current;
}

export class BuildContext {
  readonly dir: string;
  readonly ignore: DockerignoreMatcher;
  readonly #memoFile: string;
  #memo: Record<string, MemoEntry>;
  #dirty = false;

  private constructor(
    dir: string,
    ignore: DockerignoreMatcher,
    memoFile: string,
    memo: Record<string, MemoEntry>,
  ) {
    this.dir = dir;
    this.ignore = ignore;
    this.#memoFile = memoFile;
    this.#memo = memo;
  }

  static async open(opts: ContextOptions): Promise<BuildContext> {
    const ignore = await loadDockerignore({
      contextDir: opts.dir,
      ...(opts.dockerfilePath ? { dockerfilePath: opts.dockerfilePath } : {}),
    });
    const memoFile = join(opts.stateRoot, 'build', 'context-index.json');
    let memo: Record<string, MemoEntry> = {};
    try {
      memo = JSON.parse(await readFile(memoFile, 'utf8')) as Record<string, MemoEntry>;
    } catch {
      // No memo yet, or a damaged one: start over.
    }
    return new BuildContext(opts.dir, ignore, memoFile, memo);
  }

  /**
   * Whether a context-relative path is excluded by .dockerignore or by COPY --exclude patterns,
   * which match the path from the context root or from `base` (the source being copied).
   */
  excluded(rel: string, exclude: readonly string[] = [], base = ''): boolean {
    if (this.ignore.ignores(rel)) return true;
    const inner = base !== '' && rel.startsWith(`${base}/`) ? rel.slice(base.length + 1) : undefined;
    for (const e of exclude)
      if (globMatch(e, rel) || (inner !== undefined && globMatch(e, inner))) return true;
    return false;
  }

  /**
   * Every context-relative path a COPY source names (wildcards expanded, .dockerignore and
   * `exclude` applied). A source that matches nothing is BuildKit's `"/x": not found`.
   */
  async match(source: string, exclude: readonly string[] = []): Promise<string[]> {
    const clean = posix.normalize(`/${source}`).slice(1);
    if (clean === '' || clean === '.') return [''];
    const found = (await matchPaths(this.dir, clean)).filter((p) => {
      if (this.excluded(p, exclude)) return false;
      // Through a link to something .dockerignore leaves out, as if it were not there.
      const real = resolveSource(this.dir, p);
      return real !== undefined && !this.ignore.ignores(real.rel);
    });
    if (found.length === 0) throw new PolyarchError('NOT_FOUND', `"/${clean}": not found`);
    return found;
  }

  /**
   * Where a context-relative path is, resolved inside the context (a link followed there, see
   * fsops.ts `resolveSource`); `rel` is link-free. Undefined when there is nothing.
   */
  resolve(rel: string): SourcePath | undefined {
    return resolveSource(this.dir, rel);
  }

  /**
   * Files under a context-relative path (itself included), not excluded, sorted; named by
   * their real, link-free paths (the path itself resolved inside the context).
   */
  async walk(path: string, exclude: readonly string[] = []): Promise<string[]> {
    const out: string[] = [];
    const top = this.resolve(path);
    if (!top) return out;
    const rel = top.rel;
    const visit = async (r: string) => {
      const st = await lstat(join(this.dir, r));
      if (r !== '' && this.excluded(r, exclude, rel)) {
        // A `!` exception may re-include something below an excluded directory.
        if (!st.isDirectory() || !this.ignore.patterns.some((p) => p.startsWith('!'))) return;
      } else out.push(r);
      if (st.isDirectory())
        for (const n of (await readdir(join(this.dir, r))).sort()) await visit(r === '' ? n : `${r}/${n}`);
    };
    await visit(rel);
    return out;
  }

  async #fileHash(abs: string, st: { size: number; mtimeMs: number; ino: number }): Promise<string> {
    const m = this.#memo[abs];
    if (m && m.size === st.size && m.mtimeMs === st.mtimeMs && m.ino === st.ino) return m.hash;
    const h = createHash('sha256');
    for await (const chunk of createReadStream(abs)) h.update(chunk as Buffer);
    const hash = h.digest('hex');
    this.#memo[abs] = { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, hash };
    this.#dirty = true;
    return hash;
  }

  /** A digest of the named paths' trees: names, types, modes, link targets and contents. */
  async checksum(paths: readonly string[], exclude: readonly string[] = []): Promise<string> {
    const h = createHash('sha256');
    for (const p of paths)
      for (const rel of await this.walk(p, exclude)) {
        const abs = join(this.dir, rel);
        const st = await lstat(abs);
        h.update(`${rel}\0${st.mode}\0`);
        if (st.isFile()) h.update(await this.#fileHash(abs, st));
        else if (st.isSymbolicLink()) h.update(await readlink(abs));
        h.update('\n');
      }
    return h.digest('hex');
  }

  /** Writes the checksum memo back (atomically) when it changed. */
  async save(): Promise<void> {
    if (!this.#dirty) return;
    await mkdir(dirname(this.#memoFile), { recursive: true });
    const tmp = `${this.#memoFile}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(this.#memo));
    await rename(tmp, this.#memoFile);
    this.#dirty = false;
  }
}

/** Go filepath.Match of a whole path (components matched one by one; `**` matches any depth). */
export function globMatch(pattern: string, path: string): boolean {
  const pp = posix.normalize(`/${pattern}`).split('/').filter(Boolean);
  const sp = path.split('/').filter(Boolean);
  const rec = (i: number, j: number): boolean => {
    if (i === pp.length) return true; // a match of a directory excludes what is below it
    if (j === sp.length) return false;
    if (pp[i] === '**') return rec(i + 1, j) || rec(i, j + 1);
    return componentRegex(pp[i]!).test(sp[j]!) && rec(i + 1, j + 1);
  };
  return rec(0, 0);
}
