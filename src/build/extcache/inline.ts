/**
 * A build's cache records (what `--cache-to` exports) and the inline cache: the records of an
 * image's own layers, written into its config under `polyarch.cache.v1` (format.ts).
 */
import type { Descriptor, Digest } from '../../oci/index.js';
import type { PlatformResult } from '../result.js';
import { INLINE_FIELD, type InlineRecord } from './format.js';

/** A build step's outcome, for export: its key, its parent state's key and its layer. */
export interface StepRecord {
  key: string;
  parent: string;
  platform?: string;
  created?: string;
  layer: { kind: 'snapshot'; key: string } | { kind: 'blob'; descriptor: Descriptor; diffId: Digest } | null;
}

/** What a build hands to exportCache. */
export interface BuildCacheInfo {
  records: StepRecord[];
  /** Per platform, the key of the final state (mode=min walks its parents). */
  finals: string[];
}

/** The records of the final state's steps (it and its parents), top-most first. */
export function finalChain(info: BuildCacheInfo, final: string): StepRecord[] {
  const byKey = new Map(info.records.map((r) => [r.key, r]));
  const out: StepRecord[] = [];
  const seen = new Set<string>();
  for (let r = byKey.get(final); r && !seen.has(r.key); r = byKey.get(r.parent)) {
    seen.add(r.key);
    out.push(r);
  }
  return out;
}

/** The inline cache field of platform `index`'s image config. */
export function inlineCacheField(
  info: BuildCacheInfo,
  index: number,
  p: PlatformResult,
): Record<string, unknown> | undefined {
  const final = info.finals[index];
  if (final === undefined) return undefined;
  const records: InlineRecord[] = [];
  for (const r of finalChain(info, final)) {
    let layer: number | null = null;
    if (r.layer) {
      const want = r.layer;
      const i = p.layers.findIndex((l) =>
        want.kind === 'snapshot'
          ? l.kind === 'snapshot' && l.key === want.key
          : l.kind === 'blob' && l.descriptor.digest === want.descriptor.digest,
      );
      if (i < 0) continue;
      layer = i;
    }
    records.push({ key: r.key, parent: r.parent, ...(r.created ? { created: r.created } : {}), layer });
  }
  return { [INLINE_FIELD]: { version: 1, records: records.reverse() } };
}
