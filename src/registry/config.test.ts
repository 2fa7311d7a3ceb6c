import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { configPath, hostSettings, isLoopback, loadRegistryConfig, parseRegistryConfig } from './config.js';
import { parseToml } from './toml.js';

const F = '/etc/reg.toml';

test('toml subset: tables with quoted keys, strings, booleans, arrays, comments', () => {
  const doc = parseToml(
    [
      '# top comment',
      'debug = true',
      '[registry."docker.io"]  # trailing comment',
      'mirrors = ["127.0.0.1:5000", \'m2:5000\',]',
      '[registry."h:1"]',
      'http = false',
      'ca = [',
      '  "/a.pem", # first',
      '  "/b\\u0041.pem"',
      ']',
      'n = 1_000',
      'a.b = "x\\ty"',
    ].join('\n'),
    F,
  );
  assert.deepEqual(doc, {
    debug: true,
    registry: {
      'docker.io': { mirrors: ['127.0.0.1:5000', 'm2:5000'] },
      'h:1': { http: false, ca: ['/a.pem', '/bA.pem'], n: 1000, a: { b: 'x\ty' } },
    },
  });
});

const tomlErrors: Array<[string, string, RegExp]> = [
  ['unterminated string', 'a = "x', /:1: unterminated string/],
  ['missing equals', '\n\nkey "x"', /:3: expected "=" after key "key"/],
  ['bad value', 'a = yes', /:1: unsupported value "yes"/],
  ['junk after value', 'a = true false', /:1: unexpected "f" after the value/],
  ['unclosed header', '[registry."x"', /:1: expected "]" to close/],
  ['duplicate key', 'a = 1\na = 2', /:2: key "a" is defined twice/],
  ['duplicate table', '[x]\n[x]', /:2: table \[x\] is defined twice/],
  ['array of tables', '[[x]]', /:1: arrays of tables/],
  ['unterminated array', 'a = ["x",\n', /unterminated array/],
  ['bad escape', 'a = "\\q"', /:1: invalid escape "\\q"/],
];
for (const [name, text, want] of tomlErrors) {
  test(`toml error: ${name}`, () => {
    assert.throws(
      () => parseToml(text, F),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'INVALID_CONFIG');
        assert.ok(e.message.startsWith(`${F}:`), e.message);
        assert.match(e.message, want);
        return true;
      },
    );
  });
}

test('registry config: buildkitd form', () => {
  const cfg = parseRegistryConfig(
    '[registry."docker.io"]\nmirrors = ["http://127.0.0.1:5000/"]\n[registry."10.0.0.5:5000"]\nhttp = true\ninsecure = true\nca = ["/x.pem"]\n',
    F,
  );
  assert.deepEqual(hostSettings(cfg, 'docker.io'), { mirrors: ['127.0.0.1:5000'], ca: [] });
  assert.deepEqual(hostSettings(cfg, '10.0.0.5:5000'), {
    mirrors: [],
    ca: ['/x.pem'],
    http: true,
    insecure: true,
  });
  assert.deepEqual(hostSettings(cfg, 'other'), { mirrors: [], ca: [] });
});

const cfgErrors: Array<[string, string, RegExp]> = [
  ['unknown key', '[registry."a.io"]\nmirror = []', /:1: registry "a.io": unknown key "mirror"/],
  [
    'http not boolean',
    '\n[registry."a.io"]\nhttp = "yes"',
    /:2: registry "a.io": "http" must be true or false/,
  ],
  ['mirrors not strings', '[registry."a.io"]\nmirrors = [true]', /"mirrors" must be an array of strings/],
  ['bad host', '[registry."bad host"]\nhttp = true', /registry "bad host": domain/],
  ['bad mirror', '[registry."a.io"]\nmirrors = ["x:y"]', /mirror "x:y": domain "x:y" has an invalid port/],
];
for (const [name, text, want] of cfgErrors) {
  test(`registry config error: ${name}`, () => {
    assert.throws(() => parseRegistryConfig(text, F), want);
  });
}

test('config file location and a missing file', async (t) => {
  assert.equal(configPath({ POLYARCH_CONFIG: '/x.toml' }), '/x.toml');
  assert.equal(configPath({ HOME: '/h' }), '/h/.config/polyarch/registries.toml');
  const dir = await mkdtemp(join(tmpdir(), 'polyarch-cfg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const missing = await loadRegistryConfig({ POLYARCH_CONFIG: join(dir, 'none.toml') });
  assert.equal(missing.hosts.size, 0);
  const file = join(dir, 'r.toml');
  await writeFile(file, '[registry."a:1"]\nhttp = true\n');
  assert.equal(hostSettings(await loadRegistryConfig({ POLYARCH_CONFIG: file }), 'a:1').http, true);
  await writeFile(file, '[registry."a:1"]\nhttp = maybe\n');
  await assert.rejects(
    loadRegistryConfig({ POLYARCH_CONFIG: file }),
    new RegExp(`${file}:2: unsupported value "maybe"`),
  );
});

test('loopback hosts', () => {
  for (const h of ['localhost', 'localhost:5000', '127.0.0.1:5000', '127.9.9.9', '[::1]:5000', '::1'])
    assert.ok(isLoopback(h), h);
  for (const h of ['docker.io', '128.0.0.1:5000', '10.0.0.1', 'localhost.example.com'])
    assert.ok(!isLoopback(h), h);
});
