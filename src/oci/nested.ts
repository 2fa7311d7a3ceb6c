/**
 * Indexes nested in indexes: the entries of an index tree in depth-first order, with the
 * nested indexes each one sits under.
 *
 *   const { leaves, missing } = await walkIndex(index.manifests, async (d) => childrenOf(d), 'busybox');
 *   leaves[0].descriptor   // a manifest (or any non-index entry), in document order
 *   leaves[0].parents      // the nested index descriptors above it, outermost first
 *   missing                // nested indexes `children` could not provide (not fetched)
 *
 * The image spec allows an index entry to be another index, and containerd descends into one
 * when it picks a platform. Depth is bounded (MAX_INDEX_DEPTH levels below the root), so a
 * hostile tree cannot make the walk unbounded; an index that lists itself, directly or
 * further down, is refused too (content addressing makes that impossible for real content, but
 * a descriptor's digest is only what the document claims until it is fetched and verified).
 */
import { PolyarchError } from '../util/errors.js';
import { isIndexType } from './mediatypes.js';
import type { Descriptor } from './types.js';

/** Nested index levels allowed below the root index. */
export const MAX_INDEX_DEPTH = 8;

export interface IndexLeaf {
  descriptor: Descriptor;
  /** The nested index descriptors above this entry, outermost first; empty at the root. */
  parents: Descriptor[];
}

export interface IndexWalk {
  leaves: IndexLeaf[];
  /** Nested index descriptors whose document `children` returned undefined for. */
  missing: Descriptor[];
  /** Every nested index visited, outermost first within each branch. */
  nested: Descriptor[];
}

/**
 * Walks the entries of a root index. `children(d)` gives a nested index's entries, or
 * undefined when its document is not available (recorded in `missing`). `what` names the
 * image in errors.
 */
export async function walkIndex(
  entries: readonly Descriptor[],
  children: (index: Descriptor) => Promise<readonly Descriptor[] | undefined>,
  what: string,
  opts: { maxDepth?: number; rootDigest?: string } = {},
): Promise<IndexWalk> {
  const maxDepth = opts.maxDepth ?? MAX_INDEX_DEPTH;
  const out: IndexWalk = { leaves: [], missing: [], nested: [] };
  const path = new Set<string>(opts.rootDigest ? [opts.rootDigest] : []);
  const visit = async (list: readonly Descriptor[], parents: Descriptor[]): Promise<void> => {
    for (const d of list) {
      if (!isIndexType(d.mediaType)) {
        out.leaves.push({ descriptor: d, parents });
        continue;
      }
      if (path.has(d.digest))
        throw new PolyarchError('INVALID_MANIFEST', `${what}: index ${d.digest} lists itself`);
      if (parents.length + 1 > maxDepth)
        throw new PolyarchError(
          'INVALID_MANIFEST',
          `${what}: indexes nested more than ${maxDepth} deep (at ${d.digest})`,
        );
      out.nested.push(d);
      const sub = await children(d);
      if (sub === undefined) {
        out.missing.push(d);
        continue;
      }
      path.add(d.digest);
      await visit(sub, [...parents, d]);
      path.delete(d.digest);
    }
  };
  await visit(entries, []);
  return out;
}
