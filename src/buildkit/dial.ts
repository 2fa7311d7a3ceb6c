/**
 * Reaching a buildkitd: `unix:///path`, `tcp://host:port` (plain, or mutual TLS with
 * `cacert`/`cert`/`key`/`servername`, ALPN h2) and `ssh://[user@]host[:port][/socket]`
 * (the system ssh client running `buildctl [--addr unix:///socket] dial-stdio` on the
 * remote, as buildx does). Gives an HTTP/2 client session; errors are one line naming the
 * endpoint.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { PolyarchError } from '../util/errors.js';
import { WINDOW } from './grpc.js';

export { type Endpoint, parseEndpoint, type TlsOptions } from './endpoint.js';
import { type Endpoint, parseEndpoint, type TlsOptions } from './endpoint.js';

function readPem(what: string, path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new PolyarchError('NOT_FOUND', `reading ${what} ${path}: ${(err as Error).message}`);
  }
}

/** The ssh command line buildx runs (`connhelper/ssh`). */
export function sshArgs(ep: Extract<Endpoint, { kind: 'ssh' }>): string[] {
  const args = ['-o', 'ConnectTimeout=10'];
  if (ep.user) args.push('-l', ep.user);
  if (ep.port) args.push('-p', String(ep.port));
  args.push('--', ep.host, 'buildctl');
  if (ep.socket) args.push('--addr', `unix://${ep.socket}`);
  args.push('dial-stdio');
  return args;
}

/** The ssh child's stdio as one stream; `sshError` says why ssh ended once it has. */
function sshStream(ep: Extract<Endpoint, { kind: 'ssh' }>, sshBin: string): Duplex & { sshError?: Error } {
  const child = spawn(sshBin, sshArgs(ep), { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-2000);
  });
  const duplex: Duplex & { sshError?: Error } = Duplex.from({
    readable: child.stdout,
    writable: child.stdin,
  });
  child.on('exit', (code, sig) => {
    const last = stderr.trim().split('\n').pop()?.trim();
    duplex.sshError = new PolyarchError(
      'UNAVAILABLE',
      `ssh exited (${code ?? sig})${last ? `: ${last}` : ''}`,
    );
    duplex.destroy(duplex.sshError);
  });
  child.on('error', (err) => {
    duplex.sshError = new PolyarchError('UNAVAILABLE', `running ssh: ${err.message}`);
    duplex.destroy(duplex.sshError);
  });
  duplex.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  return duplex;
}

/**
 * OpenSSL's `80DC…:error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown
 * ca:../deps/…/rec_layer_s3.c:1601:SSL alert number 48` → `TLS handshake refused by the
 * server: tlsv1 alert unknown ca (SSL alert 48)`; other messages are kept, on one line.
 */
export function tidyTlsMessage(msg: string): string {
  const m = /^[0-9A-F]+:error:[0-9A-F]+:SSL routines:[^:]*:([^:]+):[^:]*:\d+:?(.*)$/s.exec(msg.trim());
  if (!m) return msg.trim().split('\n')[0]!;
  const alert = /SSL alert number (\d+)/.exec(m[2] ?? '');
  const reason = m[1]!.trim();
  return `TLS handshake failed: ${reason}${alert ? ` (SSL alert ${alert[1]})` : ''}`;
}

export interface DialOptions {
  tls?: TlsOptions;
  /** Give up connecting after this many ms. Default 10 s. */
  timeoutMs?: number;
  /** ssh binary. Default `ssh`. */
  ssh?: string;
}

/** Connects and completes the HTTP/2 handshake. */
export async function dial(endpoint: string, opts: DialOptions = {}): Promise<http2.ClientHttp2Session> {
  const ep = parseEndpoint(endpoint);
  const t = opts.tls ?? {};
  const useTls = ep.kind === 'tcp' && (t.cacert !== undefined || t.cert !== undefined || t.key !== undefined);
  const ca = useTls ? readPem('cacert', t.cacert) : undefined;
  const cert = useTls ? readPem('cert', t.cert) : undefined;
  const key = useTls ? readPem('key', t.key) : undefined;
  const authority = useTls ? `https://${t.servername ?? (ep as { host: string }).host}` : 'http://localhost';
  let socket: Duplex;
  let connectEvent = 'connect';
  if (ep.kind === 'unix') socket = net.connect(ep.path);
  else if (ep.kind === 'tcp' && !useTls) socket = net.connect(ep.port, ep.host);
  else if (ep.kind === 'tcp') {
    const servername = t.servername ?? (net.isIP(ep.host) ? undefined : ep.host);
    socket = tls.connect({
      host: ep.host,
      port: ep.port,
      ALPNProtocols: ['h2'],
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(servername ? { servername } : {}),
      // An IP address without servername: check the certificate against the IP.
      ...(!servername
        ? { checkServerIdentity: (h: string, c: tls.PeerCertificate) => tls.checkServerIdentity(h, c) }
        : {}),
    });
    connectEvent = 'secureConnect';
  } else {
    socket = sshStream(ep, opts.ssh ?? 'ssh');
    connectEvent = '';
  }
  const timeoutMs = opts.timeoutMs ?? 10_000;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new PolyarchError('UNAVAILABLE', `connecting to ${endpoint}: timed out after ${timeoutMs / 1000} s`),
      );
    }, timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(
        new PolyarchError('UNAVAILABLE', `connecting to ${endpoint}: ${tidyTlsMessage(err.message)}`, {
          cause: err,
        }),
      );
    };
    socket.once('error', fail);
    const ok = () => {
      clearTimeout(timer);
      socket.off('error', fail);
      resolve();
    };
    if (connectEvent) socket.once(connectEvent, ok);
    else ok();
  });
  const session = http2.connect(authority, {
    createConnection: () => socket,
    settings: { initialWindowSize: WINDOW, maxFrameSize: 1 << 20 },
    maxSessionMemory: 64,
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      session.destroy();
      reject(
        new PolyarchError(
          'UNAVAILABLE',
          `connecting to ${endpoint}: no HTTP/2 answer within ${timeoutMs / 1000} s`,
        ),
      );
    }, timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      session.destroy();
      reject(
        new PolyarchError('UNAVAILABLE', `connecting to ${endpoint}: ${tidyTlsMessage(err.message)}`, {
          cause: err,
        }),
      );
    };
    // The transport may fail on its own (ssh exiting) without the session noticing; ssh's
    // exit status and message follow its pipes' errors: give them a moment to win.
    const transportFail = (err: Error) =>
      setTimeout(() => fail((socket as { sshError?: Error }).sshError ?? err), 200);
    socket.once('error', transportFail);
    const onClose = () => transportFail(new Error('the connection closed during the HTTP/2 handshake'));
    socket.once('close', onClose);
    session.once('error', transportFail);
    session.once('remoteSettings', () => {
      socket.off('error', transportFail);
      socket.off('close', onClose);
      clearTimeout(timer);
      session.setLocalWindowSize(WINDOW);
      resolve();
    });
  });
  session.on('error', () => {});
  return session;
}
