/**
 * Failure handling against a real registry: mirrors (a dead mirror falls back to the
 * upstream, a mirror serves for a dead upstream) and transfers cut mid-stream by a TCP
 * relay in front of the registry (downloads resume with Range, chunked uploads resume from
 * the registry's upload status).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { ContentStore } from '../src/content/index.js';
import { pull } from '../src/image/pull.js';
import { push } from '../src/image/push.js';
import { type Digest, MediaType } from '../src/oci/index.js';
import { RegistryClient } from '../src/registry/client.js';
import { loadRegistryConfig } from '../src/registry/config.js';
import { parseReference } from '../src/oci/reference.js';
import { makeLayout, requireEnv, sha256, skopeo, tempDir, uniqueRepo } from './registry-helpers.js';

/**
 * A TCP relay to `upstream` that cuts one connection: the first request whose head matches
 * `match` gets `allow` bytes through (request bytes upstream, or response bytes downstream),
 * then both sockets are destroyed.
 */
async function cuttingRelay(
  upstream: string,
  match: RegExp,
  direction: 'request' | 'response',
  allow: number,
): Promise<{ host: string; cuts: () => number; close: () => Promise<void> }> {
  const [uh, up] = upstream.split(':') as [string, string];
  let cut = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const remote = connect(Number(up), uh);
    sockets.add(client).add(remote);
    let armed = false;
    let passed = 0;
    const kill = () => {
      cut++;
      client.destroy();
      remote.destroy();
    };
    client.on('data', (d: Buffer) => {
      if (!armed && cut === 0 && match.test(d.toString('latin1', 0, Math.min(d.length, 2048)))) {
        armed = true;
        passed = 0;
      }
      if (armed && direction === 'request') {
        if (passed + d.length > allow) {
          remote.write(d.subarray(0, Math.max(0, allow - passed)), kill);
          return;
        }
        passed += d.length;
      }
      remote.write(d);
    });
    remote.on('data', (d: Buffer) => {
      if (armed && direction === 'response') {
        if (passed + d.length > allow) {
          client.write(d.subarray(0, Math.max(0, allow - passed)), kill);
          return;
        }
        passed += d.length;
      }
      client.write(d);
    });
    client.on('error', () => remote.destroy());
    remote.on('error', () => client.destroy());
    client.on('close', () => remote.destroy());
    remote.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    cuts: () => cut,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
  return b;
}

test('a download cut mid-body resumes with Range and verifies', async () => {
  const reg = requireEnv('POLYARCH_TEST_REGISTRY');
  const data = pattern(2_000_000);
  const desc = { mediaType: MediaType.OciLayer, digest: sha256(data) as Digest, size: data.length };
  const repo = uniqueRepo('resume-get');
  const direct = new RegistryClient();
  await direct.pushBlob(parseReference(`${reg}/${repo}`), desc, (s, e) =>
    Readable.from([data.subarray(s, e)]),
  );
  await direct.close();

  const relay = await cuttingRelay(reg, new RegExp(`^GET /v2/${repo}/blobs/`), 'response', 300_000);
  const client = new RegistryClient();
  try {
    const store = await ContentStore.open(join(tempDir('store'), 'r'));
    const w = await store.writer({ digest: desc.digest, size: desc.size });
    const statuses: string[] = [];
    await client.fetchBlob(parseReference(`${relay.host}/${repo}`), desc, w, (p) => statuses.push(p.status));
    assert.equal(relay.cuts(), 1, 'the relay cut the first download');
    assert.ok(statuses.includes('resume'), `resumed (${statuses.filter((s) => s !== 'progress').join(',')})`);
    assert.deepEqual(await store.readBlob(desc.digest), data);
  } finally {
    await client.close();
    await relay.close();
  }
});

test('a chunked upload cut mid-PATCH recovers: resumes at the upload status, or restarts a session the registry cancelled', async () => {
  const reg = requireEnv('POLYARCH_TEST_REGISTRY');
  const data = pattern(1_500_000);
  const desc = { mediaType: MediaType.OciLayer, digest: sha256(data) as Digest, size: data.length };
  const repo = uniqueRepo('resume-put');
  // Cut the second PATCH (Content-Range 500000-…) after 200 kB of it went upstream.
  const relay = await cuttingRelay(
    reg,
    /^PATCH [^\n]*\n(?:[^\n]*\n)*?content-range: 500000-/i,
    'request',
    200_000,
  );
  const client = new RegistryClient({ chunkThreshold: 100_000, chunkSize: 500_000 });
  try {
    const ref = parseReference(`${relay.host}/${repo}`);
    const statuses: string[] = [];
    const r = await client.pushBlob(ref, desc, (s, e) => Readable.from([data.subarray(s, e)]), {
      progress: (p) => statuses.push(`${p.status}:${p.done}`),
    });
    assert.equal(r, 'uploaded');
    assert.equal(relay.cuts(), 1, 'the relay cut one PATCH');
    assert.ok(
      statuses.some((s) => s.startsWith('resume:')),
      statuses.join(' '),
    );
    const check = new RegistryClient();
    const store = await ContentStore.open(join(tempDir('store'), 'u'));
    await check.fetchBlob(
      parseReference(`${reg}/${repo}`),
      desc,
      await store.writer({ digest: desc.digest, size: desc.size }),
    );
    await check.close();
    assert.deepEqual(await store.readBlob(desc.digest), data);
  } finally {
    await client.close();
    await relay.close();
  }
});

test('mirrors: a dead mirror falls back to the upstream; a live mirror serves a dead upstream', async () => {
  const reg = requireEnv('POLYARCH_TEST_REGISTRY');
  const img = makeLayout(join(tempDir('layout'), 'l'), 'v1', ['linux/amd64']);
  const repo = uniqueRepo('mirror');
  skopeo(['copy', '--all', `oci:${img.dir}:v1`, `docker://${reg}/${repo}:v1`]);
  const dir = tempDir('cfg');
  const file = join(dir, 'registries.toml');
  writeFileSync(
    file,
    [
      `[registry."${reg}"]`,
      'mirrors = ["127.0.0.1:1"]  # nothing listens here',
      '[registry."127.0.0.1:2"]',
      `mirrors = ["${reg}"]`,
    ].join('\n'),
  );
  const config = await loadRegistryConfig({ POLYARCH_CONFIG: file });
  const warnings: string[] = [];
  const client = new RegistryClient({ config, warn: (m) => warnings.push(m), retries: 0 });
  try {
    const store = await ContentStore.open(join(tempDir('store'), 'm'));
    const a = await pull(`${reg}/${repo}:v1`, { store, client });
    assert.equal(a.descriptor.digest, img.indexDigest);
    assert.match(warnings[0] ?? '', /mirror 127\.0\.0\.1:1 failed .*; trying 127\.0\.0\.1:/);
    assert.equal(warnings.length, 1, 'one warning for the dead mirror, not one per request');
    const b = await pull(`127.0.0.1:2/${repo}:v1`, { store, client });
    assert.equal(b.descriptor.digest, img.indexDigest);
  } finally {
    await client.close();
  }
});

/**
 * An HTTP relay to the real registry that refuses OCI manifests the way some registries do
 * (400 MANIFEST_INVALID) and forwards everything else unchanged.
 */
async function ociRefusingRelay(upstream: string) {
  const [uh, up] = upstream.split(':') as [string, string];
  const server = createHttpServer((req, res) => {
    const type = String(req.headers['content-type'] ?? '');
    if (req.method === 'PUT' && req.url?.includes('/manifests/') && type.startsWith('application/vnd.oci.')) {
      req.resume();
      req.on('end', () => {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(
          '{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"OCI media types are not accepted"}]}',
        );
      });
      return;
    }
    const fwd = httpRequest(
      { host: uh, port: Number(up), method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

test('a registry that refuses OCI documents gets Docker schema 2 ones, with a warning', async () => {
  const reg = requireEnv('POLYARCH_TEST_REGISTRY');
  const img = makeLayout(join(tempDir('layout'), 'l'), 'v1', ['linux/amd64', 'linux/arm64']);
  const repo = uniqueRepo('docker-fallback');
  skopeo(['copy', '--all', `oci:${img.dir}:v1`, `docker://${reg}/${repo}:v1`]);
  const store = await ContentStore.open(join(tempDir('store'), 'f'));
  await pull(`${reg}/${repo}:v1`, { store, all: true });
  const relay = await ociRefusingRelay(reg);
  const warnings: string[] = [];
  try {
    const target = `${relay.host}/${repo}-docker:v1`;
    const r = await push(`${reg}/${repo}:v1`, { store, target, warn: (w) => warnings.push(w) });
    assert.equal(r.mediaType, MediaType.DockerManifestList);
    assert.notEqual(r.digest, img.indexDigest, 'converting changes the digest');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(
      warnings[0]!,
      /refused an OCI manifest \(.*MANIFEST_INVALID.*\); pushing Docker schema 2 media types instead/,
    );
    // What the real registry now holds is a Docker manifest list of Docker manifests.
    const raw = skopeo(['inspect', '--raw', `docker://${reg}/${repo}-docker:v1`]);
    assert.equal(sha256(raw), r.digest);
    const list = JSON.parse(raw.toString());
    assert.equal(list.mediaType, MediaType.DockerManifestList);
    for (const m of list.manifests) {
      assert.equal(m.mediaType, MediaType.DockerManifest);
      const child = JSON.parse(
        skopeo(['inspect', '--raw', `docker://${reg}/${repo}-docker@${m.digest}`]).toString(),
      );
      assert.equal(child.config.mediaType, MediaType.DockerConfig);
      assert.equal(child.layers[0].mediaType, MediaType.DockerLayerGzip);
    }
  } finally {
    await relay.close();
  }
});
