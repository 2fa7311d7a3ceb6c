/**
 * `ProgressRecorder`: a sink that keeps every batch, for tests and for replaying a run into a
 * renderer (bench/progress-demo.ts).
 *
 *   const rec = new ProgressRecorder({ now: clock.now });
 *   await build({ progress: rec });
 *   rec.vertexes();                 // latest state of each vertex, in order of first sight
 *   rec.logText(digest);            // everything the step printed
 *   rec.replay(renderer);           // feed the same batches to a renderer
 */
import {
  cloneStatus,
  type ProgressSink,
  type SolveStatus,
  type Vertex,
  type VertexWarning,
} from './events.js';

export interface RecordedStatus {
  /** When the batch arrived (recorder clock, epoch ms). */
  at: number;
  status: SolveStatus;
}

export interface RecorderOptions {
  /** Default `Date.now`. */
  now?: () => number;
}

export class ProgressRecorder implements ProgressSink {
  readonly entries: RecordedStatus[] = [];
  closed = false;
  private readonly now: () => number;

  constructor(opts: RecorderOptions = {}) {
    this.now = opts.now ?? Date.now;
  }

  write(status: SolveStatus): void {
    this.entries.push({ at: this.now(), status: cloneStatus(status) });
  }

  close(): void {
    this.closed = true;
  }

  get statuses(): SolveStatus[] {
    return this.entries.map((e) => e.status);
  }

  /** The last record of each vertex, in order of first appearance. */
  vertexes(): Vertex[] {
    const byDigest = new Map<string, Vertex>();
    for (const e of this.entries) for (const v of e.status.vertexes) byDigest.set(v.digest, v);
    return [...byDigest.values()];
  }

  vertex(digest: string): Vertex | undefined {
    return this.vertexes().find((v) => v.digest === digest);
  }

  /** All log bytes of a vertex (both streams, in order), as UTF-8 text. */
  logText(digest: string, stream?: 1 | 2): string {
    const parts: Buffer[] = [];
    for (const e of this.entries)
      for (const l of e.status.logs)
        if (l.vertex === digest && (stream === undefined || l.stream === stream))
          parts.push(Buffer.from(l.data));
    return Buffer.concat(parts).toString('utf8');
  }

  warnings(): VertexWarning[] {
    return this.entries.flatMap((e) => e.status.warnings);
  }

  /** Writes every recorded batch to `sink` (copies), then closes it when `close` is true. */
  async replay(sink: ProgressSink, opts: { close?: boolean } = {}): Promise<void> {
    for (const e of this.entries) sink.write(cloneStatus(e.status));
    if (opts.close ?? true) await sink.close();
  }
}
