/**
 * `ADD <git URL> <dest>` (BuildKit's): the repository's tree at a ref copied into the
 * destination directory, `.git` left out unless `--keep-git-dir`; `--checksum=<commit>` pins
 * the commit the ref must resolve to.
 *
 *   if (isGitSource(src)) {
 *     const { dir, commit } = await fetchAddGit(src, { stateRoot, env, keepGitDir, checksum });
 *   }
 *
 * Fetched through the git context cache (remote/git.ts: per commit, so a rebuild of a pinned
 * commit asks nothing of the server), with the build's GIT_AUTH_TOKEN / GIT_AUTH_HEADER secrets
 * and, for ssh URLs, the `--ssh default` agent.
 */
import { PolyarchError } from '../util/errors.js';
import type { SecretSource } from './build.js';
import type { prepareRemoteContext } from './remote/index.js';
import { classifyContext, maskURL } from './remote/url.js';

/** The fetchers (git, http) load when a context needs them, not with the engine. */
const fetchRemote: typeof prepareRemoteContext = async (...a) =>
  (await import('./remote/index.js')).prepareRemoteContext(...a);

/** Whether an ADD source is a git repository (an http(s) URL ending in .git, git@, ssh://, git://). */
export function isGitSource(src: string): boolean {
  if (!/^(https?|git|ssh|git\+ssh):\/\//i.test(src) && !/^git@[^:/]+:/.test(src)) return false;
  return classifyContext(src).kind === 'git';
}

export interface AddGitOptions {
  stateRoot: string;
  env: NodeJS.ProcessEnv;
  secrets?: readonly SecretSource[];
  keepGitDir?: boolean;
  /** `--checksum`: the commit id (full, or a prefix of 7 or more hex digits) the ref must name. */
  checksum?: string;
  signal?: AbortSignal;
}

/** The tree of the git source (a directory of the cache) and its commit; errors name the URL masked. */
export async function fetchAddGit(
  src: string,
  opts: AddGitOptions,
): Promise<{ dir: string; commit: string }> {
  const shown = maskURL(src);
  if (opts.checksum !== undefined && !/^[0-9a-f]{7,64}$/i.test(opts.checksum))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `ADD ${shown}: invalid --checksum "${opts.checksum}": a git source's checksum is its commit id (hex)`,
    );
  let r: Awaited<ReturnType<typeof prepareRemoteContext>>;
  try {
    r = await fetchRemote(src, {
      stateRoot: opts.stateRoot,
      env: opts.env,
      ...(opts.secrets ? { secrets: opts.secrets } : {}),
      keepGitDir: opts.keepGitDir ?? false,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  } catch (err) {
    if (err instanceof PolyarchError)
      throw new PolyarchError(
        err.code,
        `ADD ${shown}: ${err.message.replace(/^unable to prepare context: /, '')}`,
        {
          cause: err,
        },
      );
    throw err;
  }
  if (!r?.commit) throw new PolyarchError('INTERNAL', `ADD ${shown}: not fetched as a git repository`);
  if (opts.checksum !== undefined && !r.commit.startsWith(opts.checksum.toLowerCase()))
    throw new PolyarchError(
      'DIGEST_MISMATCH',
      `ADD ${shown}: checksum mismatch: expected commit ${opts.checksum.toLowerCase()}, got ${r.commit}`,
    );
  return { dir: r.dir, commit: r.commit };
}
