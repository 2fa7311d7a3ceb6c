import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mapLimit, Semaphore } from './concurrency.js';

const tick = () => new Promise((r) => setTimeout(r, 2));

test('mapLimit keeps order and never runs more than the limit', async () => {
  let running = 0;
  let peak = 0;
  const out = await mapLimit([5, 4, 3, 2, 1, 0], 2, async (x) => {
    running++;
    peak = Math.max(peak, running);
    await tick();
    running--;
    return x * 10;
  });
  assert.deepEqual(out, [50, 40, 30, 20, 10, 0]);
  assert.equal(peak, 2);
  await assert.rejects(
    mapLimit([1, 2, 3], 2, async (x) => {
      if (x === 2) throw new Error('boom');
      return x;
    }),
    /boom/,
  );
});

test('Semaphore bounds work shared by independent callers', async () => {
  const sem = new Semaphore(3);
  let running = 0;
  let peak = 0;
  const job = () =>
    sem.run(async () => {
      running++;
      peak = Math.max(peak, running);
      await tick();
      running--;
    });
  await Promise.all([Promise.all([job(), job(), job()]), Promise.all([job(), job(), job(), job()])]);
  assert.equal(peak, 3);
  await assert.rejects(
    sem.run(async () => Promise.reject(new Error('x'))),
    /x/,
  );
  await sem.run(async () => {}); // a failed job released its slot
});
