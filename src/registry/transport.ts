/**
 * HTTP transport to registries: endpoint choice (HTTPS, or plain HTTP on loopback / with
 * `http = true`), mirrors with fall-back to the upstream, keep-alive connection pools
 * (undici `Agent`), authentication (anonymous, basic, bearer tokens from the
 * WWW-Authenticate challenge, cached per host and scope set), redirects, and retries with
 * backoff for connection errors, 429 and 5xx (honouring Retry-After, bounded), and the bounds
 * of limits.ts on every response: a deadline for headers, a stall timeout and minimum rate
 * for bodies, byte limits on what is read into memory.
 *
 * Credentials go to a token realm only where they cannot leak: over HTTPS, or over plain
 * HTTP to the registry's own host when that host is spoken to in plain HTTP anyway
 * (loopback, or `http`/`insecure` in registries.toml), or to a realm host itself marked
 * `http`/`insecure`. Otherwise the token is asked for anonymously and, if that is not
 * enough, the error says why the credentials were withheld. (docker and containerd send
 * them to any realm the registry names; a registry reached over plain HTTP, or a hostile
 * one, could then point the realm anywhere and read the password.)
 *
 *   const t = new Transport({ config, env });
 *   const res = await t.request({ host: '127.0.0.1:5000', method: 'GET',
 *     path: '/v2/app/manifests/1', scopes: [pullScope('app')], expect: [200] });
 *   const text = (await res.read(65536, 'answer')).toString();
 *
 * A caller must consume every response body it receives: `res.read(max, label)`,
 * `res.chunks()` or `res.discard()` (all bounded as above), or `res.body` directly.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { rootCertificates } from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import type { Dispatcher } from 'undici';
import { errorMessage } from '../util/errors.js';
import { VERSION } from '../version.js';
import { emptyConfig, hostSettings, isLoopback, type RegistryConfig } from './config.js';
import { type Credentials, getCredentials } from './credentials.js';
import { RegistryError, responseError } from './errors.js';
import {
  discard,
  guardedChunks,
  headersTimeoutError,
  MAX_ERROR_BYTES,
  MAX_TOKEN_BYTES,
  readLimited,
  seconds,
  type Timeouts,
  timeouts,
  type Where,
} from './limits.js';

// Only undici's Agent and request API: its index also loads fetch, WebSocket, caches, mocks
// (111 modules against 39), which cost a short command like `imagetools inspect` about
// 50 ms of start-up.
const requireCjs = createRequire(import.meta.url);
// undici parses HTTP with llhttp compiled to WebAssembly. V8 compiles it twice: quickly
// (Liftoff), then optimised in the background — and a process that is done waits for that
// second compile before it exits, 100-150 ms here, longer than a whole `imagetools inspect`
// request. Liftoff code parses headers fast enough; bodies pass through it untouched.
// (polyarch runs no other WebAssembly, so the flag changes nothing else.)
setFlagsFromString('--liftoff-only');
const Agent = requireCjs('undici/lib/dispatcher/agent.js') as typeof import('undici').Agent;
// The request API alone (its index also loads stream, pipeline, upgrade and connect).
const undiciRequest = requireCjs('undici/lib/api/api-request.js') as UndiciRequest;
type UndiciRequest = (this: Dispatcher, opts: Dispatcher.RequestOptions) => Promise<Dispatcher.ResponseData>;

/** undici's `request(url, { dispatcher, ... })`, with no global dispatcher to fall back on. */
function request(
  url: URL,
  opts: Omit<Dispatcher.RequestOptions, 'origin' | 'path'> & { dispatcher: Dispatcher },
): Promise<Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = opts;
  return undiciRequest.call(dispatcher, {
    ...rest,
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
  });
}

export interface TransportOptions {
  config?: RegistryConfig;
  env?: NodeJS.ProcessEnv;
  /** Where credentials come from; default: Docker's config.json for the host. */
  credentials?: (host: string) => Promise<Credentials | undefined>;
  /** Retries after the first attempt for temporary failures. Default 3. */
  retries?: number;
  /** First backoff delay; doubles each retry. Default 250 ms. */
  backoffMs?: number;
  /** Longest wait honoured from Retry-After or backoff. Default 10 s. */
  maxDelayMs?: number;
  /** TCP+TLS connect timeout. Default 5 s (limits.ts), so an unreachable registry fails in bounded time. */
  connectTimeoutMs?: number;
  /** Time allowed without a body byte before a transfer counts as stalled. Default 30 s (limits.ts). */
  bodyTimeoutMs?: number;
  /** Deadline for response headers. Default 30 s (limits.ts). */
  headersTimeoutMs?: number;
  /** Receives warnings (mirror fall-backs). Default: none. */
  warn?: (message: string) => void;
}

export type Body = string | Buffer | Uint8Array | NodeJS.ReadableStream | AsyncIterable<Uint8Array> | null;

export interface RequestSpec {
  /** The registry named in the reference (`docker.io`, `127.0.0.1:5000`). */
  host: string;
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** Path and query (`/v2/…`), or an absolute URL (upload locations). */
  path: string;
  headers?: Record<string, string>;
  /** A factory, so the body can be sent again after an auth challenge or a retry. */
  body?: () => Body;
  /** Token scopes the request needs (`repository:app:pull`). */
  scopes: string[];
  /** Statuses that count as success; anything else becomes a RegistryError. */
  expect: number[];
  /** Names the request in errors (`GET manifest 127.0.0.1:5000/app:1`). */
  what: string;
  /** Try the host's mirrors first (reads only). */
  mirrors?: boolean;
  /** Override the retry count (0 for requests whose callers resume on their own). */
  retries?: number;
  /**
   * The registry verifies a whole uploaded blob before it answers (the final PUT of an
   * upload): its headers may take longer (`commitHeadersMs`).
   */
  commit?: boolean;
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  /** The URL that answered (after redirects), for resolving relative Locations. */
  url: string;
  /** The host that answered: the upstream or one of its mirrors. */
  servedBy: string;
  /** The whole body, at most `max` bytes received, else an error naming `label`. */
  read(max: number, label: string): Promise<Buffer>;
  /** The body's chunks, failing on a stall or a trickle (limits.ts). */
  chunks(): AsyncGenerator<Buffer, void, undefined>;
  /** Reads and drops the body (at most 64 KiB; a longer one closes the connection). */
  discard(): Promise<void>;
}

type RawResponse = Omit<Response, 'servedBy' | 'read' | 'chunks' | 'discard'>;

interface Endpoint {
  host: string;
  base: string;
  dispatcher: Dispatcher;
  /** Still deciding between HTTPS and a plain-HTTP fall-back (loopback / insecure hosts). */
  probe: boolean;
}

interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Network error codes that mean "try again" rather than "this will never work". */
const RETRY_NET = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export { header, pullScope, pushScope } from './scope.js';
import { header } from './scope.js';

/** Parses `Bearer realm="…",service="…",scope="…"` (and `Basic realm="…"`). */
export function parseChallenge(h: string | undefined): Challenge | undefined {
  if (!h) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(h);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g)) {
    params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme, params };
}

/** The CA bundle for a host with extra `ca` files: Node's roots, the system bundle, then the extras. */
function caBundle(extra: string[]): string[] {
  const cas = [...rootCertificates];
  for (const f of ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt']) {
    try {
      cas.push(readFileSync(f, 'utf8'));
      break;
    } catch {
      // not on this distribution
    }
  }
  for (const f of extra) cas.push(readFileSync(f, 'utf8'));
  return cas;
}

export class Transport {
  readonly config: RegistryConfig;
  readonly #opts: Required<Omit<TransportOptions, 'config' | 'env' | 'credentials' | 'warn'>>;
  readonly #env: NodeJS.ProcessEnv;
  readonly #credentials: (host: string) => Promise<Credentials | undefined>;
  readonly #warn: (m: string) => void;
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #challenges = new Map<string, Challenge>();
  readonly #tokens = new Map<string, { token: string; expires: number }>();
  readonly #pending = new Map<string, Promise<void>>();
  readonly #warnedMirrors = new Set<string>();
  readonly #creds = new Map<string, Promise<Credentials | undefined>>();
  /** Hosts whose credentials were kept from their token realm, and why. */
  readonly #withheld = new Map<string, string>();
  readonly #t: Timeouts;

  constructor(opts: TransportOptions = {}) {
    this.config = opts.config ?? emptyConfig();
    this.#env = opts.env ?? process.env;
    this.#credentials = opts.credentials ?? ((h) => getCredentials(h, this.#env));
    this.#warn = opts.warn ?? (() => {});
    const t = timeouts(this.#env);
    if (opts.connectTimeoutMs !== undefined) t.connectMs = opts.connectTimeoutMs;
    if (opts.bodyTimeoutMs !== undefined) t.stallMs = opts.bodyTimeoutMs;
    if (opts.headersTimeoutMs !== undefined) t.headersMs = opts.headersTimeoutMs;
    this.#t = t;
    this.#opts = {
      retries: opts.retries ?? 3,
      backoffMs: opts.backoffMs ?? 250,
      maxDelayMs: opts.maxDelayMs ?? 10_000,
      connectTimeoutMs: t.connectMs,
      bodyTimeoutMs: t.stallMs,
      headersTimeoutMs: t.headersMs,
    };
  }

  /** The timeouts and rate in force (limits.ts). */
  get timeouts(): Readonly<Timeouts> {
    return this.#t;
  }

  /** A raw response with the bounded body readers. */
  #wrap(res: RawResponse, servedBy: string, what: string): Response {
    const where: Where = { what, host: new URL(res.url).host };
    const t = this.#t;
    return {
      ...res,
      servedBy,
      read: (max, label) => readLimited(res.body, t, where, max, label),
      chunks: () => guardedChunks(res.body, t, where),
      discard: () => discard(res.body, t, where),
    };
  }

  /** An error body's text: at most 64 KiB, what came within `asideMs`, '' on a failure. */
  #errorText(body: Dispatcher.ResponseData['body'], where: Where): Promise<string> {
    return readLimited(body, this.#t, where, MAX_ERROR_BYTES, 'error body', { aside: true }).then(
      (b) => b.toString('utf8'),
      () => '',
    );
  }

  /** Closes every connection pool. */
  async close(): Promise<void> {
    await Promise.all([...this.#endpoints.values()].map((e) => e.dispatcher.close()));
    this.#endpoints.clear();
  }

  endpoint(host: string): Endpoint {
    const cached = this.#endpoints.get(host);
    if (cached) return cached;
    const s = hostSettings(this.config, host);
    // `http = true`: plain HTTP. Otherwise HTTPS; a loopback or `insecure` registry without an
    // explicit `http` setting falls back to plain HTTP when it does not speak TLS, as Docker
    // does for insecure registries. Certificates are verified unless `insecure = true`.
    const http = s.http === true;
    const probe = s.http === undefined && (isLoopback(host) || s.insecure === true);
    // Docker Hub's API lives on registry-1.docker.io.
    const apiHost = host === 'docker.io' ? 'registry-1.docker.io' : host;
    const connect: Record<string, unknown> = { timeout: this.#opts.connectTimeoutMs };
    if (!http) {
      if (s.ca.length) connect.ca = caBundle(s.ca);
      if (s.insecure) connect.rejectUnauthorized = false;
    }
    const dispatcher = new Agent({
      keepAliveTimeout: 30_000,
      connect,
      headersTimeout: this.#opts.headersTimeoutMs,
      bodyTimeout: this.#opts.bodyTimeoutMs,
    });
    const ep: Endpoint = { host, base: `${http ? 'http' : 'https'}://${apiHost}`, dispatcher, probe };
    this.#endpoints.set(host, ep);
    return ep;
  }

  #getCreds(host: string): Promise<Credentials | undefined> {
    let p = this.#creds.get(host);
    if (!p) {
      p = this.#credentials(host);
      this.#creds.set(host, p);
    }
    return p;
  }

  async #authHeader(host: string, scopes: string[]): Promise<string | undefined> {
    const ch = this.#challenges.get(host);
    if (!ch) return undefined;
    if (ch.scheme === 'basic') {
      const c = await this.#getCreds(host);
      if (!c?.username && !c?.password) return undefined;
      return `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
    }
    const key = `${host}|${[...scopes].sort().join(' ')}`;
    let t = this.#tokens.get(key);
    if (!t || t.expires <= Date.now()) {
      // The host's scheme is known: fetch a token for these scopes up front rather than
      // waiting for another 401 (which would also cost a streamed body).
      await this.#answer(
        host,
        { ...ch, params: { ...ch.params, scope: '' } },
        scopes,
        `authenticating to ${host}`,
      );
      t = this.#tokens.get(key);
    }
    return t ? `Bearer ${t.token}` : undefined;
  }

  /** Answers a 401 challenge: remembers the scheme, fetches a token for bearer. */
  async #answer(host: string, ch: Challenge, scopes: string[], what: string): Promise<void> {
    this.#challenges.set(host, ch);
    if (ch.scheme === 'basic') return;
    const realm = ch.params.realm;
    if (!realm)
      throw new RegistryError('UNAUTHORIZED', `${what}: the registry's bearer challenge has no realm`);
    const all = new Set(scopes);
    if (ch.params.scope) for (const s of ch.params.scope.split(' ')) if (s) all.add(s);
    const key = `${host}|${[...scopes].sort().join(' ')}`;
    // Concurrent requests needing the same token share one fetch.
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#fetchToken(host, realm, ch.params.service, [...all], what).then((token) => {
        this.#tokens.set(key, token);
      });
      this.#pending.set(key, pending);
      pending.then(
        () => this.#pending.delete(key),
        () => this.#pending.delete(key),
      );
    }
    await pending;
  }

  async #fetchToken(
    host: string,
    realm: string,
    service: string | undefined,
    scopes: string[],
    what: string,
  ): Promise<{ token: string; expires: number }> {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError('UNAUTHORIZED', `${what}: the token realm "${realm}" is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw new RegistryError('UNAUTHORIZED', `${what}: the token realm "${realm}" is not an http(s) URL`);
    let c = await this.#getCreds(host);
    const refusal = c && this.#realmRefusal(host, url);
    if (refusal) {
      // Ask anonymously: public repositories still work; a private one fails with the reason.
      c = undefined;
      if (!this.#withheld.has(host)) this.#warn(`${refusal}; asking for an anonymous token`);
      this.#withheld.set(host, refusal);
    }
    const headers: Record<string, string> = { 'user-agent': `polyarch/${VERSION}` };
    let method: 'GET' | 'POST' = 'GET';
    let body: string | undefined;
    if (c?.identityToken) {
      // OAuth2 refresh-token grant (distribution docs/spec/auth/oauth.md).
      method = 'POST';
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: c.identityToken,
        client_id: 'polyarch',
      });
      if (service) form.set('service', service);
      if (scopes.length) form.set('scope', scopes.join(' '));
      body = form.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (c?.username || c?.password)
        headers.authorization = `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`;
    }
    const ep = this.endpoint(url.host);
    const where: Where = { what: `${what}: token server`, host: url.host };
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, { method, headers, body, dispatcher: ep.dispatcher });
    } catch (err) {
      if ((err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT')
        throw headersTimeoutError(where, this.#t.headersMs, err);
      throw new RegistryError(
        'UNREACHABLE',
        `${what}: token server ${url.host} unreachable: ${netReason(err)}`,
        {
          cause: err,
          temporary: true,
        },
      );
    }
    if (res.statusCode !== 200) {
      const text = await this.#errorText(res.body, where);
      const e = responseError(`${what}: token server ${url.host}`, res.statusCode, text);
      if (res.statusCode === 401 || res.statusCode === 403)
        throw new RegistryError(
          'UNAUTHORIZED',
          `${what}: authentication failed at ${url.host} (HTTP ${res.statusCode})`,
          {
            status: res.statusCode,
            errors: e.errors,
          },
        );
      throw e;
    }
    const text = (await readLimited(res.body, this.#t, where, MAX_TOKEN_BYTES, 'token response')).toString(
      'utf8',
    );
    let v: { token?: string; access_token?: string; expires_in?: number };
    try {
      v = JSON.parse(text) as typeof v;
    } catch {
      throw new RegistryError('UNAUTHORIZED', `${what}: token server ${url.host} answered with invalid JSON`);
    }
    const token = v.token || v.access_token;
    if (!token)
      throw new RegistryError('UNAUTHORIZED', `${what}: token server ${url.host} returned no token`);
    // The spec's default lifetime is 60 s; refresh a little early.
    const ttl = Math.max(10, (v.expires_in ?? 60) - 5);
    return { token, expires: Date.now() + ttl * 1000 };
  }

  /**
   * Why `host`'s credentials must not go to the token realm `url`, or undefined when they
   * may: HTTPS; plain HTTP to the registry's own host name when the registry is spoken to in
   * plain HTTP anyway (loopback, `http` or `insecure`); a realm host marked `http` or
   * `insecure` itself.
   */
  #realmRefusal(host: string, url: URL): string | undefined {
    if (url.protocol === 'https:') return undefined;
    const s = hostSettings(this.config, host);
    const plainOk = isLoopback(host) || s.http === true || s.insecure === true;
    const apiHost = host === 'docker.io' ? 'registry-1.docker.io' : host;
    if (plainOk && url.hostname === new URL(`http://${apiHost}`).hostname) return undefined;
    const r = hostSettings(this.config, url.host);
    if (r.http === true || r.insecure === true) return undefined;
    return `the credentials for ${host} were not sent to its token server ${url.origin}: plain HTTP to another host (allow it with http = true for "${url.host}" in registries.toml)`;
  }

  /** Sends a request to the host (and its mirrors when asked), answering auth challenges. */
  async request(spec: RequestSpec): Promise<Response> {
    const mirrors = spec.mirrors ? hostSettings(this.config, spec.host).mirrors : [];
    for (const m of mirrors) {
      try {
        return await this.#requestHost(m, spec);
      } catch (err) {
        // One warning per mirror: a dead mirror would otherwise warn once per blob.
        if (!this.#warnedMirrors.has(m)) {
          this.#warnedMirrors.add(m);
          this.#warn(`mirror ${m} failed for ${spec.what} (${errorMessage(err)}); trying ${spec.host}`);
        }
      }
    }
    return this.#requestHost(spec.host, spec);
  }

  async #requestHost(host: string, spec: RequestSpec): Promise<Response> {
    let answered = false;
    for (;;) {
      const auth = await this.#authHeader(host, spec.scopes);
      const res = await this.#withRetries(host, spec, auth);
      const where: Where = { what: spec.what, host: new URL(res.url).host };
      if (res.status === 401 && !spec.expect.includes(401)) {
        const text = await this.#errorText(res.body, where);
        const ch = parseChallenge(header(res, 'www-authenticate'));
        if (answered || !ch) {
          const e = responseError(spec.what, 401, text);
          const withheld = this.#withheld.get(host);
          const why = withheld
            ? ` (${withheld})`
            : (await this.#getCreds(host))
              ? ' (the stored credentials were refused)'
              : ` (run: polyarch login ${host})`;
          throw new RegistryError(
            'UNAUTHORIZED',
            `${spec.what}: authentication required${why}${e.errors.length ? ` (${e.errors.map((x) => x.code).join(', ')})` : ''}`,
            { status: 401, errors: e.errors },
          );
        }
        // A cached token that was refused is dropped before asking for a new one.
        this.#tokens.delete(`${host}|${[...spec.scopes].sort().join(' ')}`);
        await this.#answer(host, ch, spec.scopes, spec.what);
        answered = true;
        continue;
      }
      if (!spec.expect.includes(res.status)) {
        const text = await this.#errorText(res.body, where);
        throw responseError(spec.what, res.status, text, header(res, 'retry-after'));
      }
      return this.#wrap(res, host, spec.what);
    }
  }

  async #withRetries(host: string, spec: RequestSpec, auth: string | undefined): Promise<RawResponse> {
    const retries = spec.retries ?? this.#opts.retries;
    for (let attempt = 0; ; attempt++) {
      let wait = Math.min(this.#opts.backoffMs * 2 ** attempt, this.#opts.maxDelayMs);
      let res: RawResponse;
      try {
        res = await this.#send(host, spec, auth);
      } catch (err) {
        // A registry that takes the request and never answers is not retried: another try
        // would most likely wait as long again.
        if (err instanceof RegistryError) throw err;
        const code = (err as { code?: string }).code ?? '';
        const tls = tlsTrustError(err);
        if (tls)
          throw new RegistryError(
            'TLS',
            `${host}: TLS certificate not trusted: ${tls} (add its CA with ca = [...] or set insecure = true for "${host}" in registries.toml)`,
            { cause: err },
          );
        if (code === 'UND_ERR_CONNECT_TIMEOUT' && attempt >= retries)
          throw new RegistryError(
            'UNREACHABLE',
            `${spec.what}: could not connect to ${host} within ${seconds(this.#t.connectMs)} (TCP and TLS handshake, ${attempt + 1} attempts)`,
            { cause: err, temporary: true },
          );
        if (!RETRY_NET.has(code) || attempt >= retries)
          throw new RegistryError('UNREACHABLE', `${host} unreachable: ${netReason(err)}`, {
            cause: err,
            temporary: RETRY_NET.has(code),
          });
        await sleep(wait);
        continue;
      }
      if (spec.expect.includes(res.status) || res.status === 401) return res;
      // A failure: the registry's error body decides whether it is worth another try
      // (429, 5xx, and codes like TOOMANYREQUESTS or UNAVAILABLE are temporary).
      const text = await this.#errorText(res.body, { what: spec.what, host: new URL(res.url).host });
      const e = responseError(spec.what, res.status, text, header(res, 'retry-after'));
      if (!e.temporary || attempt >= retries) throw e;
      if (e.retryAfterMs !== undefined) wait = Math.min(e.retryAfterMs, this.#opts.maxDelayMs);
      await sleep(wait);
    }
  }

  async #send(host: string, spec: RequestSpec, auth: string | undefined): Promise<RawResponse> {
    const ep = this.endpoint(host);
    if (!ep.probe) return this.#sendTo(ep, spec, auth);
    try {
      const res = await this.#sendTo(ep, spec, auth);
      if (ep.base.startsWith('https:')) ep.probe = false;
      return res;
    } catch (err) {
      if (!isPlainHttpAnswer(err)) throw err;
      // The server answered the TLS hello in plain HTTP: use HTTP from now on. Requests sent
      // concurrently with the first one fail the same way and land here too.
      ep.base = ep.base.replace(/^https:/, 'http:');
      return this.#sendTo(ep, spec, auth);
    }
  }

  async #sendTo(ep: Endpoint, spec: RequestSpec, auth: string | undefined): Promise<RawResponse> {
    let url = new URL(spec.path, `${ep.base}/`);
    const headers: Record<string, string> = { 'user-agent': `polyarch/${VERSION}`, ...spec.headers };
    if (auth) headers.authorization = auth;
    for (let hops = 0; ; hops++) {
      const sameOrigin = url.origin === new URL(ep.base).origin;
      const h = { ...headers };
      if (!sameOrigin) delete h.authorization;
      const dispatcher = sameOrigin ? ep.dispatcher : this.endpoint(url.host).dispatcher;
      const headersTimeout = spec.commit ? this.#t.commitHeadersMs : this.#t.headersMs;
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method: spec.method,
          headers: h,
          body: (spec.body?.() ?? null) as never,
          dispatcher,
          headersTimeout,
        });
      } catch (err) {
        if ((err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT')
          throw headersTimeoutError({ what: spec.what, host: url.host }, headersTimeout, err);
        throw err;
      }
      const loc = header({ headers: res.headers }, 'location');
      // Blob downloads are often redirected to storage; follow GET/HEAD redirects, up to 5.
      if (
        [301, 302, 303, 307, 308].includes(res.statusCode) &&
        loc &&
        (spec.method === 'GET' || spec.method === 'HEAD') &&
        hops < 5
      ) {
        await discard(res.body, this.#t, { what: spec.what, host: url.host });
        url = new URL(loc, url);
        continue;
      }
      return { status: res.statusCode, headers: res.headers, body: res.body, url: url.toString() };
    }
  }
}

/** The reason when a TLS peer's certificate failed verification, else undefined. */
function tlsTrustError(err: unknown): string | undefined {
  for (
    let e = err as { code?: string; message?: string; cause?: unknown } | undefined;
    e;
    e = e.cause as typeof e
  ) {
    const c = e.code ?? '';
    if (/^(CERT_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|ERR_TLS_CERT_ALTNAME)/.test(c))
      return `${e.message ?? c} (${c})`;
  }
  return undefined;
}

/** True for the TLS errors a plain-HTTP server causes by answering a ClientHello. */
function isPlainHttpAnswer(err: unknown): boolean {
  for (
    let e = err as { code?: string; message?: string; cause?: unknown } | undefined;
    e;
    e = e.cause as typeof e
  ) {
    if (e.code === 'EPROTO' || e.code === 'ERR_SSL_WRONG_VERSION_NUMBER') return true;
    if (/wrong version number|packet length too long|unknown protocol/i.test(e.message ?? '')) return true;
  }
  return false;
}

/** A short reason for a network failure: `connect ECONNREFUSED 127.0.0.1:1`. */
export function netReason(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: unknown };
  if (e?.cause && typeof e.cause === 'object' && (e.cause as { code?: string }).code)
    return netReason(e.cause);
  const msg = errorMessage(err);
  if (e?.code && !msg.includes(e.code)) return `${msg} (${e.code})`;
  return msg;
}
