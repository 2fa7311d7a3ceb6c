/**
 * `imagetools create --append`: two separate single-platform pushes merged into one index
 * (the "build per platform on native nodes, then merge" workflow), and an entry of the same
 * platform replaced rather than duplicated.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cli, requireEnv, sha256, skopeo, tempDir, uniqueRepo } from './registry-helpers.js';

interface IndexDoc {
  mediaType: string;
  manifests: { digest: string; platform?: { os: string; architecture: string; variant?: string } }[];
}

function platformsOf(raw: Buffer): string[] {
  const idx = JSON.parse(raw.toString('utf8')) as IndexDoc;
  return idx.manifests.map((m) =>
    [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join('/'),
  );
}

test('two single-platform pushes merged with imagetools create --append give one index', () => {
  const reg = requireEnv('POLYARCH_TEST_REGISTRY');
  const bb = requireEnv('POLYARCH_TEST_BUSYBOX');
  const home = tempDir('append');
  const repo = `${reg}/${uniqueRepo('append')}`;
  // Two pushes of one platform each, as two native builders would make them.
  for (const [platform, tag] of [
    ['linux/amd64', 'amd64'],
    ['linux/arm64', 'arm64'],
  ] as const) {
    const pull = cli(['pull', '--platform', platform, '--progress', 'quiet', bb], home);
    assert.equal(pull.status, 0, pull.stderr);
    const single = `${repo}:${tag}`;
    const c = cli(['imagetools', 'create', '--platform', platform, '-t', single, bb], home);
    assert.equal(c.status, 0, c.stderr);
  }
  const first = skopeo(['inspect', '--raw', `docker://${repo}:amd64`]);
  assert.deepEqual(platformsOf(first), ['linux/amd64']);

  // Append the arm64 image to the amd64 tag: one index, both platforms.
  const merged = cli(['imagetools', 'create', '--append', '-t', `${repo}:amd64`, `${repo}:arm64`], home);
  assert.equal(merged.status, 0, merged.stderr);
  const raw = skopeo(['inspect', '--raw', `docker://${repo}:amd64`]);
  assert.deepEqual(platformsOf(raw).sort(), ['linux/amd64', 'linux/arm64/v8']);

  // polyarch's inspect shows the same index, by digest.
  const inspect = cli(['imagetools', 'inspect', `${repo}:amd64`], home);
  assert.equal(inspect.status, 0, inspect.stderr);
  assert.match(inspect.stdout, new RegExp(`Digest:\\s+${sha256(raw)}`));
  assert.match(inspect.stdout, /Platform:\s+linux\/amd64\n/);
  assert.match(inspect.stdout, /Platform:\s+linux\/arm64\/v8\n/);

  // Appending an image of a platform already there replaces that entry.
  const again = cli(['imagetools', 'create', '--append', '-t', `${repo}:amd64`, `${repo}:arm64`], home);
  assert.equal(again.status, 0, again.stderr);
  const after = skopeo(['inspect', '--raw', `docker://${repo}:amd64`]);
  assert.deepEqual(platformsOf(after).sort(), ['linux/amd64', 'linux/arm64/v8']);
});
