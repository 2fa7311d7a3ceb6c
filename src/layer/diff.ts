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
 */
import { resolve } from 'node:path';
import { attachXattrs, type FsEntry, type PackOptions, packEntries, scanTree } from './pack.js';
import { OPAQUE_WHITEOUT, WHITEOUT_PREFIX } from './apply.js';
import { findXattr, readAllXattrs } from './xattr.js';

export interface OverlayDiffOptions extends PackOptions {
  /** Opaque directories (paths relative to the upperdir). Default: read the xattrs from disk. */
  opaqueDirs?: string[];
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
  const out: FsEntry[] = [];
  for (const e of entries) {
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
    if (e.header.type === 'dir' && opaque.has(e.path)) {
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
