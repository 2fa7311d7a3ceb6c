/**
 * Reaching an ssh node: the system `ssh` client runs `polyarch __node serve` on the host
 * (Nix remote builders' and `podman farm`'s model: nothing runs there between builds). The
 * node greets with its protocol and version, then says what it is: its own platform, what
 * it can also run (QEMU), and whether runc is there.
 *
 *   const c = await SshNodeConnection.open(node, { env });
 *   c.hello.platforms;   // [linux/amd64, linux/arm64, ...]
 *   c.close();           // stdin closed: the node process ends
 *
 * `--driver-opt`: `key=PATH` (identity file), `polyarch=PATH` (the remote command, default
 * `polyarch` on the node's PATH), `root=DIR` (the node's state root, default its own).
 * Errors name the node and endpoint, and say what ssh said (host key mismatch, refused).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { parseEndpoint } from '../../buildkit/dial.js';
import { formatPlatform, type Platform, parsePlatform } from '../../platform/index.js';
import { errorMessage, PolyarchError, UsageError } from '../../util/errors.js';
import { VERSION } from '../../version.js';
import type { BuilderNode } from '../types.js';
import { FrameReader, FrameWriter, NODE_PROTOCOL, parseGreeting } from './protocol.js';

/** `--driver-opt` keys of the ssh driver. */
export { checkSshDriverOpts, SSH_DRIVER_OPTS } from './driver.js';

/** What a node says about itself. */
export interface NodeHello {
  /** `polyarch/v0.1.0`. */
  version: string;
  native: Platform;
  /** Native first, then what its emulators run. */
  platforms: Platform[];
  /** The runc it would use, or undefined when there is none. */
  runc?: string;
}

/** A single-quoted word for the remote shell. */
function shellWord(s: string): string {
  return /^[A-Za-z0-9_./=:@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function sshCommand(node: BuilderNode): string[] {
  const ep = parseEndpoint(node.endpoint);
  if (ep.kind !== 'ssh')
    throw new UsageError(`invalid endpoint "${node.endpoint}": want ssh://[user@]host[:port]`);
  const o = node.driverOpts ?? {};
  const args = ['-T', '-o', 'ConnectTimeout=10', '-o', 'BatchMode=yes', '-o', 'ServerAliveInterval=15'];
  if (o.key) args.push('-i', o.key, '-o', 'IdentitiesOnly=yes');
  if (ep.user) args.push('-l', ep.user);
  if (ep.port) args.push('-p', String(ep.port));
  const remote = [o.polyarch ?? 'polyarch', '__node', 'serve', ...(o.root ? ['--root', o.root] : [])];
  args.push('--', ep.host, remote.map(shellWord).join(' '));
  return args;
}

export class SshNodeConnection {
  readonly node: BuilderNode;
  readonly hello: NodeHello;
  readonly reader: FrameReader;
  readonly writer: FrameWriter;
  readonly #child: ChildProcess;
  readonly #stderr: () => string;
  readonly #exited: Promise<void>;

  private constructor(
    node: BuilderNode,
    child: ChildProcess,
    reader: FrameReader,
    writer: FrameWriter,
    hello: NodeHello,
    stderr: () => string,
    exited: Promise<void>,
  ) {
    this.node = node;
    this.#child = child;
    this.reader = reader;
    this.writer = writer;
    this.hello = hello;
    this.#stderr = stderr;
    this.#exited = exited;
  }

  /** `node NAME (ENDPOINT): message`. */
  static nodeError(node: BuilderNode, err: unknown, code?: string): PolyarchError {
    return new PolyarchError(
      code ?? (err as PolyarchError).code ?? 'UNAVAILABLE',
      `node ${node.name} (${node.endpoint}): ${errorMessage(err)}`,
      { cause: err },
    );
  }

  static async open(node: BuilderNode, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<SshNodeConnection> {
    const args = sshCommand(node);
    const child = spawn('ssh', args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.env ? { env: opts.env } : {}),
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-4000);
    });
    let spawnError: Error | undefined;
    const exited = new Promise<void>((res) => {
      child.once('close', () => res());
      child.once('error', (err) => {
        spawnError = err;
        res();
      });
    });
    const reader = new FrameReader(child.stdout!);
    const writer = new FrameWriter(child.stdin!);
    child.stdin!.on('error', () => {});
    const fail = async (why: string): Promise<never> => {
      child.kill('SIGTERM');
      await exited;
      throw SshNodeConnection.nodeError(node, new PolyarchError('UNAVAILABLE', why));
    };
    const why = async () => {
      await exited;
      if (spawnError) return `running ssh: ${spawnError.message}`;
      const code = child.exitCode ?? child.signalCode;
      const last = lastLine(stderr);
      if (code === 127)
        return `${node.driverOpts?.polyarch ?? 'polyarch'} was not found on the node (ssh exited (127)${last ? `: ${last}` : ''}); install polyarch there or set --driver-opt polyarch=PATH`;
      return `ssh exited (${code})${last ? `: ${last}` : ''}`;
    };
    let line: string | undefined;
    try {
      line = await reader.line();
    } catch (err) {
      return fail(errorMessage(err));
    }
    if (line === undefined) return fail(await why());
    const g = parseGreeting(line);
    if (!g) {
      const shown = line.length > 80 ? `${line.slice(0, 80)}…` : line;
      return fail(
        `the remote command is not a polyarch node (it answered "${shown.replace(/[^\x20-\x7e]/g, '?')}"); this needs polyarch v${VERSION} on the node`,
      );
    }
    if (g.protocol !== NODE_PROTOCOL)
      return fail(
        `incompatible polyarch on the node: ${g.version} speaks node protocol ${g.protocol}, this polyarch (v${VERSION}) speaks ${NODE_PROTOCOL}; install polyarch v${VERSION} on the node`,
      );
    let msg: Awaited<ReturnType<FrameReader['message']>>;
    try {
      msg = await reader.message();
    } catch (err) {
      return fail(errorMessage(err));
    }
    if (msg === undefined) return fail(await why());
    if (msg.t === 'error') return fail(String(msg.message));
    if (msg.t !== 'hello') return fail(`protocol error: expected hello, got ${msg.t}`);
    let hello: NodeHello;
    try {
      const platforms = (msg.platforms as string[]).map((p) => parsePlatform(p, { normalize: true }));
      hello = {
        version: String(msg.version),
        native: parsePlatform(String(msg.native), { normalize: true }),
        platforms,
        ...(typeof msg.runc === 'string' ? { runc: msg.runc } : {}),
      };
    } catch (err) {
      return fail(`protocol error: invalid hello (${errorMessage(err)})`);
    }
    const conn = new SshNodeConnection(node, child, reader, writer, hello, () => stderr, exited);
    if (!hello.runc) {
      conn.close();
      throw SshNodeConnection.nodeError(
        node,
        new PolyarchError(
          'UNAVAILABLE',
          'runc is not installed on the node (build steps run with runc): install runc there',
        ),
      );
    }
    return conn;
  }

  /** Why the connection ended, once it has: what ssh said, or the exit status. */
  async lost(): Promise<PolyarchError> {
    const t = setTimeout(() => this.#child.kill('SIGKILL'), 2000);
    await this.#exited;
    clearTimeout(t);
    const code = this.#child.exitCode ?? this.#child.signalCode;
    const last = lastLine(this.#stderr());
    return SshNodeConnection.nodeError(
      this.node,
      new PolyarchError(
        'UNAVAILABLE',
        `the connection was lost mid-build (ssh exited (${code})${last ? `: ${last}` : ''})`,
      ),
    );
  }

  /** The node's stderr so far (its warnings), last lines. */
  stderr(): string {
    return this.#stderr();
  }

  /** Ends the session: stdin closed (the node ends on its own), then a kill if it lingers. */
  close(): void {
    this.writer.end();
    const t = setTimeout(() => this.#child.kill('SIGTERM'), 5000);
    t.unref();
    void this.#exited.then(() => clearTimeout(t));
  }

  /** Ends the session now (cancel): ssh exits, the node sees its stdin close and aborts. */
  kill(): void {
    this.#child.kill('SIGTERM');
  }

  /** Resolves when ssh has exited. */
  closed(): Promise<void> {
    return this.#exited;
  }

  get platforms(): string[] {
    return this.hello.platforms.map((p) => formatPlatform(p));
  }
}

function lastLine(s: string): string | undefined {
  return s
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .pop();
}
