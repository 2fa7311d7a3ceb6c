/**
 * Bounds on what a registry can make us wait for or hold: deadlines for response headers, a
 * stall timeout and a minimum average rate for bodies, and byte limits on every body read
 * into memory — counted on the bytes actually received, whatever Content-Length says (a
 * chunked body has none). A slow but steady transfer of any size passes; one that stops, or
 * trickles below the minimum rate for a whole window, fails with an error naming the
 * registry, the object and what was slow.
 *
 *   const t = timeouts(env);                       // defaults, scaled by the environment
 *   for await (const c of guardedChunks(res.body, t, where)) …
 *   const bytes = await readLimited(res.body, t, where, MAX_MANIFEST_BYTES, 'manifest');
 */
import type { Readable } from 'node:stream';
import { RegistryError } from './errors.js';

export interface Timeouts {
  /** TCP + TLS handshake. */
  connectMs: number;
  /** From the request sent (its body included) to the response headers. */
  headersMs: number;
  /**
   * Headers of a request that makes the registry verify a whole uploaded blob (the final
   * PUT of an upload): it may read gigabytes back from its storage before it answers.
   */
  commitHeadersMs: number;
  /** No body byte at all for this long: the transfer stalled. */
  stallMs: number;
  /** A body must average at least `minRate` bytes/s over every window of this length. */
  rateWindowMs: number;
  /** Bytes per second. */
  minRate: number;
  /**
   * How long a body we read only for its message (an error, a 401) or drop (a PUT's answer)
   * is waited for; what came by then is kept. A 503 with a trickled body is retried: without
   * this each try would wait a whole rate window.
   */
  asideMs: number;
}

/**
 * The defaults. Headers within 30 s: a registry answers in milliseconds, and a hung one
 * should not hold a pull for minutes (undici's own default is 300 s). Bodies: 30 s without
 * a byte is a stall, and below 1 KiB/s averaged over 60 s is a trickle (curl's
 * --speed-limit/--speed-time model) — a real download over the slowest link still moves
 * far more; there is no total deadline, so a large blob may take as long as it needs.
 */
export const DEFAULT_TIMEOUTS: Readonly<Timeouts> = {
  connectMs: 5_000,
  headersMs: 30_000,
  commitHeadersMs: 300_000,
  stallMs: 30_000,
  rateWindowMs: 60_000,
  minRate: 1024,
  asideMs: 10_000,
};

/** Largest body read into memory for a token response. */
export const MAX_TOKEN_BYTES = 1024 * 1024;
/** Largest error body read (the rest is dropped, the connection closed). */
export const MAX_ERROR_BYTES = 64 * 1024;

/**
 * The defaults, with every time multiplied by `POLYARCH_REGISTRY_TIMEOUT_SCALE` (a positive
 * number; tests use 0.05 to see a stall in 1.5 s) and the rate set by
 * `POLYARCH_REGISTRY_MIN_RATE` (bytes/s; 0 disables the rate check).
 */
export function timeouts(env: NodeJS.ProcessEnv = process.env): Timeouts {
  const scale = positive(env.POLYARCH_REGISTRY_TIMEOUT_SCALE) ?? 1;
  const rate = env.POLYARCH_REGISTRY_MIN_RATE;
  const minRate = rate !== undefined && /^\d+$/.test(rate.trim()) ? Number(rate) : DEFAULT_TIMEOUTS.minRate;
  const d = DEFAULT_TIMEOUTS;
  return {
    connectMs: Math.round(d.connectMs * scale),
    headersMs: Math.round(d.headersMs * scale),
    commitHeadersMs: Math.round(d.commitHeadersMs * scale),
    stallMs: Math.round(d.stallMs * scale),
    rateWindowMs: Math.round(d.rateWindowMs * scale),
    minRate,
    asideMs: Math.round(d.asideMs * scale),
  };
}

function positive(v: string | undefined): number | undefined {
  if (v === undefined || v.trim() === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** `30s`, `1.5s`, `250ms`. */
export function seconds(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)}s`;
}

function size(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

/** Who sends a body and what it is: errors read `<what>: <host> …`. */
export interface Where {
  /** Names the request (`GET manifest 127.0.0.1:5000/app:1`). */
  what: string;
  /** The host that sends the body (a redirect target, a token server). */
  host: string;
}

/** The error for headers that did not come in time. */
export function headersTimeoutError(where: Where, ms: number, cause?: unknown): RegistryError {
  return new RegistryError(
    'TIMEOUT',
    `${where.what}: no response headers from ${where.host} within ${seconds(ms)}`,
    { cause },
  );
}

/**
 * The body's chunks, failing when the sender stalls (`t.stallMs` without a byte: a
 * `temporary` error, worth a resume) or averages below `t.minRate` over a window
 * (`t.rateWindowMs`: final). Only time spent waiting for the network counts, never time the
 * consumer holds a chunk, so a slow disk is not blamed on the registry. Ending the
 * iteration early destroys the body.
 */
export async function* guardedChunks(
  body: Readable,
  t: Timeouts,
  where: Where,
): AsyncGenerator<Buffer, void, undefined> {
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let bytes = 0;
  let waited = 0;
  // (waited, bytes) samples, at most one per 1/20 window: the base of the rate check.
  const marks: Array<[number, number]> = [[0, 0]];
  const step = t.rateWindowMs / 20;
  let finished = false;
  let stallTimer: NodeJS.Timeout | undefined;
  let stalled = false;
  try {
    for (;;) {
      const t0 = performance.now();
      // undici's bodyTimeout covers a socket that goes quiet while we read; this timer
      // makes the stall independent of it (and of keep-alive sockets' own timers).
      stallTimer = setTimeout(() => {
        stalled = true;
        body.destroy();
      }, t.stallMs);
      let r: IteratorResult<Buffer>;
      try {
        r = await it.next();
      } catch (err) {
        if (stalled || (err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT')
          throw new RegistryError(
            'TIMEOUT',
            `${where.what}: ${where.host} sent nothing for ${seconds(t.stallMs)} (stalled after ${bytes} bytes)`,
            { temporary: true, cause: err },
          );
        throw err;
      } finally {
        clearTimeout(stallTimer);
      }
      if (r.done) {
        if (stalled)
          throw new RegistryError(
            'TIMEOUT',
            `${where.what}: ${where.host} sent nothing for ${seconds(t.stallMs)} (stalled after ${bytes} bytes)`,
            { temporary: true },
          );
        finished = true;
        return;
      }
      waited += performance.now() - t0;
      bytes += r.value.length;
      if (t.minRate > 0 && waited >= t.rateWindowMs) {
        const from = waited - t.rateWindowMs;
        while (marks.length > 1 && marks[1]![0] <= from) marks.shift();
        const [w0, b0] = marks[0]!;
        const need = (t.minRate * (waited - w0)) / 1000;
        if (bytes - b0 < need)
          throw new RegistryError(
            'TIMEOUT',
            `${where.what}: ${where.host} is too slow: ${bytes - b0} bytes in ${seconds(Math.round(waited - w0))} (the minimum is ${size(t.minRate)}/s over ${seconds(t.rateWindowMs)})`,
          );
      }
      if (waited - marks[marks.length - 1]![0] >= step) marks.push([waited, bytes]);
      yield r.value;
    }
  } finally {
    clearTimeout(stallTimer);
    if (!finished) body.destroy();
  }
}

/**
 * Reads a whole body into memory, at most `max` bytes received. More is an error naming
 * `label` (`manifest`, `config`). With `aside` (error bodies, bodies to drop) it is the
 * first `max` bytes instead (the registry's message is at the start), and whatever came
 * within `t.asideMs`.
 */
export async function readLimited(
  body: Readable,
  t: Timeouts,
  where: Where,
  max: number,
  label: string,
  opts: { aside?: boolean } = {},
): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  let late = false;
  const timer = opts.aside
    ? setTimeout(() => {
        late = true;
        body.destroy();
      }, t.asideMs)
    : undefined;
  try {
    for await (const c of guardedChunks(body, t, where)) {
      if (n + c.length > max) {
        if (opts.aside) {
          parts.push(c.subarray(0, max - n));
          n = max;
          break;
        }
        throw new RegistryError(
          'TOO_LARGE',
          `${where.what}: the ${label} from ${where.host} is larger than ${size(max)} (${n + c.length} bytes received, still sending)`,
        );
      }
      parts.push(c);
      n += c.length;
    }
  } catch (err) {
    if (!late) throw err;
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(parts, n);
}

/**
 * Reads and drops a body we do not need (a PUT's answer, a redirect), at most 64 KiB and
 * `t.asideMs` so the connection can be reused; a longer or slower one is cut. Never fails.
 */
export async function discard(body: Readable, t: Timeouts, where: Where): Promise<void> {
  if (body.readableEnded || body.destroyed) return;
  await readLimited(body, t, where, MAX_ERROR_BYTES, 'body', { aside: true }).catch(() => {});
}
