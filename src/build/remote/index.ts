/**
 * Remote build contexts: a git repository or an http(s) URL made into a local directory the
 * build reads like any other context.
 *
 *   const ctx = await prepareRemoteContext('https://h/org/repo.git#main:app', { stateRoot, env, secrets });
 *   if (ctx) { build(ctx.dir); await ctx.cleanup(); }   // undefined: the argument is a local path
 *
 * Git contexts are kept per commit under `<state root>/contexts/git` (a rebuild of the same
 * commit fetches nothing); URL contexts are downloaded for each build and removed after it.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SecretSource } from '../build.js';
import { type SshSource, SshForwarder } from '../ssh.js';
import { describeGit, fetchGitContext } from './git.js';
import { fetchHttpContext } from './http.js';
import { classifyContext, type ContextSource, maskURL } from './url.js';

export { classifyContext, type ContextSource, describeGit, maskURL };

export interface RemoteContextOptions {
  stateRoot: string;
  env?: NodeJS.ProcessEnv;
  /** `--secret`s: GIT_AUTH_TOKEN and GIT_AUTH_HEADER authenticate git over https. */
  secrets?: readonly SecretSource[];
  /** Build args: BUILDKIT_CONTEXT_KEEP_GIT_DIR=1 keeps `.git` in a git context. */
  buildArgs?: Readonly<Record<string, string>>;
  /**
   * `--ssh` sources: git over ssh uses the `default` one's agent (the caller's SSH_AUTH_SOCK,
   * an agent socket, or an agent started for key files, stopped after the fetch).
   */
  ssh?: readonly SshSource[];
  /** Keep `.git` (ADD --keep-git-dir); overrides BUILDKIT_CONTEXT_KEEP_GIT_DIR when set. */
  keepGitDir?: boolean;
  signal?: AbortSignal;
}

export interface RemoteContext {
  source: Exclude<ContextSource, { kind: 'local' }>;
  /** The context directory. */
  dir: string;
  /** How messages name the context (credentials masked). */
  display: string;
  /** The git commit built, for a git context. */
  commit?: string;
  /** A URL context that was a lone Dockerfile: its text (the context is empty). */
  dockerfile?: string;
  cleanup: () => Promise<void>;
}

async function secretValue(secrets: readonly SecretSource[] | undefined, id: string, env: NodeJS.ProcessEnv) {
  const s = secrets?.find((x) => x.id === id);
  if (!s) return undefined;
  if (s.env !== undefined) return env[s.env];
  if (s.src !== undefined) return (await readFile(s.src, 'utf8')).trim();
  return undefined;
}

/** The remote context `spec` names, fetched; undefined when it is a local path (or `-`). */
export async function prepareRemoteContext(
  spec: string,
  opts: RemoteContextOptions,
): Promise<RemoteContext | undefined> {
  const source = classifyContext(spec, existsSync);
  const env = opts.env ?? process.env;
  if (source.kind === 'local') return undefined;
  if (source.kind === 'http') {
    const r = await fetchHttpContext(source.url, {
      tmpRoot: tmpdir(),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return {
      source,
      dir: r.dir,
      display: maskURL(source.url),
      ...(r.dockerfile !== undefined ? { dockerfile: r.dockerfile } : {}),
      cleanup: r.cleanup,
    };
  }
  const [authToken, authHeader] = await Promise.all([
    secretValue(opts.secrets, 'GIT_AUTH_TOKEN', env),
    secretValue(opts.secrets, 'GIT_AUTH_HEADER', env),
  ]);
  const keep = opts.buildArgs?.BUILDKIT_CONTEXT_KEEP_GIT_DIR ?? env.BUILDKIT_CONTEXT_KEEP_GIT_DIR;
  const ssh = opts.ssh?.some((s) => s.id === 'default') ? new SshForwarder(opts.ssh, env) : undefined;
  const r = await fetchGitContext(source, {
    cacheRoot: join(opts.stateRoot, 'contexts', 'git'),
    env: ssh ? { ...env, SSH_AUTH_SOCK: await ssh.agentSocket('default') } : env,
    ...(authToken !== undefined ? { authToken } : {}),
    ...(authHeader !== undefined ? { authHeader } : {}),
    keepGitDir: opts.keepGitDir ?? (keep === '1' || keep === 'true'),
    ...(opts.signal ? { signal: opts.signal } : {}),
  }).finally(() => ssh?.close());
  return { source, dir: r.dir, display: describeGit(source), commit: r.commit, cleanup: async () => {} };
}
