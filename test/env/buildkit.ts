/**
 * Real buildkitd daemons for the tests of the remote (BuildKit) driver.
 *
 *   const why = await buildkitSkipReason();         // undefined, or a one-line reason to skip
 *   const d = await startBuildkitd({ dir, registries: [env.registry], mirror: env.registry });
 *   const t = await startBuildkitd({ dir, tls: true, platform: 'linux/arm64', ... });
 *   // d.endpoint: unix:///…/buildkitd.sock; t.endpoint: tcp://127.0.0.1:P with t.tls
 *   await d.stop();
 *
 * Where buildkitd comes from, first found: `$POLYARCH_TEST_BUILDKIT` (a directory holding
 * `buildkitd` and `buildctl`, or one with BuildKit's `install` script such as
 * ../shared/tools/buildkit), `<repo>/../shared/tools/buildkit` (unpacked once into
 * `$POLYARCH_TEST_CACHE/buildkit`), a `buildkitd` on PATH. Each daemon has its own --root
 * under `dir`, the OCI worker, and a buildkitd.toml marking the test registries plain HTTP
 * and mirroring docker.io to the anonymous one (so `FROM busybox` works offline).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testCacheDir } from './busybox.js';
import { freePort, run, sleep } from './proc.js';
import { writeSshdFiles } from './sshd-config.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/test/env → the repository. */
const repoRoot = resolve(here, '..', '..', '..');

export interface BuildkitBins {
  buildkitd: string;
  buildctl: string;
}

function onPath(name: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

let bins: Promise<BuildkitBins | string> | undefined;

async function fromDir(dir: string): Promise<BuildkitBins | string> {
  if (existsSync(join(dir, 'buildkitd')) && existsSync(join(dir, 'buildctl')))
    return { buildkitd: join(dir, 'buildkitd'), buildctl: join(dir, 'buildctl') };
  if (existsSync(join(dir, 'install'))) {
    const dest = join(testCacheDir(), 'buildkit');
    if (!existsSync(join(dest, 'buildkitd'))) {
      // Unpacked beside the cache entry and renamed into place: an interrupted install leaves
      // no half-written binaries for the next run to trust.
      const tmp = `${dest}.${process.pid}.tmp`;
      await mkdir(tmp, { recursive: true });
      await run(join(dir, 'install'), [tmp]);
      const { rename, rm } = await import('node:fs/promises');
      await rename(tmp, dest).catch(async (err) => {
        await rm(tmp, { recursive: true, force: true });
        if (!existsSync(join(dest, 'buildkitd'))) throw err;
      });
    }
    return { buildkitd: join(dest, 'buildkitd'), buildctl: join(dest, 'buildctl') };
  }
  return `${dir} has neither buildkitd+buildctl nor an install script`;
}

/** The binaries, or why there are none. */
export function buildkitBins(): Promise<BuildkitBins | string> {
  bins ??= (async () => {
    const env = process.env.POLYARCH_TEST_BUILDKIT;
    if (env) return fromDir(env);
    const shared = join(repoRoot, '..', 'shared', 'tools', 'buildkit');
    if (existsSync(shared)) return fromDir(shared);
    const d = onPath('buildkitd');
    const c = onPath('buildctl');
    if (d && c) return { buildkitd: d, buildctl: c };
    return "no BuildKit: put buildkitd and buildctl on PATH, or set POLYARCH_TEST_BUILDKIT=DIR (they or BuildKit's install script in DIR)";
  })();
  return bins;
}

export async function buildkitSkipReason(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'buildkitd tests need root';
  const b = await buildkitBins();
  return typeof b === 'string' ? b : undefined;
}

export interface TlsFiles {
  cacert: string;
  cert: string;
  key: string;
  servername: string;
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
export async function makeCerts(
  dir: string,
  prefix = '',
): Promise<{ server: TlsFiles; client: TlsFiles; ca: { cert: string; key: string } }> {
  await mkdir(dir, { recursive: true });
  const p = (n: string) => join(dir, `${prefix}${n}`);
  const ossl = (args: string[]) => run('openssl', args);
  await ossl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=polyarch test CA',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.pem'),
  ]);
  const leaf = async (name: string, ext: string) => {
    await ossl([
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      `/CN=${name}`,
      '-keyout',
      p(`${name}.key`),
      '-out',
      p(`${name}.csr`),
    ]);
    await writeFile(p(`${name}.ext`), ext);
    await ossl([
      'x509',
      '-req',
      '-in',
      p(`${name}.csr`),
      '-CA',
      p('ca.pem'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      p(`${name}.ext`),
      '-out',
      p(`${name}.pem`),
    ]);
  };
  await leaf('server', 'subjectAltName=DNS:buildkitd.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await leaf('client', 'extendedKeyUsage=clientAuth\n');
  return {
    ca: { cert: p('ca.pem'), key: p('ca.key') },
    server: {
      cacert: p('ca.pem'),
      cert: p('server.pem'),
      key: p('server.key'),
      servername: 'buildkitd.test',
    },
    client: {
      cacert: p('ca.pem'),
      cert: p('client.pem'),
      key: p('client.key'),
      servername: 'buildkitd.test',
    },
  };
}

export interface BuildkitdOptions {
  /** Parent directory for this daemon's state, socket, config and log. */
  dir: string;
  /** Registries (host:port) to mark http/insecure. */
  registries: readonly string[];
  /** docker.io is mirrored to this registry. */
  mirror?: string;
  /** `--oci-worker-platform`, e.g. linux/arm64 (fakes a native node of that platform). */
  platform?: string;
  /** Listen on tcp://127.0.0.1:PORT with mutual TLS instead of a unix socket. */
  tls?: boolean;
}

export interface Buildkitd {
  endpoint: string;
  /** Client-side files for `--driver-opt` (tls daemons only). */
  tls?: TlsFiles;
  log: string;
  stop(): Promise<void>;
}

function config(opts: BuildkitdOptions): string {
  let s = '';
  for (const r of opts.registries) s += `[registry."${r}"]\n  http = true\n  insecure = true\n`;
  if (opts.mirror) s += `[registry."docker.io"]\n  mirrors = ["${opts.mirror}"]\n`;
  return s;
}

export async function startBuildkitd(opts: BuildkitdOptions): Promise<Buildkitd> {
  const b = await buildkitBins();
  if (typeof b === 'string') throw new Error(b);
  await mkdir(opts.dir, { recursive: true });
  const cfg = join(opts.dir, 'buildkitd.toml');
  await writeFile(cfg, config(opts));
  const args = [
    '--root',
    join(opts.dir, 'state'),
    '--oci-worker=true',
    '--containerd-worker=false',
    '--config',
    cfg,
  ];
  if (opts.platform) args.push('--oci-worker-platform', opts.platform);
  let endpoint: string;
  let tls: TlsFiles | undefined;
  if (opts.tls) {
    const certs = await makeCerts(join(opts.dir, 'certs'));
    const port = await freePort();
    endpoint = `tcp://127.0.0.1:${port}`;
    args.push(
      '--addr',
      endpoint,
      '--tlscacert',
      certs.server.cacert,
      '--tlscert',
      certs.server.cert,
      '--tlskey',
      certs.server.key,
    );
    tls = certs.client;
  } else {
    endpoint = `unix://${join(opts.dir, 'buildkitd.sock')}`;
    args.push('--addr', endpoint);
  }
  const log = join(opts.dir, 'buildkitd.log');
  const { openSync } = await import('node:fs');
  const fd = openSync(log, 'a');
  const child: ChildProcess = spawn(b.buildkitd, args, { stdio: ['ignore', fd, fd] });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const ctlArgs = ['--addr', endpoint];
  if (tls)
    ctlArgs.push(
      '--tlscacert',
      tls.cacert,
      '--tlscert',
      tls.cert,
      '--tlskey',
      tls.key,
      '--tlsservername',
      tls.servername,
    );
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`buildkitd exited (${child.exitCode}); see ${log}`);
    const r = spawnSync(b.buildctl, [...ctlArgs, 'debug', 'workers'], { encoding: 'utf8', timeout: 5000 });
    if (r.status === 0) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`buildkitd at ${endpoint} did not answer within 30 s; see ${log}`);
    }
    await sleep(200);
  }
  return {
    endpoint,
    ...(tls ? { tls } : {}),
    log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

export interface Sshd {
  port: number;
  /** A directory to put first on PATH: its `ssh` runs the system one with this server's key and config. */
  pathDir: string;
  stop(): Promise<void>;
}

/** Why an sshd cannot be started here, or undefined. */
export function sshdSkipReason(): string | undefined {
  if (!existsSync('/usr/sbin/sshd')) return 'no /usr/sbin/sshd (Debian openssh-server)';
  if (!onPath('ssh')) return 'no ssh client';
  return undefined;
}

/**
 * An sshd on 127.0.0.1:PORT for root with a key made here (`<dir>/client_key`, host key
 * `<dir>/host_key.pub`), whose sessions have the BuildKit binaries on PATH (so `ssh host
 * buildctl dial-stdio` works, as on a real remote host) unless `buildkit: false`.
 */
export async function startSshd(dir: string, opts: { buildkit?: boolean } = {}): Promise<Sshd> {
  let binDir = '';
  if (opts.buildkit !== false) {
    const b = await buildkitBins();
    if (typeof b === 'string') throw new Error(b);
    binDir = `${dirname(b.buildctl)}:`;
  }
  const { port, path: p } = await writeSshdFiles(dir, `PATH=${binDir}/usr/local/bin:/usr/bin:/bin`);
  const { chmod } = await import('node:fs/promises');
  await writeFile(
    p('ssh_config'),
    [
      'Host *',
      `  IdentityFile ${p('client_key')}`,
      '  IdentitiesOnly yes',
      '  StrictHostKeyChecking no',
      '  UserKnownHostsFile /dev/null',
      '  LogLevel ERROR',
      '  BatchMode yes',
      '',
    ].join('\n'),
  );
  const pathDir = p('bin');
  await mkdir(pathDir, { recursive: true });
  await writeFile(join(pathDir, 'ssh'), `#!/bin/sh\nexec /usr/bin/ssh -F ${p('ssh_config')} "$@"\n`);
  await chmod(join(pathDir, 'ssh'), 0o755);
  const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', p('sshd_config')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited (${child.exitCode}): ${stderr.trim()}`);
    const r = spawnSync(join(pathDir, 'ssh'), ['-p', String(port), 'root@127.0.0.1', 'true'], {
      timeout: 5000,
    });
    if (r.status === 0) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sshd on ${port} did not let the test key in: ${stderr.trim()} ${r.stderr}`);
    }
    await sleep(100);
  }
  return {
    port,
    pathDir,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
