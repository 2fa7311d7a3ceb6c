/**
 * HTTPS registries: a real docker-registry started here with a self-signed certificate.
 * Without configuration the certificate is refused (one-line error); `ca = [...]` in
 * registries.toml trusts it; `insecure = true` skips verification.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { assertOneLineError, cli, makeLayout, skopeo, tempDir, uniqueRepo } from './registry-helpers.js';

let proc: ChildProcess | undefined;
let host = '';
let dir = '';
let ref = '';
let digest = '';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitListening(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1');
      c.on('connect', () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`the TLS registry did not listen on ${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  dir = tempDir('tls');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  const port = await freePort();
  host = `127.0.0.1:${port}`;
  writeFileSync(
    join(dir, 'config.yml'),
    [
      'version: 0.1',
      'log: {level: error}',
      `storage: {filesystem: {rootdirectory: ${join(dir, 'data')}}}`,
      `http: {addr: "${host}", tls: {certificate: ${join(dir, 'cert.pem')}, key: ${join(dir, 'key.pem')}}}`,
    ].join('\n'),
  );
  proc = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: 'ignore' });
  await waitListening(port, 10_000);
  const img = makeLayout(join(dir, 'layout'), 'v1', ['linux/amd64', 'linux/arm64']);
  ref = `${host}/${uniqueRepo('tls')}:v1`;
  skopeo(['copy', '--all', `oci:${img.dir}:v1`, `docker://${ref}`]);
  digest = img.indexDigest;
});

after(() => {
  proc?.kill();
});

test('HTTPS: an untrusted certificate is refused with one line naming the fix', () => {
  const home = tempDir('home');
  const r = cli(['imagetools', 'inspect', ref], home);
  assertOneLineError(
    r,
    new RegExp(
      `${host}: TLS certificate not trusted: .*self.signed.*add its CA with ca = \\[\\.\\.\\.\\] or set insecure = true`,
    ),
  );
});

test('HTTPS: ca = [...] trusts the certificate; pull verifies against it', () => {
  const home = tempDir('home');
  writeFileSync(join(home, 'registries.toml'), `[registry."${host}"]\nca = ["${join(dir, 'cert.pem')}"]\n`);
  const r = cli(['pull', '-a', ref], home);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `Digest: ${digest}\n${ref}\n`);
});

test('HTTPS: insecure = true skips verification', () => {
  const home = tempDir('home');
  writeFileSync(join(home, 'registries.toml'), `[registry."${host}"]\ninsecure = true\n`);
  const r = cli(['imagetools', 'inspect', '--format', '{{json .Manifest}}', ref], home);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).digest, digest);
});
