/**
 * The session a client serves back to buildkitd (session/grpc.go, session/grpchijack): the
 * `Control.Session` bidi stream carries a whole HTTP/2 connection in `BytesMessage`s, on
 * which the CLIENT is the HTTP/2 server and the daemon calls the client's services:
 *
 * - grpc.health.v1.Health/Check (every 5 s; two misses end the session),
 * - moby.filesync.v1.FileSync/DiffCopy: the local dirs (`dir-name` metadata: `context`,
 *   `dockerfile`, ...) with the include/exclude/followpaths filters applied here,
 * - moby.filesync.v1.FileSend/DiffCopy: exporter output streamed back (tar bytes),
 * - moby.filesync.v1.Auth/Credentials: registry credentials from Docker's config.json and
 *   credential helpers (GetTokenAuthority answers Unimplemented: the daemon fetches tokens),
 * - moby.buildkit.secrets.v1.Secrets/GetSecret: `--secret` values (NotFound when missing),
 * - moby.sshforward.v1.SSH/CheckAgent and ForwardAgent (`--ssh`, only when given): each
 *   connection a step makes to its agent socket is one ForwardAgent stream, piped to the
 *   agent of the id in `buildkit.ssh.id` metadata,
 * - containerd.services.content.v1.Content/Info and Read (only with `ociStores`): the blobs
 *   of OCI layout build contexts, the store in `buildkit-attachable-store-id` (`oci:<id>`).
 *
 *   const s = new BuildSession({ dirs: { context: dir, dockerfile: dfDir }, secrets, env });
 *   s.attach(channel);                // opens the stream; pass s.id as SolveRequest.session
 *   ... solve ...
 *   s.close();
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as http2 from 'node:http2';
import { Duplex, Stream, type Writable } from 'node:stream';
import { getCredentials } from '../registry/credentials.js';
import { PolyarchError } from '../util/errors.js';
import {
  type Channel,
  type ClientCall,
  type Handler,
  type ServerCall,
  Status,
  serve,
  WINDOW,
} from './grpc.js';
import { sendEntries, walkContext } from './filesync.js';
import { receiveTree } from './receive.js';
import {
  BytesMessage,
  CheckAgentRequest,
  CheckAgentResponse,
  CredentialsRequest,
  CredentialsResponse,
  GetSecretRequest,
  GetSecretResponse,
  HealthCheckRequest,
  HealthCheckResponse,
  ContentInfoRequest,
  ContentInfoResponse,
  ReadContentRequest,
  ReadContentResponse,
} from './messages.js';
import type { Message } from './proto.js';

export interface SessionOptions {
  /** Local directories by name (`context`, `dockerfile`, named contexts). */
  dirs: Readonly<Record<string, string>>;
  /** Secret values by id. */
  secrets?: ReadonlyMap<string, Buffer>;
  /** For credentials ($DOCKER_CONFIG, $HOME). */
  env?: NodeJS.ProcessEnv;
  /**
   * Where the exporter with this id (its index in SolveRequest.exporters) writes what it
   * returns to the client: a stream for tar outputs (the session ends it when the daemon is
   * done), or `{ dir }`, an empty directory, for the `local` exporter's files.
   */
  output?: (exporterId: string) => Writable | { dir: string } | undefined;
  /** A name shown in the daemon's logs. */
  name?: string;
  /**
   * Keys the daemon's copy of the local dirs: the same key on the next build lets it ask
   * only for what changed. Default: random (a full transfer).
   */
  sharedKey?: string;
  /** `--ssh` agents by id (build/ssh.ts SshForwarder); none: the daemon sees no SSH service. */
  ssh?: SshAgents;
  /**
   * OCI image layout directories by store id (`--build-context NAME=oci-layout://…`), read
   * by the daemon through containerd's content API (Info, Read) with the store id in the
   * `buildkit-attachable-store-id` metadata, as buildx's session content attachable serves them.
   */
  ociStores?: Readonly<Record<string, string>>;
}

/** What the session needs of the agents it forwards. */
export interface SshAgents {
  has(id: string): boolean;
  connect(id: string): Promise<Duplex>;
}

class ServiceError extends Error {
  grpcCode = Status.NOT_FOUND;
}

/** Largest tunnel message polyarch sends (BuildKit accepts 16 MiB). */
const TUNNEL_MESSAGE = 4 << 20;

function metaOne(call: ServerCall, key: string): string | undefined {
  return call.metadata.get(key)?.[0];
}

/** Repeated metadata fields (a peer may also have joined them with ", "). */
function metaList(call: ServerCall, key: string): string[] {
  const v = call.metadata.get(key) ?? [];
  return v.flatMap((s) => s.split(', ')).filter((s) => s !== '');
}

export class BuildSession {
  readonly id = randomBytes(16).toString('hex');
  readonly sharedKey: string;
  private server: http2.Http2Server | undefined;
  private call: ClientCall<Message, Message> | undefined;
  private tunnel: Duplex | undefined;
  private closing = false;
  /** Set when the session stream ended while the build was still using it. */
  error: Error | undefined;
  private readonly handlers: Map<string, Handler>;

  constructor(private readonly opts: SessionOptions) {
    this.sharedKey = opts.sharedKey ?? randomBytes(16).toString('hex');
    this.handlers = new Map<string, Handler>([
      ['/grpc.health.v1.Health/Check', (c) => this.health(c)],
      ['/moby.filesync.v1.FileSync/DiffCopy', (c) => this.fileSync(c)],
      ['/moby.filesync.v1.FileSend/DiffCopy', (c) => this.fileSend(c)],
      ['/moby.filesync.v1.Auth/Credentials', (c) => this.credentials(c)],
      ['/moby.buildkit.secrets.v1.Secrets/GetSecret', (c) => this.secret(c)],
    ]);
    if (opts.ociStores && Object.keys(opts.ociStores).length > 0) {
      this.handlers.set('/containerd.services.content.v1.Content/Info', (c) => this.contentInfo(c));
      this.handlers.set('/containerd.services.content.v1.Content/Read', (c) => this.contentRead(c));
    }
    if (opts.ssh) {
      this.handlers.set('/moby.sshforward.v1.SSH/CheckAgent', (c) => this.checkAgent(c));
      this.handlers.set('/moby.sshforward.v1.SSH/ForwardAgent', (c) => this.forwardAgent(c));
    }
  }

  /** Opens the Session stream on `channel` and starts serving. */
  attach(channel: Channel): void {
    const call = channel.open<Message, Message>(
      '/moby.buildkit.v1.Control/Session',
      BytesMessage,
      BytesMessage,
      {
        'x-docker-expose-session-uuid': this.id,
        'x-docker-expose-session-name': this.opts.name ?? 'polyarch',
        'x-docker-expose-session-sharedkey': this.sharedKey,
        'x-docker-expose-session-grpc-method': [...this.handlers.keys()],
      },
    );
    this.call = call;
    const tunnel = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        call.write({ data: chunk }).then(() => cb(), cb);
      },
      // HTTP/2 frames queued while the last message waited for the stream go as one message
      // (up to TUNNEL_MESSAGE), not one gRPC message per frame.
      writev(chunks, cb) {
        const parts: Buffer[] = [];
        let cur: Buffer[] = [];
        let size = 0;
        for (const { chunk } of chunks) {
          const b = chunk as Buffer;
          if (size + b.length > TUNNEL_MESSAGE && cur.length > 0) {
            parts.push(Buffer.concat(cur, size));
            cur = [];
            size = 0;
          }
          cur.push(b);
          size += b.length;
        }
        if (cur.length > 0) parts.push(Buffer.concat(cur, size));
        parts.reduce((p, data) => p.then(() => call.write({ data })), Promise.resolve()).then(() => cb(), cb);
      },
      final(cb) {
        call.end();
        cb();
      },
    });
    this.tunnel = tunnel;
    (async () => {
      try {
        for await (const m of call) tunnel.push(m.data as Buffer);
        if (!this.closing) this.error ??= new PolyarchError('IO', 'the daemon closed the build session');
      } catch (err) {
        if (!this.closing) this.error ??= err as Error;
      }
      tunnel.push(null);
    })();
    const server = http2.createServer({ settings: { initialWindowSize: WINDOW, maxFrameSize: 1 << 20 } });
    server.on('session', (s) => {
      s.on('error', () => {});
      s.once('connect', () => s.setLocalWindowSize(WINDOW));
      try {
        s.setLocalWindowSize(WINDOW);
      } catch {
        // Not connected yet: done on 'connect'.
      }
    });
    serve(server, this.handlers);
    this.server = server;
    server.emit('connection', tunnel);
  }

  close(): void {
    this.closing = true;
    this.tunnel?.destroy();
    this.call?.cancel();
    this.server?.close();
  }

  private async health(call: ServerCall): Promise<void> {
    await call.read(HealthCheckRequest);
    await call.write(HealthCheckResponse, { status: 1 });
  }

  private async fileSync(call: ServerCall): Promise<void> {
    const name = metaOne(call, 'dir-name') ?? '';
    const dir = this.opts.dirs[name];
    if (dir === undefined) {
      const e = new ServiceError(`no access allowed to dir "${name}"`);
      e.grpcCode = Status.NOT_FOUND;
      throw e;
    }
    const entries = await walkContext(dir, {
      includes: metaList(call, 'include-patterns'),
      excludes: metaList(call, 'exclude-patterns'),
      followPaths: metaList(call, 'followpaths'),
    });
    await sendEntries(call, entries);
  }

  private async fileSend(call: ServerCall): Promise<void> {
    const id = metaOne(call, 'buildkit-attachable-exporter-id') ?? '0';
    const target = this.opts.output?.(id);
    if (!target) throw new ServiceError(`no output is waiting for exporter ${id}`);
    if ('dir' in target && !(target instanceof Stream)) {
      await receiveTree(call, target.dir);
      return;
    }
    const sink = target as Writable;
    try {
      for (;;) {
        const m = await call.read(BytesMessage);
        if (!m) break;
        const data = m.data as Buffer;
        if (data.length > 0 && !sink.write(data))
          await new Promise<void>((res, rej) => {
            const done = (err?: Error) => {
              sink.off('drain', done);
              sink.off('error', done);
              if (err) rej(err);
              else res();
            };
            sink.on('drain', done);
            sink.on('error', done);
          });
      }
      if (call.closed) throw new PolyarchError('IO', `the daemon stopped sending exporter ${id}'s output`);
      await new Promise<void>((res, rej) => {
        sink.once('error', rej);
        sink.end(res);
      });
    } catch (err) {
      sink.destroy(err as Error);
      throw err;
    }
  }

  private async credentials(call: ServerCall): Promise<void> {
    const req = await call.read(CredentialsRequest);
    let host = String(req?.host ?? '');
    if (host === 'registry-1.docker.io') host = 'docker.io';
    const c = await getCredentials(host, this.opts.env).catch(() => undefined);
    await call.write(
      CredentialsResponse,
      c?.identityToken
        ? { secret: c.identityToken }
        : { username: c?.username ?? '', secret: c?.password ?? '' },
    );
  }

  private async secret(call: ServerCall): Promise<void> {
    const req = await call.read(GetSecretRequest);
    const v = this.opts.secrets?.get(String(req?.id ?? ''));
    if (v === undefined) {
      const e = new ServiceError(`secret ${req?.id} not found`);
      e.grpcCode = Status.NOT_FOUND;
      throw e;
    }
    await call.write(GetSecretResponse, { data: v });
  }

  /** The layout blob a content call names: its store from the metadata, its digest checked. */
  private async layoutBlob(call: ServerCall, digest: string): Promise<{ path: string; size: number }> {
    // The daemon names a client's OCI store `oci:<id>`.
    const id = (metaOne(call, 'buildkit-attachable-store-id') ?? '').replace(/^oci:/, '');
    const dir = this.opts.ociStores?.[id];
    const notFound = (m: string) => {
      const e = new ServiceError(m);
      e.grpcCode = Status.NOT_FOUND;
      return e;
    };
    if (dir === undefined) throw notFound(`unknown store ${id}: not found`);
    const m = /^(sha256|sha512):([a-f0-9]{64,128})$/.exec(digest);
    if (!m) throw notFound(`invalid digest "${digest}": not found`);
    const path = join(dir, 'blobs', m[1]!, m[2]!);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile()) throw notFound(`content ${digest}: not found`);
    return { path, size: st.size };
  }

  private async contentInfo(call: ServerCall): Promise<void> {
    const req = await call.read(ContentInfoRequest);
    const digest = String(req?.digest ?? '');
    const { size } = await this.layoutBlob(call, digest);
    await call.write(ContentInfoResponse, { info: { digest, size } });
  }

  private async contentRead(call: ServerCall): Promise<void> {
    const req = await call.read(ReadContentRequest);
    const { path, size } = await this.layoutBlob(call, String(req?.digest ?? ''));
    const offset = Math.max(0, Number(req?.offset ?? 0));
    const want = Number(req?.size ?? 0);
    const end = want > 0 ? Math.min(size, offset + want) : size;
    if (offset >= end) return;
    let at = offset;
    for await (const chunk of createReadStream(path, {
      start: offset,
      end: end - 1,
      highWaterMark: 1 << 20,
    })) {
      await call.write(ReadContentResponse, { offset: at, data: chunk as Buffer });
      at += (chunk as Buffer).length;
    }
  }

  private agentId(id: string): string {
    if (!this.opts.ssh?.has(id)) {
      const e = new ServiceError(`unset ssh forward key ${id}`);
      e.grpcCode = Status.NOT_FOUND;
      throw e;
    }
    return id;
  }

  private async checkAgent(call: ServerCall): Promise<void> {
    const req = await call.read(CheckAgentRequest);
    this.agentId(String(req?.ID ?? '') || 'default');
    await call.write(CheckAgentResponse, {});
  }

  /** One agent connection of a step: bytes both ways until either side ends. */
  private async forwardAgent(call: ServerCall): Promise<void> {
    const id = this.agentId(metaOne(call, 'buildkit.ssh.id') || 'default');
    const conn = await this.opts.ssh!.connect(id);
    conn.on('error', () => {});
    const up = (async () => {
      try {
        for (;;) {
          const m = await call.read(BytesMessage);
          if (!m) break;
          const data = m.data as Buffer;
          if (data.length > 0 && !conn.write(data))
            await new Promise<void>((res) => {
              conn.once('drain', res);
              conn.once('close', res);
            });
        }
      } finally {
        conn.end();
      }
    })();
    try {
      for await (const chunk of conn) await call.write(BytesMessage, { data: chunk as Buffer });
    } finally {
      // The agent is done: the call ends here, which also ends the read loop above.
      conn.destroy();
      up.catch(() => {});
    }
  }
}
