/**
 * Streaming tar codec: ustar, GNU (long names `L`/`K`, base-256 numbers) and PAX (`x`, `g`)
 * archives, read and written without ever holding a whole file in memory.
 *
 *   for await (const entry of readTar(readable)) {       // entry.header: TarHeader
 *     await pipeline(entry.body, createWriteStream(...)); // or leave it: it is skipped
 *   }
 *   Readable.from(writeTar(entries))                     // entries: {header, body?}
 *
 * A body must be consumed completely, or not at all, before asking for the next entry.
 * Xattrs travel as PAX `SCHILY.xattr.<name>` records whose values stay Buffers: PAX records
 * are length-prefixed bytes, so binary values (capabilities, NUL, 0xff) survive unchanged.
 * Paths are JavaScript strings (UTF-8 in the archive); names that are not valid UTF-8 are
 * not preserved byte for byte.
 */
import { PolyarchError } from '../util/errors.js';

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  /** As stored in the archive (directories usually end in `/`). */
  path: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Body length; 0 for everything but regular files. */
  size: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  /** Sub-second part, 0..999999999; only PAX can carry it. */
  mtimeNsec: number;
  /** Target of a symlink, or the archive path a hardlink points to. */
  linkpath: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes by name; values are raw bytes. */
  xattrs: Map<string, Buffer>;
  /** PAX records this codec does not interpret, kept for callers (values are raw bytes). */
  pax: Map<string, Buffer>;
}

export interface TarEntry {
  header: TarHeader;
  /** Exactly `header.size` bytes. */
  body: AsyncIterable<Buffer>;
}

export type TarBody =
  | Buffer
  | AsyncIterable<Buffer>
  | Iterable<Buffer>
  | (() => AsyncIterable<Buffer> | Iterable<Buffer>);

export interface TarEntryInput {
  header: Partial<TarHeader> & Pick<TarHeader, 'path' | 'type'>;
  /** Regular files only; its length must equal `header.size`. A function opens it lazily. */
  body?: TarBody;
}

export interface WriteTarOptions {
  /**
   * `pax` (default): ustar headers plus PAX records for whatever does not fit (long or
   * non-ASCII names, big numbers, sub-second mtimes, xattrs). `gnu`: GNU `L`/`K` long names and
   * base-256 numbers, no xattrs or sub-second times.
   */
  format?: 'pax' | 'gnu';
}

const BLOCK = 512;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

const TYPE_FLAGS: Record<EntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

export function defaultHeader(h: TarEntryInput['header']): TarHeader {
  return {
    path: h.path,
    type: h.type,
    mode: h.mode ?? (h.type === 'dir' ? 0o755 : 0o644),
    uid: h.uid ?? 0,
    gid: h.gid ?? 0,
    size: h.type === 'file' ? (h.size ?? 0) : 0,
    mtime: h.mtime ?? 0,
    mtimeNsec: h.mtimeNsec ?? 0,
    linkpath: h.linkpath ?? '',
    uname: h.uname ?? '',
    gname: h.gname ?? '',
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
    xattrs: h.xattrs ?? new Map(),
    pax: h.pax ?? new Map(),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading

type Chunk = Buffer | Uint8Array | string;
/** Anything that yields the archive's bytes: a Readable, an async generator, an array of Buffers. */
export type TarSource = AsyncIterable<Chunk> | Iterable<Chunk>;

/** Pulls exact byte counts out of an async stream of chunks, tracking the offset for errors. */
class ByteSource {
  #it: AsyncIterator<Chunk> | Iterator<Chunk>;
  #buf: Buffer[] = [];
  #buffered = 0;
  #done = false;
  offset = 0;

  constructor(src: TarSource) {
    this.#it = Symbol.asyncIterator in src ? src[Symbol.asyncIterator]() : src[Symbol.iterator]();
  }

  async #fill(): Promise<boolean> {
    if (this.#done) return false;
    const r = await this.#it.next();
    if (r.done) {
      this.#done = true;
      return false;
    }
    const c =
      typeof r.value === 'string'
        ? Buffer.from(r.value)
        : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    if (c.length > 0) {
      this.#buf.push(c);
      this.#buffered += c.length;
    }
    return true;
  }

  /** Exactly n bytes, or null at a clean end of input (no byte available). */
  async exact(n: number): Promise<Buffer | null> {
    if (n === 0) return Buffer.alloc(0);
    while (this.#buffered < n) {
      if (!(await this.#fill())) {
        if (this.#buffered === 0) return null;
        throw new PolyarchError(
          'INVALID_TAR',
          `tar: unexpected end of archive at offset ${this.offset + this.#buffered}`,
        );
      }
    }
    let out: Buffer;
    const first = this.#buf[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#buf.shift();
      else this.#buf[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let pos = 0;
      while (pos < n) {
        const c = this.#buf[0]!;
        const take = Math.min(c.length, n - pos);
        c.copy(out, pos, 0, take);
        pos += take;
        if (take === c.length) this.#buf.shift();
        else this.#buf[0] = c.subarray(take);
      }
    }
    this.#buffered -= n;
    this.offset += n;
    return out;
  }

  /** Yields the next n bytes as they arrive, in chunks. */
  async *take(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.#buffered === 0 && !(await this.#fill()))
        throw new PolyarchError(
          'INVALID_TAR',
          `tar: ${what}: unexpected end of archive at offset ${this.offset}`,
        );
      const c = this.#buf[0];
      if (!c) continue;
      const piece = c.length <= left ? c : c.subarray(0, left);
      if (piece === c) this.#buf.shift();
      else this.#buf[0] = c.subarray(left);
      this.#buffered -= piece.length;
      this.offset += piece.length;
      left -= piece.length;
      yield piece;
    }
  }

  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.take(n, what));
  }

  /** Reads and discards everything left (the zero padding after the end blocks). */
  async drain(): Promise<void> {
    this.offset += this.#buffered;
    this.#buf = [];
    this.#buffered = 0;
    while (await this.#fill()) {
      this.offset += this.#buffered;
      this.#buf = [];
      this.#buffered = 0;
    }
  }
}

function cstring(buf: Buffer, start: number, len: number): Buffer {
  const end = buf.indexOf(0, start);
  return buf.subarray(start, end < 0 || end > start + len ? start + len : end);
}

function parseNumber(buf: Buffer, start: number, len: number, field: string, where: () => string): number {
  const b0 = buf[start]!;
  if (b0 & 0x80) {
    // GNU base-256: first byte 0x80 (positive) or 0xff (negative), big-endian two's complement.
    let v = 0n;
    for (let i = 0; i < len; i++) v = (v << 8n) | BigInt(i === 0 && b0 === 0x80 ? 0 : buf[start + i]!);
    if (b0 === 0xff) v -= 1n << BigInt(len * 8);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
      throw new PolyarchError('INVALID_TAR', `tar: ${where()}: ${field} ${v} is too large`);
    return Number(v);
  }
  const s = buf
    .toString('latin1', start, start + len)
    .replace(/\0.*$/s, '')
    .trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s))
    throw new PolyarchError('INVALID_TAR', `tar: ${where()}: ${field} field "${s}" is not octal`);
  return Number.parseInt(s, 8);
}

function checksumOf(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b >= 0x80 ? b - 256 : b;
  }
  return { unsigned, signed };
}

/** Parses PAX records `"<len> <key>=<value>\n"`, keeping values as raw bytes. */
export function parsePax(buf: Buffer, where: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // some writers pad with NULs
    const sp = buf.indexOf(0x20, pos);
    const len = sp < 0 ? Number.NaN : Number(buf.toString('latin1', pos, sp));
    if (
      !Number.isInteger(len) ||
      len <= sp - pos + 1 ||
      pos + len > buf.length ||
      buf[pos + len - 1] !== 0x0a
    )
      throw new PolyarchError('INVALID_TAR', `tar: ${where}: malformed PAX record at byte ${pos}`);
    const rec = buf.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0)
      throw new PolyarchError('INVALID_TAR', `tar: ${where}: PAX record at byte ${pos} has no key`);
    out.set(rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1)));
    pos += len;
  }
  return out;
}

function paxInt(v: Buffer, key: string, where: string): number {
  const s = v.toString('latin1');
  if (!/^-?[0-9]+$/.test(s))
    throw new PolyarchError('INVALID_TAR', `tar: ${where}: PAX ${key} "${s}" is not a number`);
  return Number(s);
}

function paxTime(v: Buffer, where: string): { sec: number; nsec: number } {
  const s = v.toString('latin1');
  const m = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(s);
  if (!m) throw new PolyarchError('INVALID_TAR', `tar: ${where}: PAX mtime "${s}" is not a time`);
  let sec = Number(m[2]);
  let nsec = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (m[1] === '-') {
    // -1.25 is 1.25 s before the epoch: second -2 plus 0.75 s.
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return { sec, nsec };
}

function applyPax(h: TarHeader, records: Map<string, Buffer>, where: string): void {
  for (const [key, v] of records) {
    switch (key) {
      case 'path':
        h.path = v.toString('utf8');
        break;
      case 'linkpath':
        h.linkpath = v.toString('utf8');
        break;
      case 'size':
        h.size = paxInt(v, key, where);
        break;
      case 'uid':
        h.uid = paxInt(v, key, where);
        break;
      case 'gid':
        h.gid = paxInt(v, key, where);
        break;
      case 'uname':
        h.uname = v.toString('utf8');
        break;
      case 'gname':
        h.gname = v.toString('utf8');
        break;
      case 'mtime': {
        const t = paxTime(v, where);
        h.mtime = t.sec;
        h.mtimeNsec = t.nsec;
        break;
      }
      case 'atime':
      case 'ctime':
        break; // not part of a layer's content
      default:
        if (key.startsWith('SCHILY.xattr.')) h.xattrs.set(key.slice('SCHILY.xattr.'.length), v);
        else h.pax.set(key, v);
    }
  }
}

/**
 * Reads a tar stream entry by entry. Header checksums are verified; a corrupt header is an
 * `INVALID_TAR` error naming the entry and its offset. After the end-of-archive blocks the
 * rest of the input is read and discarded, so a hash taken of the input covers all of it.
 */
export async function* readTar(input: TarSource): AsyncGenerator<TarEntry> {
  const src = new ByteSource(input);
  let global = new Map<string, Buffer>();
  let pax: Map<string, Buffer> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  // Bytes of the previous entry's body (and padding) the caller has not read.
  const unread = { left: 0, pad: 0, where: '' };

  for (;;) {
    if (unread.left + unread.pad > 0) {
      await src.skip(unread.left + unread.pad, unread.where);
      unread.left = unread.pad = 0;
    }
    const at = src.offset;
    const block = await src.exact(BLOCK);
    if (block === null) {
      if (at === 0) throw new PolyarchError('INVALID_TAR', 'tar: empty input is not an archive');
      return; // archives without end blocks are accepted, as GNU tar does
    }
    if (block.equals(ZERO_BLOCK)) {
      await src.drain();
      return;
    }
    const rawName = cstring(block, 0, 100).toString('utf8');
    const where = () => `entry "${longName ?? rawName}" at offset ${at}`;
    const stored = parseNumber(block, 148, 8, 'checksum', where);
    const sum = checksumOf(block);
    if (stored !== sum.unsigned && stored !== sum.signed)
      throw new PolyarchError(
        'INVALID_TAR',
        `tar: ${where()}: header checksum mismatch (stored ${stored}, computed ${sum.unsigned})`,
      );

    const flag = String.fromCharCode(block[156]!);
    const magic = block.toString('latin1', 257, 263);
    const isUstar = magic === 'ustar\0';
    const size = parseNumber(block, 124, 12, 'size', where);
    const padded = Math.ceil(size / BLOCK) * BLOCK;

    // Meta entries describe the next one.
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > 64 * 1024 * 1024)
        throw new PolyarchError('INVALID_TAR', `tar: ${where()}: ${size}-byte metadata entry is too large`);
      const data = (await src.exact(padded)) ?? Buffer.alloc(0);
      const body = data.subarray(0, size);
      if (flag === 'x') pax = new Map([...(pax ?? []), ...parsePax(body, where())]);
      else if (flag === 'g') global = new Map([...global, ...parsePax(body, where())]);
      else if (flag === 'L') longName = cstring(body, 0, size).toString('utf8');
      else longLink = cstring(body, 0, size).toString('utf8');
      continue;
    }

    let path = rawName;
    if (isUstar) {
      const prefix = cstring(block, 345, 155).toString('utf8');
      if (prefix) path = `${prefix}/${path}`;
    }
    let type: EntryType;
    switch (flag) {
      case '0':
      case '\0':
      case '7':
        type = path.endsWith('/') ? 'dir' : 'file';
        break;
      case '1':
        type = 'hardlink';
        break;
      case '2':
        type = 'symlink';
        break;
      case '3':
        type = 'char';
        break;
      case '4':
        type = 'block';
        break;
      case '5':
        type = 'dir';
        break;
      case '6':
        type = 'fifo';
        break;
      case 'V': // GNU volume label: not a file
        await src.skip(padded, where());
        pax = longName = longLink = undefined;
        continue;
      case 'S':
      case 'M':
        throw new PolyarchError(
          'UNSUPPORTED',
          `tar: ${where()}: GNU sparse/multi-volume entries are not supported`,
        );
      default:
        type = 'file'; // POSIX: unknown types are read as regular files
    }
    const h: TarHeader = {
      path,
      type,
      mode: parseNumber(block, 100, 8, 'mode', where) & 0o7777,
      uid: parseNumber(block, 108, 8, 'uid', where),
      gid: parseNumber(block, 116, 8, 'gid', where),
      size,
      mtime: parseNumber(block, 136, 12, 'mtime', where),
      mtimeNsec: 0,
      linkpath: cstring(block, 157, 100).toString('utf8'),
      uname: cstring(block, 265, 32).toString('utf8'),
      gname: cstring(block, 297, 32).toString('utf8'),
      devmajor: type === 'char' || type === 'block' ? parseNumber(block, 329, 8, 'devmajor', where) : 0,
      devminor: type === 'char' || type === 'block' ? parseNumber(block, 337, 8, 'devminor', where) : 0,
      xattrs: new Map(),
      pax: new Map(),
    };
    if (longName !== undefined) h.path = longName;
    if (longLink !== undefined) h.linkpath = longLink;
    applyPax(h, global, where());
    if (pax) applyPax(h, pax, where());
    if ([...h.pax.keys()].some((k) => k.startsWith('GNU.sparse.')))
      throw new PolyarchError('UNSUPPORTED', `tar: ${where()}: GNU sparse files are not supported`);
    pax = longName = longLink = undefined;
    // Only regular files carry data (a hardlink's size, if any, is not followed by data).
    if (h.type !== 'file') {
      if (flag !== '1' && flag !== '2' && size > 0)
        await src.skip(Math.ceil(h.size / BLOCK) * BLOCK, where());
      h.size = 0;
      yield { header: h, body: emptyBody() };
      continue;
    }
    unread.left = h.size;
    unread.pad = Math.ceil(h.size / BLOCK) * BLOCK - h.size;
    unread.where = where();
    const body = (async function* () {
      if (unread.left !== h.size)
        throw new PolyarchError('INTERNAL', `tar: ${unread.where}: body read twice`);
      for await (const piece of src.take(h.size, unread.where)) {
        unread.left -= piece.length;
        yield piece;
      }
    })();
    yield { header: h, body };
  }
}

async function* emptyBody(): AsyncGenerator<Buffer> {}

// ---------------------------------------------------------------------------------------------
// Writing

const OCTAL_MAX: Record<number, number> = { 8: 0o7777777, 12: 0o77777777777 };

function fitsOctal(v: number, len: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= OCTAL_MAX[len]!;
}

function writeOctal(buf: Buffer, v: number, start: number, len: number): void {
  buf.write(`${v.toString(8).padStart(len - 1, '0')}\0`, start, len, 'latin1');
}

function writeBase256(buf: Buffer, v: number, start: number, len: number): void {
  let x = BigInt(v);
  if (x < 0n) x = (1n << BigInt(len * 8)) + x;
  for (let i = len - 1; i >= 0; i--) {
    buf[start + i] = Number(x & 0xffn);
    x >>= 8n;
  }
  buf[start] = v < 0 ? 0xff : 0x80;
}

function isAscii(s: string): boolean {
  return /^[\x01-\x7f]*$/.test(s);
}

/** Splits a path into ustar prefix (≤155 bytes) and name (≤100 bytes) at a slash, if possible. */
function splitUstar(path: string): { prefix: string; name: string } | null {
  const len = Buffer.byteLength(path);
  if (len <= 100) return { prefix: '', name: path };
  if (len > 256) return null;
  for (let i = path.length - 1; i > 0; i--) {
    if (path[i] !== '/') continue;
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name.length > 0)
      return { prefix, name };
    if (Buffer.byteLength(name) > 100) return null;
  }
  return null;
}

/** Encodes PAX records; record length counts its own digits. */
export function encodePax(records: Array<[string, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    const base = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
    let len = base + String(base).length;
    if (String(len).length !== String(len - base).length) len = base + String(len).length;
    parts.push(Buffer.from(`${len} ${key}=`), value, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

function ustarBlock(
  h: TarHeader,
  name: string,
  prefix: string,
  linkname: string,
  flag: string,
  size: number,
  gnu: boolean,
): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  const num = (v: number, start: number, len: number) => {
    if (fitsOctal(v, len)) writeOctal(b, v, start, len);
    else if (gnu) writeBase256(b, v, start, len);
    else writeOctal(b, 0, start, len); // the PAX record carries the real value
  };
  num(h.mode & 0o7777, 100, 8);
  num(h.uid, 108, 8);
  num(h.gid, 116, 8);
  num(size, 124, 12);
  num(h.mtime, 136, 12);
  b.write(flag, 156, 1, 'latin1');
  b.write(linkname, 157, 100, 'utf8');
  if (gnu) b.write('ustar  \0', 257, 8, 'latin1');
  else b.write('ustar\u000000', 257, 8, 'latin1');
  b.write(h.uname, 265, 32, 'utf8');
  b.write(h.gname, 297, 32, 'utf8');
  if (h.type === 'char' || h.type === 'block') {
    num(h.devmajor, 329, 8);
    num(h.devminor, 337, 8);
  }
  if (prefix) b.write(prefix, 345, 155, 'utf8');
  const { unsigned } = checksumOf(b);
  b.write(`${unsigned.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}

function padTo(n: number): Buffer | null {
  const rem = n % BLOCK;
  return rem === 0 ? null : ZERO_BLOCK.subarray(0, BLOCK - rem);
}

function metaEntry(name: string, flag: string, data: Buffer, h: TarHeader, gnu: boolean): Buffer[] {
  const meta: TarHeader = { ...h, type: 'file', mode: 0o644, uid: 0, gid: 0, uname: '', gname: '' };
  meta.mtime = fitsOctal(h.mtime, 12) ? h.mtime : 0;
  const out = [ustarBlock(meta, name, '', '', flag, data.length, gnu), data];
  const pad = padTo(data.length);
  if (pad) out.push(pad);
  return out;
}

/**
 * The header blocks for one entry: PAX or GNU meta entries when needed, then the ustar
 * header. Deterministic: the same header always encodes to the same bytes (PAX records in a
 * fixed order, xattrs sorted by name, the PAX entry named `PaxHeaders.0/<name>`).
 */
export function encodeHeader(input: TarEntryInput['header'], opts: WriteTarOptions = {}): Buffer[] {
  const h = defaultHeader(input);
  const gnu = opts.format === 'gnu';
  const path = h.type === 'dir' && !h.path.endsWith('/') ? `${h.path}/` : h.path;
  const flag = TYPE_FLAGS[h.type];
  if (!flag) throw new PolyarchError('INVALID_ARGUMENT', `tar: entry "${path}": unknown type "${h.type}"`);
  const out: Buffer[] = [];
  let name = path;
  let prefix = '';
  let linkname = h.linkpath;
  const where = `entry "${path}"`;
  if (!Number.isSafeInteger(h.size) || h.size < 0)
    throw new PolyarchError('INVALID_ARGUMENT', `tar: ${where}: invalid size ${h.size}`);

  if (gnu) {
    if (h.xattrs.size > 0 || h.mtimeNsec !== 0 || h.pax.size > 0)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `tar: ${where}: the GNU format cannot carry xattrs, PAX records or sub-second times (use pax)`,
      );
    if (Buffer.byteLength(path) > 100) {
      out.push(...metaEntry('././@LongLink', 'L', Buffer.from(`${path}\0`), h, true));
      name = path;
    }
    if (Buffer.byteLength(linkname) > 100) {
      out.push(...metaEntry('././@LongLink', 'K', Buffer.from(`${linkname}\0`), h, true));
    }
    // The ustar name fields get the truncated value, as GNU tar writes.
    name = Buffer.from(name).subarray(0, 100).toString('utf8');
    linkname = Buffer.from(linkname).subarray(0, 100).toString('utf8');
    out.push(ustarBlock(h, name, '', linkname, flag, h.size, true));
    return out;
  }

  const records: Array<[string, Buffer]> = [];
  const split = isAscii(path) ? splitUstar(path) : null;
  if (split) {
    name = split.name;
    prefix = split.prefix;
  } else {
    records.push(['path', Buffer.from(path)]);
    name = truncateAscii(path, 100);
  }
  if (!isAscii(linkname) || Buffer.byteLength(linkname) > 100) {
    records.push(['linkpath', Buffer.from(linkname)]);
    linkname = truncateAscii(linkname, 100);
  }
  if (!fitsOctal(h.size, 12)) records.push(['size', Buffer.from(String(h.size))]);
  if (!fitsOctal(h.uid, 8)) records.push(['uid', Buffer.from(String(h.uid))]);
  if (!fitsOctal(h.gid, 8)) records.push(['gid', Buffer.from(String(h.gid))]);
  if (!isAscii(h.uname) || Buffer.byteLength(h.uname) > 32) records.push(['uname', Buffer.from(h.uname)]);
  if (!isAscii(h.gname) || Buffer.byteLength(h.gname) > 32) records.push(['gname', Buffer.from(h.gname)]);
  if (!fitsOctal(h.mtime, 12) || h.mtimeNsec !== 0) records.push(['mtime', Buffer.from(formatPaxTime(h))]);
  for (const [k, v] of [...h.pax].sort(byKey)) records.push([k, v]);
  for (const [k, v] of [...h.xattrs].sort(byKey)) records.push([`SCHILY.xattr.${k}`, v]);
  if (records.length > 0) {
    const base = path.replace(/\/$/, '').split('/').pop() ?? '';
    out.push(...metaEntry(truncateAscii(`PaxHeaders.0/${base}`, 100), 'x', encodePax(records), h, false));
  }
  out.push(ustarBlock(h, name, prefix, linkname, flag, h.size, false));
  return out;
}

function byKey(a: [string, unknown], b: [string, unknown]): number {
  return Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0]));
}

function truncateAscii(s: string, max: number): string {
  return s.replace(/[^\x01-\x7f]/g, '_').slice(0, max);
}

function formatPaxTime(h: TarHeader): string {
  if (h.mtimeNsec === 0) return String(h.mtime);
  let sec = h.mtime;
  let nsec = h.mtimeNsec;
  let sign = '';
  if (sec < 0) {
    // second -2 plus 0.75 s is -1.25
    sign = '-';
    sec = -(sec + 1);
    nsec = 1e9 - nsec;
  }
  return `${sign}${sec}.${String(nsec).padStart(9, '0').replace(/0+$/, '')}`;
}

/**
 * Encodes entries as a tar stream (with the two zero end blocks). A file body that is
 * shorter or longer than its header's size is an error (the file changed while packing).
 */
export async function* writeTar(
  entries: AsyncIterable<TarEntryInput> | Iterable<TarEntryInput>,
  opts: WriteTarOptions = {},
): AsyncGenerator<Buffer> {
  for await (const e of entries) {
    const blocks = encodeHeader(e.header, opts);
    yield blocks.length === 1 ? blocks[0]! : Buffer.concat(blocks);
    if (e.header.type !== 'file') continue;
    const size = e.header.size ?? 0;
    let n = 0;
    if (e.body !== undefined) {
      const body = typeof e.body === 'function' ? e.body() : Buffer.isBuffer(e.body) ? [e.body] : e.body;
      for await (const chunk of body) {
        n += chunk.length;
        if (n > size) break;
        yield chunk;
      }
    }
    if (n !== size)
      throw new PolyarchError(
        'SIZE_MISMATCH',
        `tar: entry "${e.header.path}": body has ${n > size ? 'more than' : 'only'} ${n} bytes, header says ${size}`,
      );
    const pad = padTo(size);
    if (pad) yield pad;
  }
  yield Buffer.alloc(BLOCK * 2);
}
