import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressRecorder } from '../progress/index.js';
import { DEFAULT_MAX_PARALLELISM, Solver, type SolverVertex } from './solver.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a vertex asked for twice (same digest) runs once', async () => {
  const s = new Solver();
  let runs = 0;
  const make = () =>
    s.vertex<number>({
      digest: 'shared',
      name: 'shared',
      inputs: [],
      run: async () => {
        runs++;
        return { value: 42, cached: false };
      },
    });
  const a = make();
  const b = make();
  assert.equal(a, b);
  const top = (d: string) =>
    s.vertex<number>({
      digest: d,
      name: d,
      inputs: [a],
      run: async ([x]) => ({ value: (x as number) + 1, cached: false }),
    });
  assert.deepEqual(await Promise.all([s.solve(top('t1')), s.solve(top('t2'))]), [43, 43]);
  assert.equal(runs, 1);
});

test('slots bound heavy work to maxParallelism; independent vertices run in parallel', async () => {
  const s = new Solver({ maxParallelism: 2 });
  let running = 0;
  let peak = 0;
  const leaves: SolverVertex<number>[] = [];
  for (let i = 0; i < 5; i++)
    leaves.push(
      s.vertex<number>({
        digest: `leaf${i}`,
        name: `leaf${i}`,
        inputs: [],
        run: (_i, ctx) =>
          ctx.slot(async () => {
            running++;
            peak = Math.max(peak, running);
            await sleep(20);
            running--;
            return { value: i, cached: false };
          }),
      }),
    );
  const root = s.vertex<number>({
    digest: 'root',
    name: 'root',
    inputs: leaves,
    run: async (inputs) => ({ value: (inputs as number[]).reduce((a, b) => a + b, 0), cached: false }),
  });
  assert.equal(await s.solve(root), 10);
  assert.equal(peak, 2);
});

test('by default every platform of a wide build runs its heavy step at once, whatever the CPU count', {
  timeout: 10_000,
}, async () => {
  // Emulated steps are bound by QEMU, not the cores: a cap of the CPU count (2 here) made the
  // third platform's RUN wait. Each step waits until all are inside their slots.
  const s = new Solver();
  assert.ok(DEFAULT_MAX_PARALLELISM >= 5, 'room for the 5 platforms of a busybox-like build');
  let inside = 0;
  let release!: () => void;
  const all = new Promise<void>((r) => {
    release = r;
  });
  const leaves: SolverVertex<number>[] = [];
  for (let i = 0; i < 5; i++)
    leaves.push(
      s.vertex<number>({
        digest: `p${i}`,
        name: `[p${i}] RUN`,
        inputs: [],
        run: (_i, ctx) =>
          ctx.slot(async () => {
            if (++inside === 5) release();
            await all;
            return { value: 1, cached: false };
          }),
      }),
    );
  const root = s.vertex<number>({
    digest: 'root',
    name: 'root',
    inputs: leaves,
    run: async (inputs) => ({ value: (inputs as number[]).length, cached: false }),
  });
  // With fewer than 5 slots this never resolves: the test fails on its timeout.
  assert.equal(await s.solve(root), 5);
});

test('the first failure aborts running siblings; progress shows ERROR and CANCELED, cached shows CACHED', async () => {
  const rec = new ProgressRecorder();
  const s = new Solver({ progress: rec });
  let sawAbort = false;
  const slow = s.vertex<number>({
    digest: 'slow',
    name: 'slow',
    inputs: [],
    run: (_i, ctx) =>
      new Promise((_res, rej) => {
        ctx.signal.addEventListener('abort', () => {
          sawAbort = true;
          rej(new Error('stopped'));
        });
      }),
  });
  const cached = s.vertex<number>({
    digest: 'c',
    name: 'c',
    inputs: [],
    run: async () => ({ value: 1, cached: true }),
  });
  const bad = s.vertex<number>({
    digest: 'bad',
    name: 'bad',
    inputs: [cached],
    run: async () => {
      await sleep(10);
      throw new Error('boom');
    },
  });
  const top = s.vertex<number>({
    digest: 'top',
    name: 'top',
    inputs: [slow, bad],
    run: async () => ({ value: 0, cached: false }),
  });
  s.announce([top]);
  await assert.rejects(s.solve(top), /boom/);
  await s.idle();
  assert.ok(sawAbort);
  const last = new Map(rec.vertexes().map((v) => [v.digest, v]));
  assert.equal(last.get('c')?.cached, true);
  assert.match(last.get('bad')?.error ?? '', /boom/);
  assert.match(last.get('slow')?.error ?? '', /context canceled/);
  assert.equal(last.get('top')?.started, undefined);
});

test('hidden vertices have no progress line and are skipped in inputs', async () => {
  const rec = new ProgressRecorder();
  const s = new Solver({ progress: rec });
  const hidden = s.vertex<number>({
    digest: 'h',
    name: 'h',
    hidden: true,
    inputs: [],
    run: async () => ({ value: 1, cached: true }),
  });
  const v = s.vertex<number>({
    digest: 'v',
    name: 'v',
    inputs: [hidden],
    run: async () => ({ value: 2, cached: false }),
  });
  assert.equal(await s.solve(v), 2);
  assert.deepEqual(
    rec.vertexes().map((x) => x.digest),
    ['v'],
  );
});

test('maxParallelism must be a positive integer', () => {
  assert.throws(() => new Solver({ maxParallelism: 0 }), /invalid max parallelism 0/);
});

test('a chain of 50,000 vertices solves and announces without recursing as deep', async () => {
  const rec = new ProgressRecorder();
  const s = new Solver({ progress: rec });
  let v = s.vertex<number>({
    digest: 'v0',
    name: 'v0',
    inputs: [],
    run: async () => ({ value: 0, cached: false }),
  });
  for (let i = 1; i < 50_000; i++)
    v = s.vertex<number>({
      digest: `v${i}`,
      name: `v${i}`,
      inputs: [v],
      hidden: i % 2 === 0,
      run: async ([x]) => ({ value: (x as number) + 1, cached: false }),
    });
  s.announce([v]);
  assert.equal(await s.solve(v), 49_999);
  assert.equal(rec.vertexes().length, 25_001, 'every visible vertex announced');
  // A vertex on the same chain asked for afterwards is the one already solved.
  assert.equal(
    await s.solve(
      s.vertex<number>({
        digest: 'v7',
        name: '',
        inputs: [],
        run: async () => ({ value: -1, cached: false }),
      }),
    ),
    7,
  );
});

test('a step that waited for a slot is timed from when it got one, not from when it asked', async () => {
  const rec = new ProgressRecorder();
  const s = new Solver({ progress: rec, maxParallelism: 1 });
  const step = (d: string) =>
    s.vertex<number>({
      digest: d,
      name: d,
      inputs: [],
      run: (_i, ctx) =>
        ctx.slot(async () => {
          await sleep(300);
          return { value: 1, cached: false };
        }),
    });
  const root = s.vertex<number>({
    digest: 'both',
    name: 'both',
    inputs: [step('a'), step('b')],
    run: async () => ({ value: 2, cached: false }),
  });
  assert.equal(await s.solve(root), 2);
  const took = Object.fromEntries(
    rec.vertexes().map((v) => [v.digest, (v.completed ?? 0) - (v.started ?? 0)]),
  );
  // One ran at once: each step's own time is ~300 ms; the one that waited is not ~600 ms.
  for (const d of ['a', 'b']) {
    assert.ok(took[d]! >= 290, `${d} took ${took[d]} ms`);
    assert.ok(took[d]! < 550, `${d} is timed without its wait (${took[d]} ms)`);
  }
});
