import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressRecorder, ProgressWriter } from '../progress/index.js';
import { Step, UPDATE_MS } from './progress.js';

function setup() {
  let t = 1000;
  const clock = { now: () => t, advance: (ms: number) => (t += ms) };
  const rec = new ProgressRecorder({ now: clock.now });
  const pw = new ProgressWriter(rec, { now: clock.now });
  return { clock, rec, pw };
}

test('a step that fails before it began shows nothing; after, it fails visibly', async () => {
  const { rec, pw } = setup();
  await assert.rejects(
    new Step(pw, 'pull:a', 'pulling a').run(async () => {
      throw new Error('not found (MANIFEST_UNKNOWN)');
    }),
    /MANIFEST_UNKNOWN/,
  );
  assert.equal(rec.entries.length, 0, 'no vertex announced');
  await assert.rejects(
    new Step(pw, 'pull:b', 'pulling b').run(async (s) => {
      s.begin();
      throw new Error('connection reset');
    }),
  );
  const v = rec.vertex('pull:b')!;
  assert.equal(v.name, 'pulling b');
  assert.equal(v.error, 'connection reset');
});

test('blob statuses: bytes throttled, resume and done always sent, exists/mounted done at once', async () => {
  const { clock, rec, pw } = setup();
  await new Step(pw, 'push:x', 'pushing x').run(async (s) => {
    const cb = s.blob('sha256:aa', 300)!;
    cb({ status: 'start', done: 0, total: 300 });
    cb({ status: 'progress', done: 100, total: 300 });
    clock.advance(UPDATE_MS - 1);
    cb({ status: 'progress', done: 150, total: 300 }); // too soon: dropped
    clock.advance(1);
    cb({ status: 'progress', done: 200, total: 300 });
    cb({ status: 'resume', done: 50, total: 300 }); // a resume moves the bar back at once
    cb({ status: 'done', done: 300, total: 300 });
    s.blob('sha256:bb', 7)!({ status: 'exists', done: 7, total: 7 });
    s.blob('sha256:cc', 9)!({ status: 'mounted', done: 9, total: 9 });
    s.done('manifest sha256:dd', 400);
  });
  const aa = rec.statuses.flatMap((b) => b.statuses).filter((x) => x.id === 'sha256:aa');
  assert.deepEqual(
    aa.map((x) => [x.current, x.completed !== undefined]),
    [
      [0, false],
      [200, false],
      [50, false],
      [300, true],
    ],
  );
  const done = rec.statuses.flatMap((b) => b.statuses).filter((x) => x.completed !== undefined);
  assert.deepEqual(
    done.map((x) => [x.id, x.current, x.total]),
    [
      ['sha256:aa', 300, 300],
      ['exists sha256:bb', 7, 7],
      ['mounted sha256:cc', 9, 9],
      ['manifest sha256:dd', 400, 400],
    ],
  );
  const v = rec.vertex('push:x')!;
  assert.ok(v.completed !== undefined && v.error === undefined);
});

test('without a writer nothing is reported and the work still runs', async () => {
  const s = new Step(undefined, 'pull:z', 'pulling z');
  assert.equal(s.blob('sha256:aa', 1), undefined);
  assert.equal(await s.run(async () => 42), 42);
});
