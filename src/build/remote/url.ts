/**
 * What a build context string names, by buildx's rules (BuildKit's gitutil.ParseGitRef and
 * buildx's isRemoteURL): a local path, a git repository, or an http(s) URL (a tarball or a
 * single Dockerfile).
 *
 *   classifyContext('.')                                   // { kind: 'local', path: '.' }
 *   classifyContext('https://h/org/repo.git#v1:sub')       // git, ref v1, subdir sub
 *   classifyContext('git@h:org/repo.git')                  // git over ssh
 *   classifyContext('github.com/org/repo')                 // git, https://github.com/org/repo.git
 *   classifyContext('https://h/ctx.tar.gz')                // http
 *
 * `maskURL` hides the password of a URL's userinfo, for every message that names one.
 */
import { UsageError } from '../../util/errors.js';

export type ContextSource =
  | { kind: 'local'; path: string }
  | {
      kind: 'git';
      /** What git is given: the URL without its fragment. */
      remote: string;
      /** Branch, tag, commit or any ref (`refs/pull/1/head`); undefined = the remote's HEAD. */
      ref?: string;
      /** A directory inside the repository to use as the context. */
      subdir?: string;
    }
  | { kind: 'http'; url: string };

/** `user:secret@` → `user:xxxxx@` in every URL of `text`. */
export function maskURL(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^/\s@]*@/gi, '$1:xxxxx@');
}

function splitFragment(s: string): { base: string; ref?: string; subdir?: string } {
  const hash = s.indexOf('#');
  if (hash < 0) return { base: s };
  const frag = s.slice(hash + 1);
  const colon = frag.indexOf(':');
  const ref = colon < 0 ? frag : frag.slice(0, colon);
  const subdir = colon < 0 ? '' : frag.slice(colon + 1);
  return { base: s.slice(0, hash), ...(ref ? { ref } : {}), ...(subdir ? { subdir } : {}) };
}

/**
 * Classifies a context argument. A path that exists locally is local even when it looks like
 * `github.com/o/r` (BuildKit's "indistinguishable from local"); `exists` answers that.
 */
export function classifyContext(
  spec: string,
  exists: (path: string) => boolean = () => false,
): ContextSource {
  if (spec === '-' || spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('/'))
    return { kind: 'local', path: spec };
  const { base, ref, subdir } = splitFragment(spec);
  const git = (remote: string): ContextSource => {
    if (subdir?.split('/').includes('..'))
      throw new UsageError(`invalid git context ${maskURL(spec)}: the subdirectory may not contain ".."`);
    return { kind: 'git', remote, ...(ref ? { ref } : {}), ...(subdir ? { subdir } : {}) };
  };
  if (/^github\.com\/[^/]+\/[^/]+/.test(base) && !exists(spec))
    return git(`https://${base.endsWith('.git') ? base : `${base}.git`}`);
  if (/^git@[^:/]+:/.test(base) || /^(ssh|git|git\+ssh):\/\//i.test(base)) return git(base);
  if (/^https?:\/\//i.test(base)) {
    // buildx: an http(s) URL is a git repository when its path ends in .git (a fragment alone
    // does not make it one); anything else is fetched as a tarball or a Dockerfile.
    const path = base.replace(/^https?:\/\/[^/]*/i, '').replace(/[?].*$/, '');
    if (path.endsWith('.git') || path.endsWith('.git/')) return git(base.replace(/\/$/, ''));
    return { kind: 'http', url: spec };
  }
  return { kind: 'local', path: spec };
}
