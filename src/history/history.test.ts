/**
 * The history library on real files: step placement from names, the critical path, the
 * recorder's tee and log caps, store refs (^N, prefixes), bounds and pruning, bundles, replay.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ProgressRecorder } from '../progress/index.js';
import {
  applyPlacement,
  type BuildRecord,
  criticalPath,
  HistoryStore,
  MAX_RECORDS,
  makeBundle,
  type PlatformInfo,
  platformSummaries,
  RECORD_VERSION,
  readBundle,
  renderReport,
  replayBatches,
  startRecord,
  stepPlace,
} from './index.js';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'history-unit-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('stepPlace: platform and node from the name', () => {
  const multi = ['linux/amd64', 'linux/arm/v7', 'linux/arm64/v8'];
  assert.deepEqual(stepPlace('[linux/arm/v7 2/4] RUN make', multi), { platform: 'linux/arm/v7' });
  assert.deepEqual(stepPlace('[linux/arm/v7 internal] load metadata for x', multi), {
    platform: 'linux/arm/v7',
  });
  assert.deepEqual(stepPlace('[linux/amd64 build 3/5] COPY . .', multi), { platform: 'linux/amd64' });
  // BuildKit's short arm64 names the request's linux/arm64/v8.
  assert.deepEqual(stepPlace('[linux/arm64 2/4] RUN make', multi), { platform: 'linux/arm64/v8' });
  assert.deepEqual(stepPlace('[internal] load build context', multi), {});
  assert.deepEqual(stepPlace('exporting to image', multi), {});
  assert.deepEqual(stepPlace('[node-b] [linux/amd64 2/4] RUN make', multi, ['node-b']), {
    node: 'node-b',
    platform: 'linux/amd64',
  });
  // A `[x]` prefix that is no node of the builder stays part of the name.
  assert.deepEqual(stepPlace('[node-c] [linux/amd64 2/4] RUN make', multi, ['node-b']), {});
  // One platform: numbered steps are its own, [internal] ones shared; `[2/2]` is no platform.
  assert.deepEqual(stepPlace('[2/2] RUN make', ['linux/arm64']), { platform: 'linux/arm64' });
  assert.deepEqual(stepPlace('[build 2/2] RUN make', ['linux/arm64']), { platform: 'linux/arm64' });
  assert.deepEqual(stepPlace('[2/2] RUN make', multi), {});
  assert.deepEqual(stepPlace('[internal] load metadata for busybox', ['linux/arm64']), {});
  // compose names steps after their service.
  assert.deepEqual(stepPlace('[web linux/arm/v7 2/4] RUN make', multi), { platform: 'linux/arm/v7' });
  assert.deepEqual(stepPlace('[web 2/4] RUN make', ['linux/arm64']), { platform: 'linux/arm64' });
  assert.deepEqual(stepPlace('[web internal] load build context', multi), {});
});

test('applyPlacement: a node that built one platform names its steps without it', () => {
  const steps: BuildRecord['steps'] = [
    { digest: 'a', name: '[amd] [2/2] RUN x', inputs: [], node: 'amd' },
    { digest: 'b', name: '[arm] [linux/arm64 2/2] RUN x', inputs: [], node: 'arm', platform: 'linux/arm64' },
    {
      digest: 'c',
      name: '[arm] [linux/arm/v7 2/2] RUN x',
      inputs: [],
      node: 'arm',
      platform: 'linux/arm/v7',
    },
    { digest: 'd', name: '[amd] [internal] load build context', inputs: [], node: 'amd' },
  ];
  const platforms = applyPlacement(
    steps,
    ['linux/amd64', 'linux/arm64', 'linux/arm/v7'].map((platform): PlatformInfo => ({ platform })),
    { 'linux/amd64': 'amd', 'linux/arm64': 'arm', 'linux/arm/v7': 'arm' },
  );
  assert.deepEqual(
    steps.map((s) => s.platform),
    ['linux/amd64', 'linux/arm64', 'linux/arm/v7', undefined],
  );
  assert.deepEqual(
    platforms.map((p) => p.node),
    ['amd', 'arm', 'arm'],
  );
});

function rec(steps: BuildRecord['steps'], extra: Partial<BuildRecord> = {}): BuildRecord {
  return {
    version: RECORD_VERSION,
    ref: 'a'.repeat(25),
    name: 'x',
    status: 'completed',
    createdAt: 1000,
    completedAt: 10_000,
    host: 'linux/amd64',
    request: { context: '/x', platforms: ['linux/amd64', 'linux/arm64'] },
    platforms: [
      { platform: 'linux/amd64', native: true },
      { platform: 'linux/arm64', native: false },
    ],
    steps,
    logs: [],
    statuses: [],
    warnings: [],
    ...extra,
  };
}

test('criticalPath follows what the last step waited on; summaries split per platform', () => {
  const r = rec([
    { digest: 'ctx', name: '[internal] load build context', inputs: [], started: 1000, completed: 1100 },
    {
      digest: 'a1',
      name: '[linux/amd64 1/2] FROM b',
      inputs: [],
      started: 1000,
      completed: 1500,
      platform: 'linux/amd64',
    },
    {
      digest: 'a2',
      name: '[linux/amd64 2/2] RUN x',
      inputs: ['a1', 'ctx'],
      started: 1500,
      completed: 3000,
      platform: 'linux/amd64',
    },
    {
      digest: 'b1',
      name: '[linux/arm64 1/2] FROM b',
      inputs: [],
      started: 1000,
      completed: 2000,
      cached: true,
      platform: 'linux/arm64',
    },
    {
      digest: 'b2',
      name: '[linux/arm64 2/2] RUN x',
      inputs: ['b1', 'ctx'],
      started: 2000,
      completed: 9000,
      platform: 'linux/arm64',
    },
    { digest: 'exp', name: 'exporting to image', inputs: ['a2', 'b2'], started: 9000, completed: 9500 },
  ]);
  assert.deepEqual(
    criticalPath(r).map((s) => s.digest),
    ['b1', 'b2', 'exp'],
  );
  // An exporter with no recorded inputs waited for what finished last before it started.
  const noInputs = { ...r, steps: r.steps.map((s) => (s.digest === 'exp' ? { ...s, inputs: [] } : s)) };
  assert.deepEqual(
    criticalPath(noInputs).map((s) => s.digest),
    ['b1', 'b2', 'exp'],
  );
  const [amd, arm] = platformSummaries(r);
  assert.deepEqual([amd!.steps, amd!.stepTime, amd!.wallTime, amd!.native], [2, 2000, 2000, true]);
  assert.deepEqual(
    [arm!.steps, arm!.cached, arm!.stepTime, arm!.wallTime, arm!.slowest?.name],
    [2, 1, 8000, 8000, '[linux/arm64 2/2] RUN x'],
  );
  const html = renderReport(r);
  assert.equal(html.match(/<section class="row" data-platform=/g)?.length, 2);
  assert.equal(html.match(/<rect class="step[^"]*critical/g)?.length, 3);
  assert.match(html, /data-emulated-ms="8000" data-native-ms="2000"/);
});

test('the report escapes names and logs', () => {
  const r = rec(
    [
      {
        digest: 'v',
        name: '[linux/amd64 1/1] RUN echo "<script>alert(1)</script>"',
        inputs: [],
        started: 1000,
        completed: 2000,
        platform: 'linux/amd64',
      },
    ],
    { logs: [{ vertex: 'v', stream: 1, timestamp: 1500, text: '</pre><img src=x onerror=alert(1)>' }] },
  );
  const html = renderReport(r);
  assert.ok(!html.includes('<script>alert'));
  assert.ok(!html.includes('<img'));
  assert.ok(html.includes('&lt;/pre&gt;&lt;img src=x'));
});

test('startRecord: a tee that forwards everything and records the last state, capped logs', async () => {
  const root = tmp();
  const inner = new ProgressRecorder();
  const r = await startRecord({
    stateRoot: root,
    request: { context: '/src/app', platforms: ['linux/amd64'] },
    platforms: [{ platform: 'linux/amd64', native: true }],
    progress: inner,
    stepLogLimit: 100,
    buildLogLimit: 150,
  });
  const store = new HistoryStore(root);
  assert.equal((await store.read(r.ref))?.status, 'running');
  const v = { digest: 'd1', name: '[1/1] RUN x', inputs: [] };
  r.sink.write({ vertexes: [{ ...v, started: 5 }], statuses: [], logs: [], warnings: [] });
  for (let i = 0; i < 20; i++)
    r.sink.write({
      vertexes: [],
      statuses: [],
      logs: [{ vertex: 'd1', stream: 1, data: Buffer.from(`line ${i}\n`), timestamp: 6 + i }],
      warnings: [],
    });
  r.sink.write({
    vertexes: [],
    statuses: [],
    logs: [{ vertex: 'd2', stream: 2, data: Buffer.from('x'.repeat(90)), timestamp: 40 }],
    warnings: [],
  });
  r.sink.write({ vertexes: [{ ...v, started: 5, completed: 50 }], statuses: [], logs: [], warnings: [] });
  await r.sink.close();
  assert.equal(inner.entries.length, 23, 'every batch reached the renderer');
  assert.ok(inner.closed);
  const { record, saved } = await r.finish({ outputs: { 'containerimage.digest': 'sha256:1' } });
  assert.ok(saved);
  assert.equal(record.name, 'app');
  assert.equal(record.status, 'completed');
  assert.deepEqual(record.steps, [{ ...v, started: 5, completed: 50, platform: 'linux/amd64' }]);
  const kept = (d: string) =>
    record.logs
      .filter((l) => l.vertex === d)
      .map((l) => l.text)
      .join('');
  // 150 bytes for the build: the biggest step lost its oldest lines first.
  assert.ok(kept('d1').length + kept('d2').length <= 150);
  assert.match(kept('d1'), /line 19\n$/);
  assert.doesNotMatch(kept('d1'), /line 0\n/);
  assert.equal(record.logsClipped, 20 * 7 + 10 + 90 - kept('d1').length - kept('d2').length);
  assert.deepEqual(await store.read(r.ref), record);
  assert.ok(!('pid' in record));
});

test('a failed or canceled build is recorded as such', async () => {
  const root = tmp();
  const mk = () =>
    startRecord({
      stateRoot: root,
      request: { context: '/src/app', target: 'test', platforms: ['linux/amd64'] },
      platforms: [{ platform: 'linux/amd64' }],
      progress: new ProgressRecorder(),
    });
  const a = await (await mk()).finish({
    error: new Error('process "x" did not complete successfully: exit code: 3\nmore'),
  });
  assert.equal(a.record.status, 'error');
  assert.equal(a.record.error, 'process "x" did not complete successfully: exit code: 3');
  assert.equal(a.record.name, 'app (test)');
  const b = await (await mk()).finish({ error: new Error('x'), canceled: true });
  assert.equal(b.record.status, 'canceled');
});

test('store: refs, ^N, prefixes, the bound and prune', async () => {
  const root = tmp();
  const store = new HistoryStore(root);
  const refs = ['aaaaa', 'aaabb', 'ccccc'].map((p) => p + '0'.repeat(20));
  for (const [i, ref] of refs.entries())
    await store.save(rec([], { ref, createdAt: 1000 * (i + 1), completedAt: 1000 * (i + 1) + 10 }));
  assert.deepEqual(
    (await store.list()).map((r) => r.ref),
    [...refs].reverse(),
  );
  assert.equal((await store.resolve(undefined)).ref, refs[2]);
  assert.equal((await store.resolve('^0')).ref, refs[2]);
  assert.equal((await store.resolve('^2')).ref, refs[0]);
  assert.equal((await store.resolve('ccc')).ref, refs[2]);
  await assert.rejects(store.resolve('aaa'), /ref "aaa" matches 2 build records/);
  await assert.rejects(store.resolve('^3'), /no build record found with offset 3 \(3 kept\)/);
  await assert.rejects(store.resolve('zzz'), /no build record found for ref "zzz"/);
  await assert.rejects(store.resolve('^-1'), /invalid offset "\^-1"/);
  assert.deepEqual(await store.prune({ olderThanMs: 5000, now: 7005 }), [refs[0]]);
  assert.deepEqual(await store.bound(1), [refs[1]]);
  assert.deepEqual(readdirSync(store.dir), [`${refs[2]}.json`]);
  // A record left running by a process that is gone reads as canceled.
  await store.save(
    rec([], { ref: 'd'.repeat(25), status: 'running', pid: 2 ** 22 + 12345, createdAt: 9000 }),
  );
  assert.equal((await store.read('d'.repeat(25)))?.status, 'canceled');
});

test('save keeps at most MAX_RECORDS finished records, the newest; running ones stay', async () => {
  const store = new HistoryStore(tmp());
  const ref = (i: number) => `r${String(i).padStart(24, '0')}`;
  // The oldest is a build still running (this process): kept whatever its age.
  await store.save(rec([], { ref: ref(0), status: 'running', pid: process.pid, createdAt: 1 }), {
    bound: false,
  });
  for (let i = 1; i <= MAX_RECORDS + 3; i++) await store.save(rec([], { ref: ref(i), createdAt: 1000 + i }));
  const left = (await store.list()).map((r) => r.ref);
  assert.equal(left.length, MAX_RECORDS + 1);
  assert.equal(left[0], ref(MAX_RECORDS + 3));
  assert.ok(left.includes(ref(0)));
  assert.ok(!left.includes(ref(3)) && left.includes(ref(4)));
});

test('bundles: made and read back; foreign files refused', () => {
  const b = makeBundle([rec([])], 5);
  assert.deepEqual(readBundle(JSON.stringify(b), 'f'), b);
  assert.throws(() => readBundle('nope', 'f.json'), /^PolyarchError: f\.json: not a history bundle: /);
  assert.throws(
    () => readBundle(JSON.stringify({ ...b, records: [{ ...b.records[0], version: 9 }] }), 'f.json'),
    /f\.json: record 0 is not a version 1 build record/,
  );
});

test('replay: start, logs, end in time order', () => {
  const r = rec(
    [
      {
        digest: 'v',
        name: '[linux/amd64 1/1] RUN x',
        inputs: [],
        started: 1000,
        completed: 3000,
        platform: 'linux/amd64',
      },
    ],
    { logs: [{ vertex: 'v', stream: 1, timestamp: 2000, text: 'hi\n' }] },
  );
  const b = replayBatches(r);
  assert.equal(b.length, 3);
  assert.equal(b[0]!.vertexes[0]!.completed, undefined);
  assert.equal(Buffer.from(b[1]!.logs[0]!.data).toString(), 'hi\n');
  assert.equal(b[2]!.vertexes[0]!.completed, 3000);
});
