/**
 * Matching and ordering platforms, after containerd's compare.go.
 *
 *   newMatcher(p).match(q)          // exact: same os/arch/variant once both are normalised
 *   only(p).match(q)                // p or anything p runs natively (amd64/v3 → v2, v1, 386; arm64 → arm/v8..v5)
 *   sortPlatforms(list, only(p))    // best candidate first
 *   bestMatch(index.manifests, p, (d) => d.platform)   // the manifest to run on p, or undefined
 *
 * A `MatchComparer` is a `match` predicate plus a `less` ordering in which a better
 * candidate for the wanted platform sorts first.
 */
import type { Platform, PlatformLike, PlatformSpec } from './platform.js';
import { formatPlatformAll, normalizePlatform, toSpec } from './platform.js';

export interface Matcher {
  match(p: PlatformLike): boolean;
}

export interface MatchComparer extends Matcher {
  /** True when `a` is a better candidate than `b` (sorts first). */
  less(a: PlatformLike, b: PlatformLike): boolean;
  /** The platforms matched, best first (for messages: `wanted linux/arm64 (or linux/arm/v8, ...)`). */
  readonly platforms: readonly Platform[];
}

/** Exact match after normalising both sides (containerd's NewMatcher). */
export function newMatcher(want: PlatformLike): Matcher {
  const w = normalizePlatform(want);
  return {
    match(p: PlatformLike): boolean {
      const n = normalizePlatform(p);
      return n.os === w.os && n.architecture === w.architecture && (n.variant ?? '') === (w.variant ?? '');
    },
  };
}

function withVariant(base: PlatformSpec, architecture: string, variant?: string): PlatformSpec {
  const p: { -readonly [K in keyof PlatformSpec]: PlatformSpec[K] } = { os: base.os, architecture };
  if (variant) p.variant = variant;
  if (base.osVersion) p.osVersion = base.osVersion;
  if (base.osFeatures) p.osFeatures = base.osFeatures;
  return p;
}

function versionOf(variant: string | undefined): number {
  if (!variant || !/^v?\d+$/.test(variant)) return Number.NaN;
  return Number.parseInt(variant.replace(/^v/, ''), 10);
}

/**
 * The platforms a machine of platform `p` runs natively, best first (containerd's
 * platformVector): amd64/vN → amd64/vN-1..v1, then 386; arm/vN → arm/vN-1..v5;
 * arm64/v9.x → v9.x-1..v9, v8.(x+5)..v8; arm64/v8.x → v8.x-1..v8; every arm64 → arm/v8..v5.
 */
export function platformVector(p: PlatformSpec): PlatformSpec[] {
  const vector: PlatformSpec[] = [p];
  switch (p.architecture) {
    case 'amd64': {
      const level = versionOf(p.variant);
      if (level > 1) for (let v = level - 1; v >= 1; v--) vector.push(withVariant(p, 'amd64', `v${v}`));
      vector.push(withVariant(p, '386'));
      break;
    }
    case 'arm': {
      const level = versionOf(p.variant);
      if (level > 5) for (let v = level - 1; v >= 5; v--) vector.push(withVariant(p, 'arm', `v${v}`));
      break;
    }
    case 'arm64': {
      let variant = p.variant || 'v8';
      const m = /^v(\d+)(?:\.(\d+))?$/.exec(variant);
      if (m && Number(m[1]) >= 8) {
        let major = Number(m[1]);
        let minor = m[2] !== undefined && variant.length === 4 ? Number(m[2]) : 0;
        const name = (maj: number, min: number) => (min === 0 ? `v${maj}` : `v${maj}.${min}`);
        if (major === 9) {
          for (let v = minor - 1; v >= 0; v--) vector.push(withVariant(p, 'arm64', name(9, v)));
          // v9.0 forked from v8.5: v9.x runs v8.(x+5), up to v8.9.
          minor = Math.min(minor + 5, 9);
          major = 8;
          vector.push(withVariant(p, 'arm64', `v8.${minor}`));
        }
        for (let v = minor - 1; v >= 0; v--) vector.push(withVariant(p, 'arm64', name(major, v)));
      }
      // Every arm64 CPU containerd knows also runs 32-bit arm up to v8.
      if (variant.startsWith('v8.') || variant.startsWith('v9.')) variant = 'v8';
      vector.push(...platformVector(withVariant(p, 'arm', variant)));
      break;
    }
  }
  return vector;
}

function optFeatures(p: PlatformLike): number {
  return toSpec(p).osFeatures?.length ?? 0;
}

function stripFeatures(p: PlatformLike): PlatformSpec {
  const { osFeatures: _, ...rest } = toSpec(p);
  return rest;
}

/**
 * Matches any of `platforms` and orders candidates by the first of them they match
 * (containerd's Ordered); between equal candidates the one with more os.features wins.
 */
export function ordered(...platforms: PlatformLike[]): MatchComparer {
  const normalized = platforms.map((p) => normalizePlatform(p));
  const matchers = normalized.map((p) => newMatcher(p));
  const cmp: MatchComparer = {
    platforms: normalized,
    match: (p) => matchers.some((m) => m.match(p)),
    less(a, b) {
      for (const m of matchers) {
        const am = m.match(a);
        const bm = m.match(b);
        if (am && !bm) return true;
        if (am || bm)
          return am && bm && optFeatures(a) !== optFeatures(b) ? optFeatures(a) > optFeatures(b) : false;
      }
      if (optFeatures(a) > 0 || optFeatures(b) > 0) return cmp.less(stripFeatures(a), stripFeatures(b));
      return false;
    },
  };
  return cmp;
}

/** The platform and everything it runs natively, best first (containerd's Only). */
export function only(want: PlatformLike): MatchComparer {
  return ordered(...platformVector(normalizePlatform(want)));
}

/** The platform alone, no fallbacks: `amd64` does not match `386` (containerd's OnlyStrict). */
export function onlyStrict(want: PlatformLike): MatchComparer {
  return ordered(want);
}

/** Matches any of `platforms` with no preference between them (containerd's Any). */
export function anyOf(...platforms: PlatformLike[]): MatchComparer {
  const normalized = platforms.map((p) => normalizePlatform(p));
  const matchers = normalized.map((p) => newMatcher(p));
  return {
    platforms: normalized,
    match: (p) => matchers.some((m) => m.match(p)),
    less: (a, b) => matchers.some((m) => m.match(a)) && !matchers.some((m) => m.match(b)),
  };
}

/** Matches every platform and prefers none (containerd's All). */
export const all: MatchComparer = { platforms: [], match: () => true, less: () => false };

function comparerFor(want: PlatformLike | MatchComparer): MatchComparer {
  if (typeof want !== 'string' && 'match' in want && typeof want.match === 'function') return want;
  return only(want as PlatformLike);
}

/**
 * `items` that match, best first (stable: equally good items keep their order). `want` is
 * a platform (meaning `only(want)`) or a comparer; `platformOf` reads an item's platform
 * (default: the item itself); items without one never match.
 */
export function sortPlatforms<T>(
  items: readonly T[],
  want: PlatformLike | MatchComparer,
  platformOf: (item: T) => PlatformLike | undefined = (x) => x as unknown as PlatformLike,
): T[] {
  const mc = comparerFor(want);
  const candidates = items
    .map((item, index) => ({ item, index, p: platformOf(item) }))
    .filter((c): c is { item: T; index: number; p: PlatformLike } => c.p !== undefined && mc.match(c.p));
  candidates.sort((x, y) => (mc.less(x.p, y.p) ? -1 : mc.less(y.p, x.p) ? 1 : x.index - y.index));
  return candidates.map((c) => c.item);
}

/**
 * The best item for `want` (e.g. the manifest of an index to run on this host), or
 * undefined when none matches. Never falls back to another architecture than `want` runs.
 */
export function bestMatch<T>(
  items: readonly T[],
  want: PlatformLike | MatchComparer,
  platformOf?: (item: T) => PlatformLike | undefined,
): T | undefined {
  return sortPlatforms(items, want, platformOf)[0];
}

/** `linux/arm64, linux/arm/v8, ...`: for error messages naming what was wanted or available. */
export function describePlatforms(platforms: readonly PlatformLike[]): string {
  return platforms.map((p) => formatPlatformAll(p)).join(', ');
}
