/**
 * The sending side of fsutil's DiffCopy packet protocol (tonistiigi/fsutil send.go), which
 * buildkitd's FileSync client receives: a STAT per entry in fsutil's order (depth-first,
 * parents first, siblings sorted bytewise), an empty STAT, then file data for every REQ
 * until the receiver's FIN. The client does the filtering (the daemon does not): exclude
 * patterns with .dockerignore semantics, include patterns, followpaths.
 *
 *   const entries = await walkContext(dir, { excludes, includes, followPaths });
 *   await sendEntries(call, entries);
 */
import { lstat, open, readdir, readlink, realpath } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Stats } from 'node:fs';
import { dockerignoreMatcher } from '../dockerfile/dockerignore.js';
import { PolyarchError } from '../util/errors.js';
import type { ServerCall } from './grpc.js';
import { PACKET, Packet } from './messages.js';
import type { Message } from './proto.js';

/** Go's os.FileMode bits (io/fs). */
export const GO_MODE = {
  dir: 2 ** 31,
  symlink: 1 << 27,
  device: 1 << 26,
  pipe: 1 << 25,
  socket: 1 << 24,
  setuid: 1 << 23,
  setgid: 1 << 22,
  charDevice: 1 << 21,
  sticky: 1 << 20,
} as const;

/** st_mode → Go's FileMode. */
export function goFileMode(st: Stats): number {
  let m = st.mode & 0o777;
  if (st.mode & 0o4000) m += GO_MODE.setuid;
  if (st.mode & 0o2000) m += GO_MODE.setgid;
  if (st.mode & 0o1000) m += GO_MODE.sticky;
  if (st.isDirectory()) m += GO_MODE.dir;
  else if (st.isSymbolicLink()) m += GO_MODE.symlink;
  else if (st.isBlockDevice()) m += GO_MODE.device;
  else if (st.isCharacterDevice()) m += GO_MODE.device + GO_MODE.charDevice;
  else if (st.isFIFO()) m += GO_MODE.pipe;
  else if (st.isSocket()) m += GO_MODE.socket;
  return m;
}

export interface Entry {
  /** Relative, `/`-separated. */
  path: string;
  abs: string;
  stat: Message;
  /** A regular file whose data the receiver may ask for. */
  file: boolean;
}

export interface WalkOptions {
  excludes?: readonly string[];
  includes?: readonly string[];
  followPaths?: readonly string[];
}

function clean(p: string): string {
  return p.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
}

function globPart(g: string): RegExp {
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = g.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${g
          .slice(i + 1, end)
          .replace(/^\^/, '^')
          .replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < g.length) re += `\\${g[++i]}`;
    else re += c.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** An include pattern (fsutil's: a match includes the whole subtree). */
class Include {
  private readonly parts: (RegExp | '**')[];
  constructor(pattern: string) {
    this.parts = clean(pattern)
      .split('/')
      .filter(Boolean)
      .map((p) => (p === '**' ? '**' : globPart(p)));
  }

  private matchFrom(path: string[], pi: number, qi: number, prefixOk: boolean): boolean {
    for (;;) {
      if (qi === this.parts.length) return true; // pattern used up: path is at or under a match
      if (pi === path.length) return prefixOk;
      const q = this.parts[qi]!;
      if (q === '**') {
        for (let k = pi; k <= path.length; k++) if (this.matchFrom(path, k, qi + 1, prefixOk)) return true;
        return prefixOk;
      }
      if (!q.test(path[pi]!)) return false;
      pi++;
      qi++;
    }
  }

  /** The path itself or a parent matches. */
  matches(path: string): boolean {
    return this.matchFrom(path.split('/'), 0, 0, false);
  }

  /** Something under this directory could match. */
  mayContain(dir: string): boolean {
    return this.matchFrom(dir.split('/'), 0, 0, true);
  }
}

function bytewise(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * Every entry to send, in fsutil's order. Directories that are only on the way to an
 * included (or re-included, `!pattern`) entry are sent too, as fsutil does.
 */
export async function walkContext(root: string, opts: WalkOptions = {}): Promise<Entry[]> {
  const excludes = (opts.excludes ?? []).filter((p) => p.trim() !== '');
  const ignore = dockerignoreMatcher(excludes);
  const reincludes = excludes.some((p) => p.startsWith('!'));
  const includeList = [...(opts.includes ?? [])];
  for (const f of opts.followPaths ?? []) {
    const rel = clean(f);
    if (!rel) continue;
    includeList.push(rel);
    // A followed symlink brings its target (inside the context) along.
    try {
      const real = await realpath(join(root, rel));
      const inside = relative(await realpath(root), real);
      if (inside && !inside.startsWith('..')) includeList.push(inside.split(sep).join('/'));
    } catch {
      // Missing: the daemon reports it.
    }
  }
  const includes = includeList.filter((p) => clean(p) !== '').map((p) => new Include(p));
  const out: Entry[] = [];
  const links = new Map<string, string>();

  const entryOf = async (rel: string, abs: string, st: Stats): Promise<Entry> => {
    const stat: Message = {
      path: rel,
      mode: goFileMode(st),
      uid: 0,
      gid: 0,
      size: st.isFile() ? st.size : 0,
      modTime: Math.trunc(Number(st.mtimeMs) * 1e6),
    };
    if (st.isSymbolicLink()) stat.linkname = await readlink(abs);
    if (st.isBlockDevice() || st.isCharacterDevice()) {
      stat.devmajor = Math.floor(st.rdev / 256);
      stat.devminor = st.rdev % 256;
    }
    let file = st.isFile();
    if (file && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = links.get(key);
      if (first !== undefined) {
        stat.linkname = first;
        stat.size = 0;
        file = false;
      } else links.set(key, rel);
    }
    return { path: rel, abs, stat, file };
  };

  const walk = async (dirRel: string, dirAbs: string, pending: Entry[]): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dirAbs);
    } catch (err) {
      throw new PolyarchError('IO', `reading context directory ${dirAbs}: ${(err as Error).message}`);
    }
    names.sort(bytewise);
    for (const name of names) {
      const rel = dirRel ? `${dirRel}/${name}` : name;
      const abs = join(dirAbs, name);
      const st = await lstat(abs);
      const included = includes.length === 0 || includes.some((i) => i.matches(rel));
      const excluded = ignore.ignores(rel);
      if (st.isDirectory()) {
        const descend = (!excluded || reincludes) && (included || includes.some((i) => i.mayContain(rel)));
        if (!descend) continue;
        const me = await entryOf(rel, abs, st);
        if (included && !excluded) {
          for (const p of pending) out.push(p);
          pending.length = 0;
          out.push(me);
          await walk(rel, abs, []);
        } else await walk(rel, abs, [...pending, me]);
        continue;
      }
      if (!included || excluded) continue;
      for (const p of pending) out.push(p);
      pending.length = 0;
      out.push(await entryOf(rel, abs, st));
    }
  };
  await walk('', root, []);
  return out;
}

const CHUNK = 1 << 20;

/** Sends `entries` over a FileSync DiffCopy call and serves the receiver's requests until FIN. */
export async function sendEntries(call: ServerCall, entries: readonly Entry[]): Promise<void> {
  let chain = Promise.resolve();
  let failed: Error | undefined;
  const send = (p: Message) => {
    chain = chain.then(() => call.write(Packet, p));
    chain.catch((err: Error) => {
      failed ??= err;
    });
    return chain;
  };
  for (const e of entries) send({ type: PACKET.STAT, stat: e.stat });
  send({ type: PACKET.STAT });
  for (;;) {
    const p = await call.read(Packet);
    if (failed) throw failed;
    if (!p) throw new PolyarchError('IO', 'file sync: the daemon closed the transfer early');
    if (p.type === PACKET.FIN) {
      await send({ type: PACKET.FIN });
      return;
    }
    if (p.type === PACKET.ERR)
      throw new PolyarchError(
        'IO',
        `file sync: the daemon reported: ${Buffer.from(p.data).toString('utf8')}`,
      );
    if (p.type !== PACKET.REQ) continue;
    const id = p.id as number;
    const e = entries[id];
    if (!e?.file)
      throw new PolyarchError('IO', `file sync: the daemon asked for entry ${id}, which has no data`);
    // Reading is chained with the writes so chunks of different files never interleave.
    chain = chain.then(async () => {
      const fh = await open(e.abs, 'r');
      try {
        const buf = Buffer.allocUnsafe(CHUNK);
        for (;;) {
          const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
          if (bytesRead === 0) break;
          await call.write(Packet, { type: PACKET.DATA, id, data: Buffer.from(buf.subarray(0, bytesRead)) });
        }
      } finally {
        await fh.close();
      }
      await call.write(Packet, { type: PACKET.DATA, id });
    });
    chain.catch((err: Error) => {
      failed ??= err;
    });
  }
}
