/**
 * Layer tars from overlayfs upper directories, with OCI whiteouts.
 *
 *   const tar = Readable.from(await packOverlayDiff('/snap/7/upper', { sourceDateEpoch }));
 *
 * overlayfs marks a deleted name with a 0/0 character device and a directory that hides its
 * lower content with the xattr `trusted.overlay.opaque=y`. The OCI layer spec says
 * `.wh.<name>` and `<dir>/.wh..wh..opq`. The opaque xattr is read for the whole tree in ONE
 * child process (xattr.ts: getfattr or python3); a tree without opaque directories can skip
 * that with `opaqueDirs: []`. overlayfs `redirect_dir`/`metacopy` uppers are not supported
 * (mount the snapshots with redirect_dir=off, metacopy=off, as BuildKit requires too).
 *
 * Given the layers below (`lowers`), entries that change nothing are left out, as BuildKit's
 * overlay differ does (lower.ts has the rules): files copied up but the same as below, a
 * directory whose only change is its mtime, whiteouts of names no lower layer has, and opaque
 * markers on directories the lower layers do not have. The parent directories of every entry
 * kept stay in the layer (containerd's tar writer includes them too), so an extractor that
 * creates missing parents never invents their mode or owner.
 */
import { resolve } from 'node:path';
import { attachXattrs, type FsEntry, type PackOptions, packEntries, scanTree } from './pack.js';
import { OPAQUE_WHITEOUT, WHITEOUT_PREFIX } from './apply.js';
import { lookupLower, sameEntries } from './lower.js';
import { findXattr, readAllXattrs } from './xattr.js';

export interface OverlayDiffOptions extends PackOptions {
  /** Opaque directories (paths relative to the upperdir). Default: read the xattrs from disk. */
  opaqueDirs?: string[];
  /**
   * The layer directories below the upper dir, top-most first. Given, entries the same as what
   * they show are left out (see the header). Default: none (every upper entry is kept).
   */
  lowers?: string[];
}

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i + 1);
}

/** The entries of an upperdir with overlay whiteouts turned into OCI whiteouts (unsorted). */
export async function overlayDiffEntries(
  upperdir: string,
  opts: OverlayDiffOptions = {},
): Promise<FsEntry[]> {
  const root = resolve(upperdir);
  const entries = await scanTree(root);
  let opaque: Set<string>;
  let all: Map<string, Map<string, Buffer>> | undefined;
  if (opts.xattrs) {
    // One pass reads every xattr: the layer's and overlayfs' opaque markers.
    all = await readAllXattrs(root);
    attachXattrs(entries, all);
  }
  if (opts.opaqueDirs) opaque = new Set(opts.opaqueDirs.map((p) => p.replace(/^\.?\/+|\/+$/g, '')));
  else {
    const found = all
      ? new Map(
          [...all].flatMap(([p, m]) =>
            m.has('trusted.overlay.opaque') ? [[p, m.get('trusted.overlay.opaque')!] as const] : [],
          ),
        )
      : await findXattr(root, 'trusted.overlay.opaque');
    opaque = new Set();
    for (const [p, v] of found) if (v.toString() === 'y' && p !== root) opaque.add(p.slice(root.length + 1));
  }
  let lowerHas: (path: string) => boolean = () => true;
  let kept = entries;
  if (opts.lowers && opts.lowers.length > 0) {
    const lower = await lookupLower(opts.lowers, entries, opaque);
    const same = await sameEntries(entries, lower, all ?? new Map());
    const isWhiteout = (e: FsEntry) => e.header.type === 'char' && e.stat?.rdev === 0n;
    const keep = new Set<string>();
    for (const e of entries) {
      const changed = isWhiteout(e)
        ? lower.has(e.path)
        : !same.has(e.path) ||
          (e.header.type === 'dir' && opaque.has(e.path) && lower.get(e.path)?.stat.isDirectory());
      if (!changed) continue;
      // With its parents (see the header).
      for (let p = e.path; p !== '' && !keep.has(p); p = parentOf(p).replace(/\/$/, '')) keep.add(p);
    }
    kept = entries.filter((e) => keep.has(e.path));
    lowerHas = (p) => lower.get(p)?.stat.isDirectory() === true;
  }
  const out: FsEntry[] = [];
  for (const e of kept) {
    if (e.header.type === 'char' && e.stat?.rdev === 0n) {
      const name = e.path.slice(parentOf(e.path).length);
      out.push({
        path: `${parentOf(e.path)}${WHITEOUT_PREFIX}${name}`,
        header: {
          path: `${parentOf(e.path)}${WHITEOUT_PREFIX}${name}`,
          type: 'file',
          size: 0,
          mode: 0,
          mtime: e.header.mtime ?? 0,
        },
      });
      continue;
    }
    out.push(e);
    if (e.header.type === 'dir' && opaque.has(e.path) && lowerHas(e.path)) {
      const p = `${e.path}/${OPAQUE_WHITEOUT}`;
      out.push({ path: p, header: { path: p, type: 'file', size: 0, mode: 0, mtime: e.header.mtime ?? 0 } });
    }
  }
  return out;
}

/** A reproducible layer tar of an overlay upperdir. */
export async function packOverlayDiff(
  upperdir: string,
  opts: OverlayDiffOptions = {},
): Promise<AsyncGenerator<Buffer>> {
  return packEntries(await overlayDiffEntries(upperdir, opts), opts);
}
