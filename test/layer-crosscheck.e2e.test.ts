/**
 * The same RUN built by polyarch and by a real buildkitd (v0.23, its overlay differ): the
 * layer lists the same entries. The step rewrites a file byte for byte keeping its mtime,
 * touches /tmp, deletes a file, makes a directory and a file: BuildKit leaves the first two
 * out, keeps the parents of what changed, and so must polyarch.
 *
 * Skips (one line) when no buildkitd can be found or not root: see test/env/buildkit.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Buildkitd, buildkitBins, buildkitSkipReason, startBuildkitd } from './env/buildkit.js';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const skip = await buildkitSkipReason();
const dir = mkdtempSync(join(tmpdir(), 'polyarch-layer-crosscheck-'));
let daemon: Buildkitd | undefined;
after(async () => {
  await daemon?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Entry paths of the last layer of the (single-platform) OCI layout in `layout`. */
function lastLayerEntries(layout: string): string[] {
  const blob = (d: string) => join(layout, 'blobs', ...d.split(':'));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  let m = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  if (m.manifests) m = JSON.parse(readFileSync(blob(m.manifests[0].digest), 'utf8'));
  return execFileSync('tar', ['-tzf', blob(m.layers.at(-1).digest)], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((p) => p.replace(/^\.\//, '').replace(/\/$/, ''))
    .sort();
}

test('a RUN layer lists the entries BuildKit puts in its layer for the same step', { skip }, async () => {
  const t = testEnv();
  daemon = await startBuildkitd({
    dir: join(dir, 'bk'),
    registries: [t.registry, t.registryBasic, t.registryToken],
    mirror: t.registry,
  });
  const ctx = join(dir, 'ctx');
  mkdirSync(ctx);
  writeFileSync(
    join(ctx, 'Dockerfile'),
    [
      'FROM busybox',
      'RUN cp -p /etc/group /group.keep && cp -p /group.keep /etc/group && rm /group.keep && touch /tmp && rm /etc/passwd && mkdir /newdir && echo x > /newdir/f && echo hi > /etc/motd-new',
      '',
    ].join('\n'),
  );

  const bkOut = join(dir, 'bk.tar');
  const { buildctl } = (await buildkitBins()) as { buildctl: string };
  const bk = spawnSync(
    buildctl,
    [
      '--addr',
      daemon.endpoint,
      'build',
      '--frontend',
      'dockerfile.v0',
      '--local',
      `context=${ctx}`,
      '--local',
      `dockerfile=${ctx}`,
      '--opt',
      'platform=linux/amd64',
      '--output',
      `type=oci,dest=${bkOut}`,
    ],
    { encoding: 'utf8', timeout: 180_000 },
  );
  assert.equal(bk.status, 0, bk.stderr);
  const bkLayout = join(dir, 'bk');
  mkdirSync(join(bkLayout, 'oci'), { recursive: true });
  execFileSync('tar', ['-xf', bkOut, '-C', join(bkLayout, 'oci')]);

  const paOut = join(dir, 'pa');
  const pa = spawnSync(
    bin,
    ['build', '--platform', 'linux/amd64', '--output', `type=oci,dest=${paOut},tar=false`, ctx],
    {
      encoding: 'utf8',
      timeout: 180_000,
      env: {
        ...process.env,
        POLYARCH_ROOT: join(dir, 'root'),
        POLYARCH_CONFIG: t.config,
        POLYARCH_PROGRESS: 'plain',
      },
    },
  );
  assert.equal(pa.status, 0, pa.stderr);

  const theirs = lastLayerEntries(join(bkLayout, 'oci'));
  assert.deepEqual(
    theirs,
    ['etc', 'etc/.wh.passwd', 'etc/motd-new', 'newdir', 'newdir/f'],
    'what BuildKit writes',
  );
  assert.deepEqual(lastLayerEntries(paOut), theirs);
});
