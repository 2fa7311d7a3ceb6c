/**
 * Bounded concurrency for I/O-heavy work (blob transfers, manifest walks).
 *
 *   const sizes = await mapLimit(descs, 4, (d) => fetch(d));     // at most 4 at once, in order
 *   const slots = new Semaphore(4); await slots.run(() => upload()); // one limit, many callers
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
