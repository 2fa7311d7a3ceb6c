/**
 * Named build contexts (`--build-context NAME=VALUE`, buildx): extra sources a Dockerfile
 * reads by name in `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME`.
 *
 *   const specs = ['src=../lib', 'alpine=docker-image://busybox:1.36'].map(parseBuildContext);
 *   build({ ..., namedContexts: specs });        // the engine prepares and uses them (build.ts)
 *
 * VALUE is a directory, `docker-image://REF[@digest]`, `oci-layout://PATH[:tag][@digest]`, a git
 * URL (fetched per commit into the state root's git cache, remote/git.ts) or an http(s) URL (a
 * single file named after the URL's last path element, as BuildKit's llb.HTTP makes it).
 * As in BuildKit: a context replaces a stage of its name and an image of its name (`FROM alpine`
 * with `--build-context alpine=…`; names are compared in Docker's short form, so
 * `docker.io/library/alpine:latest` is `alpine`); image contexts are resolved per platform and
 * bring their config (ENV, WORKDIR, …) to a stage built FROM them; directory-like ones bring
 * none (like scratch with files).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { familiarReference, parseReference } from '../oci/reference.js';
import { errorMessage, PolyarchError, UsageError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import type { SecretSource } from './build.js';
import type { prepareRemoteContext } from './remote/index.js';
import { classifyContext, maskURL } from './remote/url.js';

/** The fetchers (git, http) load when a context needs them, not with the engine. */
const fetchRemote: typeof prepareRemoteContext = async (...a) =>
  (await import('./remote/index.js')).prepareRemoteContext(...a);

export type NamedContextSource =
  | { kind: 'local'; dir: string }
  | { kind: 'image'; ref: string }
  | { kind: 'oci-layout'; path: string; tag?: string; digest?: string }
  | { kind: 'git'; url: string }
  | { kind: 'http'; url: string };

export interface NamedContextSpec {
  /** The name in Docker's short form (`alpine`, `127.0.0.1:5000/app:1`, `base`). */
  name: string;
  /** VALUE as given (messages mask its credentials). */
  value: string;
  source: NamedContextSource;
}

/** A name in the form BuildKit compares context names in (familiar, without `:latest`). */
export function contextName(name: string): string | undefined {
  try {
    return familiarReference(parseReference(name, { defaultTag: false })).replace(/:latest$/, '');
  } catch {
    return undefined;
  }
}

/**
 * Parses one `--build-context NAME=VALUE` (UsageError on a bad one). A directory is made
 * absolute against `cwd`; whether it exists is checked when the build prepares it.
 */
export function parseBuildContext(flag: string, cwd = process.cwd()): NamedContextSpec {
  const eq = flag.indexOf('=');
  if (eq <= 0 || eq === flag.length - 1)
    throw new UsageError(`invalid --build-context "${maskURL(flag)}": expected NAME=VALUE`);
  const rawName = flag.slice(0, eq);
  const value = flag.slice(eq + 1);
  const name = contextName(rawName);
  if (name === undefined)
    throw new UsageError(
      `invalid --build-context name "${rawName}": it must be a valid image or stage name (lower-case letters, digits, '.', '_', '-', '/')`,
    );
  const bad = (why: string) => new UsageError(`invalid --build-context ${name}=${maskURL(value)}: ${why}`);
  let source: NamedContextSource;
  if (value.startsWith('docker-image://')) {
    const ref = value.slice('docker-image://'.length);
    try {
      parseReference(ref);
    } catch (err) {
      throw bad(errorMessage(err));
    }
    source = { kind: 'image', ref };
  } else if (value.startsWith('oci-layout://')) {
    let rest = value.slice('oci-layout://'.length);
    let digest: string | undefined;
    const at = rest.indexOf('@');
    if (at >= 0) {
      digest = rest.slice(at + 1);
      rest = rest.slice(0, at);
      if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw bad(`"${digest}" is not a sha256 digest`);
    }
    // A tag follows the last ':' after the last '/' (as buildx cuts it).
    let tag: string | undefined;
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) throw bad(`"${tag}" is not a valid tag`);
    }
    if (rest === '') throw bad('the layout path is empty');
    source = {
      kind: 'oci-layout',
      path: resolve(cwd, rest),
      ...(tag !== undefined ? { tag } : {}),
      ...(digest !== undefined ? { digest } : {}),
    };
  } else {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1]?.toLowerCase();
    const c = classifyContext(value, (p) => existsSync(resolve(cwd, p)));
    if (c.kind === 'git') source = { kind: 'git', url: value };
    else if (c.kind === 'http') source = { kind: 'http', url: value };
    else if (scheme !== undefined)
      throw bad(
        `unsupported context source "${scheme}://" (expected a directory, docker-image://, oci-layout://, a git URL or an http(s) URL)`,
      );
    else source = { kind: 'local', dir: resolve(cwd, value) };
  }
  return { name, value, source };
}

/** The lookup the planner takes (PlanOptions.namedContext): a stage or image name → context name. */
export function namedContextLookup(specs: readonly NamedContextSpec[]): (name: string) => string | undefined {
  const names = new Set(specs.map((s) => s.name));
  return (n) => {
    const c = contextName(n);
    return c !== undefined && names.has(c) ? c : undefined;
  };
}

/** How messages name a context: `NAME` and its value, credentials masked. */
export function describeContext(spec: NamedContextSpec): string {
  return `${spec.name}=${maskURL(spec.value)}`;
}

/** A prepared context: an image reference for the engine's image resolver, or a directory. */
export type PreparedContext =
  | { kind: 'image'; spec: NamedContextSpec; ref: string }
  | { kind: 'dir'; spec: NamedContextSpec; dir: string; cleanup?: () => Promise<void> };

export interface PrepareContextOptions {
  stateRoot: string;
  env?: NodeJS.ProcessEnv;
  secrets?: readonly SecretSource[];
  buildArgs?: Readonly<Record<string, string>>;
  signal?: AbortSignal;
}

/** The image-resolver key of an OCI layout context (build.ts passes it to resolveLayoutImage). */
export const OCI_LAYOUT_PREFIX = 'oci-layout://';

/**
 * Makes a context usable: a directory checked, a git repository or URL fetched, an image or
 * layout named for the resolver (resolved per platform later). Errors name the context.
 */
export async function prepareNamedContext(
  spec: NamedContextSpec,
  opts: PrepareContextOptions,
): Promise<PreparedContext> {
  const s = spec.source;
  const fail = (why: string, cause?: unknown) =>
    new PolyarchError('NOT_FOUND', `failed to get build context ${describeContext(spec)}: ${why}`, {
      ...(cause ? { cause } : {}),
    });
  switch (s.kind) {
    case 'image':
      return { kind: 'image', spec, ref: s.ref };
    case 'oci-layout': {
      const st = await stat(join(s.path, 'index.json')).catch(() => undefined);
      if (!st?.isFile()) throw fail(`${s.path} is not an OCI image layout (no index.json)`);
      return {
        kind: 'image',
        spec,
        ref: `${OCI_LAYOUT_PREFIX}${s.path}${s.tag !== undefined ? `:${s.tag}` : ''}${s.digest ? `@${s.digest}` : ''}`,
      };
    }
    case 'local': {
      const st = await stat(s.dir).catch(() => undefined);
      if (!st) throw fail(`path "${s.dir}" not found`);
      if (!st.isDirectory()) throw fail(`"${s.dir}" is not a directory`);
      return { kind: 'dir', spec, dir: s.dir };
    }
    case 'git': {
      try {
        const r = await fetchRemote(s.url, {
          stateRoot: opts.stateRoot,
          ...(opts.env ? { env: opts.env } : {}),
          ...(opts.secrets ? { secrets: opts.secrets } : {}),
          ...(opts.buildArgs ? { buildArgs: opts.buildArgs } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        if (!r) throw new Error('not a git URL');
        return { kind: 'dir', spec, dir: r.dir, cleanup: r.cleanup };
      } catch (err) {
        if (err instanceof PolyarchError && err.code === 'ABORTED') throw err;
        throw fail(errorMessage(err).replace(/^unable to prepare context: /, ''), err);
      }
    }
    case 'http':
      return downloadFile(spec, s.url, opts).catch((err) => {
        if (err instanceof PolyarchError && err.code === 'ABORTED') throw err;
        throw fail(errorMessage(err), err);
      });
  }
}

/** Largest http context file accepted. */
const MAX_HTTP_BYTES = 1 << 30;

interface HttpMeta {
  url: string;
  /** The directory (under the entry) holding the current file. */
  version: string;
  etag?: string;
  lastModified?: string;
}

/**
 * An http(s) context: the file, named after the URL's last path element, mode 0600 (llb.HTTP).
 * Kept under `<state root>/contexts/http/<url hash>/`: a rebuild asks with If-None-Match /
 * If-Modified-Since and a 304 downloads nothing. URLs with credentials are not kept.
 */
async function downloadFile(
  spec: NamedContextSpec,
  url: string,
  opts: PrepareContextOptions,
): Promise<PreparedContext> {
  const { Agent, interceptors, request } = await import('undici');
  const agent = new Agent({ headersTimeout: 30_000 });
  const keep = maskURL(url) === url;
  const entry = keep
    ? join(opts.stateRoot, 'contexts', 'http', createHash('sha256').update(url).digest('hex').slice(0, 32))
    : await mkdtemp(join(tmpdir(), 'polyarch-named-context-'));
  const cleanup = keep ? undefined : () => rm(entry, { recursive: true, force: true });
  await mkdir(entry, { recursive: true, mode: 0o700 });
  const meta = keep
    ? await readFile(join(entry, 'meta.json'), 'utf8')
        .then((t) => JSON.parse(t) as HttpMeta)
        .catch(() => undefined)
    : undefined;
  const have =
    meta?.url === url && (await stat(join(entry, meta.version)).catch(() => undefined)) ? meta : undefined;
  const tmp = join(entry, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const headers: Record<string, string> = {};
    if (have?.etag) headers['if-none-match'] = have.etag;
    if (have?.lastModified) headers['if-modified-since'] = have.lastModified;
    const res = await request(url, {
      method: 'GET',
      headers,
      dispatcher: agent.compose(interceptors.redirect({ maxRedirections: 5 })),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (res.statusCode === 304 && have) {
      await res.body.dump();
      return { kind: 'dir', spec, dir: join(entry, have.version) };
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`HTTP ${res.statusCode}`);
    }
    const name = posix.basename(new URL(url).pathname) || 'index.html';
    await mkdir(tmp);
    const file = join(tmp, name);
    let n = 0;
    await pipeline(
      res.body,
      new Transform({
        transform(chunk: Buffer, _e, cb) {
          n += chunk.length;
          if (n > MAX_HTTP_BYTES) cb(new Error(`larger than ${MAX_HTTP_BYTES} bytes`));
          else cb(null, chunk);
        },
      }),
      createWriteStream(file, { mode: 0o600 }),
    );
    const header = (h: string) => {
      const v = res.headers[h];
      return typeof v === 'string' ? v : undefined;
    };
    const lm = header('last-modified');
    const t = lm !== undefined ? new Date(lm) : undefined;
    if (t && !Number.isNaN(t.getTime())) await utimes(file, t, t);
    // Each download is a new version directory: a build still reading the previous one is not
    // disturbed; versions older than the current one are removed.
    const version = `v-${Date.now()}-${randomBytes(4).toString('hex')}`;
    await rename(tmp, join(entry, version));
    if (keep) {
      const etag = header('etag');
      const next: HttpMeta = {
        url,
        version,
        ...(etag !== undefined ? { etag } : {}),
        ...(lm !== undefined ? { lastModified: lm } : {}),
      };
      await writeFileAtomic(join(entry, 'meta.json'), JSON.stringify(next));
      if (have && have.version !== version)
        await rm(join(entry, have.version), { recursive: true, force: true }).catch(() => undefined);
    }
    return { kind: 'dir', spec, dir: join(entry, version), ...(cleanup ? { cleanup } : {}) };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    await cleanup?.().catch(() => undefined);
    throw err;
  } finally {
    await agent.close().catch(() => undefined);
  }
}
