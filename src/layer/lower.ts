/**
 * What the layers below an overlay upper dir show at a path, and whether an upper entry is the
 * same as it: the overlay differ leaves such entries out of the layer.
 *
 *   const found = await lookupLower(['/snap/b/fs', '/snap/a/fs'], upperEntries); // top-most first
 *   const lower = found.get('etc/passwd');   // { source, stat, xattrs } or undefined (absent)
 *   if (lower && (await sameEntry(upperEntry, upperXattrs, lower))) leaveItOut();
 *
 * A process rewriting a file byte-identically (dpkg's `var/cache/debconf/*.dat`, lock files) or
 * touching a directory makes overlayfs copy it up: it is in the upper dir, yet the merged view
 * is what it was. BuildKit's overlay differ (util/overlay, continuity's sameDirent) compares the
 * upper entry with the lower one and records no change when they match; the rules here are its
 * rules, a little stricter:
 *   - mode (type and permission bits), uid, gid and device number equal, and every layer xattr
 *     equal (BuildKit compares only `security.capability`);
 *   - directories: nothing else (their mtime changes whenever a child does, and a changed child
 *     is in the layer anyway, with its parents);
 *   - other entries: size and mtime seconds equal; when both mtimes have nanoseconds they must
 *     be equal too; when neither has (a lower extracted from a tar, rewritten with `touch -r` or
 *     `cp -p`), the content decides (a symlink's target, a file's bytes); symlink targets are
 *     always compared.
 *
 * The lower layers are resolved as overlayfs does, without mounting them: the top-most layer
 * that has the path wins, a whiteout (0/0 character device) or a non-directory ends the search,
 * and a directory marked opaque (`trusted.overlay.opaque=y`) hides the layers below it. Each
 * path is looked up only in the layers where its parent is a directory, level by level, so a
 * new tree costs one lstat per layer for its top directory only. Xattrs of lower entries are
 * read in one child process per need (xattr.ts: readXattrsOf), and only when there is a
 * candidate: opaque markers when several layers overlap, the entries that otherwise match.
 */
import type { BigIntStats } from 'node:fs';
import { lstat, open, readlink } from 'node:fs/promises';
import { mapLimit } from '../util/concurrency.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { isLayerXattr } from './pack.js';
import { readXattrsOf } from './xattr.js';

export interface LowerEntry {
  /** Absolute path in the lower layer that shows it. */
  source: string;
  stat: BigIntStats;
  /** Its layer xattrs (trusted.overlay.* and security.selinux left out); filled by sameEntries. */
  xattrs?: Map<string, Buffer>;
}

/** The part of an upper entry the comparison needs. */
export interface UpperEntry {
  path: string;
  source?: string;
  stat?: BigIntStats;
}

const STAT_CONCURRENCY = 32;

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

function isWhiteout(st: BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

async function lstatOrNull(path: string): Promise<BigIntStats | null> {
  try {
    return await lstat(path, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new PolyarchError('IO', `comparing with the lower layers: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * For each upper path, the lower entry overlayfs would show there without the upper dir
 * (absent: not in the map). `layers` are layer directories, top-most first. Paths under an
 * upper directory in `opaqueUpper` are not looked up (the upper hides what is below).
 */
export async function lookupLower(
  layers: readonly string[],
  upper: readonly UpperEntry[],
  opaqueUpper: ReadonlySet<string> = new Set(),
): Promise<Map<string, LowerEntry>> {
  const found = new Map<string, LowerEntry>();
  if (layers.length === 0 || upper.length === 0) return found;
  const byDepth: string[][] = [];
  for (const e of upper) (byDepth[e.path.split('/').length - 1] ??= []).push(e.path);
  // stats.get(p)[i]: lstat of layers[i]/p, looked up where p's parent is a directory in layer i
  // (a superset of the exact stack: opaque markers are applied afterwards).
  const stats = new Map<string, Array<BigIntStats | null | undefined>>();
  const dirLayers = new Map<string, number[]>([['', layers.map((_, i) => i)]]);
  for (const paths of byDepth) {
    if (!paths) continue;
    const jobs: Array<[string, number]> = [];
    for (const p of paths) {
      if (isUnder(p, opaqueUpper)) continue;
      for (const i of dirLayers.get(parentOf(p)) ?? []) jobs.push([p, i]);
    }
    const results = await mapLimit(jobs, STAT_CONCURRENCY, ([p, i]) => lstatOrNull(`${layers[i]}/${p}`));
    for (const [k, [p, i]] of jobs.entries()) {
      const st = results[k]!;
      let row = stats.get(p);
      if (!row) stats.set(p, (row = new Array(layers.length)));
      row[i] = st;
      if (st?.isDirectory()) {
        let dl = dirLayers.get(p);
        if (!dl) dirLayers.set(p, (dl = []));
        dl.push(i);
      }
    }
  }
  // Opaque markers matter only on a directory with more layers below it in its stack.
  const opaqueCandidates: string[] = [];
  for (const [p, dl] of dirLayers) {
    if (p === '') continue;
    for (const i of dl.slice(0, -1)) opaqueCandidates.push(`${layers[i]}/${p}`);
  }
  const marks = await readXattrsOf(opaqueCandidates);
  const opaque = (i: number, p: string) =>
    marks.get(`${layers[i]}/${p}`)?.get('trusted.overlay.opaque')?.toString() === 'y';

  // The exact overlay resolution, parents first.
  const stack = new Map<string, number[]>([['', layers.map((_, i) => i)]]);
  const sorted = [...stats.keys()].sort((a, b) => a.split('/').length - b.split('/').length);
  for (const p of sorted) {
    const candidates = stack.get(parentOf(p));
    if (!candidates) continue;
    const row = stats.get(p)!;
    let hit = -1;
    for (const i of candidates) {
      const st = row[i];
      if (!st) continue;
      if (!isWhiteout(st)) hit = i;
      break;
    }
    if (hit < 0) continue;
    const st = row[hit]!;
    found.set(p, { source: `${layers[hit]}/${p}`, stat: st });
    if (!st.isDirectory()) continue;
    const below: number[] = [];
    for (const i of candidates.slice(candidates.indexOf(hit))) {
      const s = row[i];
      if (!s) continue;
      if (!s.isDirectory()) break;
      below.push(i);
      if (opaque(i, p)) break;
    }
    stack.set(p, below);
  }
  return found;
}

function isUnder(path: string, dirs: ReadonlySet<string>): boolean {
  if (dirs.size === 0) return false;
  for (let p = parentOf(path); p !== ''; p = parentOf(p)) if (dirs.has(p)) return true;
  return false;
}

/** Whether two files hold the same bytes (both regular files of equal size). */
async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, 'r'), open(b, 'r')]);
  try {
    const size = 256 * 1024;
    const ba = Buffer.allocUnsafe(size);
    const bb = Buffer.allocUnsafe(size);
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, size, null), fb.read(bb, 0, size, null)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

function sameXattrs(a: Map<string, Buffer> | undefined, b: Map<string, Buffer> | undefined): boolean {
  const ka = [...(a ?? [])].filter(([n]) => isLayerXattr(n));
  const kb = new Map([...(b ?? [])].filter(([n]) => isLayerXattr(n)));
  if (ka.length !== kb.size) return false;
  return ka.every(([n, v]) => kb.get(n)?.equals(v) === true);
}

/** The metadata half of the comparison (see the header): no I/O. */
function sameMeta(u: BigIntStats, l: BigIntStats): 'same' | 'different' | 'content' {
  if (u.mode !== l.mode || u.uid !== l.uid || u.gid !== l.gid || u.rdev !== l.rdev) return 'different';
  if (u.isDirectory()) return 'same';
  if (u.size !== l.size) return 'different';
  const sec = 1_000_000_000n;
  if (u.mtimeNs / sec !== l.mtimeNs / sec) return 'different';
  const un = u.mtimeNs % sec;
  const ln = l.mtimeNs % sec;
  if (un === 0n && ln === 0n) return u.isFile() && u.size === 0n ? 'same' : 'content';
  if (un !== ln) return 'different';
  return u.isSymbolicLink() ? 'content' : 'same';
}

/**
 * The upper paths whose entry is the same as the lower one (see the header). `upperXattrs`
 * are the upper entries' xattrs by source path. A file with several links is never "same"
 * (leaving one name out would break the link in the layer).
 */
export async function sameEntries(
  upper: readonly UpperEntry[],
  lower: ReadonlyMap<string, LowerEntry>,
  upperXattrs: ReadonlyMap<string, Map<string, Buffer>>,
): Promise<Set<string>> {
  const candidates: Array<{ u: UpperEntry; l: LowerEntry; content: boolean }> = [];
  for (const u of upper) {
    const l = lower.get(u.path);
    if (!l || !u.stat || !u.source) continue;
    if (u.stat.isFile() && u.stat.nlink > 1n) continue;
    const m = sameMeta(u.stat, l.stat);
    if (m !== 'different') candidates.push({ u, l, content: m === 'content' });
  }
  const xattrs = await readXattrsOf(candidates.map((c) => c.l.source));
  const same = new Set<string>();
  await mapLimit(candidates, 8, async ({ u, l, content }) => {
    l.xattrs = xattrs.get(l.source);
    if (!sameXattrs(upperXattrs.get(u.source!), l.xattrs)) return;
    if (u.stat!.isSymbolicLink()) {
      const [a, b] = await Promise.all([readlink(u.source!), readlink(l.source)]);
      if (a !== b) return;
    } else if (content && !(await sameContent(u.source!, l.source))) return;
    same.add(u.path);
  });
  return same;
}
