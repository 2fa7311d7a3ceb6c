/**
 * Bounded concurrency for I/O-heavy work (blob transfers, manifest walks), and fairness for
 * long synchronous loops.
 *
 *   const sizes = await mapLimit(descs, 4, (d) => fetch(d));     // at most 4 at once, in order
 *   const slots = new Semaphore(4); await slots.run(() => upload()); // one limit, many callers
 *   const turn = loopTurns(); for (...) { work(); await turn(); }  // the event loop gets turns
 */

/** Runs `fn` over `items` with at most `limit` running at once; rejects on the first failure. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/** A counting semaphore: `run(fn)` waits for one of `limit` slots, shared by all callers. */
export class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];
  constructor(limit: number) {
    this.#free = Math.max(1, limit);
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((r) => this.#waiting.push(r));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/**
 * For long loops of synchronous work on the main thread: `await turn()` inside the loop gives
 * the event loop a turn (timers, child exits, finished I/O) once `everyMs` have passed since
 * the last one, and otherwise costs a clock read.
 *
 *   const turn = loopTurns();
 *   for (const x of many) { work(x); await turn(); }
 */
export function loopTurns(everyMs = 5): () => Promise<void> | undefined {
  let last = performance.now();
  return () => {
    const now = performance.now();
    if (now - last < everyMs) return undefined;
    last = now;
    return new Promise<void>((resolve) => setImmediate(resolve));
  };
}
