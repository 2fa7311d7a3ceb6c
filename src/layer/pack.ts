/**
 * Deterministic layer tars from a directory tree.
 *
 *   const tar = Readable.from(packDir('/rootfs', { sourceDateEpoch: 1700000000 }));
 *   // or, to edit the entry list first (overlay diffs do):
 *   const entries = await scanTree(dir); ...; Readable.from(packEntries(entries, opts));
 *
 * The same tree always gives the same bytes: entries sorted by path bytewise, no `./`
 * prefix, empty uname/gname, device numbers only on devices, mtimes clamped to
 * SOURCE_DATE_EPOCH when given and cut to whole seconds unless asked otherwise. Mode bits and
 * numeric uid/gid are kept. Files with several links become one file entry (the first path in
 * sorted order) and hardlink entries. Sockets are skipped (tar cannot carry them).
 * Extended attributes are read from disk only with `xattrs: true` (Node has no xattr API, so
 * one getfattr/python3 process reads the whole tree); callers may also set `header.xattrs`.
 */
import { type BigIntStats, createReadStream, readFileSync } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PolyarchError, errorMessage } from '../util/errors.js';
import { type TarEntryInput, writeTar } from './tar.js';
import { readAllXattrs } from './xattr.js';

export interface FsEntry {
  /** Archive path relative to the tree root, without `./` or a trailing slash. */
  path: string;
  /** Where the content lives on disk; undefined for synthetic entries (whiteouts). */
  source?: string;
  /** lstat of `source` (bigint, so device and inode numbers are exact). */
  stat?: BigIntStats;
  header: TarEntryInput['header'];
}

export interface PackOptions {
  /** Clamp every mtime to at most this many seconds since the epoch (reproducible builds). Default: keep. */
  sourceDateEpoch?: number;
  /** Keep nanoseconds of mtimes (as PAX records). Default false: whole seconds, like docker. */
  subsecondMtime?: boolean;
  /** Tar dialect; default `pax`. */
  format?: 'pax' | 'gnu';
  /** Read size of file bodies. Default 256 KiB. */
  readChunk?: number;
  /**
   * Read xattrs from disk (one child process for the tree: getfattr or python3, see xattr.ts)
   * and store them as PAX records. Default false. `security.selinux` (host labels) and
   * `trusted.overlay.*` (overlayfs bookkeeping) are never stored.
   */
  xattrs?: boolean;
}

/** Whether an on-disk xattr belongs in a layer. */
export function isLayerXattr(name: string): boolean {
  return name !== 'security.selinux' && !name.startsWith('trusted.overlay.');
}

/** Sets `header.xattrs` of scanned entries from a readAllXattrs() result. */
export function attachXattrs(entries: FsEntry[], all: Map<string, Map<string, Buffer>>): void {
  for (const e of entries) {
    const found = e.source ? all.get(e.source) : undefined;
    if (!found) continue;
    const keep = [...found].filter(([n]) => isLayerXattr(n));
    if (keep.length > 0) e.header.xattrs = new Map(keep);
  }
}

/** Linux dev_t split, as glibc's major()/minor(). */
export function devNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** The tar header a file's lstat describes (type, mode, owner, size, mtime, device, link target). */
export async function headerFromStat(
  path: string,
  source: string,
  st: BigIntStats,
): Promise<TarEntryInput['header'] | null> {
  const base = {
    path,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: Number(st.mtimeNs / 1_000_000_000n),
    mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
  };
  if (st.isFile()) return { ...base, type: 'file', size: Number(st.size) };
  if (st.isDirectory()) return { ...base, type: 'dir' };
  if (st.isSymbolicLink()) return { ...base, type: 'symlink', linkpath: await readlink(source) };
  if (st.isFIFO()) return { ...base, type: 'fifo' };
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    const { major, minor } = devNumbers(st.rdev);
    return { ...base, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major, devminor: minor };
  }
  return null; // socket
}

/** Every file under `root` (not `root` itself), unsorted; with their xattrs when asked. */
export async function scanTree(root: string, opts: { xattrs?: boolean } = {}): Promise<FsEntry[]> {
  const out: FsEntry[] = [];
  async function walk(dirAbs: string, dirRel: string): Promise<void> {
    let names: string[];
    try {
      const raw = await readdir(dirAbs, { encoding: 'buffer' });
      names = raw.map((b) => {
        const name = b.toString('utf8');
        // Paths are strings here; a name that is not UTF-8 could not be opened again.
        if (!Buffer.from(name).equals(b))
          throw new PolyarchError(
            'UNSUPPORTED',
            `packing ${dirAbs}: file name ${JSON.stringify(b.toString('latin1'))} is not valid UTF-8`,
          );
        return name;
      });
    } catch (err) {
      if (err instanceof PolyarchError) throw err;
      throw new PolyarchError('IO', `packing ${dirAbs}: ${errorMessage(err)}`, { cause: err });
    }
    const subdirs: Array<[string, string]> = [];
    await Promise.all(
      names.map(async (name) => {
        const source = join(dirAbs, name);
        const path = dirRel ? `${dirRel}/${name}` : name;
        const st = await lstat(source, { bigint: true });
        const header = await headerFromStat(path, source, st);
        if (!header) return;
        out.push({ path, source, stat: st, header });
        if (st.isDirectory()) subdirs.push([source, path]);
      }),
    );
    for (const [abs, rel] of subdirs) await walk(abs, rel);
  }
  await walk(root, '');
  if (opts.xattrs) attachXattrs(out, await readAllXattrs(root));
  return out;
}

/** Sorts entries by path, bytewise on UTF-8 (a parent always precedes its children). */
export function sortEntries(entries: FsEntry[]): FsEntry[] {
  const keyed = entries.map((e) => [Buffer.from(e.path), e] as const);
  keyed.sort((a, b) => Buffer.compare(a[0], b[0]));
  return keyed.map((k) => k[1]);
}

/** Normalises headers (owner names, times, links) of sorted entries for a reproducible tar. */
export function normaliseEntries(sorted: FsEntry[], opts: PackOptions = {}): TarEntryInput[] {
  const firstPath = new Map<string, string>();
  const out: TarEntryInput[] = [];
  for (const e of sorted) {
    const h: TarEntryInput['header'] = { ...e.header, uname: '', gname: '' };
    if (h.type !== 'char' && h.type !== 'block') {
      h.devmajor = 0;
      h.devminor = 0;
    }
    let mtime = h.mtime ?? 0;
    let nsec = opts.subsecondMtime ? (h.mtimeNsec ?? 0) : 0;
    if (opts.sourceDateEpoch !== undefined && mtime >= opts.sourceDateEpoch) {
      if (mtime > opts.sourceDateEpoch || nsec > 0) nsec = 0;
      mtime = opts.sourceDateEpoch;
    }
    h.mtime = mtime;
    h.mtimeNsec = nsec;
    let body: TarEntryInput['body'];
    if (h.type === 'file' && e.stat && e.stat.nlink > 1n) {
      const key = `${e.stat.dev}:${e.stat.ino}`;
      const first = firstPath.get(key);
      if (first !== undefined) {
        h.type = 'hardlink';
        h.linkpath = first;
        h.size = 0;
      } else firstPath.set(key, e.path);
    }
    if (h.type === 'file' && e.source && (h.size ?? 0) > 0) {
      const source = e.source;
      const chunk = opts.readChunk ?? 256 * 1024;
      // Small files in one synchronous read (cheaper than a stream's thread-pool round trips);
      // big ones streamed. A size change since the scan is caught by writeTar.
      body =
        (h.size ?? 0) <= chunk
          ? () => [readFileSync(source)]
          : () => createReadStream(source, { highWaterMark: chunk });
    }
    out.push(body ? { header: h, body } : { header: h });
  }
  return out;
}

/** Tar bytes for already-scanned entries (sorted and normalised here). */
export function packEntries(entries: FsEntry[], opts: PackOptions = {}): AsyncGenerator<Buffer> {
  const format = opts.format ?? 'pax';
  return writeTar(normaliseEntries(sortEntries(entries), opts), { format });
}

/** A reproducible tar of the tree under `root`. */
export async function* packDir(root: string, opts: PackOptions = {}): AsyncGenerator<Buffer> {
  yield* packEntries(await scanTree(resolve(root), { xattrs: opts.xattrs ?? false }), opts);
}
