/**
 * SSH agent forwarding for `RUN --mount=type=ssh` (`build --ssh default|ID=PATH[,PATH]`), the
 * way BuildKit does it: the step sees a socket at its mount target that speaks to the user's
 * agent, or to an agent holding the keys named on the command line. Neither the agent's path
 * nor a key ever reaches a layer, the cache key or a log: the step gets a proxy socket made
 * for it (mode and owner from the mount), removed when the step ends.
 *
 *   const ssh = new SshForwarder([parseSshSpec('default')], process.env);
 *   const sock = await ssh.socket('default', { dir, mode: 0o600, uid: 0, gid: 0 });
 *   // bind sock.path at the mount target; await sock.close() after the step; ssh.close() after the build
 */
import { spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorMessage, PolyarchError, UsageError } from '../util/errors.js';

export interface SshSource {
  /** The id `RUN --mount=type=ssh,id=…` names; `default` when none. */
  id: string;
  /** Agent sockets or private key files; empty = the caller's SSH_AUTH_SOCK. */
  paths: string[];
}

/** `default`, `default=PATH`, `ID=PATH[,PATH…]` (buildx's --ssh). */
export function parseSshSpec(spec: string): SshSource {
  const eq = spec.indexOf('=');
  const id = (eq < 0 ? spec : spec.slice(0, eq)).trim();
  if (!id || !/^[A-Za-z0-9_.-]+$/.test(id))
    throw new UsageError(`invalid --ssh "${spec}": expected default, ID or ID=PATH[,PATH]`);
  const paths =
    eq < 0
      ? []
      : spec
          .slice(eq + 1)
          .split(',')
          .map((p) => p.trim())
          .filter(Boolean);
  return { id, paths };
}

export interface StepSocket {
  path: string;
  close(): Promise<void>;
}

interface Agent {
  socket: string;
  stop?: () => Promise<void>;
}

/** The agents a build forwards, started on first use (key files get an ssh-agent of their own). */
export class SshForwarder {
  readonly #sources: Map<string, SshSource>;
  readonly #env: NodeJS.ProcessEnv;
  readonly #agents = new Map<string, Promise<Agent>>();

  constructor(sources: readonly SshSource[], env: NodeJS.ProcessEnv = process.env) {
    this.#sources = new Map(sources.map((s) => [s.id, s]));
    this.#env = env;
  }

  has(id: string): boolean {
    return this.#sources.has(id);
  }

  /** A connection to the agent of `id` (started on first use): BuildKit's ForwardAgent pipes through it. */
  async connect(id: string): Promise<Socket> {
    const agent = await this.#agent(id);
    return await new Promise<Socket>((resolve, reject) => {
      const c = createConnection(agent.socket);
      c.once('connect', () => {
        c.off('error', reject);
        resolve(c);
      });
      c.once('error', (err) =>
        reject(
          new PolyarchError(
            'UNAVAILABLE',
            `--ssh ${id}: the SSH agent does not answer: ${errorMessage(err)}`,
          ),
        ),
      );
    });
  }

  /** A proxy socket for one step to the agent of `id`, in `dir` with the mount's mode and owner. */
  async socket(
    id: string,
    opts: { dir: string; mode: number; uid: number; gid: number },
  ): Promise<StepSocket> {
    const agent = await this.#agent(id);
    const path = join(opts.dir, 'ssh_agent');
    const server: Server = createServer((conn) => {
      const up = createConnection(agent.socket);
      up.on('error', () => conn.destroy());
      conn.on('error', () => up.destroy());
      conn.pipe(up).pipe(conn);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    server.unref();
    await chmod(path, opts.mode);
    await chown(path, opts.uid, opts.gid);
    return {
      path,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
        }),
    };
  }

  /**
   * The host-side agent socket of `id` (for git run on this machine, e.g. an ssh git context):
   * the caller's agent, or one started for the key files. Never written anywhere.
   */
  async agentSocket(id: string): Promise<string> {
    return (await this.#agent(id)).socket;
  }

  #agent(id: string): Promise<Agent> {
    let a = this.#agents.get(id);
    if (!a) {
      a = this.#start(id);
      this.#agents.set(id, a);
    }
    return a;
  }

  async #start(id: string): Promise<Agent> {
    const src = this.#sources.get(id);
    if (!src)
      throw new PolyarchError(
        'NOT_FOUND',
        `no SSH key "${id}" forwarded from the client (use --ssh ${id}=…)`,
      );
    if (src.paths.length === 0) {
      const sock = this.#env.SSH_AUTH_SOCK;
      if (!sock)
        throw new PolyarchError(
          'NOT_FOUND',
          `--ssh ${id}: no SSH agent: SSH_AUTH_SOCK is not set (give key files or an agent socket: --ssh ${id}=PATH)`,
        );
      return { socket: sock };
    }
    const kinds = await Promise.all(
      src.paths.map(async (p) => {
        const st = await stat(p).catch((err) => {
          throw new PolyarchError('NOT_FOUND', `--ssh ${id}: ${p}: ${errorMessage(err)}`, { cause: err });
        });
        return st.isSocket() ? 'socket' : 'key';
      }),
    );
    if (kinds.length === 1 && kinds[0] === 'socket') return { socket: src.paths[0]! };
    if (kinds.includes('socket'))
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `--ssh ${id}: give one agent socket or key files, not both`,
      );
    return startAgent(id, src.paths);
  }

  /** Stops the agents this forwarder started. */
  async close(): Promise<void> {
    const agents = await Promise.allSettled(this.#agents.values());
    this.#agents.clear();
    for (const a of agents) if (a.status === 'fulfilled') await a.value.stop?.();
  }
}

/** An ssh-agent of our own (Debian's openssh-client) holding `keys`; its socket in a 0700 dir. */
async function startAgent(id: string, keys: string[]): Promise<Agent> {
  const dir = await mkdtemp(join(tmpdir(), 'polyarch-ssh-'));
  await chmod(dir, 0o700);
  const socket = join(dir, 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
  const stop = async () => {
    agent.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      agent.once('error', (err) =>
        reject(
          new PolyarchError(
            'NOT_FOUND',
            `--ssh ${id}: starting ssh-agent: ${errorMessage(err)} (apt-get install openssh-client)`,
          ),
        ),
      );
      const deadline = Date.now() + 10_000;
      const poll = () =>
        stat(socket).then(
          () => resolve(),
          () =>
            Date.now() > deadline
              ? reject(new PolyarchError('IO', `--ssh ${id}: ssh-agent did not start`))
              : setTimeout(poll, 20),
        );
      poll();
    });
    // No prompt: a key with a passphrase fails here rather than hanging the build.
    const env = { ...process.env, SSH_AUTH_SOCK: socket, SSH_ASKPASS_REQUIRE: 'never', DISPLAY: '' };
    const add = spawn('ssh-add', ['-q', ...keys], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    add.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      add.once('error', reject);
      add.once('close', resolve);
    });
    if (code !== 0)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `--ssh ${id}: ssh-add could not load ${keys.join(', ')}: ${stderr.trim().split('\n').pop() || `exit ${code}`}`,
      );
    agent.unref();
    return { socket, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
