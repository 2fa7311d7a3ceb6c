/**
 * The wire between polyarch and a node it reaches with `ssh host polyarch __node serve`:
 * the node's stdout and stdin carry, after one greeting line, length-prefixed frames.
 *
 *   greeting  `POLYARCH-NODE/<protocol> polyarch/v<version>\n`  (text, so a shell banner, an
 *             old polyarch printing usage or a wrong program is told apart before any frame)
 *   frame     u32 big-endian payload length, u8 kind (0 = JSON message, 1 = data), payload
 *
 * A JSON message that announces bytes (`size`) is followed by data frames holding exactly
 * that many. Frames are bounded (MAX_JSON, MAX_DATA), so a confused peer cannot make either
 * side buffer without limit.
 *
 *   const w = new FrameWriter(child.stdin);  await w.send({ t: 'build', ... });
 *   const r = new FrameReader(child.stdout); const m = await r.message();
 */
import type { Readable, Writable } from 'node:stream';
import { PolyarchError } from '../../util/errors.js';

/** Bumped whenever a message changes meaning; both ends must speak the same one. */
export const NODE_PROTOCOL = 1;
export const GREETING_PREFIX = 'POLYARCH-NODE/';
const MAX_JSON = 16 << 20;
/** Largest data frame either side sends. */
export const MAX_DATA = 1 << 20;
const MAX_GREETING = 256;

export type Message = { t: string } & Record<string, unknown>;

export type Frame = { kind: 'json'; msg: Message } | { kind: 'data'; data: Buffer };

export function greeting(version: string): string {
  return `${GREETING_PREFIX}${NODE_PROTOCOL} polyarch/v${version}\n`;
}

/** `POLYARCH-NODE/1 polyarch/v0.1.0` → { protocol: 1, version: 'polyarch/v0.1.0' }. */
export function parseGreeting(line: string): { protocol: number; version: string } | undefined {
  const m = /^POLYARCH-NODE\/(\d+) (\S+)$/.exec(line.trim());
  return m ? { protocol: Number(m[1]), version: m[2]! } : undefined;
}

/** Pull-based reader over a byte stream (the ssh child's stdout, or the node's stdin). */
export class FrameReader {
  readonly #s: Readable;
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;

  constructor(stream: Readable) {
    this.#s = stream;
    const wake = () => {
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    };
    stream.on('readable', wake);
    stream.on('end', () => {
      this.#ended = true;
      wake();
    });
    stream.on('close', () => {
      this.#ended = true;
      wake();
    });
    stream.on('error', (err) => {
      this.#error = err;
      wake();
    });
  }

  /** True once the peer closed its end. */
  get ended(): boolean {
    return this.#ended;
  }

  async #wait(): Promise<void> {
    await new Promise<void>((res) => {
      this.#wake = res;
    });
  }

  /** Exactly `n` bytes, or undefined at a clean end before the first byte. */
  async #read(n: number): Promise<Buffer | undefined> {
    for (;;) {
      if (this.#error) throw this.#error;
      const b = this.#s.read(n) as Buffer | null;
      if (b !== null) {
        if (b.length === n) return b;
        // At the end read() hands back what is left even when it is short.
        throw new PolyarchError('IO', 'the peer closed the connection mid-frame');
      }
      if (this.#ended) return undefined;
      await this.#wait();
    }
  }

  /** The greeting line (at most MAX_GREETING bytes), or undefined when the stream ended first. */
  async line(): Promise<string | undefined> {
    const bytes: number[] = [];
    for (;;) {
      const b = await this.#read(1);
      if (b === undefined) return bytes.length ? Buffer.from(bytes).toString('utf8') : undefined;
      if (b[0] === 0x0a) return Buffer.from(bytes).toString('utf8');
      bytes.push(b[0]!);
      if (bytes.length > MAX_GREETING) return Buffer.from(bytes).toString('utf8');
    }
  }

  /** The next frame, or undefined at a clean end between frames. */
  async frame(): Promise<Frame | undefined> {
    const head = await this.#read(5);
    if (head === undefined) return undefined;
    const len = head.readUInt32BE(0);
    const kind = head[4];
    if (kind !== 0 && kind !== 1) throw new PolyarchError('IO', `protocol error: unknown frame kind ${kind}`);
    if (len > (kind === 0 ? MAX_JSON : MAX_DATA))
      throw new PolyarchError('IO', `protocol error: a ${len}-byte frame is over the limit`);
    const body = len === 0 ? Buffer.alloc(0) : await this.#read(len);
    if (body === undefined) throw new PolyarchError('IO', 'the peer closed the connection mid-frame');
    if (kind === 1) return { kind: 'data', data: body };
    let msg: unknown;
    try {
      msg = JSON.parse(body.toString('utf8'));
    } catch {
      throw new PolyarchError('IO', 'protocol error: a message is not JSON');
    }
    if (typeof msg !== 'object' || msg === null || typeof (msg as Message).t !== 'string')
      throw new PolyarchError('IO', 'protocol error: a message has no type');
    return { kind: 'json', msg: msg as Message };
  }

  /** The next frame, which must be a message; undefined at a clean end. */
  async message(): Promise<Message | undefined> {
    const f = await this.frame();
    if (f === undefined) return undefined;
    if (f.kind !== 'json') throw new PolyarchError('IO', 'protocol error: data where a message was expected');
    return f.msg;
  }

  /** The `size` bytes that follow a message, as chunks. */
  async *data(size: number): AsyncGenerator<Buffer> {
    let left = size;
    while (left > 0) {
      const f = await this.frame();
      if (f === undefined) throw new PolyarchError('IO', 'the peer closed the connection mid-transfer');
      if (f.kind !== 'data' || f.data.length > left)
        throw new PolyarchError('IO', 'protocol error: the data does not match its announced size');
      left -= f.data.length;
      yield f.data;
    }
  }
}

/** Writes frames, waiting for the stream to drain so a slow peer bounds memory. */
export class FrameWriter {
  readonly #s: Writable;
  #closed = false;

  constructor(stream: Writable) {
    this.#s = stream;
    stream.on('error', () => {
      this.#closed = true;
    });
    stream.on('close', () => {
      this.#closed = true;
    });
  }

  async #write(kind: 0 | 1, payload: Buffer): Promise<void> {
    if (this.#closed || this.#s.destroyed) throw new PolyarchError('IO', 'the connection is closed');
    const head = Buffer.alloc(5);
    head.writeUInt32BE(payload.length, 0);
    head[4] = kind;
    this.#s.write(head);
    if (!this.#s.write(payload))
      await new Promise<void>((res) => {
        const done = () => {
          this.#s.off('drain', done);
          this.#s.off('close', done);
          res();
        };
        this.#s.on('drain', done);
        this.#s.on('close', done);
      });
  }

  send(msg: Message): Promise<void> {
    return this.#write(0, Buffer.from(JSON.stringify(msg), 'utf8'));
  }

  /** Sends `src` as data frames; the announcing message was sent before. */
  async data(src: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<number> {
    let n = 0;
    for await (const chunk of src) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      for (let off = 0; off < b.length; off += MAX_DATA) {
        const part = b.subarray(off, Math.min(b.length, off + MAX_DATA));
        await this.#write(1, part);
        n += part.length;
      }
    }
    return n;
  }

  end(): void {
    if (!this.#s.destroyed) this.#s.end();
  }
}
