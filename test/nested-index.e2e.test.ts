/**
 * Indexes nested in indexes, made by hand: pushed to a registry with `polyarch push`, then
 * pulled, listed and run through the real CLI from a fresh state root. Nesting is bounded
 * (8 levels below the root): deeper trees are one clear error from run, images and pull.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ContentStore } from '../src/content/store.js';
import { type Descriptor, MediaType } from '../src/oci/index.js';
import { exitElf } from '../src/platform/index.js';
import { type Registry, startRegistry, testEnv } from './env/index.js';
import { ensureBinfmt } from './exec-fixtures.js';
import { storeImage, tarGz } from './run-fixtures.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const env = testEnv();

let tmp: string;
let reg: Registry;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function polyarch(root: string, args: string[]): Run {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    input: '',
    timeout: 120_000,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run): Run {
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  return r;
}

/** An index listing `manifests`, written into the store. */
async function index(store: ContentStore, manifests: Descriptor[]): Promise<Descriptor> {
  return store.writeJson({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }, MediaType.OciIndex);
}

/** `leaf` wrapped in `levels` nested indexes (the outermost one is the root, not counted). */
async function nest(store: ContentStore, leaf: Descriptor, levels: number): Promise<Descriptor> {
  let d = leaf;
  for (let i = 0; i < levels; i++) d = await index(store, [d]);
  return index(store, [d]);
}

/** The two leaf variants: arm64 exits 43, s390x exits 44 (both foreign on amd64, one on arm64). */
async function leaves(store: ContentStore): Promise<{ arm64: Descriptor; s390x: Descriptor }> {
  const arm = await tarGz({ prog: { data: exitElf('arm64', 43), mode: 0o755 } });
  const s390 = await tarGz({ prog: { data: exitElf('s390x', 44), mode: 0o755 } });
  const config = { Entrypoint: ['/prog'] };
  const a = await storeImage(store, 'localhost/nested/leaf-arm64:1', [
    { platform: 'linux/arm64', layers: [arm], config },
  ]);
  const s = await storeImage(store, 'localhost/nested/leaf-s390x:1', [
    { platform: 'linux/s390x', layers: [s390], config },
  ]);
  return {
    arm64: { ...a, platform: { os: 'linux', architecture: 'arm64' } },
    s390x: { ...s, platform: { os: 'linux', architecture: 's390x' } },
  };
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'polyarch-nested-'));
  reg = await startRegistry();
  for (const p of ['linux/arm64', 'linux/s390x']) await ensureBinfmt(p);
});

after(async () => {
  await reg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('nested indexes', () => {
  test('pushed to a registry: run pulls and runs each platform, images lists them', async () => {
    const src = join(tmp, 'src');
    const store = await ContentStore.open(join(src, 'store'));
    const { arm64, s390x } = await leaves(store);
    // root → [index → [arm64], index → index → [s390x]]
    const inner = await index(store, [s390x]);
    const root = await index(store, [await index(store, [arm64]), await index(store, [inner])]);
    await store.tag('localhost/nested/app:1', root);
    const ref = `${reg.host}/nested/app:1`;
    ok(polyarch(src, ['push', 'localhost/nested/app:1', ref]));

    const own = join(tmp, 'run');
    // Not in the store: run pulls the one platform it needs, through both nested levels.
    const s = polyarch(own, ['run', '--rm', '--platform', 'linux/s390x', ref]);
    assert.equal(s.status, 44, s.stderr);
    let images = ok(polyarch(own, ['images'])).stdout;
    assert.match(images, new RegExp(`${reg.host}/nested/app\\s+1\\s+linux/s390x`));
    assert.doesNotMatch(images, /linux\/arm64/, 'only what run needed was pulled');
    // arm64 sits under a nested index this store does not have yet: fetched on demand.
    const a = polyarch(own, ['run', '--rm', '--platform', 'linux/arm64', ref]);
    assert.equal(a.status, 43, a.stderr);
    images = ok(polyarch(own, ['images'])).stdout;
    assert.match(images, new RegExp(`${reg.host}/nested/app\\s+1\\s+linux/arm64`));
    assert.match(images, new RegExp(`${reg.host}/nested/app\\s+1\\s+linux/s390x`));
    // A platform nowhere in the tree names those it has.
    const none = polyarch(own, ['run', '--rm', '--pull', 'never', '--platform', 'linux/ppc64le', ref]);
    assert.equal(none.status, 125);
    assert.match(
      none.stderr,
      /^ERROR: image \S+ has no linux\/ppc64le variant \(it has linux\/arm64, linux\/s390x\)\n$/,
    );
    // A matrix over the whole tree.
    const all = polyarch(own, ['run', '--rm', '--all-platforms', ref]);
    assert.equal(all.status, 1, all.stderr);
    assert.match(all.stdout, /linux\/arm64\s.*43/);
    assert.match(all.stdout, /linux\/s390x\s.*44/);

    // pull --all-platforms stores every nested index and manifest.
    const full = join(tmp, 'full');
    ok(polyarch(full, ['pull', '--all-platforms', ref]));
    images = ok(polyarch(full, ['images'])).stdout;
    assert.equal(images.split('\n').filter((l) => l.includes('nested/app')).length, 2, images);
  });

  test('8 nested levels work; 9 are refused by run, images and pull, naming the limit', async () => {
    const src = join(tmp, 'deep');
    const store = await ContentStore.open(join(src, 'store'));
    const { arm64 } = await leaves(store);
    await store.tag('localhost/nested/deep8:1', await nest(store, arm64, 8));
    await store.tag('localhost/nested/deep9:1', await nest(store, arm64, 9));

    const r8 = polyarch(src, [
      'run',
      '--rm',
      '--pull',
      'never',
      '--platform',
      'linux/arm64',
      'localhost/nested/deep8:1',
    ]);
    assert.equal(r8.status, 43, r8.stderr);

    const r9 = polyarch(src, [
      'run',
      '--rm',
      '--pull',
      'never',
      '--platform',
      'linux/arm64',
      'localhost/nested/deep9:1',
    ]);
    assert.equal(r9.status, 125);
    assert.match(
      r9.stderr,
      /^ERROR: localhost\/nested\/deep9:1: indexes nested more than 8 deep \(at sha256:[0-9a-f]{64}\)\n$/,
    );

    const img = polyarch(src, ['images']);
    assert.equal(img.status, 1);
    assert.match(img.stderr, /^ERROR: index sha256:[0-9a-f]{64}: indexes nested more than 8 deep/);

    // From a registry: refused while choosing, before anything is stored.
    ok(polyarch(src, ['push', 'localhost/nested/deep9:1', `${reg.host}/nested/deep9:1`]));
    const own = join(tmp, 'deep-pull');
    const p = polyarch(own, ['pull', '--platform', 'linux/arm64', `${reg.host}/nested/deep9:1`]);
    assert.equal(p.status, 1);
    assert.match(p.stderr, /indexes nested more than 8 deep/);
    assert.doesNotMatch(ok(polyarch(own, ['images'])).stdout, /deep9/);
  });
});
