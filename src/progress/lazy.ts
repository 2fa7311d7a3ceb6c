/**
 * A sink made only when something is written to it, for progress that is usually silent.
 *
 *   const sink = lazySink(async () => makeRenderer()); // e.g. from a module imported on demand
 *   const pw = new ProgressWriter(sink);   // nothing loaded yet
 *
 * `polyarch run` reports pulls only, and a warm run pulls nothing: loading the renderers (a
 * sixth of its modules) for no output was start-up time spent for nothing. Batches written
 * before the sink is made are kept and handed over in order; `close()` of a sink never written
 * to does nothing. A sink that fails to load is ignored, as a failing sink is (writer.ts).
 */
import type { ProgressSink, SolveStatus } from './events.js';

export function lazySink(make: () => Promise<ProgressSink>): ProgressSink {
  let sink: ProgressSink | undefined;
  let loading: Promise<ProgressSink | undefined> | undefined;
  const queued: SolveStatus[] = [];
  const load = () =>
    (loading ??= make().then(
      (s) => {
        sink = s;
        for (const b of queued.splice(0)) safeWrite(s, b);
        return s;
      },
      () => undefined,
    ));
  return {
    write(status) {
      if (sink) safeWrite(sink, status);
      else {
        queued.push(status);
        void load();
      }
    },
    async close() {
      if (loading === undefined) return;
      await (await loading)?.close();
    },
  };
}

function safeWrite(sink: ProgressSink, status: SolveStatus): void {
  try {
    sink.write(status);
  } catch {
    // Progress never breaks the work it reports on.
  }
}
