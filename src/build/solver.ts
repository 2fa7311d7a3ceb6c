/**
 * A generic solver: a graph of vertices (no Dockerfile knowledge), each solved at most once.
 *
 *   const solver = new Solver({ progress: sink, maxParallelism: 4, signal });
 *   const a = solver.vertex({ digest: 'a', name: '[linux/arm64 1/3] FROM …', inputs: [], run });
 *   const b = solver.vertex({ digest: 'b', name: '…', inputs: [a], run: async (ctx) => … });
 *   solver.announce([b]);            // progress learns every vertex up front (tty counts x/N)
 *   const value = await solver.solve(b);
 *
 * Vertices are keyed by digest: asking twice for the same digest gives the same vertex, so work
 * shared by several platforms (a `FROM --platform=$BUILDPLATFORM` stage) runs once. A vertex's
 * inputs are solved in parallel before it runs; `run` returns `{ value, cached }` and the
 * progress line shows DONE or CACHED. Heavy work (exec, copy) takes a slot with `ctx.slot()` so
 * at most `maxParallelism` of them run at once (default 16, see DEFAULT_MAX_PARALLELISM), while
 * cheap vertices never wait. The first failure aborts the signal every running vertex gets.
 */
import { type ProgressSink, ProgressWriter, type VertexHandle } from '../progress/index.js';
import { Semaphore } from '../util/concurrency.js';
import { PolyarchError } from '../util/errors.js';

export interface VertexContext {
  progress: VertexHandle;
  /** Aborted when the build is canceled or another vertex failed. */
  signal: AbortSignal;
  /** Run `fn` while holding one of the `maxParallelism` slots. */
  slot<T>(fn: () => Promise<T>): Promise<T>;
}

export interface VertexResult<T> {
  value: T;
  cached: boolean;
}

export interface VertexDef<T> {
  digest: string;
  name: string;
  inputs: SolverVertex<unknown>[];
  /** Hidden vertices do their work without a progress line (e.g. config-only steps). */
  hidden?: boolean;
  run(inputs: unknown[], ctx: VertexContext): Promise<VertexResult<T>>;
}

export interface SolverVertex<T> extends VertexDef<T> {
  readonly __value?: T;
}

export interface SolverOptions {
  progress?: ProgressSink;
  /** Heavy vertices running at once. Default DEFAULT_MAX_PARALLELISM. */
  maxParallelism?: number;
  signal?: AbortSignal;
}

/**
 * Heavy steps at once unless told otherwise. Not the CPU count: a step under QEMU is bound by
 * the emulator's latency, not by a core, and with a cap of 2 on 2 cores the third platform's
 * RUN waited for a slot while BuildKit (no cap) ran all three (bench/compare.ts
 * `--parallelism`: cold 3-platform builds were slowest with 2 and alike with 3, 4 or no cap).
 * 16 runs every platform of a wide build at once and still bounds the processes a huge graph
 * starts together.
 */
export const DEFAULT_MAX_PARALLELISM = 16;

const NULL_SINK: ProgressSink = { write: () => undefined, close: () => undefined };

export class Solver {
  readonly #vertices = new Map<string, SolverVertex<unknown>>();
  readonly #results = new Map<string, Promise<unknown>>();
  readonly #pw: ProgressWriter;
  readonly #sem: Semaphore;
  readonly #abort = new AbortController();
  readonly #hiddenPw = new ProgressWriter(NULL_SINK);

  constructor(opts: SolverOptions = {}) {
    this.#pw = new ProgressWriter(opts.progress ?? NULL_SINK);
    const n = opts.maxParallelism ?? DEFAULT_MAX_PARALLELISM;
    if (!Number.isInteger(n) || n < 1)
      throw new PolyarchError('INVALID_ARGUMENT', `invalid max parallelism ${n}: must be a positive integer`);
    this.#sem = new Semaphore(n);
    if (opts.signal) {
      const s = opts.signal;
      if (s.aborted) this.#abort.abort(s.reason);
      else s.addEventListener('abort', () => this.#abort.abort(s.reason), { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get progress(): ProgressWriter {
    return this.#pw;
  }

  /** Resolves once every vertex started so far has finished (succeeded, failed or been canceled). */
  async idle(): Promise<void> {
    let n = -1;
    // Vertices may start others while settling; wait until the set stops growing.
    while (n !== this.#results.size) {
      n = this.#results.size;
      await Promise.allSettled(this.#results.values());
    }
  }

  /** The vertex with this digest: the one given, or the one registered earlier. */
  vertex<T>(def: VertexDef<T>): SolverVertex<T> {
    const have = this.#vertices.get(def.digest);
    if (have) return have as SolverVertex<T>;
    const v = def as SolverVertex<T>;
    this.#vertices.set(def.digest, v as SolverVertex<unknown>);
    return v;
  }

  /** Tell progress about every visible vertex reachable from `roots`, before any runs. */
  announce(roots: SolverVertex<unknown>[]): void {
    for (const v of postOrder(roots, () => false)) if (!v.hidden) this.#pw.vertex(this.#info(v));
  }

  #info(v: SolverVertex<unknown>) {
    return { digest: v.digest, name: v.name, inputs: visibleInputs(v) };
  }

  solve<T>(v: SolverVertex<T>): Promise<T> {
    const have = this.#results.get(v.digest) as Promise<T> | undefined;
    if (have) return have;
    // Inputs not started yet start first, deepest first: each then finds its own inputs started,
    // so a chain of thousands of steps is not as deep a chain of calls.
    for (const u of postOrder([v], (x) => this.#results.has(x.digest))) {
      const p = this.#solve(u);
      // Abort the siblings at the first failure; the error itself reaches the caller.
      p.catch((err) => {
        if (!this.#abort.signal.aborted) this.#abort.abort(err);
      });
      this.#results.set(u.digest, p);
    }
    return this.#results.get(v.digest) as Promise<T>;
  }

  async #solve<T>(v: SolverVertex<T>): Promise<T> {
    const inputs = await Promise.all(v.inputs.map((i) => this.solve(i)));
    const signal = this.#abort.signal;
    if (signal.aborted) throw canceled(signal);
    // Hidden vertices report to a writer nobody reads.
    const handle = (v.hidden ? this.#hiddenPw : this.#pw).vertex(this.#info(v));
    if (!v.hidden) handle.start();
    try {
      const r = await v.run(inputs, {
        progress: handle,
        signal,
        slot: (fn) => {
          // Time spent waiting for a slot is not the step's: its clock starts again when it
          // gets one (BuildKit starts a vertex when it runs), so DONE shows the work alone.
          const asked = performance.now();
          return this.#sem.run(() => {
            if (signal.aborted) return Promise.reject(canceled(signal));
            if (!v.hidden && performance.now() - asked > SLOT_WAIT_RESTART_MS) handle.start();
            return fn();
          });
        },
      });
      if (!v.hidden) {
        if (r.cached) handle.cached();
        else handle.done();
      }
      return r.value;
    } catch (err) {
      if (!v.hidden) {
        if (signal.aborted && !(err instanceof PolyarchError && err.code !== 'ABORTED')) handle.cancel();
        else handle.fail(err);
      }
      throw err;
    }
  }
}

/** A wait for a slot longer than this restarts the step's clock (shorter ones are noise). */
const SLOT_WAIT_RESTART_MS = 50;

/**
 * The vertices reachable from `roots`, each after its inputs (depth first, inputs in order),
 * once per digest; `skip` ones and what is reachable only through them are left out. An
 * explicit stack: no recursion however long the chain.
 */
function postOrder(
  roots: readonly SolverVertex<unknown>[],
  skip: (v: SolverVertex<unknown>) => boolean,
): SolverVertex<unknown>[] {
  const out: SolverVertex<unknown>[] = [];
  const seen = new Set<string>();
  const stack: Array<{ v: SolverVertex<unknown>; next: number }> = [];
  const enter = (v: SolverVertex<unknown>) => {
    if (seen.has(v.digest) || skip(v)) return;
    seen.add(v.digest);
    stack.push({ v, next: 0 });
  };
  for (const r of roots) {
    enter(r);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (top.next < top.v.inputs.length) enter(top.v.inputs[top.next++]!);
      else {
        stack.pop();
        out.push(top.v);
      }
    }
  }
  return out;
}

/** Inputs as progress shows them: hidden vertices are skipped through to their own inputs. */
function visibleInputs(v: SolverVertex<unknown>): string[] {
  const out = new Set<string>();
  const visit = (i: SolverVertex<unknown>) => {
    if (i.hidden) for (const j of i.inputs) visit(j);
    else out.add(i.digest);
  };
  for (const i of v.inputs) visit(i);
  return [...out];
}

function canceled(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : new PolyarchError('ABORTED', 'build canceled');
}
