/**
 * Fan-in and fan-out of progress.
 *
 * `ProgressMux` lets several producers (one solver per platform, a pull and a push running
 * side by side) share one sink, usually the renderer: each producer gets its own `open()`
 * sink and may close it when it is done; the shared sink is closed once, by `mux.close()`,
 * when the caller knows every producer has finished.
 *
 *   const mux = new ProgressMux(renderer);
 *   await Promise.all(platforms.map((p) => solve(p, { progress: mux.open() })));
 *   await mux.close();
 *
 * `teeSink(a, b)` sends every batch to several sinks (a renderer and a recorder, say).
 */
import { type ProgressSink, type SolveStatus, solveStatus } from './events.js';

export class ProgressMux {
  private readonly sink: ProgressSink;
  private closed = false;
  private closing: Promise<void> | undefined;
  private openCount = 0;

  constructor(sink: ProgressSink) {
    this.sink = sink;
  }

  /** Producers that opened a sink and have not closed it. */
  get active(): number {
    return this.openCount;
  }

  /** A sink for one producer. Its `close()` only ends that producer; later writes are dropped. */
  open(): ProgressSink {
    let done = false;
    this.openCount++;
    return {
      write: (status: SolveStatus) => {
        if (done || this.closed) return;
        this.sink.write(solveStatus(status));
      },
      close: () => {
        if (done) return;
        done = true;
        this.openCount--;
      },
    };
  }

  /** Closes the shared sink (once); later writes from any producer are dropped. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = Promise.resolve(this.sink.close());
    }
    return this.closing;
  }
}

/** A sink that forwards every batch and the close to each of `sinks`, in order. */
export function teeSink(...sinks: ProgressSink[]): ProgressSink {
  return {
    write(status) {
      for (const s of sinks) s.write(status);
    },
    async close() {
      for (const s of sinks) await s.close();
    },
  };
}
