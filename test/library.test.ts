/** The public library entry point works without the CLI. */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

test('package.json main is the library entry and exports the operations', async () => {
  const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8'));
  const lib = await import(join(repo, pkg.main));
  for (const name of [
    'build',
    'runBuild',
    'exportBuild',
    'pull',
    'push',
    'runImage',
    'planBuild',
    'ContentStore',
    'importImage',
  ])
    assert.equal(typeof lib[name], 'function', name);
});

test('plans the bundled example for three platforms through the library', async () => {
  const lib = await import('../src/index.js');
  const dockerfile = await readFile(join(repo, 'examples', 'hello', 'Dockerfile'), 'utf8');
  const plan = lib.planBuild(dockerfile, {
    platforms: lib.parsePlatformList('linux/amd64,linux/arm64,linux/arm/v7'),
    buildPlatform: lib.parsePlatform('linux/amd64'),
  });
  assert.deepEqual(
    plan.platforms.map((p) => lib.formatPlatform(p.platform)),
    ['linux/amd64', 'linux/arm64', 'linux/arm/v7'],
  );
  // The "prepare" stage runs on the build platform and uses no TARGET* arg: one key for all.
  const prepareKeys = new Set(plan.platforms.map((p) => p.stages.find((s) => s.name === 'prepare')!.key));
  assert.equal(prepareKeys.size, 1);
});

test('a ContentStore opens a new OCI layout', async () => {
  const lib = await import('../src/index.js');
  const dir = await mkdtemp(join(tmpdir(), 'polyarch-lib-'));
  try {
    const store = await lib.ContentStore.open(join(dir, 'store'));
    const layout = JSON.parse(await readFile(join(dir, 'store', 'oci-layout'), 'utf8'));
    assert.equal(layout.imageLayoutVersion, '1.0.0');
    assert.deepEqual(await store.refs(), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('runBuild: one request builds two platforms into the local store, no CLI', async () => {
  const { testEnv } = await import('./env/index.js');
  const lib = await import('../src/index.js');
  const t = testEnv();
  const dir = await mkdtemp(join(tmpdir(), 'polyarch-lib-build-'));
  try {
    const { writeFile, mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, 'ctx'));
    await writeFile(join(dir, 'ctx', 'hello.txt'), 'hi\n');
    const env = { ...process.env, POLYARCH_ROOT: join(dir, 'root'), POLYARCH_CONFIG: t.config };
    const seen = new Set<string>();
    const { outputs } = lib.resolveOutputs({ tags: ['lib/hello:1'] });
    const r = await lib.runBuild({
      context: join(dir, 'ctx'),
      dockerfileText: `FROM ${t.busybox}\nCOPY hello.txt /\n`,
      platforms: ['linux/amd64', 'linux/arm64'].map((p) => lib.parsePlatform(p)),
      outputs,
      env,
      progress: {
        write: (s) => {
          for (const v of s.vertexes) seen.add(v.name);
        },
        close() {},
      },
    });
    assert.deepEqual(r.platforms, ['linux/amd64', 'linux/arm64']);
    assert.deepEqual(r.names, ['docker.io/lib/hello:1']);
    assert.ok(
      [...seen].some((n) => /COPY hello\.txt/.test(n)),
      [...seen].join('\n'),
    );
    const store = await lib.ContentStore.open(lib.storeDir(env));
    assert.equal((await store.resolve('docker.io/lib/hello:1'))?.digest, r.digest);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
