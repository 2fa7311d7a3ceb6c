/**
 * Build history of a remote build: a builder of two real buildkitd nodes (one pinned to
 * linux/amd64, one faking a native linux/arm64 node), each building one platform; progress
 * names steps `[node] [linux/arm64 2/3] RUN …`. The record puts every step on its platform
 * and node, each platform on its node (the build's placement), and the report draws one row
 * per platform.
 *
 * Skips (one line) when no buildkitd can be found: see test/env/buildkit.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BuildRecord } from '../src/history/index.js';
import { type Buildkitd, buildkitSkipReason, startBuildkitd } from './env/buildkit.js';
import { testEnv } from './env/index.js';

const skip = await buildkitSkipReason();
if (skip) console.log(`# skipping the remote history tests: ${skip}`);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');

describe('history of a remote build', { skip: skip ?? false }, () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const nodes: Buildkitd[] = [];
  const run = (...args: string[]) => spawnSync(bin, args, { encoding: 'utf8', env, timeout: 180_000 });

  before(async () => {
    const t = testEnv();
    dir = mkdtempSync(join(tmpdir(), 'history-remote-'));
    const registries = [t.registry];
    nodes.push(
      ...(await Promise.all([
        startBuildkitd({ dir: join(dir, 'amd'), registries, mirror: t.registry }),
        startBuildkitd({ dir: join(dir, 'arm'), registries, mirror: t.registry, platform: 'linux/arm64' }),
      ])),
    );
    mkdirSync(join(dir, 'docker'));
    writeFileSync(join(dir, 'docker', 'config.json'), '{}');
    env = {
      ...process.env,
      POLYARCH_ROOT: join(dir, 'root'),
      POLYARCH_CONFIG: t.config,
      DOCKER_CONFIG: join(dir, 'docker'),
      POLYARCH_BUILDER: '',
      BUILDX_BUILDER: '',
      POLYARCH_PROGRESS: 'plain',
    };
    for (const [name, platform, node] of [
      ['amd', 'linux/amd64', nodes[0]!],
      ['arm', 'linux/arm64', nodes[1]!],
    ] as const) {
      const args = ['create', '--name', 'hk', '--driver', 'remote', '--node', name, '--platform', platform];
      const r = run(...args, ...(name === 'arm' ? ['--append'] : []), node.endpoint);
      assert.equal(r.status, 0, r.stderr);
    }
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('steps keep their platform and node; the report has a row per platform', () => {
    const ctx = join(dir, 'ctx');
    mkdirSync(ctx);
    writeFileSync(
      join(ctx, 'Dockerfile'),
      'FROM busybox\nRUN echo "remote on $(uname -m)"\nCOPY Dockerfile /df\n',
    );
    const report = join(dir, 'report.html');
    const b = run(
      'build',
      '--builder',
      'hk',
      '--platform',
      'linux/amd64,linux/arm64',
      '--report',
      report,
      ctx,
    );
    assert.equal(b.status, 0, b.stderr);
    const ref = run('history', 'ls', '--format', '{{.Ref}}').stdout.trim();
    assert.match(ref, /^[a-z0-9]{25}$/);
    const rec = JSON.parse(readFileSync(join(dir, 'root', 'history', `${ref}.json`), 'utf8')) as BuildRecord;
    assert.equal(rec.status, 'completed');
    assert.equal(rec.request.builder, 'hk');
    assert.equal(rec.request.driver, 'remote');
    assert.deepEqual(
      rec.platforms.map((p) => [p.platform, p.node, p.native]),
      [
        ['linux/amd64', 'amd', undefined],
        ['linux/arm64', 'arm', undefined],
      ],
    );
    for (const [platform, node] of [
      ['linux/amd64', 'amd'],
      ['linux/arm64', 'arm'],
    ]) {
      const runStep = rec.steps.find((s) => s.node === node && /RUN echo "remote on/.test(s.name));
      assert.ok(runStep, rec.steps.map((s) => s.name).join('\n'));
      assert.equal(runStep.platform, platform, runStep.name);
      assert.ok(rec.steps.filter((s) => s.platform === platform).length >= 3);
    }
    const html = readFileSync(report, 'utf8');
    assert.equal(html.match(/<section class="row" data-platform=/g)?.length, 2);
    assert.match(html, /data-platform="linux\/arm64" data-steps="[3-9]"/);
    const logs = run('history', 'logs', ref);
    assert.equal(logs.status, 0, logs.stderr);
    assert.match(logs.stdout, /\[arm\] .*RUN echo "remote on/);
  });
});
