/**
 * Where a build's time goes, read from `--progress rawjson` (polyarch's and buildctl's: the
 * JSON form of BuildKit's SolveStatus; buildctl indents it over several lines, polyarch writes
 * one object a line), and how late the progress arrived.
 *
 *   const p = readProgress(r.lines, t0, t1);   // lines with their arrival times
 *   p.phases   // start-up, pull (FROM + metadata), RUN per platform, COPY, export, push, tail
 *   p.lagMs    // arrival − event time of each batch: max and 95th percentile
 *
 * Phases are wall spans (first start to last end of the vertices of that kind), so parallel
 * platforms are not counted twice; `sum` is the summed vertex time.
 */

interface Vertex {
  name: string;
  started?: number;
  completed?: number;
  cached?: boolean;
}

interface Status {
  id: string;
  vertex: string;
  started?: number;
  timestamp?: number;
}

export interface Phase {
  spanMs: number;
  sumMs: number;
  count: number;
  cached: number;
}

export interface ProgressReport {
  /** Process start to the first vertex start (start-up, parse, connect). */
  startupMs: number;
  /** Last vertex end to process exit. */
  tailMs: number;
  phases: Record<string, Phase>;
  /** How long after its newest event time each batch reached the reader. */
  lagMs: { max: number; p95: number; batches: number };
}

/** Go's RFC 3339 with nanoseconds: Date.parse keeps milliseconds. */
function time(t: unknown): number | undefined {
  if (typeof t === 'number') return t;
  if (typeof t !== 'string') return undefined;
  const ms = Date.parse(t.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(ms) ? undefined : ms;
}

/** The JSON objects in the output, each with the arrival time of its last line. */
function objects(lines: { at: number; text: string }[]): { at: number; value: Record<string, unknown> }[] {
  const out: { at: number; value: Record<string, unknown> }[] = [];
  let acc: string[] | undefined;
  for (const { at, text } of lines) {
    if (acc === undefined) {
      if (!text.startsWith('{')) continue;
      try {
        out.push({ at, value: JSON.parse(text) });
        continue;
      } catch {
        acc = [text];
        continue;
      }
    }
    acc.push(text);
    if (text === '}') {
      try {
        out.push({ at, value: JSON.parse(acc.join('\n')) });
      } catch {
        // not one of ours: skip it
      }
      acc = undefined;
    }
  }
  return out;
}

/** A vertex's phase: pull, RUN <platform>, COPY, export, … */
export function phaseOf(name: string): string {
  if (/load metadata|^\[internal\] load build|^\[internal\] load \.dockerignore/.test(name))
    return 'metadata';
  if (/^\[internal\]/.test(name)) return 'context';
  const m = /^\[(\S+)(?: [^\]]*)? \d+\/\d+\] (\w+)/.exec(name) ?? /^\[(\S+)\] (\w+)/.exec(name);
  if (m) {
    const [, where, op] = m;
    if (op === 'FROM') return 'pull/unpack';
    if (op === 'RUN') return `RUN ${where?.startsWith('linux/') ? where : ''}`.trim();
    return op!;
  }
  if (/^exporting|^pushing|^naming|^writing/.test(name)) return 'export+push';
  return name.split(' ')[0] ?? name;
}

export function readProgress(lines: { at: number; text: string }[], t0: number, t1: number): ProgressReport {
  const vertexes = new Map<string, Vertex>();
  const statuses: Status[] = [];
  const lags: number[] = [];
  for (const { at, value } of objects(lines)) {
    let newest = Number.NEGATIVE_INFINITY;
    for (const v of (value.vertexes as Record<string, unknown>[] | undefined) ?? []) {
      const d = String(v.digest);
      const t: Vertex = { name: String(v.name) };
      const started = time(v.started);
      const completed = time(v.completed);
      if (started !== undefined) t.started = started;
      if (completed !== undefined) t.completed = completed;
      if (v.cached) t.cached = true;
      vertexes.set(d, { ...vertexes.get(d), ...t });
      newest = Math.max(newest, started ?? newest, completed ?? newest);
    }
    for (const s of (value.statuses as Record<string, unknown>[] | undefined) ?? []) {
      const st: Status = { id: String(s.id), vertex: String(s.vertex) };
      const started = time(s.started);
      const ts = time(s.timestamp);
      if (started !== undefined) st.started = started;
      if (ts !== undefined) st.timestamp = ts;
      statuses.push(st);
      newest = Math.max(newest, ts ?? newest);
    }
    for (const l of (value.logs as Record<string, unknown>[] | undefined) ?? [])
      newest = Math.max(newest, time(l.timestamp) ?? newest);
    if (Number.isFinite(newest)) lags.push(at - newest);
  }
  const phases: Record<string, Phase> = {};
  const spans = new Map<string, [number, number]>();
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const v of vertexes.values()) {
    if (v.started === undefined || v.completed === undefined) continue;
    const k = phaseOf(v.name);
    const p = (phases[k] ??= { spanMs: 0, sumMs: 0, count: 0, cached: 0 });
    p.sumMs += v.completed - v.started;
    p.count++;
    if (v.cached) p.cached++;
    const s = spans.get(k) ?? [v.started, v.completed];
    spans.set(k, [Math.min(s[0], v.started), Math.max(s[1], v.completed)]);
    first = Math.min(first, v.started);
    last = Math.max(last, v.completed);
  }
  for (const [k, [a, b]] of spans) phases[k]!.spanMs = b - a;
  // The exporter's first upload (polyarch: a status named by a blob digest; BuildKit: "pushing
  // layers") splits export+push into compress/manifests and push.
  const exporters = [...vertexes.entries()].filter(([, v]) => phaseOf(v.name) === 'export+push');
  const ids = new Set(exporters.map(([d]) => d));
  const pushStarts = statuses
    .filter((s) => ids.has(s.vertex) && (s.id.startsWith('sha256:') || s.id.startsWith('pushing')))
    .map((s) => s.started ?? s.timestamp ?? Number.POSITIVE_INFINITY);
  const exStart = Math.min(...exporters.map(([, v]) => v.started ?? Number.POSITIVE_INFINITY));
  const exEnd = Math.max(...exporters.map(([, v]) => v.completed ?? 0));
  const firstPush = Math.min(...pushStarts);
  if (Number.isFinite(exStart) && Number.isFinite(firstPush) && firstPush >= exStart) {
    phases['  export'] = { spanMs: firstPush - exStart, sumMs: firstPush - exStart, count: 1, cached: 0 };
    phases['  push'] = { spanMs: exEnd - firstPush, sumMs: exEnd - firstPush, count: 1, cached: 0 };
  }
  // Time between the last step and the exporter's start (layers still being packed).
  const lastStep = Math.max(
    0,
    ...[...vertexes.values()].filter((v) => phaseOf(v.name) !== 'export+push').map((v) => v.completed ?? 0),
  );
  if (Number.isFinite(exStart) && lastStep > 0 && exStart > lastStep)
    phases['before export'] = { spanMs: exStart - lastStep, sumMs: exStart - lastStep, count: 1, cached: 0 };
  const sorted = [...lags].sort((a, b) => a - b);
  return {
    startupMs: Number.isFinite(first) ? first - t0 : Number.NaN,
    tailMs: last ? t1 - last : Number.NaN,
    phases,
    lagMs: {
      max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
      p95: sorted.length ? sorted[Math.floor(sorted.length * 0.95)]! : Number.NaN,
      batches: sorted.length,
    },
  };
}

/** Per phase, the median over runs of each field. */
export function medianProgress(rs: ProgressReport[], median: (xs: number[]) => number): ProgressReport {
  const phases: Record<string, Phase> = {};
  for (const k of [...new Set(rs.flatMap((r) => Object.keys(r.phases)))].sort()) {
    const of = (f: keyof Phase) => median(rs.map((r) => r.phases[k]?.[f] ?? 0));
    phases[k] = { spanMs: of('spanMs'), sumMs: of('sumMs'), count: of('count'), cached: of('cached') };
  }
  return {
    startupMs: median(rs.map((r) => r.startupMs)),
    tailMs: median(rs.map((r) => r.tailMs)),
    phases,
    lagMs: {
      max: median(rs.map((r) => r.lagMs.max)),
      p95: median(rs.map((r) => r.lagMs.p95)),
      batches: median(rs.map((r) => r.lagMs.batches)),
    },
  };
}
