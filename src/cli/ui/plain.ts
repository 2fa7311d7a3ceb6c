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
 * Vertexes are numbered in order of first appearance and shown once started. When output
 * of another vertex arrives, the current one is left with `#N ...` and the other gets its
 * header again, so each block reads as one step. Byte statuses print as
 * `#N sha256:abc… 1.05MB / 5.24MB 0.3s`, at most every 5% or 5s of progress, and once more
 * with `done`. At close: the last lines of each failed step between `------` rulers, then
 * the warnings.
 *
 * Unlike BuildKit, everything is printed as it arrives (no rate limit, no fair-share
 * switching) and an unterminated line waits for its newline; the output is the same, only
 * more deterministic.
 */
import { isCanceledError, type SolveStatus, type VertexWarning } from '../../progress/index.js';
import { formatLogTime, formatProgress } from './format.js';
import type { Renderer, RenderOutput } from './renderer.js';
import { formatWarnings } from './summary.js';
import { Trace, type VertexState } from './trace.js';

// A status line repeats only when it moved this share of its total or this long (BuildKit).
const MIN_PROGRESS_DELTA = 0.05;
const MIN_TIME_DELTA_MS = 5000;

export interface PlainOptions {
  /** Print the warnings summary at close. Default true. */
  printWarnings?: boolean;
  /** Print warning details and URLs too. Default false. */
  verbose?: boolean;
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

  constructor(out: RenderOutput, opts: PlainOptions = {}) {
    this.out = out;
    this.opts = opts;
  }

  get warnings(): VertexWarning[] {
    return this.trace.warnings;
  }

  write(ss: SolveStatus): void {
    if (this.closed) return;
    const updated = this.trace.update(ss).map((d) => this.trace.byDigest.get(d)!);
    this.print(updated);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.trace.flushAll();
    this.print([...this.trace.byDigest.values()].filter((st) => this.hasOutput(st)));
    this.out.write(errorLogs(this.trace));
    if (this.opts.printWarnings ?? true)
      this.out.write(formatWarnings(this.trace.warnings, { verbose: this.opts.verbose ?? false }));
  }

  private hasOutput(st: VertexState): boolean {
    return st.pending.length > 0 || st.statusUpdates.size > 0;
  }

  private print(updated: VertexState[]): void {
    const completed = updated
      .filter((st) => st.completed)
      .sort((a, b) => (a.vertex.completed ?? 0) - (b.vertex.completed ?? 0));
    const rest = updated.filter((st) => !st.completed);
    const cur = this.current;
    // Finished steps first (the current one before the others), then running ones.
    if (cur && completed.includes(cur)) this.printVertex(cur);
    for (const st of completed) if (st !== cur) this.printVertex(st);
    if (cur && rest.includes(cur)) this.printVertex(cur);
    for (const st of rest) if (st !== cur) this.printVertex(st);
  }

  private printVertex(st: VertexState): void {
    const v = st.vertex;
    let s = '';
    if (st !== this.current) {
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
    for (const l of st.pending) s += `#${n} ${formatLogTime(l.rel)} ${l.text}\n`;
    st.pending = [];
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
    this.out.write(s);
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
