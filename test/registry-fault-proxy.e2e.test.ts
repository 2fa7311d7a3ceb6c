/**
 * Push and pull of a ~100 MB two-platform image (random, incompressible layers) through
 * the fault proxy (test/fault-proxy.ts) in front of a real registry: connections dropped
 * mid-upload and mid-download, injected 500s, and 429s with Retry-After. Both complete, and
 * the digests agree with what the registry holds (read directly and with skopeo).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { ContentStore } from '../src/content/index.js';
import { pull } from '../src/image/pull.js';
import { push } from '../src/image/push.js';
import type { Digest } from '../src/oci/index.js';
import { parseReference } from '../src/oci/reference.js';
import { ProgressRecorder, ProgressWriter } from '../src/progress/index.js';
import { RegistryClient } from '../src/registry/client.js';
import { startRegistry } from './env/index.js';
import { startFaultProxy } from './fault-proxy.js';
import { sha256, skopeo, storeRandomImage, tempDir } from './registry-helpers.js';

const MB = 1_000_000;
// 20 and 17 MB go up in 8 MiB PATCH chunks (above a 16 MiB threshold, set here below the
// client's default so that both upload paths are cut), 13 MB in one PUT.
const LAYERS = [20 * MB, 17 * MB, 13 * MB];
const PLATFORMS = ['linux/amd64', 'linux/arm64'];

test('a 100 MB image survives drops, 500s and 429s both ways, with verified digests', async () => {
  const reg = await startRegistry();
  const src = await ContentStore.open(join(tempDir('store'), 'src'));
  const img = await storeRandomImage(src, 'local/big:1', PLATFORMS, LAYERS);
  const repo = 'faults/big';
  try {
    const up = await startFaultProxy(reg.host, [
      { method: 'HEAD', path: /\/blobs\/sha256:/, fault: { status: 429, retryAfter: 1 } },
      { method: 'POST', path: /\/blobs\/uploads\/$/, fault: { status: 500 } },
      // The second PATCH of some layer, cut after 3 MB of its 8 MiB went upstream.
      { method: 'PATCH', fault: { cut: 'request', after: 3 * MB }, skip: 1 },
      // A monolithic PUT (the 13 MB layer), cut after 2 MB.
      { method: 'PUT', head: /content-length: \d{7,}/i, fault: { cut: 'request', after: 2 * MB } },
      { method: 'PATCH', fault: { status: 503 }, skip: 3 },
      { method: 'PUT', path: /\/manifests\//, fault: { status: 500 } },
    ]);
    const rec = new ProgressRecorder();
    const chunked = new RegistryClient({ chunkThreshold: 16 * 1024 * 1024, chunkSize: 8 * 1024 * 1024 });
    let pushed: Awaited<ReturnType<typeof push>>;
    try {
      pushed = await push('local/big:1', {
        store: src,
        client: chunked,
        target: `${up.host}/${repo}:1`,
        progress: new ProgressWriter(rec),
      });
    } finally {
      await chunked.close();
      await up.close();
    }
    assert.equal(pushed.digest, img.root.digest);
    assert.deepEqual(
      up
        .fired()
        .map((f) => f.rule)
        .sort(),
      [0, 1, 2, 3, 4, 5],
      `every fault fired once: ${JSON.stringify(up.fired())}`,
    );
    const v = rec.vertexes();
    assert.equal(v.length, 1);
    assert.equal(v[0]!.error, undefined);

    // What the registry holds, read directly: the same index, manifests and layers.
    const raw = skopeo(['inspect', '--raw', `docker://${reg.host}/${repo}:1`]);
    assert.equal(sha256(raw), img.root.digest, 'skopeo reads the index polyarch pushed');
    const direct = new RegistryClient();
    try {
      for (const [p, want] of img.platforms) {
        const m = await direct.getManifest(parseReference(`${reg.host}/${repo}@${want.manifest}`));
        assert.equal(m.digest, want.manifest, p);
        const info = JSON.parse(
          skopeo(['inspect', `docker://${reg.host}/${repo}@${want.manifest}`]).toString(),
        );
        assert.deepEqual(info.Layers, want.layers, `${p} layers`);
        for (const [i, l] of want.layers.entries())
          assert.equal(
            await direct.blobSize(parseReference(`${reg.host}/${repo}`), l as Digest),
            512 + Math.ceil(LAYERS[i]! / 512) * 512 + 1024,
          );
      }
    } finally {
      await direct.close();
    }

    const down = await startFaultProxy(reg.host, [
      { method: 'GET', path: /\/manifests\//, fault: { status: 500 } },
      { method: 'GET', path: /\/blobs\/sha256:/, fault: { status: 429, retryAfter: 1 } },
      { method: 'GET', path: /\/blobs\/sha256:/, fault: { cut: 'response', after: 5 * MB }, times: 2 },
      { method: 'GET', path: /\/blobs\/sha256:/, fault: { status: 502 }, skip: 2 },
    ]);
    const dst = await ContentStore.open(join(tempDir('store'), 'dst'));
    try {
      const r = await pull(`${down.host}/${repo}:1`, { store: dst, all: true });
      assert.equal(r.descriptor.digest, img.root.digest);
      assert.deepEqual(r.platforms, PLATFORMS);
    } finally {
      await down.close();
    }
    assert.deepEqual(
      down
        .fired()
        .map((f) => f.rule)
        .sort(),
      [0, 1, 2, 2, 3],
      `every fault fired: ${JSON.stringify(down.fired())}`,
    );
    for (const want of img.platforms.values())
      for (const d of [want.manifest, ...want.layers]) await dst.verifyBlob(d as Digest);
    assert.deepEqual(await dst.readBlob(img.root.digest as Digest), raw);
  } finally {
    await reg.stop();
  }
});

test('a manifest PUT answered MANIFEST_BLOB_UNKNOWN (another writer of the same blob won a race): the blobs go again, the same OCI image lands', async () => {
  const reg = await startRegistry();
  const src = await ContentStore.open(join(tempDir('store'), 'src'));
  const img = await storeRandomImage(src, 'local/race:1', ['linux/amd64'], [1 * MB]);
  const repo = 'faults/race';
  const proxy = await startFaultProxy(reg.host, [
    { method: 'PUT', path: /\/manifests\//, fault: { status: 400, code: 'MANIFEST_BLOB_UNKNOWN' } },
  ]);
  const warnings: string[] = [];
  try {
    const pushed = await push('local/race:1', {
      store: src,
      target: `${proxy.host}/${repo}:1`,
      warn: (m) => warnings.push(m),
    });
    assert.equal(pushed.digest, img.root.digest, 'the OCI digests, not a Docker schema 2 conversion');
    assert.deepEqual(warnings, []);
    assert.equal(proxy.fired().length, 1, JSON.stringify(proxy.fired()));
    const raw = skopeo(['inspect', '--raw', `docker://${reg.host}/${repo}:1`]);
    assert.equal(sha256(raw), img.root.digest);
  } finally {
    await proxy.close();
    await reg.stop();
  }
});
