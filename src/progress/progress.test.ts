import assert from 'node:assert/strict';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import {
  CANCELED_ERROR,
  cloneStatus,
  isCanceledError,
  ProgressMux,
  ProgressRecorder,
  type ProgressSink,
  ProgressWriter,
  type SolveStatus,
  solveStatus,
  teeSink,
} from './index.js';

const T0 = Date.UTC(2026, 0, 1);

function setup() {
  let t = T0;
  const clock = { now: () => t, advance: (ms: number) => void (t += ms) };
  const rec = new ProgressRecorder({ now: clock.now });
  const pw = new ProgressWriter(rec, { now: clock.now });
  return { clock, rec, pw };
}

describe('ProgressWriter', () => {
  test('a vertex is announced, started, logs, and completes with whole records', () => {
    const { clock, rec, pw } = setup();
    const v = pw.vertex({ digest: 'd1', name: '[linux/arm64 2/5] RUN make', inputs: ['d0'] });
    assert.deepEqual(rec.statuses, [
      solveStatus({ vertexes: [{ digest: 'd1', name: '[linux/arm64 2/5] RUN make', inputs: ['d0'] }] }),
    ]);
    clock.advance(10);
    v.start();
    clock.advance(5);
    v.log('hello\n');
    v.log(Buffer.from('oops\n'), 2);
    v.log('');
    clock.advance(100);
    v.done();
    v.fail(new Error('too late')); // finished already: ignored
    assert.deepEqual(rec.vertex('d1'), {
      digest: 'd1',
      name: '[linux/arm64 2/5] RUN make',
      inputs: ['d0'],
      started: T0 + 10,
      completed: T0 + 115,
    });
    assert.equal(rec.entries.length, 5, 'announce, start, two logs, done');
    assert.equal(rec.logText('d1'), 'hello\noops\n');
    assert.equal(rec.logText('d1', 2), 'oops\n');
    assert.deepEqual(
      rec.statuses[3]!.logs.map((l) => [l.stream, l.timestamp]),
      [[2, T0 + 15]],
    );
  });

  test('the same digest gives the same handle and is announced once', () => {
    const { rec, pw } = setup();
    const a = pw.vertex({ digest: 'x', name: 'shared' });
    const b = pw.vertex({ digest: 'x', name: 'shared' });
    assert.equal(a, b);
    assert.equal(rec.entries.length, 1);
  });

  test('cached without a start: started and completed at once', () => {
    const { rec, pw } = setup();
    pw.vertex({ digest: 'c', name: 'FROM busybox' }).cached();
    assert.deepEqual(rec.vertex('c'), {
      digest: 'c',
      name: 'FROM busybox',
      inputs: [],
      started: T0,
      completed: T0,
      cached: true,
    });
  });

  test('run(): completes on success, records the first line of the error and rethrows on failure', async () => {
    const { clock, rec, pw } = setup();
    assert.equal(
      await pw.run({ digest: 'ok', name: 'ok' }, () => {
        clock.advance(20);
        return 42;
      }),
      42,
    );
    assert.equal(rec.vertex('ok')!.completed, T0 + 20);
    await assert.rejects(
      pw.run({ digest: 'bad', name: 'bad' }, async () => {
        throw new Error('exit code: 2\nstack-ish detail');
      }),
      /exit code: 2/,
    );
    assert.equal(rec.vertex('bad')!.error, 'exit code: 2');
    await pw.run({ digest: 'hit', name: 'hit' }, (v) => v.cached());
    assert.equal(rec.vertex('hit')!.cached, true);
    assert.equal(rec.vertex('hit')!.error, undefined);
  });

  test('cancel() marks the vertex canceled; start() after finishing begins a new attempt', () => {
    const { clock, rec, pw } = setup();
    const v = pw.vertex({ digest: 'v', name: 'v' }).start();
    v.cancel();
    assert.equal(rec.vertex('v')!.error, CANCELED_ERROR);
    assert.ok(isCanceledError(rec.vertex('v')!.error));
    assert.ok(!isCanceledError('exit code: 1'));
    clock.advance(50);
    v.start();
    assert.deepEqual(rec.vertex('v'), { digest: 'v', name: 'v', inputs: [], started: T0 + 50 });
  });

  test('statuses: start on first update, done() fills current from total, open ones end with the vertex', () => {
    const { clock, rec, pw } = setup();
    const v = pw.vertex({ digest: 'p', name: 'pull' }).start();
    const layer = v.status('sha256:aa', { total: 1000 });
    assert.equal(layer, v.status('sha256:aa'));
    const unused = v.status('sha256:bb', { total: 5 });
    clock.advance(10);
    layer.update(100);
    layer.update(300, 2000); // total learnt late
    const ext = v.status('extracting sha256:cc');
    ext.update(0);
    clock.advance(10);
    layer.done();
    layer.update(5); // after done: ignored
    clock.advance(10);
    v.fail('network down');
    const statuses = rec.statuses.flatMap((s) => s.statuses);
    assert.deepEqual(statuses.at(-2), {
      id: 'sha256:aa',
      vertex: 'p',
      current: 2000,
      total: 2000,
      timestamp: T0 + 20,
      started: T0 + 10,
      completed: T0 + 20,
    });
    assert.deepEqual(statuses.at(-1), {
      id: 'extracting sha256:cc',
      vertex: 'p',
      current: 0,
      timestamp: T0 + 30,
      started: T0 + 10,
      completed: T0 + 30,
    });
    assert.ok(!statuses.some((s) => s.id === 'sha256:bb'), 'never-started statuses are not sent');
    assert.equal(unused.state.completed, undefined);
    assert.equal(rec.vertex('p')!.error, 'network down');
  });

  test('logStream pipes a process-like stream into logs', async () => {
    const { rec, pw } = setup();
    const v = pw.vertex({ digest: 's', name: 's' }).start();
    await pipeline(Readable.from([Buffer.from('a\nb'), Buffer.from('c\n')]), v.logStream(2));
    assert.equal(rec.logText('s', 2), 'a\nbc\n');
  });

  test('warn() fills level and detail', () => {
    const { rec, pw } = setup();
    pw.vertex({ digest: 'w', name: 'w' }).warn({
      short: 'FromAsCasing: mismatch (line 1)',
      url: 'https://x',
    });
    assert.deepEqual(rec.warnings(), [
      { vertex: 'w', level: 1, detail: [], short: 'FromAsCasing: mismatch (line 1)', url: 'https://x' },
    ]);
  });

  test('a throwing sink never breaks the producer; nothing is sent after close', async () => {
    let writes = 0;
    let closes = 0;
    const bad: ProgressSink = {
      write() {
        writes++;
        throw new Error('EPIPE');
      },
      close() {
        closes++;
        throw new Error('EPIPE');
      },
    };
    const pw = new ProgressWriter(bad);
    const v = pw.vertex({ digest: 'a', name: 'a' });
    v.start();
    v.log('x');
    await pw.close();
    await pw.close();
    v.done();
    assert.equal(writes, 3);
    assert.equal(closes, 1);
  });
});

describe('ProgressMux', () => {
  test('several producers share one sink; closes reach it once, from the owner', async () => {
    const rec = new ProgressRecorder();
    const mux = new ProgressMux(rec);
    const a = new ProgressWriter(mux.open());
    const b = new ProgressWriter(mux.open());
    assert.equal(mux.active, 2);
    a.vertex({ digest: 'a', name: '[linux/amd64] x' });
    b.vertex({ digest: 'b', name: '[linux/arm64] x' });
    await a.close();
    assert.equal(mux.active, 1);
    assert.equal(rec.closed, false, 'one producer finishing does not close the display');
    a.write({ vertexes: [{ digest: 'late', name: 'late', inputs: [] }] });
    b.vertex({ digest: 'b2', name: 'more' });
    await Promise.all([mux.close(), mux.close()]);
    assert.equal(rec.closed, true);
    b.vertex({ digest: 'b3', name: 'after close' });
    assert.deepEqual(
      rec.vertexes().map((v) => v.digest),
      ['a', 'b', 'b2'],
    );
  });

  test('teeSink forwards batches and close to every sink', async () => {
    const r1 = new ProgressRecorder();
    const r2 = new ProgressRecorder();
    const tee = teeSink(r1, r2);
    tee.write(solveStatus({ vertexes: [{ digest: 'x', name: 'x', inputs: [] }] }));
    await tee.close();
    assert.equal(r1.entries.length, 1);
    assert.equal(r2.entries.length, 1);
    assert.ok(r1.closed && r2.closed);
  });
});

describe('ProgressRecorder and cloneStatus', () => {
  test('records copies: later changes by the producer do not alter them', () => {
    const rec = new ProgressRecorder();
    const data = Buffer.from('abc');
    const ss: SolveStatus = solveStatus({
      vertexes: [{ digest: 'v', name: 'v', inputs: ['i'] }],
      logs: [{ vertex: 'v', stream: 1, data, timestamp: 1 }],
      warnings: [
        {
          vertex: 'v',
          level: 1,
          short: 's',
          detail: ['d'],
          range: [{ start: { line: 1, character: 0 }, end: { line: 1, character: 3 } }],
        },
      ],
    });
    rec.write(ss);
    ss.vertexes[0]!.inputs.push('j');
    data[0] = 0x7a;
    ss.warnings[0]!.range![0]!.start.line = 9;
    assert.deepEqual(rec.vertexes()[0]!.inputs, ['i']);
    assert.equal(rec.logText('v'), 'abc');
    assert.equal(rec.warnings()[0]!.range![0]!.start.line, 1);
    assert.deepEqual(cloneStatus(ss), ss);
  });

  test('replay feeds the same batches, then closes unless told not to', async () => {
    const rec = new ProgressRecorder();
    rec.write(solveStatus({ vertexes: [{ digest: 'v', name: 'v', inputs: [] }] }));
    const copy = new ProgressRecorder();
    await rec.replay(copy, { close: false });
    assert.equal(copy.closed, false);
    await rec.replay(copy);
    assert.equal(copy.closed, true);
    assert.deepEqual(copy.statuses, [...rec.statuses, ...rec.statuses]);
  });
});
