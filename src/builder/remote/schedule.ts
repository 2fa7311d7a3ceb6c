/**
 * Which node builds which platform — better than buildx's "first node that matches"
 * (docker/buildx#429, #366):
 *
 * 1. a node that runs the platform natively (pinned with `create --platform`, or its
 *    worker's own platform, ListWorkers' `platforms[0]`), the least loaded of those;
 * 2. else the least-loaded node that can emulate it (any platform its worker lists);
 * 3. else the build fails before anything runs, naming the platform and every node tried
 *    (with why an unreachable one was not used).
 *
 * Load is the number of platforms of this build already given to the node; ties go to
 * the node listed first.
 *
 *   const plan = schedule(platforms, candidates, unreachable);   // Map<node name, Platform[]>
 */
import { formatPlatform, newMatcher, type Platform } from '../../platform/index.js';
import { PolyarchError } from '../../util/errors.js';

export interface Candidate {
  name: string;
  /** Platforms fixed with `create --platform`. */
  pinned: readonly Platform[];
  /** The worker's own platform (ListWorkers platforms[0]). */
  native?: Platform;
  /** Everything it can build: pinned first, then what the worker lists. */
  platforms: readonly Platform[];
}

export interface Unreachable {
  name: string;
  reason: string;
}

function has(list: readonly Platform[], p: Platform): boolean {
  const m = newMatcher(p);
  return list.some((q) => m.match(q));
}

export function runsNatively(c: Candidate, p: Platform): boolean {
  return has(c.pinned, p) || (c.native !== undefined && has([c.native], p));
}

/** Node name → its platforms, in the order of `platforms`; nodes with nothing are absent. */
export function schedule(
  platforms: readonly Platform[],
  candidates: readonly Candidate[],
  unreachable: readonly Unreachable[] = [],
): Map<string, Platform[]> {
  const load = new Map<string, number>(candidates.map((c) => [c.name, 0]));
  const out = new Map<string, Platform[]>();
  const least = (cs: Candidate[]) =>
    cs.reduce((best, c) => (load.get(c.name)! < load.get(best.name)! ? c : best), cs[0]!);
  for (const p of platforms) {
    const native = candidates.filter((c) => runsNatively(c, p));
    const able = native.length > 0 ? native : candidates.filter((c) => has(c.platforms, p));
    if (able.length === 0) {
      const tried = [
        ...candidates.map(
          (c) => `${c.name} (${c.platforms.map((q) => formatPlatform(q)).join(', ') || 'no platforms'})`,
        ),
        ...unreachable.map((u) => `${u.name} (unreachable: ${u.reason})`),
      ];
      throw new PolyarchError(
        'UNSUPPORTED',
        `no node can build platform ${formatPlatform(p)}: tried ${tried.join('; ') || 'no nodes'}`,
      );
    }
    const pick = least(able);
    load.set(pick.name, load.get(pick.name)! + 1);
    out.set(pick.name, [...(out.get(pick.name) ?? []), p]);
  }
  return out;
}
