/**
 * Reading a build's steps: which platform and node a step belongs to (from its name, the
 * convention of src/progress/events.ts and BuildKit's Dockerfile frontend), the critical path
 * (what the build's end waited on), and per-platform sums for "why was arm/v7 slow".
 *
 *   stepPlace('[node-b] [linux/arm/v7 2/4] RUN make', ['linux/arm/v7'])
 *     // { node: 'node-b', platform: 'linux/arm/v7' }
 *   stepPlace('[2/4] RUN make', ['linux/arm64'])  // { platform: 'linux/arm64' } (single platform)
 *   stepPlace('[internal] load build context', …) // {} (shared)
 */
import type { BuildRecord, StepRecord } from './types.js';

const NODE = /^\[([^\]\s/]+)\] (?=\[|\S)/;
/** `[linux/arm/v7 …` or, from compose, `[service linux/arm/v7 …`. */
const PLATFORM = /^\[(?:[^\s\]/]+ )?([a-z][a-z0-9]*\/[a-z0-9_.-]+(?:\/[a-z0-9_.-]+)?)(?:[ \]])/;
/** A numbered step of a stage (`[2/4]`, `[build 2/4]`): a single-platform build's own step. */
const NUMBERED = /^\[(?:[^\]]* )?\d+\/\d+\]/;

/**
 * Where a step ran. `nodes` are the builder's node names (a `[name] ` prefix is only taken
 * for one of them, so a stage named like a node is not mistaken); `platforms` the build's.
 */
export function stepPlace(
  name: string,
  platforms: readonly string[],
  nodes: readonly string[] = [],
): { platform?: string; node?: string } {
  let rest = name;
  let node: string | undefined;
  const n = NODE.exec(rest);
  if (n && nodes.includes(n[1]!)) {
    node = n[1]!;
    rest = rest.slice(n[0].length);
  }
  const p = PLATFORM.exec(rest);
  let platform = p?.[1];
  if (platform === undefined && platforms.length === 1 && NUMBERED.test(rest)) platform = platforms[0];
  // `linux/arm64` names `linux/arm64/v8` of the request (BuildKit prints the short form).
  if (platform !== undefined && !platforms.includes(platform)) {
    const long = platforms.find((q) => q.startsWith(`${platform}/`));
    if (long) platform = long;
  }
  return { ...(platform !== undefined ? { platform } : {}), ...(node !== undefined ? { node } : {}) };
}

/**
 * Multi-node builds: a node that built one platform names its steps without it
 * (`[node-b] [2/4] RUN …`, BuildKit's single-platform names). With `placement` (platform →
 * node, what the build reports) such numbered steps get that platform, and each platform
 * its node. Changes `steps` and returns the platforms with their nodes.
 */
export function applyPlacement<P extends { platform: string; node?: string }>(
  steps: StepRecord[],
  platforms: P[],
  placement: Readonly<Record<string, string>>,
): P[] {
  const nodeOf = (p: string) =>
    placement[p] ??
    Object.entries(placement).find(([k]) => p.startsWith(`${k}/`) || k.startsWith(`${p}/`))?.[1];
  const byNode = new Map<string, string[]>();
  for (const p of platforms) {
    const n = nodeOf(p.platform);
    if (n !== undefined) byNode.set(n, [...(byNode.get(n) ?? []), p.platform]);
  }
  for (const s of steps) {
    if (s.platform !== undefined || s.node === undefined) continue;
    const only = byNode.get(s.node);
    const rest = s.name.slice(s.name.indexOf('] ') + 2);
    if (only?.length === 1 && NUMBERED.test(rest)) s.platform = only[0]!;
  }
  return platforms.map((p) => {
    const n = nodeOf(p.platform);
    return n !== undefined && p.node === undefined ? { ...p, node: n } : p;
  });
}

/** A step's end, or the build's end for one that never finished. */
export function stepEnd(s: StepRecord, r: BuildRecord): number {
  return (
    s.completed ??
    r.completedAt ??
    Math.max(r.createdAt, ...r.steps.map((x) => x.completed ?? x.started ?? 0))
  );
}

/**
 * The critical path: from the step that finished last, back through the input each step
 * waited for longest (the input that finished last). A step with no recorded inputs (an
 * exporter, a FROM) waited for the step that finished last before it started, if any.
 * Returned in run order.
 */
export function criticalPath(r: BuildRecord): StepRecord[] {
  const shown = r.steps.filter((s) => s.started !== undefined);
  if (shown.length === 0) return [];
  const by = new Map(shown.map((s) => [s.digest, s]));
  let cur = shown.reduce((a, b) => (stepEnd(b, r) > stepEnd(a, r) ? b : a));
  const path = [cur];
  const seen = new Set([cur.digest]);
  for (;;) {
    let inputs = cur.inputs.map((d) => by.get(d)).filter((s): s is StepRecord => !!s && !seen.has(s.digest));
    if (inputs.length === 0) {
      const start = cur.started!;
      inputs = shown.filter((s) => !seen.has(s.digest) && s.started! <= start && stepEnd(s, r) <= start + 5);
    }
    if (inputs.length === 0) break;
    cur = inputs.reduce((a, b) => (stepEnd(b, r) > stepEnd(a, r) ? b : a));
    seen.add(cur.digest);
    path.push(cur);
  }
  return path.reverse();
}

export interface PlatformSummary {
  platform: string;
  native?: boolean;
  node?: string;
  steps: number;
  cached: number;
  failed: number;
  /** Sum of the steps' own durations (ms). */
  stepTime: number;
  /** From the platform's first step start to its last step end (ms). */
  wallTime: number;
  /** The platform's longest step. */
  slowest?: { name: string; ms: number };
}

/** Per-platform sums, in the order of the record's platforms. */
export function platformSummaries(r: BuildRecord): PlatformSummary[] {
  return r.platforms.map((pi) => {
    const steps = r.steps.filter((s) => s.platform === pi.platform && s.started !== undefined);
    let stepTime = 0;
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    let slowest: PlatformSummary['slowest'];
    for (const s of steps) {
      const ms = Math.max(0, stepEnd(s, r) - s.started!);
      stepTime += ms;
      first = Math.min(first, s.started!);
      last = Math.max(last, stepEnd(s, r));
      if (!slowest || ms > slowest.ms) slowest = { name: s.name, ms };
    }
    return {
      platform: pi.platform,
      ...(pi.native !== undefined ? { native: pi.native } : {}),
      ...(pi.node !== undefined ? { node: pi.node } : {}),
      steps: steps.length,
      cached: steps.filter((s) => s.cached).length,
      failed: steps.filter((s) => s.error !== undefined).length,
      stepTime,
      wallTime: steps.length > 0 ? last - first : 0,
      ...(slowest ? { slowest } : {}),
    };
  });
}

/** buildx's duration format: `4.2s` under a minute, else `2m 5s`. */
export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, ' ')}s`;
}
