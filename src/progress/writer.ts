/**
 * The producer side: `ProgressWriter` keeps each vertex's state and sends whole records to a
 * sink, so build steps, pulls and pushes only say what happened.
 *
 *   const pw = new ProgressWriter(sink);
 *   const step = pw.vertex({ digest, name: '[linux/arm64 2/5] RUN make' }); // announced, not started
 *   step.start();
 *   step.log('compiling\n');                 // or proc.stdout.pipe(step.logStream(1))
 *   step.done();                             // or step.cached() / step.fail(err) / step.cancel()
 *
 *   // a pull: one vertex, one byte status per layer
 *   await pw.run({ digest: 'pull:' + ref, name: `[linux/arm64] pull ${ref}` }, async (v) => {
 *     const layer = v.status('sha256:4abcf2…', { total: size });
 *     layer.update(received);                // throttling is the renderer's job
 *     layer.done();
 *   });
 *
 * Ownership: whoever creates the sink closes it. A library operation that takes
 * `opts.progress: ProgressSink` writes to it through its own `ProgressWriter` and does not
 * call `close()`; the CLI closes its renderer once the operation has returned or thrown
 * (so error logs print before the CLI's `ERROR:` line). Operations running side by side
 * share one sink directly, or through `ProgressMux` when each wants its own close.
 *
 * Announcing every vertex of a graph up front (before any starts) lets the tty header count
 * `(3/9)` right. Asking for the same digest twice gives the same handle, so a step shared by
 * several platforms is shown once. Writes never throw: a failing sink is ignored, and
 * anything after `close()` is dropped.
 */
import { Writable } from 'node:stream';
import { errorMessage } from '../util/errors.js';
import {
  CANCELED_ERROR,
  type ProgressSink,
  type SolveStatus,
  solveStatus,
  type Vertex,
  type VertexStatus,
  type VertexWarning,
} from './events.js';

export interface ProgressWriterOptions {
  /** Clock in epoch ms; default `Date.now`. Tests pass a fake one. */
  now?: () => number;
}

export interface VertexInfo {
  digest: string;
  name: string;
  /** Default: none. */
  inputs?: string[];
}

export interface StatusOptions {
  name?: string;
  total?: number;
}

export type WarningInfo = Omit<VertexWarning, 'vertex' | 'level' | 'detail'> &
  Partial<Pick<VertexWarning, 'level' | 'detail'>>;

export class ProgressWriter {
  readonly now: () => number;
  private readonly sink: ProgressSink;
  private readonly handles = new Map<string, VertexHandle>();
  private closed = false;

  constructor(sink: ProgressSink, opts: ProgressWriterOptions = {}) {
    this.sink = sink;
    this.now = opts.now ?? Date.now;
  }

  /** Sends a raw batch (missing lists are empty). */
  write(part: Partial<SolveStatus>): void {
    if (this.closed) return;
    try {
      this.sink.write(solveStatus(part));
    } catch {
      // A broken display (closed pipe, bug) must not fail the build it reports on.
    }
  }

  /** The handle for a vertex, announcing it (not started) the first time. */
  vertex(info: VertexInfo): VertexHandle {
    let h = this.handles.get(info.digest);
    if (!h) {
      h = new VertexHandle(this, { digest: info.digest, name: info.name, inputs: [...(info.inputs ?? [])] });
      this.handles.set(info.digest, h);
      h.send();
    }
    return h;
  }

  /**
   * Runs `fn` as a vertex: starts it, completes it when `fn` resolves, marks it failed and
   * rethrows when `fn` throws. A vertex `fn` already finished (e.g. `v.cached()`) is left so.
   */
  async run<T>(info: VertexInfo, fn: (v: VertexHandle) => Promise<T> | T): Promise<T> {
    const v = this.vertex(info).start();
    try {
      const out = await fn(v);
      v.done();
      return out;
    } catch (err) {
      v.fail(err);
      throw err;
    }
  }

  /** Ends the run: closes the sink (renderers print their final frame). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.sink.close();
    } catch {
      // See write().
    }
  }
}

export class VertexHandle {
  private readonly pw: ProgressWriter;
  private readonly v: Vertex;
  private readonly statuses = new Map<string, StatusHandle>();

  constructor(pw: ProgressWriter, v: Vertex) {
    this.pw = pw;
    this.v = v;
  }

  get digest(): string {
    return this.v.digest;
  }

  /** A copy of the vertex as last sent. */
  get state(): Vertex {
    return { ...this.v, inputs: [...this.v.inputs] };
  }

  get finished(): boolean {
    return this.v.completed !== undefined;
  }

  /** @internal */
  send(): void {
    this.pw.write({ vertexes: [this.state] });
  }

  /** Marks the vertex running (again, if it had finished: a retried step gets a new start). */
  start(): this {
    const now = this.pw.now();
    this.v.started = now;
    delete this.v.completed;
    delete this.v.error;
    delete this.v.cached;
    this.send();
    return this;
  }

  /** Finished successfully. No-op when already finished. */
  done(): void {
    this.finish({});
  }

  /** Finished by reusing a cached result (started and completed at once if never started). */
  cached(): void {
    this.finish({ cached: true });
  }

  /** Finished with an error; the message (one line) is what renderers show. */
  fail(err: unknown): void {
    const msg = errorMessage(err).split('\n')[0] ?? '';
    this.finish({ error: msg === '' ? 'failed' : msg });
  }

  /** Finished because the run was canceled (shown as CANCELED). */
  cancel(): void {
    this.finish({ error: CANCELED_ERROR });
  }

  private finish(how: { cached?: boolean; error?: string }): void {
    if (this.finished) return;
    const now = this.pw.now();
    this.v.started ??= now;
    this.v.completed = now;
    if (how.cached) this.v.cached = true;
    if (how.error !== undefined) this.v.error = how.error;
    // Statuses still open end with their vertex, so no display waits on them.
    for (const s of this.statuses.values()) if (s.state.started !== undefined) s.close(now);
    this.send();
  }

  /** Output of the step; `data` need not be whole lines. */
  log(data: string | Uint8Array, stream: 1 | 2 = 1): void {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    if (bytes.length === 0) return;
    this.pw.write({ logs: [{ vertex: this.v.digest, stream, data: bytes, timestamp: this.pw.now() }] });
  }

  /** A writable stream whose chunks become logs, for piping a process's output. */
  logStream(stream: 1 | 2 = 1): Writable {
    return new Writable({
      write: (chunk: Buffer | string, _enc, cb) => {
        this.log(chunk, stream);
        cb();
      },
    });
  }

  /** Byte/item progress within this vertex; the same id gives the same handle. */
  status(id: string, opts: StatusOptions = {}): StatusHandle {
    let s = this.statuses.get(id);
    if (!s) {
      s = new StatusHandle(
        this.pw,
        { id, vertex: this.v.digest, current: 0, timestamp: this.pw.now() },
        opts,
      );
      this.statuses.set(id, s);
    }
    return s;
  }

  /** A build-check warning attached to this vertex. */
  warn(w: WarningInfo): void {
    this.pw.write({ warnings: [{ level: 1, detail: [], ...w, vertex: this.v.digest }] });
  }
}

export class StatusHandle {
  private readonly pw: ProgressWriter;
  private readonly s: VertexStatus;

  constructor(pw: ProgressWriter, s: VertexStatus, opts: StatusOptions) {
    this.pw = pw;
    this.s = s;
    if (opts.name !== undefined) s.name = opts.name;
    if (opts.total !== undefined) s.total = opts.total;
  }

  get state(): VertexStatus {
    return { ...this.s };
  }

  /** Reports `current` (and a newly learnt `total`); starts the status on first use. */
  update(current: number, total?: number): void {
    if (this.s.completed !== undefined) return;
    const now = this.pw.now();
    this.s.started ??= now;
    this.s.current = current;
    if (total !== undefined) this.s.total = total;
    this.s.timestamp = now;
    this.pw.write({ statuses: [{ ...this.s }] });
  }

  /** Finished; `current` defaults to `total` (or what was last reported). */
  done(current?: number): void {
    if (this.s.completed !== undefined) return;
    this.close(this.pw.now(), current ?? this.s.total ?? this.s.current);
  }

  /** @internal */
  close(now: number, current = this.s.current): void {
    if (this.s.completed !== undefined) return;
    this.s.started ??= now;
    this.s.current = current;
    this.s.timestamp = now;
    this.s.completed = now;
    this.pw.write({ statuses: [{ ...this.s }] });
  }
}
