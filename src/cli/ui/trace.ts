/**
 * What the renderers know about a run: every vertex with its latest record, its statuses and
 * its log lines, built from `SolveStatus` batches (BuildKit's progressui `trace`). Tolerant
 * by design: statuses and logs for unknown vertexes are dropped, logs after completion kept.
 */
import {
  isCanceledError,
  type SolveStatus,
  type Vertex,
  type VertexStatus,
  type VertexWarning,
} from '../../progress/index.js';

export interface LogLine {
  /** Seconds-since-start prefix base: ms between the vertex start and the line. */
  rel: number;
  text: string;
  /** Plain printed the first `shown` characters already, as a partial line; the rest came at `restRel`. */
  shown?: number;
  restRel?: number;
}

export interface TraceOptions {
  /** Lines kept for the running-step tail (tty). Default 6. */
  tailLines?: number;
  /** Lines kept per vertex to show again when it fails. Default 10 (BuildKit plain). */
  errorLines?: number;
  /** Queue every line in `pending` for a printer that drains it (plain). Default true. */
  pending?: boolean;
}

export class VertexState {
  vertex: Vertex;
  /** Order in which it started (or was first printed); -1 until then. */
  seq = -1;
  /** `#N` number in plain output; 0 until printed. */
  index = 0;
  /** The final DONE/CACHED/ERROR line has been printed (plain). */
  finalPrinted = false;
  readonly statuses: VertexStatus[] = [];
  readonly statusUpdates = new Set<string>();
  readonly warnings: VertexWarning[] = [];
  /** Complete lines not yet printed (plain). */
  pending: LogLine[] = [];
  /** Last lines, for the tty tail. */
  tail: LogLine[] = [];
  /** Last lines, repeated under a failure. */
  errorTail: LogLine[] = [];
  partial: LogLine | undefined;
  /** Characters of `partial` plain has printed already (an unterminated line held too long). */
  partialShown = 0;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(v: Vertex) {
    this.vertex = v;
  }

  get started(): boolean {
    return this.vertex.started !== undefined || this.vertex.completed !== undefined;
  }

  get completed(): boolean {
    return this.vertex.completed !== undefined;
  }

  /** Epoch ms of the start (a completed vertex with no start counts from completion). */
  get startTime(): number | undefined {
    return this.vertex.started ?? this.vertex.completed;
  }

  /** @internal */
  addLog(data: Uint8Array, timestamp: number, opts: Required<TraceOptions>): void {
    const text = this.decoder.decode(data, { stream: true });
    if (text === '') return;
    const start = this.startTime;
    const rel = start === undefined ? 0 : timestamp - start;
    const parts = text.split('\n');
    const last = parts.pop()!;
    for (const [i, p] of parts.entries()) {
      if (i === 0 && this.partial) {
        this.pushLine({ ...this.partial, text: this.partial.text + p, ...this.shownPart(rel) }, opts);
        this.partial = undefined;
      } else this.pushLine({ rel, text: p }, opts);
    }
    if (last !== '') {
      if (this.partial && parts.length === 0) this.partial.text += last;
      else this.partial = { rel, text: last };
    }
  }

  /** Turns an unterminated last line into a line (at completion and close). */
  flushPartial(opts: Required<TraceOptions>): void {
    const rest = this.decoder.decode();
    if (rest !== '') {
      if (this.partial) this.partial.text += rest;
      else this.partial = { rel: 0, text: rest };
    }
    if (this.partial) {
      this.pushLine({ ...this.partial, ...this.shownPart(this.partial.rel) }, opts);
      this.partial = undefined;
    }
  }

  /** The shown prefix of the partial line being completed (and forgets it). */
  private shownPart(restRel: number): Pick<LogLine, 'shown' | 'restRel'> {
    const shown = this.partialShown;
    this.partialShown = 0;
    return shown > 0 ? { shown, restRel } : {};
  }

  private pushLine(l: LogLine, opts: Required<TraceOptions>): void {
    if (opts.pending) this.pending.push(l);
    this.tail.push(l);
    if (this.tail.length > opts.tailLines) this.tail.shift();
    this.errorTail.push(l);
    if (this.errorTail.length > opts.errorLines) this.errorTail.shift();
  }
}

export class Trace {
  readonly byDigest = new Map<string, VertexState>();
  /** Vertexes that have started, in order of start. */
  readonly started: VertexState[] = [];
  readonly warnings: VertexWarning[] = [];
  /** Epoch ms the first vertex started. */
  startTime: number | undefined;
  private readonly opts: Required<TraceOptions>;

  get tailLines(): number {
    return this.opts.tailLines;
  }

  constructor(opts: TraceOptions = {}) {
    this.opts = {
      tailLines: opts.tailLines ?? 6,
      errorLines: opts.errorLines ?? 10,
      pending: opts.pending ?? true,
    };
  }

  /** Takes one batch; returns the digests whose display changed, in order of appearance. */
  update(ss: SolveStatus): string[] {
    const updated = new Set<string>();
    for (const v of ss.vertexes ?? []) {
      if (!v || typeof v.digest !== 'string') continue;
      let st = this.byDigest.get(v.digest);
      if (!st) {
        st = new VertexState({ ...v, inputs: [...(v.inputs ?? [])] });
        this.byDigest.set(v.digest, st);
      } else {
        const prev = st.vertex;
        // A repeated record without a start must not reset a started vertex (BuildKit's rule).
        if (!st.started || v.started !== undefined || v.completed !== undefined) {
          st.vertex = { ...v, inputs: [...(v.inputs ?? [])] };
          if (st.vertex.started === undefined && prev.started !== undefined) st.vertex.started = prev.started;
        }
        if (prev.completed !== undefined && st.vertex.completed === undefined) st.finalPrinted = false;
        if (!changed(prev, st.vertex)) continue;
      }
      if (!st.started) continue;
      if (st.seq < 0) this.markStarted(st);
      if (st.completed) st.flushPartial(this.opts);
      updated.add(v.digest);
    }
    for (const s of ss.statuses ?? []) {
      const st = s && this.byDigest.get(s.vertex);
      if (!st) continue;
      const i = st.statuses.findIndex((x) => x.id === s.id);
      const rec = { ...s, started: s.started ?? (i >= 0 ? st.statuses[i]!.started : s.timestamp) };
      if (i >= 0) st.statuses[i] = rec;
      else st.statuses.push(rec);
      st.statusUpdates.add(s.id);
      updated.add(s.vertex);
    }
    for (const w of ss.warnings ?? []) {
      if (!w) continue;
      this.warnings.push(w);
      this.byDigest.get(w.vertex)?.warnings.push(w);
    }
    for (const l of ss.logs ?? []) {
      const st = l && this.byDigest.get(l.vertex);
      if (!st || !l.data) continue;
      st.addLog(l.data, l.timestamp, this.opts);
      if (st.completed) st.flushPartial(this.opts);
      updated.add(l.vertex);
    }
    return [...updated];
  }

  /** @internal Gives a vertex its place in the start order. */
  markStarted(st: VertexState): void {
    if (st.seq >= 0) return;
    st.seq = this.started.length;
    this.started.push(st);
    const t = st.startTime;
    if (t !== undefined && (this.startTime === undefined || t < this.startTime)) this.startTime = t;
  }

  /** Flushes every unterminated line (at close). */
  flushAll(): void {
    for (const st of this.byDigest.values()) st.flushPartial(this.opts);
  }

  /** Counts for the tty header: vertexes known and vertexes completed. */
  counts(): { total: number; completed: number } {
    let completed = 0;
    for (const st of this.byDigest.values()) if (st.completed) completed++;
    return { total: this.byDigest.size, completed };
  }

  /** Epoch ms of the latest completion (0 when none). */
  lastCompleted(): number {
    let t = 0;
    for (const st of this.byDigest.values())
      if (st.vertex.completed !== undefined) t = Math.max(t, st.vertex.completed);
    return t;
  }

  /** Vertexes that failed (not canceled), in start order. */
  failed(): VertexState[] {
    return this.started.filter((st) => st.vertex.error && !isCanceledError(st.vertex.error));
  }
}

function changed(a: Vertex, b: Vertex): boolean {
  return (
    a.name !== b.name ||
    a.started !== b.started ||
    a.completed !== b.completed ||
    Boolean(a.cached) !== Boolean(b.cached) ||
    a.error !== b.error
  );
}
