/**
 * The content store is a real OCI image layout: skopeo and umoci read what polyarch writes,
 * and polyarch reads what skopeo writes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ContentStore } from '../src/content/index.js';
import {
  type Descriptor,
  type Digest,
  MediaType,
  parseImageConfig,
  parseImageDocument,
  sha256Digest,
} from '../src/oci/index.js';

const scratch = mkdtempSync(join(tmpdir(), 'polyarch-xcheck-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
const layoutDir = join(scratch, 'layout');

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Fixture {
  index: Descriptor;
  indexBytes: Buffer;
  amd64: Descriptor;
  amd64Bytes: Buffer;
  layer: Descriptor;
  diffId: Digest;
}
let fx: Fixture;

before(async () => {
  // A layer made by the system tools, as any other image builder would.
  const root = join(scratch, 'rootfs');
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'hello.txt'), 'hello from polyarch\n');
  writeFileSync(join(root, 'etc', 'os-release'), 'ID=polyarch-test\n');
  const tarPath = join(scratch, 'layer.tar');
  run('tar', [
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '-C',
    root,
    '-cf',
    tarPath,
    '.',
  ]);
  run('gzip', ['-n', '-k', tarPath]);
  const diffId = sha256Digest(readFileSync(tarPath));

  const store = await ContentStore.open(layoutDir);
  const blob = await store.ingest(createReadStream(`${tarPath}.gz`));
  const layer: Descriptor = { mediaType: MediaType.OciLayerGzip, ...blob };
  const manifests: Descriptor[] = [];
  for (const architecture of ['amd64', 'arm64']) {
    const config = await store.writeJson(
      {
        architecture,
        os: 'linux',
        config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] },
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [{ created_by: 'tar + gzip -n' }],
      },
      MediaType.OciConfig,
    );
    const m = await store.writeJson(
      { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] },
      MediaType.OciManifest,
    );
    manifests.push({ ...m, platform: { architecture, os: 'linux' } });
  }
  const index = await store.writeJson(
    { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests },
    MediaType.OciIndex,
  );
  await store.tag('multi', index);
  // umoci unpacks a manifest, not an index: the amd64 manifest gets its own name.
  await store.tag('single', manifests[0]!);
  await store.tag('docker.io/library/app:1', index);
  fx = {
    index,
    indexBytes: await store.readBlob(index.digest),
    amd64: manifests[0]!,
    amd64Bytes: await store.readBlob(manifests[0]!.digest),
    layer,
    diffId,
  };
});

test('skopeo inspect --raw returns the exact index and manifest bytes polyarch wrote', () => {
  for (const [ref, want] of [
    ['multi', fx.indexBytes],
    ['docker.io/library/app:1', fx.indexBytes],
    ['single', fx.amd64Bytes],
  ] as const) {
    const raw = run('skopeo', ['inspect', '--raw', `oci:${layoutDir}:${ref}`]);
    assert.equal(raw, want.toString('utf8'), ref);
  }
  const doc = parseImageDocument(fx.indexBytes, 'index');
  assert.equal(doc.kind, 'index');
});

test('skopeo inspect reads the single-platform image: config, layers, platform', () => {
  const info = JSON.parse(run('skopeo', ['inspect', `oci:${layoutDir}:single`]));
  assert.equal(info.Architecture, 'amd64');
  assert.equal(info.Os, 'linux');
  assert.deepEqual(info.Layers, [fx.layer.digest]);
  assert.equal(info.Digest, fx.amd64.digest);
  assert.deepEqual(info.Env, ['PATH=/bin']);
});

test('umoci unpacks the tagged manifest into a runtime bundle with the layer files', () => {
  const bundle = join(scratch, 'bundle');
  run('umoci', ['unpack', '--image', `${layoutDir}:single`, bundle]);
  assert.equal(readFileSync(join(bundle, 'rootfs', 'hello.txt'), 'utf8'), 'hello from polyarch\n');
  assert.equal(readFileSync(join(bundle, 'rootfs', 'etc', 'os-release'), 'utf8'), 'ID=polyarch-test\n');
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  assert.deepEqual(spec.process.args, ['/bin/sh']);
});

test('polyarch reads and verifies a layout written by skopeo copy', async () => {
  const other = join(scratch, 'other');
  run('skopeo', ['copy', '--all', `oci:${layoutDir}:multi`, `oci:${other}:copied`]);
  run('skopeo', ['copy', `oci:${layoutDir}:single`, `oci:${other}:one`]);
  const store = await ContentStore.open(other);
  assert.deepEqual((await store.refs()).map((r) => r.name).sort(), ['copied', 'one']);

  const idx = await store.resolve('copied');
  assert.ok(idx);
  // An OCI→OCI copy keeps every document byte for byte, so digests match.
  assert.equal(idx.digest, fx.index.digest);
  const children = await store.children(idx);
  assert.equal(children.length, 2);
  for (const m of children) {
    const doc = parseImageDocument(await store.readBlob(m.digest), `manifest ${m.digest}`);
    assert.equal(doc.kind, 'manifest');
    if (doc.kind !== 'manifest') continue;
    const cfg = parseImageConfig(await store.readBlob(doc.manifest.config.digest), 'config');
    assert.equal(cfg.architecture, m.platform?.architecture);
    assert.deepEqual(cfg.rootfs.diff_ids, [fx.diffId]);
    for (const d of [m, doc.manifest.config, ...doc.manifest.layers])
      await store.verifyBlob(d.digest, d.size);
  }
  const one = await store.resolve('one');
  assert.equal(one?.digest, fx.amd64.digest);
  // Every blob reachable from skopeo's refs is present: gc finds nothing to remove.
  assert.deepEqual(await store.gc(), { removed: 0, bytes: 0, kept: 0, keptBytes: 0 });
});
