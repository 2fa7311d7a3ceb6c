/**
 * What every renderer is: a `ProgressSink` that draws, and remembers the warnings it saw so
 * the caller can act on them (e.g. `--check` exits non-zero).
 */
import type { ProgressSink, VertexWarning } from '../../progress/index.js';

/** Where a renderer prints (process.stderr, or a test buffer). */
export interface RenderOutput {
  write(text: string): unknown;
  /** Terminal width/height when it is one (tty.WriteStream has them). */
  columns?: number;
  rows?: number;
}

export interface Renderer extends ProgressSink {
  readonly warnings: VertexWarning[];
}

/** Time and timers, injectable so tests drive the clock. */
export interface Scheduler {
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realScheduler: Scheduler = {
  now: Date.now,
  setInterval(fn, ms) {
    const h = setInterval(fn, ms);
    // Progress must not keep the process alive on its own.
    h.unref();
    return h;
  },
  clearInterval(h) {
    clearInterval(h as NodeJS.Timeout);
  },
};
