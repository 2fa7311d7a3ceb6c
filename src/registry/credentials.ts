/**
 * Registry credentials in Docker's config file: `$DOCKER_CONFIG/config.json`, default
 * `~/.docker/config.json`. Reading follows docker's order: `credHelpers[host]`, then
 * `credsStore`, then `auths` (base64 `auth`, or `username`/`password`, or `identitytoken`).
 * Helpers are run as `docker-credential-<name> get` with the host on stdin.
 *
 *   const c = await getCredentials('127.0.0.1:5000', env);   // undefined when none
 *   await storeCredentials('127.0.0.1:5000', { username, password }, env);  // 0600, atomic
 *   await removeCredentials('127.0.0.1:5000', env);
 *   setSessionCredentials({ '127.0.0.1:5000': c });   // in memory, for one build (ssh nodes)
 *
 * Secrets are never put into error messages.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { PolyarchError } from '../util/errors.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token, exchanged at the token server (docker's identitytoken). */
  identityToken?: string;
}

/** Docker Hub's credentials live under its legacy v1 URL. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
/** How long a credential helper may take before it is abandoned (ms). */
const HELPER_TIMEOUT_MS = 30_000;

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker');
  return join(dir, 'config.json');
}

type ConfigJson = {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [k: string]: unknown;
};

async function readConfig(file: string): Promise<ConfigJson> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new PolyarchError('IO', `reading ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as ConfigJson;
  } catch (err) {
    throw new PolyarchError('INVALID_CONFIG', `reading ${file}: invalid JSON (${(err as Error).message})`);
  }
}

/** The key docker uses for `host` in `auths`. */
function authKey(host: string): string {
  return host === 'docker.io' ? DOCKER_HUB_KEY : host;
}

/** Docker's convertToHostname: `https://host/v1/` → `host`. */
function hostOfKey(key: string): string {
  let k = key.replace(/^https?:\/\//, '');
  k = k.split('/')[0] ?? k;
  return k === 'index.docker.io' || k === 'registry-1.docker.io' ? 'docker.io' : k;
}

function fromAuthEntry(
  e: { auth?: string; username?: string; password?: string; identitytoken?: string },
  host: string,
  file: string,
): Credentials {
  const c: Credentials = {};
  if (e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0)
      throw new PolyarchError(
        'INVALID_CONFIG',
        `${file}: auths["${host}"].auth is not base64 of user:password`,
      );
    c.username = decoded.slice(0, colon);
    c.password = decoded.slice(colon + 1);
  } else {
    if (e.username) c.username = e.username;
    if (e.password) c.password = e.password;
  }
  if (e.identitytoken) c.identityToken = e.identitytoken;
  return c;
}

/** Runs `docker-credential-<helper> <action>` with `input` on stdin; resolves with stdout. */
function runHelper(
  helper: string,
  action: string,
  input: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; out: string }> {
  const bin = `docker-credential-${helper}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [action], { stdio: ['pipe', 'pipe', 'pipe'], timeout: HELPER_TIMEOUT_MS, env });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.resume();
    child.on('error', (err) =>
      reject(
        new PolyarchError('CREDENTIALS', `credential helper ${bin}: ${(err as Error).message}`, {
          cause: err,
        }),
      ),
    );
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
    child.stdin.end(input);
  });
}

async function fromHelper(
  helper: string,
  host: string,
  env: NodeJS.ProcessEnv,
): Promise<Credentials | undefined> {
  const key = authKey(host);
  const r = await runHelper(helper, 'get', key, env);
  if (r.code !== 0) {
    // Helpers print "credentials not found in native keychain" for unknown hosts.
    if (/not found/i.test(r.out)) return undefined;
    throw new PolyarchError(
      'CREDENTIALS',
      `credential helper docker-credential-${helper} failed for ${host} (exit ${r.code})`,
    );
  }
  let v: { Username?: string; Secret?: string };
  try {
    v = JSON.parse(r.out) as { Username?: string; Secret?: string };
  } catch {
    throw new PolyarchError(
      'CREDENTIALS',
      `credential helper docker-credential-${helper} printed invalid JSON for ${host}`,
    );
  }
  if (!v.Secret) return undefined;
  // docker's convention: the username "<token>" marks an identity token.
  if (v.Username === '<token>') return { identityToken: v.Secret };
  return { username: v.Username ?? '', password: v.Secret };
}

/** Credentials handed to this process for one build (an ssh node's), by host; never on disk. */
let session: Map<string, Credentials> | undefined;

/**
 * Makes `creds` the credentials of their hosts, before any config file or helper, until
 * called again (`undefined` forgets them). An ssh node gets its build's credentials this way.
 */
export function setSessionCredentials(creds: Readonly<Record<string, Credentials>> | undefined): void {
  session = creds ? new Map(Object.entries(creds)) : undefined;
}

export async function getCredentials(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Credentials | undefined> {
  const given = session?.get(host);
  if (given) return { ...given };
  const file = dockerConfigPath(env);
  const cfg = await readConfig(file);
  const helper = cfg.credHelpers?.[host] ?? cfg.credHelpers?.[authKey(host)];
  if (helper) return fromHelper(helper, host, env);
  if (cfg.credsStore) {
    const c = await fromHelper(cfg.credsStore, host, env);
    if (c) return c;
  }
  const auths = cfg.auths ?? {};
  const exact = auths[authKey(host)] ?? auths[host];
  if (exact) return fromAuthEntry(exact, host, file);
  for (const [k, e] of Object.entries(auths)) {
    if (hostOfKey(k) === host) return fromAuthEntry(e, host, file);
  }
  return undefined;
}

/** Writes `data` to `file` atomically (temp file in the same directory, then rename), mode 0600. */
async function writeAtomic(file: string, data: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new PolyarchError('IO', `writing ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Stores credentials for `host`. With a credential helper configured for the host (or a
 * credsStore) the helper's `store` is used, as docker does; otherwise config.json `auths`.
 */
export async function storeCredentials(
  host: string,
  c: Credentials,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const file = dockerConfigPath(env);
  const cfg = await readConfig(file);
  const helper = cfg.credHelpers?.[host] ?? cfg.credsStore;
  if (helper) {
    const payload = JSON.stringify({
      ServerURL: authKey(host),
      Username: c.identityToken ? '<token>' : (c.username ?? ''),
      Secret: c.identityToken ?? c.password ?? '',
    });
    const r = await runHelper(helper, 'store', payload, env);
    if (r.code !== 0)
      throw new PolyarchError(
        'CREDENTIALS',
        `credential helper docker-credential-${helper} could not store credentials for ${host}`,
      );
    return `docker-credential-${helper}`;
  }
  const auths = { ...(cfg.auths ?? {}) };
  const entry: { auth?: string; identitytoken?: string } = {};
  if (c.username !== undefined || c.password !== undefined)
    entry.auth = Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64');
  if (c.identityToken) entry.identitytoken = c.identityToken;
  auths[authKey(host)] = entry;
  await writeAtomic(file, `${JSON.stringify({ ...cfg, auths }, null, '\t')}\n`);
  return file;
}

/** Removes stored credentials for `host`; false when there were none. */
export async function removeCredentials(
  host: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<boolean> {
  const file = dockerConfigPath(env);
  const cfg = await readConfig(file);
  const helper = cfg.credHelpers?.[host] ?? cfg.credsStore;
  if (helper) {
    const r = await runHelper(helper, 'erase', authKey(host), env);
    return r.code === 0;
  }
  const auths = { ...(cfg.auths ?? {}) };
  let removed = false;
  for (const k of Object.keys(auths)) {
    if (k === authKey(host) || hostOfKey(k) === host) {
      delete auths[k];
      removed = true;
    }
  }
  if (removed) await writeAtomic(file, `${JSON.stringify({ ...cfg, auths }, null, '\t')}\n`);
  return removed;
}
