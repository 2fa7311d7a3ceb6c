/**
 * "Hosts" for the ssh driver's tests: Debian's sshd on its own loopback port of this machine,
 * one per node, each with a host key, a test user key and a session environment that lets
 * `polyarch __node serve` run (node on PATH, the test registries.toml).
 *
 *   const h = await startSshHost(join(dir, 'arm'), { config: env.config });
 *   // ssh://root@127.0.0.1:${h.port}, --driver-opt key=${h.clientKey}
 *   // PATH=${h.pathDir}:$PATH: an `ssh` that checks the host key against h.knownHosts
 *   await h.killSshd(); // the sshd and its session processes die: connections drop mid-build
 *   await h.kill();     // the whole tree, what the sessions run included (SIGKILL)
 *   await h.stop();
 *
 * Why loopback ports and not network namespaces: the test registries listen on 127.0.0.1
 * of this namespace, and a node in its own namespace could not reach them without a veth
 * pair, routes and NAT set up per test; a port per sshd keeps the nodes apart as hosts (own
 * host key, own state root given with --driver-opt root=) while the registry stays where
 * both the client and the nodes reach it, as the BuildKit ssh tests do (env/buildkit.ts).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sleep } from './proc.js';
import { writeSshdFiles } from './sshd-config.js';

export interface SshHost {
  port: number;
  endpoint: string;
  /** The test user's private key (for `--driver-opt key=`). */
  clientKey: string;
  /** known_hosts holding this host's real key. */
  knownHosts: string;
  /** Put first on PATH: `ssh` with strict host key checking against knownHosts. */
  pathDir: string;
  /** Every pid in the sshd's process tree (itself, its sessions, what they run). */
  pids(): number[];
  /** SIGKILLs the sshd processes of the tree (listener and sessions), not what they run. */
  killSshd(): Promise<void>;
  /** SIGKILLs the whole tree. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export function sshHostSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'the ssh node tests need root (sshd, runc)';
  if (!existsSync('/usr/sbin/sshd')) return 'no /usr/sbin/sshd (Debian openssh-server)';
  if (spawnSync('sh', ['-c', 'command -v ssh']).status !== 0) return 'no ssh client';
  return undefined;
}

function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(name), ppid);
    } catch {}
  }
  const out = [root];
  for (let i = 0; i < out.length; i++)
    for (const [pid, pp] of parent) if (pp === out[i] && !out.includes(pid)) out.push(pid);
  return out;
}

export async function startSshHost(dir: string, opts: { config: string }): Promise<SshHost> {
  const path = [
    dirname(process.execPath),
    '/usr/local/sbin',
    '/usr/local/bin',
    '/usr/sbin',
    '/usr/bin',
    '/sbin',
    '/bin',
  ];
  const { port, path: p } = await writeSshdFiles(
    dir,
    `PATH=${path.join(':')} POLYARCH_CONFIG=${opts.config}`,
  );
  const hostPub = (await readFile(p('host_key.pub'), 'utf8')).trim().split(' ').slice(0, 2).join(' ');
  await writeFile(p('known_hosts'), `[127.0.0.1]:${port} ${hostPub}\n`);
  // No IdentityFile here: the tests give the key with --driver-opt key=.
  await writeFile(
    p('ssh_config'),
    [
      'Host *',
      '  IdentitiesOnly yes',
      '  StrictHostKeyChecking yes',
      `  UserKnownHostsFile ${p('known_hosts')}`,
      '  LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const pathDir = p('bin');
  await mkdir(pathDir, { recursive: true });
  await writeFile(join(pathDir, 'ssh'), `#!/bin/sh\nexec /usr/bin/ssh -F ${p('ssh_config')} "$@"\n`);
  await chmod(join(pathDir, 'ssh'), 0o755);
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', p('sshd_config')], {
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
    const r = spawnSync(
      join(pathDir, 'ssh'),
      ['-i', p('client_key'), '-o', 'BatchMode=yes', '-p', String(port), 'root@127.0.0.1', 'true'],
      { timeout: 5000, encoding: 'utf8' },
    );
    if (r.status === 0) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sshd on ${port} did not let the test key in: ${stderr.trim()} ${r.stderr}`);
    }
    await sleep(100);
  }
  const pids = () => (child.exitCode === null && child.pid ? descendants(child.pid) : []);
  return {
    port,
    endpoint: `ssh://root@127.0.0.1:${port}`,
    clientKey: p('client_key'),
    knownHosts: p('known_hosts'),
    pathDir,
    pids,
    async killSshd() {
      for (const pid of pids()) {
        let comm = '';
        try {
          comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        } catch {}
        if (comm === 'sshd' || comm === 'sshd-session')
          try {
            process.kill(pid, 'SIGKILL');
          } catch {}
      }
      await exited;
    },
    async kill() {
      for (const pid of pids())
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      await exited;
    },
    async stop() {
      // Sessions first (sshd's children outlive it), then the listener.
      for (const pid of pids().slice(1))
        try {
          process.kill(pid, 'SIGTERM');
        } catch {}
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}
