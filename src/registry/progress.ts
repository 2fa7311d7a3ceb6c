/**
 * Transfer progress as data: a tiny typed event emitter. Pull and push emit one event per
 * state change of a blob or manifest (and throttled `progress` events with bytes done);
 * renderers in the CLI turn them into lines or bars.
 *
 *   const p = new TransferProgress();
 *   p.on((e) => console.log(e.status, e.digest, e.done, e.total));
 */
import type { Digest } from '../oci/index.js';

export type TransferStatus =
  /** A transfer began. */
  | 'start'
  /** Bytes moved (`done` of `total`). */
  | 'progress'
  /** Finished and verified. */
  | 'done'
  /** Already present at the destination; nothing moved. */
  | 'exists'
  /** Cross-repository mount on the same registry. */
  | 'mounted'
  /** A dropped transfer is resuming at `done`. */
  | 'resume';

export interface TransferEvent {
  direction: 'pull' | 'push';
  kind: 'blob' | 'manifest' | 'index' | 'config';
  digest: Digest;
  mediaType: string;
  status: TransferStatus;
  done: number;
  total: number;
}

export type TransferListener = (e: TransferEvent) => void;

export class TransferProgress {
  readonly #listeners = new Set<TransferListener>();
  on(l: TransferListener): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  emit(e: TransferEvent): void {
    for (const l of this.#listeners) l(e);
  }
}

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
