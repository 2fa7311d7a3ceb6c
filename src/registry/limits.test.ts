import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { discard, guardedChunks, readLimited, type Timeouts, timeouts } from './limits.js';

const t: Timeouts = timeouts({ POLYARCH_REGISTRY_TIMEOUT_SCALE: '0.01' }); // stall 300 ms, window 600 ms
const where = { what: 'GET blob r@sha256:ab', host: '127.0.0.1:9' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stream that pushes `n`-byte pieces every `ms`, `count` times (Infinity: for ever), then ends. */
function paced(n: number, ms: number, count: number): Readable {
  let sent = 0;
  let timer: NodeJS.Timeout | undefined;
  return new Readable({
    read() {
      if (timer) return;
      timer = setTimeout(() => {
        timer = undefined;
        if (sent++ >= count) this.push(null);
        else this.push(Buffer.alloc(n, 1));
      }, ms);
    },
    destroy(err, cb) {
      clearTimeout(timer);
      cb(err);
    },
  });
}

async function drain(it: AsyncIterable<Buffer>, holdMs = 0): Promise<number> {
  let n = 0;
  for await (const c of it) {
    n += c.length;
    if (holdMs) await sleep(holdMs);
  }
  return n;
}

test('a body above the minimum rate passes however long it takes', async () => {
  // 2 KiB every 50 ms = 40 KiB/s for 1.5 s, over two windows.
  assert.equal(await drain(guardedChunks(paced(2048, 50, 30), t, where)), 30 * 2048);
});

test('a trickle fails after one window, naming the request, the host and the rate', async () => {
  const start = Date.now();
  await assert.rejects(
    drain(guardedChunks(paced(1, 20, Number.POSITIVE_INFINITY), t, where)),
    (e: Error & { code?: string; temporary?: boolean }) => {
      assert.equal(e.code, 'TIMEOUT');
      assert.equal(e.temporary, false);
      assert.match(
        e.message,
        /^GET blob r@sha256:ab: 127\.0\.0\.1:9 is too slow: \d+ bytes in (6\d\dms|0\.\ds) \(the minimum is 1 KiB\/s over 600ms\)$/,
      );
      return true;
    },
  );
  const ms = Date.now() - start;
  assert.ok(ms >= 600 && ms < 3000, `${ms} ms`);
});

test('a stall fails after the stall timeout, as temporary (worth a resume)', async () => {
  const stuck = new Readable({ read() {} });
  stuck.push(Buffer.alloc(10));
  await assert.rejects(drain(guardedChunks(stuck, t, where)), (e: Error & { temporary?: boolean }) => {
    assert.match(e.message, /127\.0\.0\.1:9 sent nothing for 300ms \(stalled after 10 bytes\)$/);
    assert.equal(e.temporary, true);
    return true;
  });
  assert.ok(stuck.destroyed, 'the body is destroyed');
});

test('time the consumer holds a chunk is not counted against the registry', async () => {
  // 64 bytes every 5 ms is fast; the consumer sleeps 100 ms per chunk, so wall-clock it is
  // 640 B/s, under the minimum, for well over a window.
  assert.equal(await drain(guardedChunks(paced(64, 5, 12), t, where), 100), 12 * 64);
});

test('readLimited counts bytes received: more is an error, or cut with aside', async () => {
  await assert.rejects(
    readLimited(paced(1000, 1, Number.POSITIVE_INFINITY), t, where, 4000, 'manifest'),
    /GET blob r@sha256:ab: the manifest from 127\.0\.0\.1:9 is larger than 4000 bytes \(5000 bytes received, still sending\)$/,
  );
  const cut = await readLimited(paced(1000, 1, Number.POSITIVE_INFINITY), t, where, 2500, 'error body', {
    aside: true,
  });
  assert.equal(cut.length, 2500);
  assert.equal((await readLimited(paced(10, 1, 3), t, where, 30, 'config')).length, 30);
});

test('an aside body is waited for at most asideMs; what came is kept', async () => {
  const start = Date.now();
  const got = await readLimited(paced(1, 30, Number.POSITIVE_INFINITY), t, where, 65536, 'error body', {
    aside: true,
  });
  const ms = Date.now() - start;
  assert.ok(ms >= t.asideMs - 5 && ms < t.asideMs + 1000, `${ms} ms`);
  assert.ok(got.length > 0 && got.length < 10, `${got.length} bytes`);
  await discard(paced(1, 30, Number.POSITIVE_INFINITY), t, where); // returns, never throws
});
