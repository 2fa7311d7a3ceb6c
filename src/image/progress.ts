/**
 * How pull and push report to the project's progress system (src/progress), shaped like
 * BuildKit's: a vertex per operation and a byte status per blob.
 *
 *   const pw = new ProgressWriter(renderer);
 *   await pull(ref, { store, progress: pw });
 *   //  #1 resolve 127.0.0.1:5000/library/busybox:latest       (the child manifests)
 *   //  #2 pulling 127.0.0.1:5000/library/busybox:latest       (one status per blob)
 *   //  #2 sha256:4abcf2… 1.05MB / 5.24MB 0.3s
 *   //  #2 exists sha256:9f3e… 0.0s done                       (already in the store)
 *
 * Push: `pushing <ref>` with a status per blob (`mounted sha256:…` and `exists sha256:…`
 * when nothing moved) and one per manifest (`manifest sha256:…`).
 *
 * A vertex appears when work on it begins (`Step.begin()`, or its first status), not when the
 * operation is called: so a pull of a missing tag, an unknown host or a refused password
 * fails before anything is shown, and the CLI prints one `ERROR:` line, not a progress
 * block too. Once a vertex has appeared, a failure marks it failed as BuildKit's would.
 *
 * The registry client calls back for every chunk; byte updates are sent at most every
 * `UPDATE_MS` (BuildKit polls its transfers on the same period), so a 1 GB layer makes a
 * few hundred progress records, not tens of thousands.
 */
import type { ProgressWriter, StatusHandle, VertexHandle } from '../progress/index.js';
import type { TransferCallback } from '../registry/client.js';

/** Minimum time between two byte updates of one status; default 100 ms. */
export const UPDATE_MS = 100;

/** A vertex that is announced and started on first use. */
export class Step {
  #v: VertexHandle | undefined;
  constructor(
    readonly pw: ProgressWriter | undefined,
    readonly digest: string,
    readonly name: string,
  ) {}

  /** Shows the vertex as running (once). */
  begin(): VertexHandle | undefined {
    if (!this.pw) return undefined;
    if (!this.#v) this.#v = this.pw.vertex({ digest: this.digest, name: this.name }).start();
    return this.#v;
  }

  status(id: string, total: number): StatusHandle | undefined {
    return this.begin()?.status(id, { total });
  }

  /** Runs `fn`; the vertex (if it began) ends done or failed with it. */
  async run<T>(fn: (s: Step) => Promise<T>): Promise<T> {
    try {
      const out = await fn(this);
      this.begin()?.done();
      return out;
    } catch (err) {
      this.#v?.fail(err);
      throw err;
    }
  }

  /** The callback the registry client reports one blob's transfer to. */
  blob(digest: string, total: number): TransferCallback | undefined {
    if (!this.pw) return undefined;
    const now = this.pw.now;
    let last = 0;
    return (u) => {
      switch (u.status) {
        case 'exists':
        case 'mounted':
          this.status(`${u.status} ${digest}`, total)?.done(total);
          return;
        case 'done':
          this.status(digest, total)?.done(total);
          return;
        default: {
          const t = now();
          // start and resume always show (a resume moves the bar back); bytes are throttled.
          if (u.status === 'progress' && t - last < UPDATE_MS && u.done < u.total) return;
          last = t;
          this.status(digest, total)?.update(u.done, u.total);
        }
      }
    };
  }

  /** A status done at once: a manifest written, a blob already present. */
  done(id: string, size: number): void {
    this.status(id, size)?.done(size);
  }
}
