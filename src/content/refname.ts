/**
 * Minimal image-name normalisation for looking names up in the local store.
 *
 * TEMPORARY: src/registry/reference.ts (the registry helper's full reference parser) replaces
 * this once it is on the same branch; keep these two functions' names so callers only
 * change an import. Docker's rules, as far as the store needs them:
 *
 *   normalizeName('busybox')              // 'docker.io/library/busybox:latest'
 *   normalizeName('reg:5000/app')         // 'reg:5000/app:latest'
 *   familiarName('docker.io/library/busybox:latest')  // { repository: 'busybox', tag: 'latest' }
 */

const DEFAULT_DOMAIN = 'docker.io';

function splitDomain(name: string): { domain: string | undefined; path: string } {
  const slash = name.indexOf('/');
  if (slash < 0) return { domain: undefined, path: name };
  const first = name.slice(0, slash);
  // A first component is a registry host if it looks like one (docker's rule).
  if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())
    return { domain: first, path: name.slice(slash + 1) };
  return { domain: undefined, path: name };
}

/** `name[:tag][@digest]` → fully qualified; adds `:latest` when neither tag nor digest is given. */
export function normalizeName(ref: string): string {
  const at = ref.indexOf('@');
  const nameTag = at < 0 ? ref : ref.slice(0, at);
  const digest = at < 0 ? '' : ref.slice(at);
  const { domain, path } = splitDomain(nameTag);
  const lastSlash = path.lastIndexOf('/');
  const hasTag = path.indexOf(':', lastSlash + 1) >= 0;
  let full = domain
    ? `${domain}/${path}`
    : `${DEFAULT_DOMAIN}/${path.includes('/') ? path : `library/${path}`}`;
  if (!hasTag && !digest) full += ':latest';
  return full + digest;
}

/** Splits a stored name into what `images` shows: docker.io/library/ and docker.io/ dropped. */
export function familiarName(name: string): { repository: string; tag: string } {
  const at = name.indexOf('@');
  const nameTag = at < 0 ? name : name.slice(0, at);
  const lastSlash = nameTag.lastIndexOf('/');
  const colon = nameTag.indexOf(':', lastSlash + 1);
  let repository = colon < 0 ? nameTag : nameTag.slice(0, colon);
  const tag = colon < 0 ? '<none>' : nameTag.slice(colon + 1);
  if (repository.startsWith(`${DEFAULT_DOMAIN}/library/`) && repository.split('/').length === 3)
    repository = repository.slice(`${DEFAULT_DOMAIN}/library/`.length);
  else if (repository.startsWith(`${DEFAULT_DOMAIN}/`))
    repository = repository.slice(DEFAULT_DOMAIN.length + 1);
  return { repository, tag };
}
