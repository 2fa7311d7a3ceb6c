/**
 * Real registries for tests: Debian's `docker-registry` (CNCF distribution 2.8) on a free
 * loopback port, with its own config and storage in a temp dir.
 *
 *   const reg = await startRegistry({ auth: 'htpasswd' });
 *   // reg.host = '127.0.0.1:PORT' (plain HTTP), reg.user / reg.password for basic auth
 *   await reg.stop(); // kills the registry (and its token server), removes its storage
 *
 * Flavours (`auth`):
 *   'none'     anonymous push and pull (default)
 *   'htpasswd' HTTP basic auth against a bcrypt htpasswd file (`htpasswd -B`)
 *   'token'    Bearer tokens from a token server started with it (see token-server.ts:
 *              the user gets what it asks for, anonymous requests get pull only)
 * User and password default to 'polyarch' and a random password per registry.
 *
 * Registries are killed when the process exits, so a test that forgets stop() leaves no
 * orphan behind (but its temp dir stays until stop()).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, run, sleep } from './proc.js';
import { startTokenServer, type TokenServer } from './token-server.js';

export type RegistryAuth = 'none' | 'htpasswd' | 'token';

export interface StartRegistryOptions {
  /** Authentication flavour (default 'none'). */
  auth?: RegistryAuth;
  /** Username for 'htpasswd' and 'token' (default 'polyarch'). */
  user?: string;
  /** Password (default: 24 random hex characters). */
  password?: string;
  /** Parent of the registry's temp dir (default os.tmpdir()). */
  parentDir?: string;
  /** Token lifetime in seconds for 'token' (default 300). */
  tokenExpiresIn?: number;
}

export interface Registry {
  /** `127.0.0.1:PORT`, for references like `${host}/library/busybox:latest`. */
  host: string;
  /** `http://127.0.0.1:PORT` */
  url: string;
  auth: RegistryAuth;
  /** Set for 'htpasswd' and 'token'. */
  user?: string;
  password?: string;
  /** The token server, for 'token' (its `realm`, `service` and request log). */
  tokenServer?: TokenServer;
  /** The registry's storage root (filesystem driver). */
  storageDir: string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<Registry> {
  const auth = opts.auth ?? 'none';
  const dir = await mkdtemp(join(opts.parentDir ?? tmpdir(), `polyarch-registry-${auth}-`));
  let tokenServer: TokenServer | undefined;
  try {
    const storageDir = join(dir, 'storage');
    await mkdir(storageDir);
    const user = auth === 'none' ? undefined : (opts.user ?? 'polyarch');
    const password = auth === 'none' ? undefined : (opts.password ?? randomBytes(12).toString('hex'));
    let authConfig: Record<string, unknown> | undefined;
    if (auth === 'htpasswd') {
      const htpasswd = join(dir, 'htpasswd');
      // -i reads the password from stdin, keeping it off the command line.
      const line = await run('htpasswd', ['-niB', user!], { input: `${password}\n` });
      await writeFile(htpasswd, line.trim() + '\n');
      authConfig = { htpasswd: { realm: 'polyarch-test', path: htpasswd } };
    } else if (auth === 'token') {
      tokenServer = await startTokenServer({
        dir,
        user: user!,
        password: password!,
        ...(opts.tokenExpiresIn !== undefined ? { expiresIn: opts.tokenExpiresIn } : {}),
      });
      authConfig = {
        token: {
          realm: tokenServer.realm,
          service: tokenServer.service,
          issuer: tokenServer.issuer,
          rootcertbundle: tokenServer.rootCertBundle,
        },
      };
    }

    // The port is free when picked but may be taken before the registry binds it: retry.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const host = `127.0.0.1:${port}`;
      const config = {
        version: '0.1',
        log: { level: 'error', accesslog: { disabled: true } },
        storage: {
          filesystem: { rootdirectory: storageDir },
          delete: { enabled: true },
          maintenance: { uploadpurging: { enabled: false } },
        },
        http: { addr: host, secret: randomBytes(16).toString('hex') },
        ...(authConfig ? { auth: authConfig } : {}),
      };
      const configPath = join(dir, 'config.yml');
      // JSON is YAML; distribution reads it as such.
      await writeFile(configPath, JSON.stringify(config, null, 2));
      try {
        const child = await spawnRegistry(configPath, `http://${host}`);
        const ts = tokenServer;
        return {
          host,
          url: `http://${host}`,
          auth,
          ...(user !== undefined ? { user, password: password! } : {}),
          ...(ts ? { tokenServer: ts } : {}),
          storageDir,
          stop: async () => {
            await killChild(child);
            await ts?.stop();
            await rm(dir, { recursive: true, force: true });
          },
        };
      } catch (err) {
        lastError = err;
        if (!/address already in use/.test(String(err))) break;
      }
    }
    throw lastError;
  } catch (err) {
    await tokenServer?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Starts `docker-registry serve CONFIG` and resolves once `/v2/` answers (200 or 401). */
async function spawnRegistry(configPath: string, url: string): Promise<ChildProcess> {
  const child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  child.unref();
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString('utf8')).slice(-4000);
  });
  (child.stderr as unknown as { unref?: () => void }).unref?.();
  let exited: string | null = null;
  child.on('exit', (code, signal) => {
    live.delete(child);
    exited = signal ? `killed by ${signal}` : `exit code ${code}`;
  });
  child.on('error', (e) => {
    exited = e.message;
  });
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (exited !== null) throw new Error(`docker-registry serve ${configPath}: ${exited}: ${stderr.trim()}`);
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return child;
    } catch {
      // not listening yet
    }
    await sleep(30);
  }
  await killChild(child);
  throw new Error(`docker-registry at ${url} did not answer /v2/ within 15s: ${stderr.trim()}`);
}

async function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
