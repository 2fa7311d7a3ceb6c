/**
 * `--progress=plain`: BuildKit's plain printer, line for line, for logs and CI.
 *
 *   #1 [internal] load build definition from Dockerfile
 *   #1 DONE 0.0s
 *
 *   #5 [linux/arm64 2/3] RUN make
 *   #5 0.312 cc -o app main.c
 *   #5 DONE 1.4s
 *
 * Vertexes are numbered in order of first appearance and shown once started. One running
 * vertex holds the output at a time; others' output waits until it finishes (or for 5s,
 * BuildKit's anti-flicker), then the current one is left with `#N ...` and the other gets
 * its header again, so each block reads as one step. Byte statuses print as
 * `#N sha256:abc… 1.05MB / 5.24MB 0.3s`, at most every 5% or 5s of progress, and once more
 * with `done`. At close: the last lines of each failed step between `------` rulers, then
 * the warnings.
 *
 * The switching clock is the events' own timestamps, advanced between events by the time
 * elapsed since the last one: while output is held, a ticker (like BuildKit's) re-checks, so
 * held lines appear within 5s (10s) of wall time even when no further event arrives. Replayed
 * at once, a recorded run's output is always the same. An unterminated line waits for its
 * newline up to 1s (so a burst written in pieces stays one line), then is printed as far as it
 * goes (`Reading package lists...` under QEMU waits 15s and more for its `Done`) and its rest
 * follows on a line of its own.
 */
import { isCanceledError, type SolveStatus, type VertexWarning } from '../../progress/index.js';
import { formatLogTime, formatProgress } from './format.js';
import { type Renderer, type RenderOutput, realScheduler, type Scheduler } from './renderer.js';
import { formatWarnings } from './summary.js';
import { Trace, type VertexState } from './trace.js';

// A status line repeats only when it moved this share of its total or this long (BuildKit).
const MIN_PROGRESS_DELTA = 0.05;
const MIN_TIME_DELTA_MS = 5000;
// Another running vertex takes over after the current one held the screen this long, or
// after its own output waited this long (BuildKit's antiFlicker and maxDelay).
const ANTI_FLICKER_MS = 5000;
const MAX_DELAY_MS = 10000;
// How often held output is re-checked (BuildKit's plain refresh is 150ms).
const TICK_MS = 150;
// An unterminated line is printed once it has waited this long for its newline.
const PARTIAL_MS = 1000;

export interface PlainOptions {
  /** Print the warnings summary at close. Default true. */
  printWarnings?: boolean;
  /** Print warning details and URLs too. Default false. */
  verbose?: boolean;
  /** The wall clock and ticker that release held output between events. */
  scheduler?: Scheduler;
}

export class PlainRenderer implements Renderer {
  readonly trace = new Trace({ errorLines: 10 });
  private readonly out: RenderOutput;
  private readonly opts: PlainOptions;
  private current: VertexState | undefined;
  private notFirst = false;
  private counter = 0;
  private readonly last = new Map<string, { current: number; timestamp: number }>();
  private closed = false;
  /** Vertexes with output not yet printed, and since when (event time). */
  private readonly waiting = new Map<VertexState, number>();
  /** Latest event time seen: the printer's clock. */
  private now = 0;
  private currentSince = 0;
  private readonly sched: Scheduler;
  /** The wall time of the latest event, so the clock can run on between events. */
  private wallAtEvent = 0;
  private eventNow = 0;
  private ticker: unknown;

  constructor(out: RenderOutput, opts: PlainOptions = {}) {
    this.out = out;
    this.opts = opts;
    this.sched = opts.scheduler ?? realScheduler;
  }

  get warnings(): VertexWarning[] {
    return this.trace.warnings;
  }

  write(ss: SolveStatus): void {
    if (this.closed) return;
    for (const t of timestamps(ss)) if (t > this.now) this.now = t;
    this.eventNow = this.now;
    this.wallAtEvent = this.sched.now();
    for (const d of this.trace.update(ss)) {
      const st = this.trace.byDigest.get(d)!;
      if (!this.waiting.has(st)) this.waiting.set(st, this.now);
    }
    this.print(false);
    this.tickWhileHeld();
  }

  /** While some output is held back, re-check on a ticker with the clock run on. */
  private tickWhileHeld(): void {
    if (this.waiting.size === 0 || this.ticker !== undefined) return;
    this.ticker = this.sched.setInterval(() => {
      const t = this.eventNow + (this.sched.now() - this.wallAtEvent);
      if (t > this.now) this.now = t;
      this.print(false);
      if (this.waiting.size === 0) this.stopTicker();
    }, TICK_MS);
  }

  private stopTicker(): void {
    if (this.ticker === undefined) return;
    this.sched.clearInterval(this.ticker);
    this.ticker = undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTicker();
    this.trace.flushAll();
    for (const st of this.trace.byDigest.values())
      if (st.pending.length > 0 && !this.waiting.has(st)) this.waiting.set(st, this.now);
    this.print(true);
    this.out.write(errorLogs(this.trace));
    if (this.opts.printWarnings ?? true)
      this.out.write(formatWarnings(this.trace.warnings, { verbose: this.opts.verbose ?? false }));
  }

  /**
   * BuildKit's textMux.print: finished vertexes first (the current one before the others,
   * then by completion time); then the current one; another running vertex only takes
   * over when nothing is current, when the current one has held the screen for 5s, or
   * when the other has waited 10s. Times are the events' own, so output is reproducible.
   */
  private print(all: boolean): void {
    const waiting = [...this.waiting.keys()];
    const completed = waiting
      .filter((st) => st.completed)
      .sort((a, b) => (a.vertex.completed ?? 0) - (b.vertex.completed ?? 0) || a.seq - b.seq);
    const cur = this.current;
    if (cur && completed.includes(cur)) this.printVertex(cur);
    for (const st of completed) if (st !== cur) this.printVertex(st);

    const rest = () => [...this.waiting.keys()].sort((a, b) => order(a) - order(b));
    if (all) {
      if (this.current && this.waiting.has(this.current)) this.printVertex(this.current);
      for (const st of rest()) this.printVertex(st);
      return;
    }
    if (this.current && this.waiting.has(this.current)) this.printVertex(this.current);
    const others = rest();
    if (others.length === 0) return;
    if (!this.current) {
      this.printVertex(others[0]!);
      return;
    }
    const held = this.now - this.currentSince;
    const overdue = others.find((st) => this.now - this.waiting.get(st)! >= MAX_DELAY_MS);
    if (overdue) this.printVertex(overdue);
    else if (held >= ANTI_FLICKER_MS) this.printVertex(others[0]!);
  }

  private printVertex(st: VertexState): void {
    const v = st.vertex;
    let s = '';
    this.waiting.delete(st);
    if (st !== this.current) {
      this.currentSince = this.now;
      if (this.current) s += `#${this.current.index} ...\n`;
      if (this.notFirst) s += '\n';
      this.notFirst = true;
      if (st.index === 0) st.index = ++this.counter;
      s += `#${st.index} ${v.name}\n`;
    }
    const n = st.index;
    for (const status of st.statuses) {
      if (!st.statusUpdates.has(status.id)) continue;
      const last = this.last.get(status.id);
      if (last && status.completed === undefined) {
        const delta = status.total ? (status.current - last.current) / status.total : 0;
        if (delta < MIN_PROGRESS_DELTA && status.timestamp - last.timestamp < MIN_TIME_DELTA_MS) continue;
      }
      this.last.set(status.id, { current: status.current, timestamp: status.timestamp });
      const bytes = formatProgress(status.current, status.total);
      let tm = '';
      const end = status.completed ?? status.timestamp;
      if (status.started !== undefined) {
        const diff = (end - status.started) / 1000;
        if (diff > 0.01) tm = ` ${diff.toFixed(1)}s`;
      }
      if (status.completed !== undefined) tm += ' done';
      s += `#${n} ${status.id}${bytes ? ` ${bytes}` : ''}${tm}\n`;
    }
    st.statusUpdates.clear();
    for (const l of st.pending) {
      if (l.shown === undefined) s += `#${n} ${formatLogTime(l.rel)} ${l.text}\n`;
      else if (l.text.length > l.shown)
        s += `#${n} ${formatLogTime(l.restRel ?? l.rel)} ${l.text.slice(l.shown)}\n`;
    }
    st.pending = [];
    const p = st.partial;
    if (p && p.text.length > st.partialShown) {
      const rel = this.now - (st.startTime ?? this.now);
      if (rel - p.rel >= PARTIAL_MS) {
        s += `#${n} ${formatLogTime(st.partialShown > 0 ? rel : p.rel)} ${p.text.slice(st.partialShown)}\n`;
        st.partialShown = p.text.length;
      } else if (!st.completed) this.waiting.set(st, this.waiting.get(st) ?? this.now);
    }
    this.current = st;
    if (st.completed) {
      this.current = undefined;
      if (!st.finalPrinted) {
        st.finalPrinted = true;
        if (v.error !== undefined && v.error !== '') {
          s += isCanceledError(v.error) ? `#${n} CANCELED\n` : `#${n} ERROR: ${v.error}\n`;
        } else if (v.cached) s += `#${n} CACHED\n`;
        else {
          const tm = v.started !== undefined ? ` ${((v.completed! - v.started) / 1000).toFixed(1)}s` : '';
          s += `#${n} DONE${tm}\n`;
        }
      }
    }
    if (s !== '') this.out.write(s);
  }
}

/** The last lines of every failed step, between rulers (BuildKit's printErrorLogs). */
export function errorLogs(trace: Trace): string {
  let s = '';
  for (const st of trace.failed()) {
    s += '------\n';
    s += ` > ${st.vertex.name}:\n`;
    for (const l of st.errorTail) s += `${formatLogTime(l.rel)} ${l.text}\n`;
    s += '------\n';
  }
  return s;
}

function order(st: VertexState): number {
  return st.seq < 0 ? Number.MAX_SAFE_INTEGER : st.seq;
}

/** Every time carried by a batch: the plain printer's notion of now. */
function timestamps(ss: SolveStatus): number[] {
  const out: number[] = [];
  for (const v of ss.vertexes ?? []) {
    if (v?.started !== undefined) out.push(v.started);
    if (v?.completed !== undefined) out.push(v.completed);
  }
  for (const s of ss.statuses ?? []) if (s) out.push(s.timestamp);
  for (const l of ss.logs ?? []) if (l) out.push(l.timestamp);
  return out;
}
