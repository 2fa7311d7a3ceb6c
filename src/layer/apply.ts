/**
 * Extracts a layer tar into a directory with OCI semantics, never writing outside it.
 *
 *   const { diffId } = await applyLayer(tarStream, '/snapshots/3/fs');              // plain dir
 *   await applyLayer(tarStream, upperdir, { target: 'overlay' });                  // overlay upper
 *   await applyLayerBlob(blobStream, dir);                                         // gzip/zstd/plain
 *
 * Whiteouts: in a plain directory (`target: 'plain'`, the default) `.wh.NAME` deletes NAME and
 * `.wh..wh..opq` deletes what earlier layers put in its directory. For an overlayfs upperdir
 * (`target: 'overlay'`) they become what overlayfs understands instead: a 0/0 character device
 * made with the `mknod` command (Node has no mknod), and the `trusted.overlay.opaque=y` xattr
 * (set through xattr.ts). Both need root.
 *
 * Confinement works like securejoin: every parent directory is resolved component by component
 * inside the root, symlinks included (an absolute target means the root, `..` stops at the
 * root), and the last component is never followed — it is replaced. Entry paths whose `..`
 * climb above the root are rejected (`LAYER_ESCAPE`); absolute paths are taken relative to the
 * root; symlink targets are stored as they are and never followed while extracting.
 *
 * Ownership is applied when running as root (`sameOwner`), devices are made only as root
 * (else skipped and listed in `skipped`). xattrs in the tar are applied when a tool for it is
 * installed (xattr.ts), else listed in `skipped`.
 */
import { execFile } from 'node:child_process';
// Metadata calls are synchronous: each is one short syscall, and a thread-pool round trip plus
// a promise per call cost several times the syscall itself. A layer is mostly such calls (a
// busybox layer: ~300 entries, mostly symlinks, each lstat + symlink + lchown + lutimes).
import {
  type BigIntStats,
  chmodSync,
  closeSync,
  constants,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import type { Digest } from '../oci/digest.js';
import { loopTurns } from '../util/concurrency.js';
import { PolyarchError, errorMessage } from '../util/errors.js';
import { type Compression, openLayer } from './compress.js';
import { readTar, type TarHeader, type TarSource } from './tar.js';
import { type XattrWrite, setXattrs, xattrBackend } from './xattr.js';

const run = promisify(execFile);

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

export interface ApplyOptions {
  /** `plain` (default): whiteouts delete from the root. `overlay`: the root is an overlay upperdir. */
  target?: 'plain' | 'overlay';
  /** chown to the entries' uid/gid. Default: when running as root. */
  sameOwner?: boolean;
  /** Create device nodes. Default: when running as root; otherwise they are skipped. */
  devices?: boolean;
  /** Apply xattrs from the tar. Default true (skipped, and listed, when no tool is installed). */
  xattrs?: boolean;
}

export interface ApplyResult {
  /** sha256 of the uncompressed tar stream: the layer's diff_id. */
  diffId: Digest;
  /** Bytes of uncompressed tar read. */
  size: number;
  entries: number;
  /** Entries (or parts of them) that could not be applied here, with the reason. */
  skipped: string[];
}

function escapeError(path: string, why: string): PolyarchError {
  return new PolyarchError('LAYER_ESCAPE', `layer entry "${path}": ${why}`);
}

/** Lexically cleans an entry path into components; `..` may not climb above the root. */
export function cleanEntryPath(path: string): string[] {
  const out: string[] = [];
  for (const c of path.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) throw escapeError(path, 'path climbs out of the root with ".."');
      out.pop();
    } else out.push(c);
  }
  return out;
}

function lstatOrNull(p: string): BigIntStats | null {
  return lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? null;
}

const MAX_SYMLINKS = 40;

/**
 * Resolves directory components inside `root` like securejoin: symlinks are followed but
 * confined (absolute targets restart at the root, `..` stops there). Missing directories are
 * created (0755) when `create` is set. Returns the real components below the root.
 */
export class RootResolver {
  #cache = new Map<string, string[]>();
  constructor(readonly root: string) {}

  abs(real: string[]): string {
    return real.length === 0 ? this.root : `${this.root}/${real.join('/')}`;
  }

  /** Forget cached resolutions (after a symlink or directory was replaced or removed). */
  invalidate(): void {
    this.#cache.clear();
  }

  dir(parts: string[], entry: string, create: boolean): string[] {
    const key = parts.join('/');
    const hit = this.#cache.get(key);
    if (hit) return hit;
    const real: string[] = [];
    const todo = [...parts].reverse();
    let links = 0;
    while (todo.length > 0) {
      const c = todo.pop()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        real.pop();
        continue;
      }
      const p = this.abs([...real, c]);
      const st = lstatOrNull(p);
      if (st === null) {
        if (!create) throw new PolyarchError('NOT_FOUND', `layer entry "${entry}": ${p} does not exist`);
        mkdirSync(p, { mode: 0o755 });
        real.push(c);
      } else if (st.isDirectory()) {
        real.push(c);
      } else if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) throw escapeError(entry, 'too many levels of symbolic links');
        const target = readlinkSync(p);
        if (target.startsWith('/')) real.length = 0;
        todo.push(...target.split('/').reverse());
      } else {
        throw new PolyarchError('INVALID_LAYER', `layer entry "${entry}": parent ${p} is not a directory`);
      }
    }
    this.#cache.set(key, real);
    return real;
  }
}

/** Applies an uncompressed layer tar to `root`; see the module comment for the rules. */
export async function applyLayer(
  input: TarSource,
  root: string,
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  const isRoot = process.getuid?.() === 0;
  const target = opts.target ?? 'plain';
  const sameOwner = opts.sameOwner ?? isRoot;
  const devices = opts.devices ?? isRoot;
  const wantXattrs = opts.xattrs ?? true;
  const hash = createHash('sha256');
  let size = 0;
  const hashed = (async function* () {
    for await (const c of input) {
      const b =
        typeof c === 'string'
          ? Buffer.from(c)
          : Buffer.isBuffer(c)
            ? c
            : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      hash.update(b);
      size += b.length;
      yield b;
    }
  })();

  const st = lstatOrNull(root);
  if (!st?.isDirectory()) throw new PolyarchError('NOT_FOUND', `applying layer: ${root} is not a directory`);
  const resolver = new RootResolver(root);
  // Paths written by this layer and their ancestors, so opaque dirs and whiteouts spare them.
  const written = new Set<string>();
  const markWritten = (key: string) => {
    for (let k = key; k && !written.has(k); k = k.slice(0, Math.max(0, k.lastIndexOf('/')))) written.add(k);
  };
  const dirTimes: Array<[string, number]> = [];
  const xattrWrites: XattrWrite[] = [];
  const overlayWhiteouts: string[] = [];
  const skipped: string[] = [];
  let entries = 0;

  const turn = loopTurns();
  for await (const { header: h, body } of readTar(hashed)) {
    entries++;
    // The metadata calls below are synchronous: now and then, let the event loop run (a
    // build's other steps wait on it to start and reap their processes).
    await turn();
    const parts = cleanEntryPath(h.path);
    const name = parts.pop();
    if (name === undefined) {
      // The root itself ("./"): only its metadata can change.
      if (h.type !== 'dir')
        throw new PolyarchError('INVALID_LAYER', `layer entry "${h.path}": the root must be a directory`);
      await setMeta(root, h, { sameOwner, isDir: true });
      dirTimes.push([root, mtimeOf(h)]);
      continue;
    }
    const parentReal = resolver.dir(parts, h.path, true);
    const parentAbs = resolver.abs(parentReal);
    const realKey = (n: string) => [...parentReal, n].join('/');

    if (name === OPAQUE_WHITEOUT) {
      if (target === 'overlay')
        xattrWrites.push({ path: parentAbs, name: 'trusted.overlay.opaque', value: Buffer.from('y') });
      else {
        await removeLower(parentAbs, parentReal.join('/'), written);
        resolver.invalidate();
      }
      continue;
    }
    if (name.startsWith(WHITEOUT_PREFIX)) {
      const victim = name.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..')
        throw new PolyarchError('INVALID_LAYER', `layer entry "${h.path}": invalid whiteout`);
      const victimAbs = `${parentAbs}/${victim}`;
      if (target === 'overlay') {
        if (!written.has(realKey(victim))) overlayWhiteouts.push(victimAbs);
        else if (lstatOrNull(victimAbs)?.isDirectory())
          // This layer also wrote below it: hide the lower content, keep this layer's.
          xattrWrites.push({ path: victimAbs, name: 'trusted.overlay.opaque', value: Buffer.from('y') });
      } else if (!written.has(realKey(victim))) {
        await rm(`${parentAbs}/${victim}`, { recursive: true, force: true });
        resolver.invalidate();
      } else if (lstatOrNull(`${parentAbs}/${victim}`)?.isDirectory()) {
        // This layer also wrote below it: only what earlier layers put there goes.
        await removeLower(`${parentAbs}/${victim}`, realKey(victim), written);
        resolver.invalidate();
      }
      continue;
    }

    const dest = `${parentAbs}/${name}`;
    const existing = lstatOrNull(dest);
    if (h.type === 'dir' && existing?.isDirectory()) {
      // keep the directory and its content; only metadata changes
    } else if (existing) {
      if (h.type === 'hardlink') {
        const src = linkSource(resolver, h);
        const s = lstatSync(src, { bigint: true });
        if (s.ino === existing.ino && s.dev === existing.dev) {
          markWritten(realKey(name));
          continue;
        }
      }
      rmSync(dest, { recursive: existing.isDirectory(), force: true });
      if (existing.isDirectory() || existing.isSymbolicLink()) resolver.invalidate();
    }

    try {
      switch (h.type) {
        case 'dir':
          if (!existing?.isDirectory()) mkdirSync(dest, { mode: 0o700 });
          break;
        case 'file': {
          // Synchronous writes: a thread-pool round trip per chunk costs more than the write
          // itself for the many small files of a layer (about 2x slower in bench/layer.ts).
          const fd = openSync(
            dest,
            constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
            0o600,
          );
          try {
            for await (const chunk of body) {
              for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
            }
          } finally {
            closeSync(fd);
          }
          break;
        }
        case 'symlink':
          symlinkSync(h.linkpath, dest);
          resolver.invalidate();
          break;
        case 'hardlink':
          linkSync(linkSource(resolver, h), dest);
          break;
        case 'fifo':
          await run('mkfifo', ['-m', (h.mode & 0o777).toString(8), dest]);
          break;
        case 'char':
        case 'block':
          if (!devices) {
            skipped.push(`${h.path}: device node (not root)`);
            continue;
          }
          await run('mknod', [
            '-m',
            (h.mode & 0o777).toString(8),
            dest,
            h.type === 'char' ? 'c' : 'b',
            String(h.devmajor),
            String(h.devminor),
          ]);
          break;
      }
    } catch (err) {
      if (err instanceof PolyarchError) throw err;
      throw new PolyarchError('IO', `layer entry "${h.path}": ${errorMessage(err)}`, { cause: err });
    }
    markWritten(realKey(name));
    if (h.type !== 'hardlink') await setMeta(dest, h, { sameOwner, isDir: h.type === 'dir' });
    if (h.type === 'dir') dirTimes.push([dest, mtimeOf(h)]);
    if (wantXattrs && h.xattrs.size > 0 && h.type !== 'hardlink')
      for (const [n, value] of h.xattrs) xattrWrites.push({ path: dest, name: n, value });
  }

  // Overlay whiteouts: 0/0 character devices.
  for (const p of overlayWhiteouts) {
    await rm(p, { recursive: true, force: true });
    try {
      await run('mknod', ['-m', '0', p, 'c', '0', '0']);
    } catch (err) {
      throw new PolyarchError('IO', `overlay whiteout ${p}: ${errorMessage(err)}`, { cause: err });
    }
  }
  if (xattrWrites.length > 0) {
    if (await xattrBackend()) await setXattrs(xattrWrites);
    else for (const w of xattrWrites) skipped.push(`${w.path}: xattr ${w.name} (no xattr tool)`);
  }
  // Directory times last: creating children changed them.
  for (const [p, t] of dirTimes) utimesSync(p, t, t);
  return { diffId: `sha256:${hash.digest('hex')}` as Digest, size, entries, skipped };
}

/** Decompresses (by magic) and applies a layer blob. */
export async function applyLayerBlob(
  blob: Readable,
  root: string,
  opts: ApplyOptions = {},
): Promise<ApplyResult & { compression: Compression }> {
  const { compression, stream } = await openLayer(blob);
  try {
    return { ...(await applyLayer(stream, root, opts)), compression };
  } catch (err) {
    stream.destroy();
    blob.destroy();
    throw err;
  }
}

function mtimeOf(h: TarHeader): number {
  return h.mtime + h.mtimeNsec / 1e9;
}

function linkSource(resolver: RootResolver, h: TarHeader): string {
  const parts = cleanEntryPath(h.linkpath);
  const name = parts.pop();
  if (name === undefined)
    throw new PolyarchError('INVALID_LAYER', `layer entry "${h.path}": hardlink to the root`);
  const missing = () =>
    new PolyarchError(
      'INVALID_LAYER',
      `layer entry "${h.path}": hardlink target "${h.linkpath}" does not exist`,
    );
  let dir: string[];
  try {
    dir = resolver.dir(parts, h.path, false);
  } catch (err) {
    if (err instanceof PolyarchError && err.code === 'NOT_FOUND') throw missing();
    throw err;
  }
  const src = `${resolver.abs(dir)}/${name}`;
  const st = lstatOrNull(src);
  if (!st) throw missing();
  if (st.isDirectory())
    throw new PolyarchError(
      'INVALID_LAYER',
      `layer entry "${h.path}": hardlink to directory "${h.linkpath}"`,
    );
  return src;
}

async function setMeta(p: string, h: TarHeader, o: { sameOwner: boolean; isDir: boolean }): Promise<void> {
  try {
    if (o.sameOwner) lchownSync(p, h.uid, h.gid);
    // chmod after chown: chown clears setuid/setgid.
    if (h.type !== 'symlink') chmodSync(p, h.mode & 0o7777);
    if (!o.isDir) {
      const t = mtimeOf(h);
      lutimesSync(p, t, t);
    }
  } catch (err) {
    throw new PolyarchError('IO', `layer entry "${h.path}": setting metadata: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/** Removes everything under `abs` that this layer did not write (an opaque directory). */
async function removeLower(abs: string, key: string, written: Set<string>): Promise<void> {
  for (const child of await readdir(abs)) {
    const k = key ? `${key}/${child}` : child;
    const p = `${abs}/${child}`;
    if (!written.has(k)) await rm(p, { recursive: true, force: true });
    else if ((await lstat(p)).isDirectory()) await removeLower(p, k, written);
  }
}
