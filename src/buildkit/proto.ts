/**
 * A small protobuf (proto3) codec driven by hand-written schemas: the messages BuildKit's
 * client API needs, nothing more. Field numbers and types are the wire contract
 * (moby/buildkit api/services/control/control.proto, fsutil types/wire.proto, ...).
 *
 *   const Req = msg({ ref: [1, 'string'], attrs: [7, 'map'] });
 *   const bytes = encode(Req, { ref: 'x', attrs: { platform: 'linux/arm64' } });
 *   const back = decode(Req, bytes);   // { ref: 'x', attrs: { platform: 'linux/arm64' } }
 *
 * Scalars decode to numbers (int64 beyond 2^53 loses precision, fine for sizes and times),
 * strings, booleans and Buffers; unset fields decode to their zero value (repeated: [],
 * map: {}, message: undefined). Unknown fields are skipped.
 */
import { PolyarchError } from '../util/errors.js';

export type Scalar = 'string' | 'bytes' | 'bool' | 'int64' | 'uint64' | 'int32' | 'uint32';
/** `[number, type]` or `[number, type, 'repeated']`; `map` is map<string,string>. */
export type FieldSpec =
  | readonly [number, Scalar | 'map' | Schema]
  | readonly [number, Scalar | Schema, 'repeated'];
export interface Schema {
  readonly fields: Readonly<Record<string, FieldSpec>>;
  /** field number → name, built once. */
  readonly byNumber: ReadonlyMap<number, string>;
}

// biome-ignore lint/suspicious/noExplicitAny: decoded messages are plain objects described by their schema
export type Message = Record<string, any>;

export function msg(fields: Record<string, FieldSpec>): Schema {
  const byNumber = new Map<number, string>();
  for (const [name, spec] of Object.entries(fields)) byNumber.set(spec[0], name);
  return { fields, byNumber };
}

const MAP_ENTRY = msg({ key: [1, 'string'], value: [2, 'string'] });

class Writer {
  private chunks: Buffer[] = [];
  private cur = Buffer.allocUnsafe(256);
  private pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = Buffer.allocUnsafe(Math.max(256, n));
    this.pos = 0;
  }

  varint(v: number | bigint): void {
    this.room(10);
    let n = BigInt.asUintN(64, BigInt(v));
    if (typeof v === 'number' && v >= 0 && v < 2 ** 31) {
      let x = v;
      while (x > 0x7f) {
        this.cur[this.pos++] = (x & 0x7f) | 0x80;
        x >>>= 7;
      }
      this.cur[this.pos++] = x;
      return;
    }
    while (n > 0x7fn) {
      this.cur[this.pos++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.cur[this.pos++] = Number(n);
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.chunks.push(Buffer.from(b.buffer, b.byteOffset, b.length));
    this.cur = this.cur.subarray(this.pos);
    this.pos = 0;
  }

  finish(): Buffer {
    this.chunks.push(this.cur.subarray(0, this.pos));
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
  }
}

function isZero(type: Scalar, v: unknown): boolean {
  if (v === undefined || v === null) return true;
  switch (type) {
    case 'string':
      return v === '';
    case 'bytes':
      return (v as Uint8Array).length === 0;
    case 'bool':
      return v === false;
    default:
      return v === 0 || v === 0n;
  }
}

function writeScalar(w: Writer, no: number, type: Scalar, v: unknown): void {
  if (type === 'string' || type === 'bytes') {
    w.varint((no << 3) | 2);
    w.bytes(typeof v === 'string' ? Buffer.from(v, 'utf8') : (v as Uint8Array));
    return;
  }
  w.varint(no << 3);
  if (type === 'bool') w.varint(v ? 1 : 0);
  else w.varint(v as number | bigint);
}

function writeMessage(w: Writer, schema: Schema, value: Message): void {
  for (const [name, spec] of Object.entries(schema.fields)) {
    const v = value[name];
    if (v === undefined || v === null) continue;
    const [no, type] = spec;
    if (type === 'map') {
      for (const [k, val] of Object.entries(v as Record<string, string>)) {
        w.varint((no << 3) | 2);
        w.bytes(encode(MAP_ENTRY, { key: k, value: val }));
      }
    } else if (spec[2] === 'repeated') {
      for (const item of v as unknown[]) {
        if (typeof type === 'string') writeScalar(w, no, type, item);
        else {
          w.varint((no << 3) | 2);
          w.bytes(encode(type, item as Message));
        }
      }
    } else if (typeof type === 'string') {
      if (!isZero(type, v)) writeScalar(w, no, type, v);
    } else {
      w.varint((no << 3) | 2);
      w.bytes(encode(type, v as Message));
    }
  }
}

export function encode(schema: Schema, value: Message): Buffer {
  const w = new Writer();
  writeMessage(w, schema, value);
  return w.finish();
}

function corrupt(why: string): PolyarchError {
  return new PolyarchError('INVALID_ARGUMENT', `malformed protobuf message: ${why}`);
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw corrupt('truncated varint');
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result >= 2 ** 63 ? result - 2 ** 64 : result;
      mul *= 128;
    }
    throw corrupt('varint too long');
  }

  chunk(): Buffer {
    const n = this.varint();
    if (n < 0 || this.pos + n > this.buf.length) throw corrupt('truncated field');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.chunk();
    else if (wire === 5) this.pos += 4;
    else throw corrupt(`wire type ${wire}`);
  }
}

function zero(spec: FieldSpec): unknown {
  const type = spec[1];
  if (spec[2] === 'repeated') return [];
  if (type === 'map') return {};
  if (typeof type !== 'string') return undefined;
  if (type === 'string') return '';
  if (type === 'bytes') return Buffer.alloc(0);
  if (type === 'bool') return false;
  return 0;
}

function scalarFrom(type: Scalar, r: Reader, wire: number): unknown {
  if (type === 'string') return r.chunk().toString('utf8');
  if (type === 'bytes') return r.chunk();
  if (wire !== 0) throw corrupt(`expected a varint for ${type}`);
  const n = r.varint();
  if (type === 'bool') return n !== 0;
  if (type === 'uint32') return n >>> 0;
  if (type === 'int32') return n | 0;
  return n;
}

export function decode(schema: Schema, buf: Buffer): Message {
  const out: Message = {};
  for (const [name, spec] of Object.entries(schema.fields)) out[name] = zero(spec);
  const r = new Reader(buf);
  while (r.pos < buf.length) {
    const tag = r.varint();
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    const name = schema.byNumber.get(no);
    if (name === undefined) {
      r.skip(wire);
      continue;
    }
    const spec = schema.fields[name]!;
    const type = spec[1];
    if (type === 'map') {
      const e = decode(MAP_ENTRY, r.chunk());
      out[name][e.key] = e.value;
    } else if (spec[2] === 'repeated') {
      if (typeof type !== 'string') out[name].push(decode(type, r.chunk()));
      else if (wire === 2 && type !== 'string' && type !== 'bytes') {
        // Packed scalars.
        const sub = new Reader(r.chunk());
        while (sub.pos < sub.buf.length) out[name].push(scalarFrom(type, sub, 0));
      } else out[name].push(scalarFrom(type, r, wire));
    } else if (typeof type === 'string') out[name] = scalarFrom(type, r, wire);
    else out[name] = decode(type, r.chunk());
  }
  return out;
}
