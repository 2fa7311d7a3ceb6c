/**
 * A Docker token-auth server for tests (the "realm" a registry's Bearer challenge names).
 *
 *   const ts = await startTokenServer({ user: 'alice', password: 's3cret', service: 'reg' });
 *   // registry config: auth.token = { realm: ts.realm, service: ts.service,
 *   //                                 issuer: ts.issuer, rootcertbundle: ts.rootCertBundle }
 *   await ts.stop();
 *
 * Protocol (distribution's docs/spec/auth/token.md and oauth.md):
 *   GET  /token?service=S&scope=repository:NAME:pull,push[&scope=...]  (Basic auth optional)
 *   POST /token  form: grant_type=password|refresh_token, username, password, refresh_token,
 *                      service, scope (space separated), access_type=offline for a refresh token
 * Answer: {token, access_token, expires_in, issued_at[, refresh_token]}.
 *
 * Policy: the configured user gets every action it asks for (pull, push, delete, *).
 * A request without credentials is anonymous and gets `pull` only (like Docker Hub's public
 * repositories), so anonymous push is refused by the registry while anonymous pull works.
 * Wrong credentials are refused with 401 (never downgraded to anonymous). A `service` other
 * than the configured one is refused with 400.
 *
 * Tokens are ES256 JWTs whose header carries the signing certificate in `x5c`; the
 * registry verifies that chain against `rootCertBundle` (a self-signed cert made with
 * openssl per server) and the signature with the certificate's key.
 */
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { run } from './proc.js';

export interface TokenServerOptions {
  /** Directory for the key and certificate (must exist; the caller removes it). */
  dir: string;
  user: string;
  password: string;
  /** The registry's service name, echoed in tokens' `aud` (default 'polyarch-test-registry'). */
  service?: string;
  /** Token issuer, `iss` claim (default 'polyarch-test-token-server'). */
  issuer?: string;
  /** Token lifetime in seconds (default 300, Docker Hub's). */
  expiresIn?: number;
}

export interface TokenRequest {
  method: string;
  /** The authenticated user, or null for an anonymous request. */
  user: string | null;
  scopes: string[];
  status: number;
}

export interface TokenServer {
  /** URL of the token endpoint, e.g. http://127.0.0.1:41234/token */
  realm: string;
  service: string;
  issuer: string;
  /** PEM file the registry trusts (auth.token.rootcertbundle). */
  rootCertBundle: string;
  /** Every request answered so far, oldest first (tests may assert on token traffic). */
  requests: TokenRequest[];
  stop(): Promise<void>;
}

interface Access {
  type: string;
  name: string;
  actions: string[];
}

const KNOWN_ACTIONS = new Set(['pull', 'push', 'delete', '*']);

export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const service = opts.service ?? 'polyarch-test-registry';
  const issuer = opts.issuer ?? 'polyarch-test-token-server';
  const expiresIn = opts.expiresIn ?? 300;
  const keyPath = join(opts.dir, 'token-key.pem');
  const certPath = join(opts.dir, 'token-cert.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-days',
    '7',
    '-subj',
    '/CN=polyarch-test-token-server',
  ]);
  const key = createPrivateKey(await readFile(keyPath));
  const certDer = new X509Certificate(await readFile(certPath)).raw.toString('base64');
  const refreshTokens = new Map<string, string>();
  const requests: TokenRequest[] = [];

  const issue = (user: string | null, access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'ES256', x5c: [certDer] };
    const claims = {
      iss: issuer,
      sub: user ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 1,
      iat: now,
      jti: randomBytes(12).toString('hex'),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    // JOSE wants the raw r||s form, not DER.
    const sig = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
    return `${signingInput}.${b64url(sig)}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<TokenRequest> => {
    const url = new URL(req.url ?? '/', 'http://token');
    const log: TokenRequest = { method: req.method ?? '', user: null, scopes: [], status: 200 };
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}): TokenRequest => {
      log.status = status;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
      return log;
    };
    const refuse = (status: number, code: string, message: string): TokenRequest =>
      reply(
        status,
        { errors: [{ code, message }] },
        status === 401 ? { 'www-authenticate': 'Basic realm="polyarch-test-token-server"' } : {},
      );
    if (url.pathname !== '/token') return refuse(404, 'NOT_FOUND', `no such endpoint ${url.pathname}`);

    let user: string | null = null;
    let reqService: string | null;
    let offline = false;
    if (req.method === 'GET') {
      reqService = url.searchParams.get('service');
      log.scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ').filter(Boolean));
      const basic = parseBasic(req.headers.authorization);
      if (basic === 'invalid') return refuse(401, 'UNAUTHORIZED', 'malformed Authorization header');
      if (basic) {
        if (basic.user !== opts.user || basic.password !== opts.password) {
          return refuse(401, 'UNAUTHORIZED', `invalid username or password for "${basic.user}"`);
        }
        user = basic.user;
      }
    } else if (req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req));
      reqService = form.get('service');
      log.scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
      offline = form.get('access_type') === 'offline';
      const grant = form.get('grant_type');
      if (grant === 'password') {
        if (form.get('username') !== opts.user || form.get('password') !== opts.password) {
          return refuse(401, 'UNAUTHORIZED', `invalid username or password for "${form.get('username')}"`);
        }
        user = opts.user;
      } else if (grant === 'refresh_token') {
        const owner = refreshTokens.get(form.get('refresh_token') ?? '');
        if (!owner) return refuse(401, 'UNAUTHORIZED', 'unknown refresh token');
        user = owner;
      } else {
        return refuse(400, 'UNSUPPORTED', `unsupported grant_type "${grant}"`);
      }
    } else {
      return refuse(405, 'UNSUPPORTED', `method ${req.method} not allowed`);
    }
    log.user = user;
    if (reqService !== null && reqService !== service) {
      return refuse(400, 'DENIED', `unknown service "${reqService}" (this server issues for "${service}")`);
    }

    const access = log.scopes.map((s) => grant(s, user !== null));
    const token = issue(user, access);
    const body: Record<string, unknown> = {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date().toISOString(),
    };
    if (offline && user !== null) {
      const refresh = randomBytes(16).toString('hex');
      refreshTokens.set(refresh, user);
      body.refresh_token = refresh;
    }
    return reply(200, body);
  };

  const server = createServer((req, res) => {
    handle(req, res).then(
      (log) => requests.push(log),
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(err));
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootCertBundle: certPath,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** `repository:library/busybox:pull,push` → the access entry granted for it. */
function grant(scope: string, authenticated: boolean): Access {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first < 0 || last <= first) return { type: scope, name: '', actions: [] };
  const asked = scope
    .slice(last + 1)
    .split(',')
    .filter((a) => KNOWN_ACTIONS.has(a));
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: authenticated ? asked : asked.filter((a) => a === 'pull'),
  };
}

function parseBasic(header: string | undefined): { user: string; password: string } | null | 'invalid' {
  if (!header) return null;
  const m = /^Basic\s+(\S+)$/i.exec(header);
  if (!m) return 'invalid';
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return 'invalid';
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (b: Buffer) => chunks.push(b));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}
