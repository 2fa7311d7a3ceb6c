/**
 * Image references in the grammar of distribution/reference, normalised as Docker does.
 *
 *   const r = parseReference('busybox');   // docker.io/library/busybox:latest
 *   r.domain, r.path, r.tag, r.digest      // 'docker.io', 'library/busybox', 'latest', undefined
 *   formatReference(r)                     // 'docker.io/library/busybox:latest'
 *   withDigest(r, d)                       // same reference pinned to d (tag kept)
 *
 * Grammar (distribution/reference/regexp.go):
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [domain '/'] remote-name
 *   domain     := host [ ":" port ]           host: DNS labels, or an IPv6 address in brackets
 *   remote-name:= path-component ['/' path-component]*
 *   path-component := [a-z0-9]+ (separator [a-z0-9]+)*    separator: '.', '_', '__', '-'+
 *   tag        := [\w][\w.-]{0,127}
 *   digest     := algorithm ":" hex (≥ 32 hex)
 * The first component is a domain only if it contains '.' or ':', or is `localhost`, or has
 * an upper-case letter (then the path is checked as lower-case); otherwise the domain is
 * docker.io, and a single-component docker.io name gets the `library/` prefix.
 */
import { type Digest, parseDigest } from './digest.js';
import { PolyarchError } from '../util/errors.js';

export const DEFAULT_DOMAIN = 'docker.io';
/** The legacy name of Docker Hub, which normalises to docker.io. */
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
export const DEFAULT_TAG = 'latest';
/** distribution's NameTotalLengthMax: the whole name, domain included. */
export const NAME_TOTAL_LENGTH_MAX = 255;

export interface Reference {
  /** Registry host, with port when given: `docker.io`, `127.0.0.1:5000`, `[::1]:5000`. */
  readonly domain: string;
  /** Repository path inside the registry: `library/busybox`. */
  readonly path: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]+$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const ANCHORED_HEX64 = /^[a-f0-9]{64}$/;

function bad(input: string, rule: string): PolyarchError {
  return new PolyarchError('INVALID_REFERENCE', `invalid reference "${input}": ${rule}`);
}

/** Checks a `host[:port]` string; returns the rule it breaks, or undefined when valid. */
export function domainError(domain: string): string | undefined {
  let host = domain;
  let port: string | undefined;
  if (domain.startsWith('[')) {
    const close = domain.indexOf(']');
    if (close < 0) return `domain "${domain}" has an unclosed IPv6 bracket`;
    host = domain.slice(0, close + 1);
    const rest = domain.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return `domain "${domain}" has text after the IPv6 address`;
      port = rest.slice(1);
    }
    if (!IPV6.test(host)) return `domain "${domain}" is not a valid IPv6 address`;
  } else {
    const colon = domain.lastIndexOf(':');
    if (colon >= 0) {
      host = domain.slice(0, colon);
      port = domain.slice(colon + 1);
    }
    if (host === '') return 'domain is empty';
    for (const label of host.split('.')) {
      if (!DOMAIN_LABEL.test(label)) return `domain "${domain}" has an invalid host name`;
    }
  }
  if (port !== undefined && !PORT.test(port)) return `domain "${domain}" has an invalid port "${port}"`;
  return undefined;
}

/** Splits a name into domain and remainder the way Docker's splitDockerDomain does. */
function splitDomain(name: string): { domain: string; remainder: string } {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  if (slash < 0 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    return { domain: DEFAULT_DOMAIN, remainder: name };
  }
  return { domain: first, remainder: name.slice(slash + 1) };
}

/**
 * Parses and normalises a reference. A reference with neither tag nor digest gets the tag
 * `latest` unless `defaultTag` is false (for names that must stay bare, like a `from=` repo).
 */
export function parseReference(input: string, opts: { defaultTag?: boolean } = {}): Reference {
  if (input === '') throw bad(input, 'reference is empty');
  if (input !== input.trim()) throw bad(input, 'reference has surrounding white space');
  if (ANCHORED_HEX64.test(input))
    throw bad(input, 'a 64-character hexadecimal string is an image ID, not a repository name');

  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      digest = parseDigest(d);
    } catch {
      throw bad(input, `"${d}" is not a valid digest (algorithm:hex)`);
    }
  }

  // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (tag === '') throw bad(input, 'tag is empty');
    if (!TAG.test(tag))
      throw bad(
        input,
        `tag "${tag}" must be 1-128 characters of letters, digits, '_', '.', '-', not starting with '.' or '-'`,
      );
  }
  if (rest === '') throw bad(input, 'repository name is empty');

  let { domain, remainder } = splitDomain(rest);
  const domErr = domainError(domain);
  if (domErr) throw bad(input, domErr);
  if (remainder === '') throw bad(input, 'repository name is empty');
  if (remainder.toLowerCase() !== remainder) throw bad(input, 'repository name must be lowercase');
  for (const component of remainder.split('/')) {
    if (component === '') throw bad(input, 'repository name has an empty path component');
    if (!PATH_COMPONENT.test(component))
      throw bad(
        input,
        `path component "${component}" must be lower-case letters and digits, separated by '.', '_', '__' or '-'`,
      );
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = `library/${remainder}`;
  const fullName = `${domain}/${remainder}`;
  if (rest.length > NAME_TOTAL_LENGTH_MAX || fullName.length > NAME_TOTAL_LENGTH_MAX)
    throw bad(input, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  if (tag === undefined && digest === undefined && opts.defaultTag !== false) tag = DEFAULT_TAG;
  return { domain, path: remainder, ...(tag !== undefined ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** `domain/path` — the repository without tag or digest. */
export function repositoryName(r: Reference): string {
  return `${r.domain}/${r.path}`;
}

/** The canonical string: `domain/path[:tag][@digest]`. */
export function formatReference(r: Reference): string {
  return `${repositoryName(r)}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** Docker's short form (`busybox:latest`, `user/app:1`), as `docker images` shows it. */
export function familiarReference(r: Reference): string {
  let name = repositoryName(r);
  if (r.domain === DEFAULT_DOMAIN) {
    name = r.path.startsWith('library/') && r.path.split('/').length === 2 ? r.path.slice(8) : r.path;
  }
  return `${name}${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** The same reference pinned to `digest`; a tag is kept, as distribution's reference.WithDigest does. */
export function withDigest(r: Reference, digest: Digest): Reference {
  return { domain: r.domain, path: r.path, ...(r.tag !== undefined ? { tag: r.tag } : {}), digest };
}

/** What to ask the registry for: the digest when pinned, else the tag. */
export function manifestReference(r: Reference): string {
  return r.digest ?? r.tag ?? DEFAULT_TAG;
}
