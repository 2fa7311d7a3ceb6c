import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { getCredentials, removeCredentials, storeCredentials } from './credentials.js';
import { parseErrorBody, parseRetryAfter, responseError } from './errors.js';
import { parseChallenge, Transport } from './transport.js';

const challenges: Array<[string, string | undefined, unknown]> = [
  [
    'bearer with realm, service, scope',
    'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
    {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.example/token',
        service: 'registry.example',
        scope: 'repository:a/b:pull,push',
      },
    },
  ],
  ['basic', 'Basic realm="basic-realm"', { scheme: 'basic', params: { realm: 'basic-realm' } }],
  [
    'scheme case-insensitive, spaces',
    'bearer  realm = "r" , service="s"',
    { scheme: 'bearer', params: { realm: 'r', service: 's' } },
  ],
  [
    'unquoted value',
    'Bearer realm=http://t/token',
    { scheme: 'bearer', params: { realm: 'http://t/token' } },
  ],
  ['escaped quote', 'Bearer realm="a\\"b"', { scheme: 'bearer', params: { realm: 'a"b' } }],
  ['unknown scheme', 'Negotiate abc', undefined],
  ['missing', undefined, undefined],
];
for (const [name, h, want] of challenges) {
  test(`challenge: ${name}`, () => assert.deepEqual(parseChallenge(h), want));
}

test('registry error bodies keep their codes; temporary drives retry', () => {
  const body = '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}';
  assert.deepEqual(parseErrorBody(body), [
    { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: 'x' } },
  ]);
  const e = responseError('GET manifest r:x', 404, body);
  assert.equal(e.code, 'MANIFEST_UNKNOWN');
  assert.equal(e.message, 'GET manifest r:x: MANIFEST_UNKNOWN: manifest unknown');
  assert.equal(e.temporary, false);
  assert.equal(responseError('w', 503, '<html>').message, 'w: HTTP 503 Service Unavailable');
  assert.equal(responseError('w', 503, '<html>').temporary, true);
  assert.equal(responseError('w', 400, '{"errors":[{"code":"TOOMANYREQUESTS"}]}').temporary, true);
  assert.equal(responseError('w', 401, '').code, 'UNAUTHORIZED');
  assert.equal(responseError('w', 429, '', '3').retryAfterMs, 3000);
  assert.deepEqual(parseErrorBody('not json'), []);
});

test('Retry-After: seconds and HTTP dates', () => {
  assert.equal(parseRetryAfter('2'), 2000);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000);
  assert.equal(parseRetryAfter('soon'), undefined);
  assert.equal(parseRetryAfter(undefined), undefined);
});

/** A real HTTP server answering from a script of statuses; counts requests. */
async function scripted(statuses: Array<[number, Record<string, string>?]>) {
  let n = 0;
  const server = createServer((_req, res) => {
    const [status, headers] = statuses[Math.min(n, statuses.length - 1)]!;
    n++;
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(status >= 400 ? '{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}' : '{}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return { host, count: () => n, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test('transport retries 503 and 429 honouring Retry-After, then succeeds', async () => {
  const s = await scripted([[503, { 'retry-after': '0' }], [429, { 'retry-after': '0' }], [200]]);
  const t = new Transport({ backoffMs: 1, credentials: async () => undefined });
  try {
    const res = await t.request({
      host: s.host,
      method: 'GET',
      path: '/v2/',
      scopes: [],
      expect: [200],
      what: 'ping',
    });
    await res.body.dump();
    assert.equal(res.status, 200);
    assert.equal(s.count(), 3);
  } finally {
    await t.close();
    await s.close();
  }
});

test('transport gives up after the retry bound with the registry code', async () => {
  const s = await scripted([[503]]);
  const t = new Transport({ backoffMs: 1, retries: 2, credentials: async () => undefined });
  try {
    await assert.rejects(
      t.request({ host: s.host, method: 'GET', path: '/v2/', scopes: [], expect: [200], what: 'ping' }),
      (e: Error & { code?: string; temporary?: boolean }) => {
        assert.equal(e.code, 'UNAVAILABLE');
        assert.equal(e.message, 'ping: UNAVAILABLE: try later');
        assert.equal(e.temporary, true);
        return true;
      },
    );
    assert.equal(s.count(), 3);
  } finally {
    await t.close();
    await s.close();
  }
});

test('an unreachable host fails fast with the reason', async () => {
  const t = new Transport({ backoffMs: 1, retries: 1, credentials: async () => undefined });
  const start = Date.now();
  await assert.rejects(
    t.request({ host: '127.0.0.1:1', method: 'GET', path: '/v2/', scopes: [], expect: [200], what: 'ping' }),
    /^Error: 127\.0\.0\.1:1 unreachable: .*ECONNREFUSED|127\.0\.0\.1:1 unreachable: .*ECONNREFUSED/,
  );
  assert.ok(Date.now() - start < 5000);
  await t.close();
});

test('credentials: auths forms, helpers, store and remove', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'polyarch-creds-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = { DOCKER_CONFIG: dir, PATH: `${dir}:${process.env.PATH}` };
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({
      auths: {
        'a.example': { auth: Buffer.from('u1:p:w').toString('base64') },
        'https://b.example/v1/': { username: 'u2', password: 'p2' },
        'https://index.docker.io/v1/': { auth: Buffer.from('hub:x').toString('base64') },
        'c.example': { identitytoken: 'refresh' },
      },
      credHelpers: { 'h.example': 'polyarchtest' },
      other: 'kept',
    }),
  );
  // A real helper program: prints credentials for h.example, "not found" otherwise.
  const helper = join(dir, 'docker-credential-polyarchtest');
  await writeFile(
    helper,
    '#!/bin/sh\nread host\nif [ "$1" = get ] && [ "$host" = h.example ]; then echo \'{"ServerURL":"h.example","Username":"hu","Secret":"hs"}\'; else echo "credentials not found in native keychain"; exit 1; fi\n',
  );
  await chmod(helper, 0o755);
  assert.deepEqual(await getCredentials('a.example', env), { username: 'u1', password: 'p:w' });
  assert.deepEqual(await getCredentials('b.example', env), { username: 'u2', password: 'p2' });
  assert.deepEqual(await getCredentials('docker.io', env), { username: 'hub', password: 'x' });
  assert.deepEqual(await getCredentials('c.example', env), { identityToken: 'refresh' });
  assert.deepEqual(await getCredentials('h.example', env), { username: 'hu', password: 'hs' });
  assert.equal(await getCredentials('none.example', env), undefined);

  await storeCredentials('127.0.0.1:5000', { username: 'new', password: 'pw' }, env);
  const file = join(dir, 'config.json');
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const j = JSON.parse(await readFile(file, 'utf8'));
  assert.equal(j.other, 'kept');
  assert.equal(j.auths['127.0.0.1:5000'].auth, Buffer.from('new:pw').toString('base64'));
  assert.ok(j.auths['a.example'], 'other entries kept');
  assert.equal(await removeCredentials('b.example', env), true);
  assert.equal(await removeCredentials('b.example', env), false);
  assert.equal(await getCredentials('b.example', env), undefined);

  const empty = join(dir, 'fresh');
  await mkdir(empty);
  assert.equal(await getCredentials('a.example', { DOCKER_CONFIG: empty }), undefined);
  await writeFile(join(empty, 'config.json'), '{bad');
  await assert.rejects(getCredentials('a.example', { DOCKER_CONFIG: empty }), /config\.json: invalid JSON/);
});
