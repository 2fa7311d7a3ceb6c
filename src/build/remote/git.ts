/**
 * Git repositories as build contexts, fetched with the system `git` client (Debian's): shallow
 * where the ref allows it, submodules included, cached per commit in the state root, so a
 * rebuild of the same commit fetches nothing.
 *
 *   const { dir, commit } = await fetchGitContext(
 *     { kind: 'git', remote: 'https://h/org/repo.git', ref: 'v1', subdir: 'app' },
 *     { cacheRoot: '<state root>/contexts/git', env, authToken },
 *   );
 *
 * Credentials come from git's own helpers (credential.helper, ~/.git-credentials, an ssh
 * agent) and from the `GIT_AUTH_TOKEN` / `GIT_AUTH_HEADER` build secrets, which are handed to
 * git in its environment (GIT_CONFIG_*), never in its arguments, a file or a message. git
 * never prompts (GIT_TERMINAL_PROMPT=0): a build must not hang on a password question.
 * `.git` is removed unless `keepGitDir` (BUILDKIT_CONTEXT_KEEP_GIT_DIR=1) asks to keep it.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import { pathExists } from '../../util/fs.js';
import { type ContextSource, maskURL } from './url.js';

export interface GitFetchOptions {
  /** Where fetched commits are kept: `<cacheRoot>/<remote hash>-<commit>[-git]/`. */
  cacheRoot: string;
  env?: NodeJS.ProcessEnv;
  /** The `GIT_AUTH_TOKEN` secret: sent as basic auth (x-access-token) to the remote's host. */
  authToken?: string;
  /** The `GIT_AUTH_HEADER` secret: a whole Authorization header value for the remote's host. */
  authHeader?: string;
  /** Keep `.git` in the context (BUILDKIT_CONTEXT_KEEP_GIT_DIR). Default false. */
  keepGitDir?: boolean;
  signal?: AbortSignal;
}

export interface GitContext {
  /** The context directory (the subdirectory, when one was named). */
  dir: string;
  commit: string;
  /** Whether this commit was already in the cache (nothing fetched). */
  cached: boolean;
}

type GitSource = Extract<ContextSource, { kind: 'git' }>;

/** What every message calls the context: the URL (password masked) with its fragment. */
export function describeGit(src: GitSource): string {
  const frag = src.ref || src.subdir ? `#${src.ref ?? ''}${src.subdir ? `:${src.subdir}` : ''}` : '';
  return maskURL(`${src.remote}${frag}`);
}

function gitEnv(src: GitSource, opts: GitFetchOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...(opts.env ?? process.env), GIT_TERMINAL_PROMPT: '0' };
  // ssh: no host-key or password prompt either; a key or agent works, anything else fails fast.
  env.GIT_SSH_COMMAND ??= 'ssh -o BatchMode=yes';
  const header =
    opts.authHeader ??
    (opts.authToken !== undefined
      ? `Basic ${Buffer.from(`x-access-token:${opts.authToken}`).toString('base64')}`
      : undefined);
  const origin = /^(https?:\/\/[^/]+)/i.exec(src.remote)?.[1];
  if (header !== undefined && origin) {
    const n = Number(env.GIT_CONFIG_COUNT ?? 0);
    env[`GIT_CONFIG_KEY_${n}`] = `http.${origin.replace(/\/\/[^@/]*@/, '//')}/.extraheader`;
    env[`GIT_CONFIG_VALUE_${n}`] = `Authorization: ${header}`;
    env.GIT_CONFIG_COUNT = String(n + 1);
  }
  return env;
}

interface GitRun {
  stdout: string;
  stderr: string;
}

function git(
  args: string[],
  opts: { cwd?: string; env: NodeJS.ProcessEnv; signal?: AbortSignal },
): Promise<GitRun> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      args,
      {
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
        env: opts.env,
        maxBuffer: 64 << 20,
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
      (err, stdout, stderr) => {
        if (err) reject(Object.assign(err, { stdout, stderr }));
        else resolve({ stdout, stderr });
      },
    );
  });
}

/** git's own words for a failure, its credentials masked: the `fatal:` line, or the last one. */
function gitReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { stderr?: string };
  if (e.code === 'ENOENT') return 'git is not installed (apt-get install git)';
  const lines = (e.stderr ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const fatal = lines.find((l) => l.startsWith('fatal:')) ?? lines.at(-1) ?? errorMessage(err);
  return maskURL(fatal.replace(/^(fatal|error):\s*/, ''));
}

function failure(src: GitSource, what: string, err: unknown): PolyarchError {
  if ((err as Error).name === 'AbortError') return new PolyarchError('ABORTED', 'build canceled');
  return new PolyarchError(
    'NOT_FOUND',
    `unable to prepare context: ${what} ${describeGit(src)}: ${gitReason(err)}`,
    {
      cause: err,
    },
  );
}

/** The commit a ref names on the remote (`git ls-remote`); a full commit id is taken as is. */
async function resolveCommit(src: GitSource, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<string> {
  if (src.ref && /^[0-9a-f]{40}$/i.test(src.ref)) return src.ref.toLowerCase();
  const ref = src.ref ?? 'HEAD';
  let out: GitRun;
  try {
    out = await git(['ls-remote', '--', src.remote, ref, `${ref}^{}`], {
      env,
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    throw failure(src, 'reading', err);
  }
  const refs = new Map<string, string>();
  for (const line of out.stdout.split('\n')) {
    const [sha, name] = line.split('\t');
    if (sha && name) refs.set(name, sha);
  }
  // A branch before a tag (git's own order for an ambiguous name); a tag's commit, not the tag object.
  const candidates =
    ref === 'HEAD' || ref.startsWith('refs/')
      ? [`${ref}^{}`, ref]
      : [`refs/heads/${ref}`, `refs/tags/${ref}^{}`, `refs/tags/${ref}`];
  for (const c of candidates) {
    const sha = refs.get(c);
    if (sha) return sha;
  }
  // A short commit id cannot be resolved remotely: fetch everything and ask the clone.
  if (/^[0-9a-f]{7,39}$/i.test(ref)) return ref.toLowerCase();
  throw new PolyarchError(
    'NOT_FOUND',
    `unable to prepare context: git ref "${ref}" not found in ${maskURL(src.remote)}`,
  );
}

/** Fetches (or finds in the cache) the commit `src` names and returns its context directory. */
export async function fetchGitContext(src: GitSource, opts: GitFetchOptions): Promise<GitContext> {
  const env = gitEnv(src, opts);
  const signal = opts.signal;
  let commit = await resolveCommit(src, env, signal);
  const key = createHash('sha256').update(maskURL(src.remote)).digest('hex').slice(0, 16);
  const suffix = opts.keepGitDir ? '-git' : '';
  let dir = join(opts.cacheRoot, `${key}-${commit}${suffix}`);
  let cached = commit.length === 40 && (await pathExists(dir));
  if (!cached) {
    await mkdir(opts.cacheRoot, { recursive: true, mode: 0o700 });
    const tmp = join(opts.cacheRoot, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      commit = await checkout(src, commit, tmp, env, signal);
      if (!opts.keepGitDir) await rm(join(tmp, '.git'), { recursive: true, force: true });
      dir = join(opts.cacheRoot, `${key}-${commit}${suffix}`);
      if (await pathExists(dir))
        cached = true; // another build fetched it meanwhile
      else await rename(tmp, dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  if (!src.subdir) return { dir, commit, cached };
  // Resolved, then held inside the checkout: a symlink in the repository must not make the
  // context a directory of this machine's.
  const top = await realpath(dir);
  const sub = await realpath(join(dir, src.subdir)).catch(() => undefined);
  const inside = sub !== undefined && (sub === top || sub.startsWith(`${top}/`));
  const st = inside ? await stat(sub).catch(() => undefined) : undefined;
  if (!st?.isDirectory())
    throw new PolyarchError(
      'NOT_FOUND',
      `unable to prepare context: path "${src.subdir}" not found in ${describeGit(src)} (commit ${commit.slice(0, 12)})`,
    );
  return { dir: sub!, commit, cached };
}

/** Clones `commit` into `dir` (shallow when the server allows it) and returns the full commit id. */
async function checkout(
  src: GitSource,
  commit: string,
  dir: string,
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<string> {
  const run = (args: string[]) => git(args, { cwd: dir, env, ...(signal ? { signal } : {}) });
  await mkdir(dir, { recursive: true });
  try {
    await run(['init', '-q']);
    await run(['remote', 'add', 'origin', src.remote]);
  } catch (err) {
    throw failure(src, 'fetching', err);
  }
  // A full commit id, and the ref it came from (a pull-request ref is not fetched by default).
  const wants = commit.length === 40 ? [commit] : [];
  try {
    if (wants.length === 0) throw new Error('short commit id');
    await run(['fetch', '-q', '--depth', '1', '--no-tags', 'origin', ...wants]);
  } catch (shallowErr) {
    // Servers that refuse a commit id in a want (no uploadpack.allowReachableSHA1InWant):
    // fetch the named ref shallow, else everything.
    try {
      if (src.ref && commit.length === 40 && !/^[0-9a-f]{40}$/i.test(src.ref))
        await run(['fetch', '-q', '--depth', '1', '--no-tags', 'origin', src.ref]);
      else await run(['fetch', '-q', '--tags', 'origin', '+refs/heads/*:refs/remotes/origin/*']);
    } catch (err) {
      throw failure(src, 'fetching', (err as { stderr?: string }).stderr ? err : shallowErr);
    }
  }
  let full: string;
  try {
    full = (await run(['rev-parse', '--verify', '-q', `${commit}^{commit}`])).stdout.trim();
  } catch (err) {
    throw new PolyarchError(
      'NOT_FOUND',
      `unable to prepare context: git ref "${src.ref ?? commit}" not found in ${maskURL(src.remote)}`,
      { cause: err },
    );
  }
  try {
    await run(['-c', 'advice.detachedHead=false', 'checkout', '-q', full]);
    if (await pathExists(join(dir, '.gitmodules')))
      await run(['submodule', 'update', '-q', '--init', '--recursive', '--depth', '1']);
  } catch (err) {
    throw failure(src, 'checking out', err);
  }
  return full;
}
