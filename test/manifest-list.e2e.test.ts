/**
 * `polyarch manifest create | annotate | inspect | push | rm` end to end against the test
 * registry, as docker's manifest guide uses them: a list assembled from two single-platform
 * images (the busybox index's amd64 and arm64 manifests, by digest), one entry's platform
 * annotated, inspected locally, pushed to another repository (blobs copied), read back.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-manifest-list-'));
after(() => rmSync(root, { recursive: true, force: true }));

function polyarch(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: tenv.config },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(...args: string[]): string {
  const r = polyarch(...args);
  assert.equal(r.status, 0, `polyarch ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

interface IndexDoc {
  mediaType: string;
  manifests: { digest: string; platform: { os: string; architecture: string; variant?: string } }[];
}

test('create, annotate, inspect, push --purge, rm', () => {
  const busybox = JSON.parse(ok('imagetools', 'inspect', '--raw', tenv.busybox)) as IndexDoc;
  const digestOf = (arch: string) => busybox.manifests.find((m) => m.platform.architecture === arch)!.digest;
  const base = tenv.busybox.replace(/:latest$/, '');
  const amd64 = `${base}@${digestOf('amd64')}`;
  const arm64 = `${base}@${digestOf('arm64')}`;
  const list = `${tenv.registry}/mlist-${process.pid}:1`;

  assert.equal(ok('manifest', 'create', list, amd64, arm64), `Created manifest list ${list}\n`);
  const again = polyarch('manifest', 'create', list, amd64);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /^ERROR: refusing to amend an existing manifest list with no --amend flag/);
  const index = polyarch('manifest', 'create', '--amend', list, tenv.busybox);
  assert.equal(index.status, 1);
  assert.match(
    index.stderr,
    /is a manifest list: a list takes single images \(polyarch imagetools create takes indexes\)\n$/,
  );

  ok('manifest', 'annotate', list, arm64, '--variant', 'v8');
  const local = JSON.parse(ok('manifest', 'inspect', list)) as IndexDoc;
  assert.deepEqual(
    local.manifests.map((m) => [m.digest, m.platform]),
    [
      [digestOf('amd64'), { os: 'linux', architecture: 'amd64' }],
      [digestOf('arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' }],
    ],
  );

  const digest = ok('manifest', 'push', '--purge', list).trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  const pushed = JSON.parse(ok('imagetools', 'inspect', '--raw', list)) as IndexDoc;
  assert.deepEqual(
    pushed.manifests.map((m) => m.platform),
    [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ],
  );
  // The entries were copied into the list's repository: it runs from there.
  assert.equal(ok('run', '--rm', '--platform', 'linux/arm64', list, 'uname', '-m'), 'aarch64\n');
  // --purge removed the local list: inspect now reads the registry's.
  assert.deepEqual((JSON.parse(ok('manifest', 'inspect', list)) as IndexDoc).manifests.length, 2);
  const rm = polyarch('manifest', 'rm', list);
  assert.equal(rm.status, 1);
  assert.equal(rm.stderr, `ERROR: No such manifest: ${list}\n`);
  ok('manifest', 'create', `${list}-b`, amd64);
  ok('manifest', 'rm', `${list}-b`);
  const gone = polyarch('manifest', 'annotate', `${list}-b`, amd64, '--arch', 'x');
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /^ERROR: No such manifest: /);
});
