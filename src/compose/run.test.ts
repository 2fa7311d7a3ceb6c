import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProgressRecorder } from '../progress/index.js';
import { hasRegistry, prefixProgress } from './run.js';

const refs: [string, boolean][] = [
  ['app', false],
  ['proj-web:1', false],
  ['library/app', false],
  ['127.0.0.1:5000/app', true],
  ['reg.example/team/app:2', true],
  ['localhost/app', true],
];
for (const [ref, want] of refs)
  test(`hasRegistry("${ref}") = ${want}`, () => assert.equal(hasRegistry(ref), want));

test('prefixProgress names vertexes after the service and keeps services apart', () => {
  const rec = new ProgressRecorder();
  const web = prefixProgress(rec, 'web');
  const api = prefixProgress(rec, 'api');
  const batch = (name: string) => ({
    vertexes: [{ digest: 'sha256:1', name, inputs: ['sha256:0'], started: 1 }],
    statuses: [{ id: 'x', vertex: 'sha256:1', current: 1, timestamp: 1 }],
    logs: [{ vertex: 'sha256:1', stream: 1 as const, data: new Uint8Array([104]), timestamp: 1 }],
    warnings: [],
  });
  web.write(batch('[linux/arm64 2/5] RUN make'));
  api.write(batch('[internal] load build definition from Dockerfile'));
  api.write(batch('exporting to image'));
  web.close(); // does not close the shared sink
  const vs = rec.statuses.flatMap((b) => b.vertexes);
  assert.deepEqual(
    vs.map((v) => [v.digest, v.name, v.inputs]),
    [
      ['web/sha256:1', '[web linux/arm64 2/5] RUN make', ['web/sha256:0']],
      ['api/sha256:1', '[api internal] load build definition from Dockerfile', ['api/sha256:0']],
      ['api/sha256:1', '[api] exporting to image', ['api/sha256:0']],
    ],
  );
  assert.deepEqual(
    rec.statuses.flatMap((b) => b.logs.map((l) => l.vertex)),
    ['web/sha256:1', 'api/sha256:1', 'api/sha256:1'],
  );
  assert.deepEqual(
    rec.statuses.flatMap((b) => b.statuses.map((s) => s.vertex)),
    ['web/sha256:1', 'api/sha256:1', 'api/sha256:1'],
  );
  assert.equal(rec.closed, false);
});
