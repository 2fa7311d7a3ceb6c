/**
 * gRPC over node:http2, both directions, with the few features BuildKit needs: unary,
 * server-streaming and bidi calls as a client, and a handler table as a server (the
 * session the client serves back to the daemon). No compression (BuildKit's tunnel does
 * not need it and it costs time), large flow-control windows, repeated metadata kept as
 * repeated header fields.
 *
 *   const ch = new Channel(h2session);
 *   const info = await ch.unary('/moby.buildkit.v1.Control/Info', InfoRequest, InfoResponse, {});
 *   for await (const s of ch.serverStream(path, StatusRequest, StatusResponse, { ref })) ...
 */
import type * as http2 from 'node:http2';
import { PolyarchError } from '../util/errors.js';
import { decode, encode, type Message, type Schema } from './proto.js';

/** gRPC status codes used here. */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  NOT_FOUND: 5,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** BuildKit's limit per message, each way. */
export const MAX_MESSAGE = 16 << 20;
/** Flow-control window for both ends (the default 64 KiB makes uploads crawl). */
export const WINDOW = 32 << 20;

export class GrpcError extends PolyarchError {
  constructor(
    readonly grpcCode: number,
    readonly details: string,
    what: string,
  ) {
    super(
      grpcCode === Status.UNAVAILABLE ? 'UNAVAILABLE' : 'IO',
      `${what}: ${details || `gRPC status ${grpcCode}`}`,
    );
    this.name = 'GrpcError';
  }
}

export type Metadata = Record<string, string | string[]>;

export function frame(payload: Buffer): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = 0;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** Splits a byte stream into gRPC message payloads. */
export class Deframer {
  /** Received bytes not yet handed out; joined only once a whole message is there. */
  private chunks: Buffer[] = [];
  private size = 0;
  /** Length of the message being received, once its header is in. */
  private need = -1;

  push(chunk: Buffer, onMessage: (payload: Buffer) => void): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.size < 5) return;
        const head = this.take(5);
        if (head[0] !== 0) throw new PolyarchError('UNSUPPORTED', 'gRPC: compressed message received');
        this.need = head.readUInt32BE(1);
        if (this.need > MAX_MESSAGE)
          throw new PolyarchError('IO', `gRPC: message of ${this.need} bytes is over the 16 MiB limit`);
      }
      if (this.size < this.need) return;
      const payload = this.take(this.need);
      this.need = -1;
      onMessage(payload);
    }
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks, this.size);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.size -= n;
    return out;
  }
}

function decodeMessage(s: string | undefined): string {
  if (!s) return '';
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A bidi call as a client: write messages, read them with an async iterator. */
export class ClientCall<Req extends Message, Res extends Message> implements AsyncIterable<Res> {
  private readonly queue: Res[] = [];
  private waiting: (() => void) | undefined;
  private ended = false;
  private error: Error | undefined;

  constructor(
    readonly stream: http2.ClientHttp2Stream,
    private readonly reqSchema: Schema,
    resSchema: Schema,
    readonly what: string,
  ) {
    const deframer = new Deframer();
    let status: number | undefined;
    let message = '';
    const statusFrom = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] !== undefined) {
        status = Number(h['grpc-status']);
        message = decodeMessage(h['grpc-message'] as string | undefined);
      }
    };
    stream.on('response', (h) => {
      const code = Number(h[':status']);
      if (code !== 200) this.fail(new GrpcError(Status.UNKNOWN, `HTTP status ${code}`, what));
      statusFrom(h);
    });
    stream.on('trailers', statusFrom);
    stream.on('data', (chunk: Buffer) => {
      try {
        deframer.push(chunk, (p) => {
          this.queue.push(decode(resSchema, p) as Res);
          this.wake();
        });
      } catch (err) {
        this.fail(err as Error);
        stream.close();
      }
    });
    stream.on('error', (err) => this.fail(new GrpcError(Status.UNAVAILABLE, err.message, what)));
    stream.on('close', () => {
      if (status === undefined && !this.error)
        this.fail(new GrpcError(Status.UNAVAILABLE, 'connection closed before the call ended', what));
      else if (status !== undefined && status !== Status.OK) this.fail(new GrpcError(status, message, what));
      this.ended = true;
      this.wake();
    });
  }

  private fail(err: Error): void {
    this.error ??= err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  /** Writes one message; resolves when the stream can take more (backpressure). */
  write(m: Req): Promise<void> {
    if (this.stream.destroyed || this.stream.writableEnded) return Promise.resolve();
    const ok = this.stream.write(frame(encode(this.reqSchema, m)));
    if (ok) return Promise.resolve();
    return new Promise((res) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        res();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
  }

  end(): void {
    if (!this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
  }

  cancel(): void {
    if (!this.stream.destroyed) this.stream.close(0x8 /* NGHTTP2_CANCEL */);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Res> {
    for (;;) {
      if (this.queue.length > 0) {
        yield this.queue.shift()!;
        continue;
      }
      if (this.error) throw this.error;
      if (this.ended) return;
      await new Promise<void>((res) => {
        this.waiting = res;
      });
    }
  }
}

/** Calls over one HTTP/2 connection. */
export class Channel {
  constructor(
    readonly session: http2.ClientHttp2Session,
    readonly authority = 'localhost',
  ) {}

  open<Req extends Message, Res extends Message>(
    path: string,
    req: Schema,
    res: Schema,
    metadata: Metadata = {},
    signal?: AbortSignal,
  ): ClientCall<Req, Res> {
    const stream = this.session.request(
      {
        ':method': 'POST',
        ':path': path,
        ':authority': this.authority,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...metadata,
      },
      signal ? { signal } : {},
    );
    return new ClientCall<Req, Res>(stream, req, res, path.slice(path.lastIndexOf('/') + 1));
  }

  async unary<Res extends Message>(
    path: string,
    req: Schema,
    res: Schema,
    value: Message,
    opts: { metadata?: Metadata; signal?: AbortSignal } = {},
  ): Promise<Res> {
    const call = this.open<Message, Res>(path, req, res, opts.metadata, opts.signal);
    await call.write(value);
    call.end();
    let out: Res | undefined;
    for await (const m of call) out ??= m;
    if (!out) throw new GrpcError(Status.INTERNAL, 'no response message', call.what);
    return out;
  }

  serverStream<Res extends Message>(
    path: string,
    req: Schema,
    res: Schema,
    value: Message,
    opts: { metadata?: Metadata; signal?: AbortSignal } = {},
  ): ClientCall<Message, Res> {
    const call = this.open<Message, Res>(path, req, res, opts.metadata, opts.signal);
    void call.write(value).then(() => call.end());
    return call;
  }
}

// --- server side -----------------------------------------------------------------------

/** Messages a server call holds before it stops reading from the peer. */
const QUEUE_LIMIT = 8 << 20;

/** One incoming call: read messages, write messages; the handler's return ends it OK. */
export class ServerCall {
  private readonly queue: Buffer[] = [];
  /** Bytes in `queue`; above QUEUE_LIMIT the stream is paused (HTTP/2 flow control holds the peer). */
  private queued = 0;
  private waiting: (() => void) | undefined;
  private ended = false;
  private started = false;

  constructor(
    readonly stream: http2.ServerHttp2Stream,
    /** Header fields as received, repeated ones kept apart (lower-case names). */
    readonly metadata: ReadonlyMap<string, string[]>,
  ) {
    const deframer = new Deframer();
    stream.on('data', (chunk: Buffer) => {
      try {
        deframer.push(chunk, (p) => {
          this.queue.push(p);
          this.queued += p.length;
          this.wake();
        });
        if (this.queued > QUEUE_LIMIT) stream.pause();
      } catch {
        stream.close();
      }
    });
    stream.on('end', () => {
      this.ended = true;
      this.wake();
    });
    stream.on('close', () => {
      this.ended = true;
      this.wake();
    });
    stream.on('error', () => {});
  }

  get closed(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  /** The next request message, undefined once the peer half-closed. */
  async read(schema: Schema): Promise<Message | undefined> {
    for (;;) {
      if (this.queue.length > 0) {
        const p = this.queue.shift()!;
        this.queued -= p.length;
        if (this.queued <= QUEUE_LIMIT / 2 && this.stream.isPaused()) this.stream.resume();
        return decode(schema, p);
      }
      if (this.ended) return undefined;
      await new Promise<void>((res) => {
        this.waiting = res;
      });
    }
  }

  private head(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  }

  write(schema: Schema, value: Message): Promise<void> {
    this.head();
    if (this.closed) return Promise.reject(new PolyarchError('IO', 'session call closed by the daemon'));
    const ok = this.stream.write(frame(encode(schema, value)));
    if (ok) return Promise.resolve();
    return new Promise((res, rej) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', closed);
        res();
      };
      const closed = () => {
        this.stream.off('drain', done);
        rej(new PolyarchError('IO', 'session call closed by the daemon'));
      };
      this.stream.on('drain', done);
      this.stream.once('close', closed);
    });
  }

  finish(code: number = Status.OK, message = ''): void {
    if (this.closed) return;
    const trailers: Record<string, string> = { 'grpc-status': String(code) };
    if (message) trailers['grpc-message'] = encodeURIComponent(message);
    if (!this.started) {
      // Trailers-only response.
      this.started = true;
      this.stream.respond(
        { ':status': 200, 'content-type': 'application/grpc', ...trailers },
        { endStream: true },
      );
      return;
    }
    this.stream.once('wantTrailers', () => this.stream.sendTrailers(trailers));
    this.stream.end();
  }
}

export type Handler = (call: ServerCall) => Promise<void>;

/** Routes the streams of an http2 server to handlers by `:path`; unknown paths are UNIMPLEMENTED. */
export function serve(server: http2.Http2Server, handlers: ReadonlyMap<string, Handler>): void {
  server.on('stream', (stream, headers, _flags, rawHeaders?: string[]) => {
    const md = new Map<string, string[]>();
    if (Array.isArray(rawHeaders))
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        const k = rawHeaders[i]!.toLowerCase();
        md.set(k, [...(md.get(k) ?? []), rawHeaders[i + 1]!]);
      }
    else
      for (const [k, v] of Object.entries(headers))
        if (v !== undefined) md.set(k, Array.isArray(v) ? v : [String(v)]);
    const call = new ServerCall(stream, md);
    const handler = handlers.get(String(headers[':path']));
    if (!handler) {
      call.finish(Status.UNIMPLEMENTED, `unknown method ${headers[':path']}`);
      return;
    }
    handler(call).then(
      () => call.finish(),
      (err: unknown) => {
        const code = (err as { grpcCode?: number }).grpcCode ?? Status.UNKNOWN;
        call.finish(code, err instanceof Error ? err.message : String(err));
      },
    );
  });
}
