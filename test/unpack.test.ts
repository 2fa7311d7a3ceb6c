/**
 * snapshot/unpack.ts against a real content store, real gzip layers and kernel overlayfs:
 * chain ids, whiteouts, reuse across images, diff_id verification, concurrent unpacks.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { ContentStore } from '../src/content/store.js';
import type { Descriptor, Digest } from '../src/oci/index.js';
import { Snapshotter } from '../src/snapshot/overlay.js';
import { chainIds, unpackImage } from '../src/snapshot/unpack.js';
import { sha256, storeImage, tarGz } from './run-fixtures.js';

const execFileP = promisify(execFile);
const distSrc = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

let dir: string;
let store: ContentStore;
let snaps: Snapshotter;
let layer1: Buffer;
let layer2: Buffer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'polyarch-unpack-'));
  store = await ContentStore.open(join(dir, 'store'));
  snaps = await Snapshotter.open({ root: dir });
  layer1 = await tarGz({ a: 'A\n', 'dir/b': 'B\n', keep: 'K\n' });
  layer2 = await tarGz({ '.wh.a': '', 'dir/c': 'C\n' });
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('chainIds', () => {
  const d = (c: string) => `sha256:${c.repeat(64)}`;
  const cases: [name: string, diffIds: string[], want: string[]][] = [
    ['empty', [], []],
    ['one layer: its diff id', [d('a')], [d('a')]],
    [
      'two layers: sha256 of "chain diff"',
      [d('a'), d('b')],
      [d('a'), sha256(Buffer.from(`${d('a')} ${d('b')}`))],
    ],
  ];
  for (const [name, diffIds, want] of cases)
    test(name, () => {
      assert.deepEqual(chainIds(diffIds), want);
    });

  test('three layers build on the previous chain id', () => {
    const ids = [d('a'), d('b'), d('c')];
    const c = chainIds(ids);
    assert.equal(c[2], sha256(Buffer.from(`${c[1]} ${d('c')}`)));
  });
});

describe('unpackImage', () => {
  let image: Descriptor;

  test('extracts each layer once as a committed snapshot keyed by chain id', async () => {
    image = await storeImage(store, 'localhost/unpack/a:1', [
      { platform: 'linux/amd64', layers: [layer1, layer2] },
    ]);
    const extracted: number[] = [];
    const r = await unpackImage({
      store,
      snapshotter: snaps,
      manifest: image,
      onExtract: (l) => extracted.push(l.index),
    });
    const diffIds = r.config.rootfs.diff_ids;
    assert.deepEqual(r.chain, chainIds(diffIds));
    assert.equal(r.chain[0], diffIds[0]);
    assert.equal(r.extracted, 2);
    assert.deepEqual(extracted, [0, 1]);
    assert.deepEqual(await snaps.chain(r.chain[1]!), r.chain);
    // The upper layer holds the whiteout as overlayfs does: a 0/0 character device.
    const [, top] = await snaps.paths(r.chain);
    const wh = await lstat(join(top!, 'a'));
    assert.ok(wh.isCharacterDevice());
    assert.equal(wh.rdev, 0);
  });

  test('the stacked view shows the image filesystem', async () => {
    const { chain } = await unpackImage({ store, snapshotter: snaps, manifest: image });
    const view = await snaps.view('view-a', chain);
    const target = join(dir, 'mnt');
    await mkdir(target, { recursive: true });
    await view.mount(target);
    try {
      assert.deepEqual((await readdir(target)).sort(), ['dir', 'keep']);
      assert.deepEqual((await readdir(join(target, 'dir'))).sort(), ['b', 'c']);
      assert.equal(await readFile(join(target, 'dir/c'), 'utf8'), 'C\n');
    } finally {
      await view.unmount();
      await snaps.remove('view-a');
    }
  });

  test('a second unpack extracts nothing; an image sharing the first layer extracts only its own', async () => {
    const again = await unpackImage({ store, snapshotter: snaps, manifest: image });
    assert.equal(again.extracted, 0);
    const other = await storeImage(store, 'localhost/unpack/b:1', [
      { platform: 'linux/amd64', layers: [layer1, await tarGz({ extra: 'E\n' })] },
    ]);
    const r = await unpackImage({ store, snapshotter: snaps, manifest: other });
    assert.equal(r.extracted, 1);
    assert.equal(r.chain[0], again.chain[0]);
    assert.notEqual(r.chain[1], again.chain[1]);
  });

  test('a parsed manifest works as well as its descriptor', async () => {
    const m = JSON.parse((await store.readBlob(image.digest)).toString());
    const r = await unpackImage({ store, snapshotter: snaps, manifest: m });
    assert.equal(r.extracted, 0);
  });

  test('a layer whose content does not match the config diff_id is refused and leaves nothing', async () => {
    const layer = await tarGz({ evil: 'X\n' });
    const liar = `sha256:${'1'.repeat(64)}` as Digest;
    const bad = await storeImage(store, 'localhost/unpack/bad:1', [
      { platform: 'linux/amd64', layers: [layer], diffIds: [liar] },
    ]);
    await assert.rejects(
      unpackImage({ store, snapshotter: snaps, manifest: bad }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'DIGEST_MISMATCH');
        assert.match(
          err.message,
          /layer 1 .* uncompresses to sha256:[0-9a-f]{64}, but the config says sha256:1{64}/,
        );
        return true;
      },
    );
    assert.equal(await snaps.stat(liar), undefined);
    assert.deepEqual(
      (await readdir(snaps.dir)).filter((n) => n.startsWith('tmp-')),
      [],
    );
  });

  test('an index is refused: a platform must be chosen first', async () => {
    const idx = await storeImage(
      store,
      'localhost/unpack/idx:1',
      [{ platform: 'linux/amd64', layers: [layer1] }],
      {
        index: true,
      },
    );
    await assert.rejects(unpackImage({ store, snapshotter: snaps, manifest: idx }), /not an image manifest/);
  });

  test('a missing layer blob is named', async () => {
    const layer = await tarGz({ gone: 'G\n' });
    const img = await storeImage(store, 'localhost/unpack/gone:1', [
      { platform: 'linux/amd64', layers: [layer] },
    ]);
    await store.deleteBlob(sha256(layer));
    await assert.rejects(
      unpackImage({ store, snapshotter: snaps, manifest: img, what: 'gone:1' }),
      /gone:1: layer 1 \(sha256:[0-9a-f]+\) is not in the local store/,
    );
  });

  test('concurrent unpacks of one image, in one process and in two, extract each layer once', async () => {
    const layers = [await tarGz({ one: '1\n' }), await tarGz({ two: '2\n' }), await tarGz({ three: '3\n' })];
    const img = await storeImage(store, 'localhost/unpack/conc:1', [{ platform: 'linux/amd64', layers }]);
    const inProcess = await Promise.all(
      [1, 2].map(() => unpackImage({ store, snapshotter: snaps, manifest: img })),
    );
    assert.equal(inProcess[0]!.extracted + inProcess[1]!.extracted, 3);

    const layers2 = [await tarGz({ four: '4\n' }), await tarGz({ five: '5\n' })];
    const img2 = await storeImage(store, 'localhost/unpack/conc:2', [
      { platform: 'linux/amd64', layers: layers2 },
    ]);
    const script = `
      const { ContentStore } = await import(${JSON.stringify(pathToFileURL(join(distSrc, 'content/store.js')).href)});
      const { Snapshotter } = await import(${JSON.stringify(pathToFileURL(join(distSrc, 'snapshot/overlay.js')).href)});
      const { unpackImage } = await import(${JSON.stringify(pathToFileURL(join(distSrc, 'snapshot/unpack.js')).href)});
      const store = await ContentStore.open(${JSON.stringify(join(dir, 'store'))});
      const snapshotter = await Snapshotter.open({ root: ${JSON.stringify(dir)} });
      const r = await unpackImage({ store, snapshotter, manifest: ${JSON.stringify(img2)} });
      process.stdout.write(JSON.stringify(r.extracted));`;
    const outs = await Promise.all(
      [1, 2].map(() =>
        execFileP(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
      ),
    );
    assert.equal(
      outs.map((o) => Number(o.stdout)).reduce((a, b) => a + b),
      2,
    );
  });
});
