/**
 * A record back into progress: the batches a renderer would have seen, in time order (each
 * step's start, its logs and last status lines, its end), so `history logs` prints a past
 * build with the same renderers (plain, rawjson, tty) as a live one.
 *
 *   for (const s of replayBatches(record)) renderer.write(s);
 */
import { type SolveStatus, solveStatus, type Vertex } from '../progress/index.js';
import type { BuildRecord, StepRecord } from './types.js';

function vertex(s: StepRecord, done: boolean): Vertex {
  return {
    digest: s.digest,
    name: s.name,
    inputs: [...s.inputs],
    ...(s.started !== undefined ? { started: s.started } : {}),
    ...(done && s.completed !== undefined ? { completed: s.completed } : {}),
    ...(done && s.cached ? { cached: true } : {}),
    ...(done && s.error !== undefined ? { error: s.error } : {}),
  };
}

export function replayBatches(r: BuildRecord): SolveStatus[] {
  const events: { at: number; order: number; status: SolveStatus }[] = [];
  let order = 0;
  const add = (at: number, part: Partial<SolveStatus>) =>
    events.push({ at, order: order++, status: solveStatus(part) });
  for (const s of r.steps) {
    if (s.started === undefined) continue;
    add(s.started, { vertexes: [vertex(s, false)] });
  }
  for (const l of r.logs)
    add(l.timestamp, {
      logs: [{ vertex: l.vertex, stream: l.stream, data: Buffer.from(l.text), timestamp: l.timestamp }],
    });
  for (const st of r.statuses) add(st.timestamp, { statuses: [{ ...st }] });
  for (const s of r.steps) {
    if (s.started === undefined || s.completed === undefined) continue;
    add(s.completed, { vertexes: [vertex(s, true)] });
  }
  const end = r.completedAt ?? r.createdAt;
  if (r.warnings.length > 0) add(end, { warnings: r.warnings.map((w) => ({ ...w, detail: [...w.detail] })) });
  return events.sort((a, b) => a.at - b.at || a.order - b.order).map((e) => e.status);
}
