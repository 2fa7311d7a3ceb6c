/**
 * The remote (BuildKit) driver end to end against real buildkitd v0.23 daemons: one on a
 * unix socket (this machine's amd64 worker), one on tcp with mutual TLS faking a native
 * arm64 node (`--oci-worker-platform linux/arm64`). A builder of both nodes builds for three
 * platforms, pushes one index, loads into the local store, honours .dockerignore and keeps
 * a --secret out of every layer; a node that is down moves its platforms; bad endpoints
 * and certificates are one-line errors.
 *
 * Skips (one line) when no buildkitd can be found: see test/env/buildkit.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createServer, connect, type Socket } from 'node:net';
import {
  type Buildkitd,
  buildkitBins,
  buildkitSkipReason,
  makeCerts,
  type Sshd,
  sshdSkipReason,
  startBuildkitd,
  startSshd,
} from './env/buildkit.js';
import { startGitServer } from './env/git-server.js';
import { testEnv } from './env/index.js';
import { copyHostSshAdd, sshAddSkipReason } from './env/sshbin.js';
import { sshHostSkipReason, startSshHost } from './env/sshnode.js';
import { freePort } from './env/proc.js';

const skip = await buildkitSkipReason();
const sshSkip = skip ?? sshdSkipReason();
if (skip) console.log(`# skipping the BuildKit e2e tests: ${skip}`);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');

describe('remote BuildKit builders', { skip: skip ?? false, concurrency: false }, () => {
  let dir: string;
  let amd: Buildkitd;
  let arm: Buildkitd;
  let env: NodeJS.ProcessEnv;
  let reg: string;
  let ctxDir: string;
  let buildctl: string;
  const SECRET = `s3cr3t-${process.pid}-${Date.now()}`;

  const run = (args: string[], extra: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> =>
    spawnSync(bin, args, { encoding: 'utf8', env: { ...env, ...extra }, timeout: 120_000 });
  const ok = (args: string[]): string => {
    const r = run(args);
    assert.equal(r.status, 0, `polyarch ${args.join(' ')}:\n${r.stderr}`);
    return r.stdout;
  };
  const skopeo = (args: string[]) => {
    const r = spawnSync('skopeo', args, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };

  before(async () => {
    const t = testEnv();
    reg = t.registry;
    buildctl = ((await buildkitBins()) as { buildctl: string }).buildctl;
    dir = mkdtempSync(join(tmpdir(), 'polyarch-buildkit-'));
    const registries = [t.registry, t.registryBasic, t.registryToken];
    [amd, arm] = await Promise.all([
      startBuildkitd({ dir: join(dir, 'amd'), registries, mirror: t.registry }),
      startBuildkitd({
        dir: join(dir, 'arm'),
        registries,
        mirror: t.registry,
        tls: true,
        platform: 'linux/arm64',
      }),
    ]);
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
    ctxDir = join(dir, 'ctx');
    mkdirSync(join(ctxDir, 'src'), { recursive: true });
    writeFileSync(
      join(ctxDir, 'Dockerfile'),
      [
        'FROM busybox',
        'ARG TARGETPLATFORM',
        'ARG BUILDPLATFORM',
        'RUN --mount=type=secret,id=tok,required=true sha256sum /run/secrets/tok | cut -c1-64 > /secret.sha256 && echo "$(uname -m) $TARGETPLATFORM $BUILDPLATFORM" > /built',
        'WORKDIR /app',
        'COPY . .',
        'CMD ["cat", "/built"]',
        '',
      ].join('\n'),
    );
    writeFileSync(join(ctxDir, 'src', 'keep.txt'), 'kept\n');
    writeFileSync(join(ctxDir, 'ignored.txt'), 'must not be sent\n');
    writeFileSync(join(ctxDir, '.dockerignore'), 'ignored.txt\n');
    writeFileSync(join(dir, 'tok'), SECRET);
    const tls = arm.tls!;
    ok([
      'create',
      '--name',
      'bk',
      '--driver',
      'remote',
      '--node',
      'amd',
      '--platform',
      'linux/amd64',
      amd.endpoint,
    ]);
    ok([
      'create',
      '--name',
      'bk',
      '--append',
      '--node',
      'arm',
      '--platform',
      'linux/arm64,linux/arm/v7',
      '--driver-opt',
      `cacert=${tls.cacert},cert=${tls.cert},key=${tls.key},servername=${tls.servername}`,
      arm.endpoint,
    ]);
  });

  after(async () => {
    await Promise.all([amd?.stop(), arm?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The daemon's worker platforms as buildctl reports them, in its order. */
  const workerPlatforms = (bk: Buildkitd): string[] => {
    const t = bk.tls;
    const tls = t
      ? ['--tlscacert', t.cacert, '--tlscert', t.cert, '--tlskey', t.key, '--tlsservername', t.servername]
      : [];
    const r = spawnSync(
      buildctl,
      ['--addr', bk.endpoint, ...tls, 'debug', 'workers', '--format', '{{json .}}'],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const workers = JSON.parse(r.stdout) as Array<{
      platforms: Array<{ os: string; architecture: string; variant?: string }>;
    }>;
    return workers[0]!.platforms.map((p) => [p.os, p.architecture, p.variant].filter(Boolean).join('/'));
  };
  /** buildx's label list: the pinned platforms marked `*`, then the detected ones not pinned. */
  const labels = (pinned: string[], detected: string[]) =>
    [...pinned.map((p) => `${p}*`), ...detected.filter((p) => !pinned.includes(p))].join(', ');

  test('ls and inspect --bootstrap show both nodes like buildx', async () => {
    const { VERSION } = await import('../src/version.js');
    const out = ok(['ls', '--no-trunc']);
    // The default node's platforms are this machine's emulators: taken as printed.
    const defaultLine = out.split('\n').find((l) => l.startsWith(' \\_ default '))!;
    const defaultPlatforms = defaultLine.slice(defaultLine.lastIndexOf('   ') + 3);
    // docker's table formatter: every column but the last padded to its widest cell + 3,
    // at least 10 wide; no trailing blanks.
    const rows = [
      ['NAME/NODE', 'DRIVER/ENDPOINT', 'STATUS', 'BUILDKIT', 'PLATFORMS'],
      ['bk', 'remote', '', '', ''],
      [
        ' \\_ amd',
        ` \\_ ${amd.endpoint}`,
        'running',
        'v0.23.2',
        labels(['linux/amd64'], workerPlatforms(amd)),
      ],
      [
        ' \\_ arm',
        ` \\_ ${arm.endpoint}`,
        'running',
        'v0.23.2',
        labels(['linux/arm64', 'linux/arm/v7'], workerPlatforms(arm)),
      ],
      ['default*', 'local', '', '', ''],
      [' \\_ default', ' \\_ default', 'running', `polyarch/v${VERSION}`, defaultPlatforms],
    ];
    const widths = [0, 1, 2, 3].map((i) => Math.max(10, ...rows.map((r) => r[i]!.length + 3)));
    const expected = rows
      .map(
        (r) =>
          `${r
            .map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c))
            .join('')
            .trimEnd()}\n`,
      )
      .join('');
    assert.equal(out, expected);
    const insp = ok(['builder', 'inspect', '--bootstrap', 'bk']);
    const t = arm.tls!;
    const detected = workerPlatforms(arm);
    assert.equal(detected[0], 'linux/arm64');
    const platforms = labels(['linux/arm64', 'linux/arm/v7'], detected);
    const armBlock = insp.slice(insp.indexOf('Name:             arm\n'));
    assert.equal(
      armBlock.slice(0, armBlock.indexOf('GC Policy rule#1:')),
      'Name:             arm\n' +
        `Endpoint:         ${arm.endpoint}\n` +
        `Driver Options:   cacert="${t.cacert}" cert="${t.cert}" key="${t.key}" servername="${t.servername}"\n` +
        'Status:           running\n' +
        'BuildKit version: v0.23.2\n' +
        `Platforms:        ${platforms}\n` +
        'Labels:\n' +
        ' org.mobyproject.buildkit.worker.executor:         oci\n' +
        ` org.mobyproject.buildkit.worker.hostname:         ${hostname()}\n` +
        ' org.mobyproject.buildkit.worker.network:          host\n' +
        ' org.mobyproject.buildkit.worker.oci.process-mode: sandbox\n' +
        ' org.mobyproject.buildkit.worker.selinux.enabled:  false\n' +
        ' org.mobyproject.buildkit.worker.snapshotter:      overlayfs\n' +
        'GC Policy rule#0:\n' +
        ' All:            false\n' +
        ' Filters:        type==source.local,type==exec.cachemount,type==source.git.checkout\n' +
        ' Keep Duration:  48h0m0s\n' +
        ' Max Used Space: 488.3MiB\n',
    );
    assert.match(
      insp,
      /^Name: {10}bk\nDriver: {8}remote\nLast Activity: .* \+0000 UTC\n\nNodes:\nName: {13}amd\n/,
    );
  });

  test('three platforms on two nodes, --push: one index, each platform built on its node', () => {
    const ref = `${reg}/bk-e2e/classic:1`;
    const md = join(dir, 'md.json');
    const r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/amd64,linux/arm64,linux/arm/v7',
      '--push',
      '-t',
      ref,
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      '--metadata-file',
      md,
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    // Progress names each vertex's node.
    assert.match(r.stderr, /\[amd\] \[linux\/amd64 stage-0 1\/4\] FROM/);
    assert.match(r.stderr, /\[arm\] \[linux\/arm64 stage-0 1\/4\] FROM/);
    assert.ok(!r.stderr.includes(SECRET), 'the secret is in the progress output');
    const meta = JSON.parse(readFileSync(md, 'utf8'));
    assert.deepEqual(meta['polyarch.build.nodes'], {
      'linux/amd64': 'amd',
      'linux/arm64': 'arm',
      'linux/arm/v7': 'arm',
    });
    const index = JSON.parse(skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]));
    const plats = index.manifests.map(
      (m: { platform: { os: string; architecture: string; variant?: string } }) =>
        [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/'),
    );
    assert.deepEqual(plats.sort(), ['linux/amd64', 'linux/arm/v7', 'linux/arm64']);
    assert.equal(
      meta['containerimage.digest'],
      skopeo(['inspect', '--format', '{{.Digest}}', '--tls-verify=false', `docker://${ref}`]).trim(),
    );
    // BUILDPLATFORM is the platform of the node that built it: amd's, or arm's fake native arm64.
    for (const [p, arch, node] of [
      ['linux/amd64', 'x86_64', 'linux/amd64'],
      ['linux/arm64', 'aarch64', 'linux/arm64'],
      ['linux/arm/v7', 'armv7l', 'linux/arm64'],
    ] as const) {
      assert.equal(ok(['run', '--rm', '--platform', p, ref]), `${arch} ${p} ${node}\n`);
      // .dockerignore honoured; the context is in /app.
      assert.equal(
        ok(['run', '--rm', '--platform', p, ref, 'sh', '-c', 'cd /app && ls -A | sort | tr "\\n" " "']),
        '.dockerignore Dockerfile src ',
      );
    }
    // The secret reached RUN (its hash was recorded) and is in no layer.
    const sha = createHash('sha256').update(SECRET).digest('hex');
    assert.equal(ok(['run', '--rm', '--platform', 'linux/arm64', ref, 'cat', '/secret.sha256']), `${sha}\n`);
    const layout = join(dir, 'layout');
    skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:x`]);
    for (const f of readdirSync(join(layout, 'blobs', 'sha256'))) {
      const b = readFileSync(join(layout, 'blobs', 'sha256', f));
      const text = b[0] === 0x1f && b[1] === 0x8b ? gunzipSync(b) : b;
      assert.ok(!text.includes(SECRET), `blob ${f} holds the secret`);
    }
  });

  test('a builder mixing this machine and a BuildKit node: one index, each platform on its node', () => {
    ok(['create', '--name', 'mix', '--node', 'here', '--platform', 'linux/amd64']);
    const tls = arm.tls!;
    ok([
      'create',
      '--name',
      'mix',
      '--append',
      '--driver',
      'remote',
      '--node',
      'arm',
      '--platform',
      'linux/arm64',
      '--driver-opt',
      `cacert=${tls.cacert},cert=${tls.cert},key=${tls.key},servername=${tls.servername}`,
      arm.endpoint,
    ]);
    const ls = ok(['ls']);
    assert.match(ls, /\n \\_ here +\\_ local +running +polyarch\/v[\d.]+ +linux\/amd64\*/);
    assert.match(ls, /\n \\_ arm +\\_ tcp:\/\/127\.0\.0\.1:\d+ +running +v0\.23\.2 +linux\/arm64\*/);
    const ref = `${reg}/bk-e2e/mixed:1`;
    const md = join(dir, 'mix.json');
    const r = run([
      'build',
      '--builder',
      'mix',
      '--platform',
      'linux/amd64,linux/arm64',
      '--push',
      '-t',
      ref,
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      '--metadata-file',
      md,
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    // The local engine names a lone platform's steps without it, as BuildKit does for one platform.
    assert.match(r.stderr, /\[here\] \[(?:linux\/amd64 )?1\/4\] FROM/);
    assert.match(r.stderr, /\[arm\] \[linux\/arm64 /);
    assert.deepEqual(JSON.parse(readFileSync(md, 'utf8'))['polyarch.build.nodes'], {
      'linux/amd64': 'here',
      'linux/arm64': 'arm',
    });
    const index = JSON.parse(skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]));
    assert.deepEqual(
      index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture).sort(),
      ['amd64', 'arm64'],
    );
    assert.equal(ok(['run', '--rm', '--platform', 'linux/amd64', ref]), 'x86_64 linux/amd64 linux/amd64\n');
    assert.equal(ok(['run', '--rm', '--platform', 'linux/arm64', ref]), 'aarch64 linux/arm64 linux/arm64\n');
  });

  test('three drivers in one builder: a BuildKit node, this machine and an ssh node share one index', {
    skip: sshHostSkipReason() ?? false,
  }, async () => {
    const host = await startSshHost(join(dir, 'ssh-host'), { config: testEnv().config });
    try {
      const sshEnv = { PATH: `${host.pathDir}:${process.env.PATH}` };
      ok([
        'create',
        '--name',
        'tri',
        '--driver',
        'remote',
        '--node',
        'bk',
        '--platform',
        'linux/amd64',
        amd.endpoint,
      ]);
      ok([
        'create',
        '--name',
        'tri',
        '--append',
        '--driver',
        'local',
        '--node',
        'here',
        '--platform',
        'linux/arm64',
      ]);
      ok([
        'create',
        '--name',
        'tri',
        '--append',
        '--driver',
        'ssh',
        '--node',
        'far',
        '--platform',
        'linux/arm/v7',
        '--driver-opt',
        `key=${host.clientKey},polyarch=${bin},root=${join(dir, 'far-root')}`,
        host.endpoint,
      ]);
      const ref = `${reg}/bk-e2e/tri:1`;
      const md = join(dir, 'tri.json');
      const r = run(
        [
          'build',
          '--builder',
          'tri',
          '--platform',
          'linux/amd64,linux/arm64,linux/arm/v7',
          '--push',
          '-t',
          ref,
          '--secret',
          `id=tok,src=${join(dir, 'tok')}`,
          '--metadata-file',
          md,
          ctxDir,
        ],
        sshEnv,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /\[bk\] \[linux\/amd64 /);
      assert.match(r.stderr, /\[here\] \[(?:linux\/arm64 )?1\/4\] FROM/);
      assert.match(r.stderr, /\[far\] \[(?:linux\/arm\/v7 )?1\/4\] FROM/);
      assert.deepEqual(JSON.parse(readFileSync(md, 'utf8'))['polyarch.build.nodes'], {
        'linux/amd64': 'bk',
        'linux/arm64': 'here',
        'linux/arm/v7': 'far',
      });
      const index = JSON.parse(skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]));
      assert.deepEqual(
        index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture).sort(),
        ['amd64', 'arm', 'arm64'],
      );
      assert.equal(ok(['run', '--rm', '--platform', 'linux/amd64', ref]), 'x86_64 linux/amd64 linux/amd64\n');
      assert.equal(
        ok(['run', '--rm', '--platform', 'linux/arm64', ref]),
        'aarch64 linux/arm64 linux/amd64\n',
      );
      assert.equal(
        ok(['run', '--rm', '--platform', 'linux/arm/v7', ref]),
        'armv7l linux/arm/v7 linux/amd64\n',
      );
    } finally {
      await host.stop();
    }
  });

  test('--load brings a two-node, two-platform image into the local store', () => {
    const r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/amd64,linux/arm64',
      '--load',
      '-t',
      'bk-load:1',
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      '--iidfile',
      join(dir, 'iid'),
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const images = ok(['images']);
    assert.match(images, /bk-load +1 .*linux\/amd64/);
    assert.match(images, /bk-load +1 .*linux\/arm64/);
    assert.match(readFileSync(join(dir, 'iid'), 'utf8'), /^sha256:[0-9a-f]{64}$/);
    assert.equal(
      ok(['run', '--rm', '--pull', 'never', '--platform', 'linux/arm64', 'bk-load:1']),
      'aarch64 linux/arm64 linux/arm64\n',
    );
  });

  test('type=local: one node writes the rootfs, two nodes one subdirectory per platform', () => {
    const one = join(dir, 'local-one');
    let r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/arm64',
      '-o',
      `type=local,dest=${one}`,
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(one, 'built'), 'utf8'), 'aarch64 linux/arm64 linux/arm64\n');
    assert.equal(readFileSync(join(one, 'app', 'src', 'keep.txt'), 'utf8'), 'kept\n');
    assert.ok(lstatSync(join(one, 'bin', 'sh')).isSymbolicLink());
    assert.equal(lstatSync(join(one, 'tmp')).mode & 0o7777, 0o1777);
    const two = join(dir, 'local-two');
    r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/amd64,linux/arm/v7',
      '-o',
      `type=local,dest=${two}`,
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readdirSync(two).sort(), ['linux_amd64', 'linux_arm_v7']);
    assert.equal(readFileSync(join(two, 'linux_amd64', 'built'), 'utf8'), 'x86_64 linux/amd64 linux/amd64\n');
    assert.equal(
      readFileSync(join(two, 'linux_arm_v7', 'built'), 'utf8'),
      'armv7l linux/arm/v7 linux/arm64\n',
    );
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.endsWith('.tmp')),
      [],
    );
  });

  test('--cache-to/--cache-from through a registry, and --annotation on the index and manifests', () => {
    const c = join(dir, 'cache-ctx');
    mkdirSync(c, { recursive: true });
    writeFileSync(join(c, 'Dockerfile'), `FROM busybox\nRUN echo cache-${Date.now()} > /stamp\n`);
    const cache = `${reg}/bk-e2e/cache:1`;
    let r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/amd64',
      '--cache-to',
      `type=registry,ref=${cache},mode=max`,
      c,
    ]);
    assert.equal(r.status, 0, r.stderr);
    // Forget the daemon's own cache: only the registry can make the RUN a cache hit now.
    spawnSync(buildctl, ['--addr', amd.endpoint, 'prune', '--all']);
    r = run(['build', '--builder', 'bk', '--platform', 'linux/amd64', '--cache-from', cache, c]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /RUN echo cache-\d+ > \/stamp\n#\d+ CACHED/);
    const ref = `${reg}/bk-e2e/annotated:1`;
    r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/arm64,linux/arm/v7',
      '--push',
      '-t',
      ref,
      '--annotation',
      'org.opencontainers.image.title=polyarch',
      '--annotation',
      'index:org.example.idx=yes',
      c,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const index = JSON.parse(skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]));
    assert.equal(index.annotations?.['org.example.idx'], 'yes');
    const m = JSON.parse(
      skopeo([
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${reg}/bk-e2e/annotated@${index.manifests[0].digest}`,
      ]),
    );
    assert.equal(m.annotations?.['org.opencontainers.image.title'], 'polyarch');
  });

  test('du and prune --builder: the cache of every BuildKit node, as buildx du/prune', async () => {
    const { BuildkitClient } = await import('../src/buildkit/index.js');
    const ids = async (bk: Buildkitd) => {
      const c = await BuildkitClient.connect(bk.endpoint, bk.tls ? { tls: bk.tls } : {});
      try {
        return (await c.diskUsage()).map((r) => r.id);
      } finally {
        c.close();
      }
    };
    const [amdIds, armIds] = await Promise.all([ids(amd), ids(arm)]);
    assert.ok(amdIds.length > 0 && armIds.length > 0, 'both nodes have cache records after the builds');
    const du = ok(['du', '--builder', 'bk']);
    const lines = du.split('\n');
    assert.match(lines[0]!, /^ID +RECLAIMABLE +SIZE +LAST ACCESSED$/);
    // Each node's every record is a row (ids as the daemons report them), then the totals.
    const rowIds = new Set(lines.slice(1).map((l) => l.split(' ')[0]));
    for (const id of [...amdIds, ...armIds]) assert.ok(rowIds.has(id), `record ${id} missing:\n${du}`);
    assert.match(du, /\nShared: +\S+\nPrivate: +\S+\nReclaimable: +\S+\nTotal: +\S+\n$/);
    // The local store is not this builder's: not listed.
    assert.doesNotMatch(du, /^Store:/m);
    const json = JSON.parse(ok(['du', '--builder', 'bk', '--format', 'json'])) as {
      buildCache: { records: unknown[] };
    };
    assert.equal(json.buildCache.records.length, amdIds.length + armIds.length);

    const pruned = ok(['prune', '--builder', 'bk', '--all', '--force']);
    assert.match(pruned, /Total: +\S+/);
    const [amdLeft, armLeft] = await Promise.all([ids(amd), ids(arm)]);
    assert.ok(amdLeft.length < amdIds.length, `amd: ${amdLeft.length} of ${amdIds.length} records left`);
    assert.ok(armLeft.length < armIds.length, `arm: ${armLeft.length} of ${armIds.length} records left`);
    const bad = run(['prune', '--builder', 'bk', '--keep-storage', '1GB']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^ERROR: --keep-storage is not supported yet on BuildKit nodes/);
  });

  test('compose build --builder: services built on the BuildKit nodes, one index each', () => {
    const proj = join(dir, 'compose-proj');
    mkdirSync(proj, { recursive: true });
    const ref = `${reg}/bk-e2e/compose:1`;
    writeFileSync(
      join(proj, 'compose.yaml'),
      `services:\n  web:\n    image: ${ref}\n    build:\n      context: ${ctxDir}\n      platforms: [linux/amd64, linux/arm64]\n      secrets: [tok]\nsecrets:\n  tok:\n    file: ${join(dir, 'tok')}\n`,
    );
    const r = spawnSync(bin, ['compose', 'build', '--builder', 'bk', '--push'], {
      cwd: proj,
      encoding: 'utf8',
      env,
      timeout: 120_000,
    });
    assert.equal(r.status, 0, r.stderr);
    // Progress names the service and the node.
    assert.match(r.stderr, /^#\d+ \[web amd\] \[linux\/amd64 /m);
    assert.match(r.stderr, /^#\d+ \[web arm\] \[linux\/arm64 /m);
    assert.match(r.stderr, / Service web {2}Built {2}\S+ \(linux\/amd64, linux\/arm64\)/);
    const index = JSON.parse(skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])) as {
      manifests: Array<{ platform: { architecture: string } }>;
    };
    assert.deepEqual(index.manifests.map((m) => m.platform.architecture).sort(), ['amd64', 'arm64']);
    for (const p of ['linux/amd64', 'linux/arm64'])
      assert.match(ok(['run', '--rm', '--platform', p, ref]), new RegExp(` ${p} `));
  });

  test('--ssh through the session: a step on a BuildKit node lists the forwarded keys', {
    skip: sshAddSkipReason() ?? false,
  }, () => {
    const sctx = join(dir, 'ssh-ctx');
    const sshAdd = copyHostSshAdd(join(sctx, 'sshbin'));
    const key = join(dir, 'ssh_key');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bk-test', '-f', key]);
    const fp = spawnSync('ssh-keygen', ['-lf', `${key}.pub`], { encoding: 'utf8' }).stdout.split(' ')[1]!;
    writeFileSync(
      join(sctx, 'Dockerfile'),
      `FROM busybox\nCOPY sshbin /sshbin\nRUN --mount=type=ssh,required=true ${sshAdd} -l > /keys; echo "$SSH_AUTH_SOCK" > /sock\n`,
    );
    const out = join(dir, 'ssh-out');
    const r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/amd64',
      '--ssh',
      `default=${key}`,
      '-o',
      `type=local,dest=${out}`,
      sctx,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      readFileSync(join(out, 'keys'), 'utf8'),
      new RegExp(`^256 ${fp.replace(/[+/]/g, '\\$&')} bk-test \\(ED25519\\)`),
    );
    assert.match(readFileSync(join(out, 'sock'), 'utf8'), /^\/run\/buildkit\/ssh_agent\.0\n$/);
    // The key never reaches the output, the logs or the progress.
    const keyText = readFileSync(key, 'utf8');
    assert.ok(!r.stderr.includes(key) && !r.stderr.includes(keyText.split('\n')[1]!));
    // Without --ssh, a required agent fails on the node, naming the id.
    const bad = run(['build', '--builder', 'bk', '--platform', 'linux/amd64', '--no-cache', sctx]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /^ERROR: node amd \(unix:.*\): no SSH key .* forwarded from the client$/m);
  });

  test('DiskUsage and Prune through the library client', async () => {
    const { BuildkitClient } = await import('../src/buildkit/index.js');
    const c = await BuildkitClient.connect(arm.endpoint, { tls: arm.tls! });
    try {
      const before = await c.diskUsage();
      assert.ok(
        before.length > 0 && before.every((r) => r.id && r.size >= 0),
        'no cache records after builds',
      );
      const removed = await c.prune({ all: true });
      assert.ok(removed.length > 0, 'prune removed nothing');
      const left = await c.diskUsage();
      assert.ok(left.length < before.length, `${left.length} records left of ${before.length}`);
    } finally {
      c.close();
    }
  });

  test('type=oci from two nodes: one layout with every platform; tar=false gives a directory', () => {
    const out = join(dir, 'two.tar');
    const r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/amd64,linux/arm64',
      '-o',
      `type=oci,dest=${out}`,
      '-t',
      'two:1',
      '--iidfile',
      join(dir, 'two.iid'),
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const index = JSON.parse(skopeo(['inspect', '--raw', `oci-archive:${out}`]));
    assert.deepEqual(
      index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture).sort(),
      ['amd64', 'arm64'],
    );
    const layoutDir = join(dir, 'two-layout');
    const d = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/arm64',
      '-o',
      `type=oci,dest=${layoutDir},tar=false`,
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      ctxDir,
    ]);
    assert.equal(d.status, 0, d.stderr);
    const cfg = JSON.parse(skopeo(['inspect', '--config', `oci:${layoutDir}`]));
    assert.equal(cfg.architecture, 'arm64');
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.endsWith('.tmp')),
      [],
    );
  });

  test('type=oci from one node gives a layout archive skopeo reads', () => {
    const out = join(dir, 'out.tar');
    const r = run([
      'build',
      '--builder',
      'bk',
      '--platform',
      'linux/arm/v7',
      '-o',
      `type=oci,dest=${out}`,
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const cfg = JSON.parse(skopeo(['inspect', '--config', `oci-archive:${out}`]));
    assert.equal(cfg.architecture, 'arm');
    assert.equal(cfg.variant, 'v7');
  });

  test('a node that is down: a warning, its platforms go to the other node', async () => {
    const dead = `tcp://127.0.0.1:${await freePort()}`;
    ok([
      'create',
      '--name',
      'half',
      '--driver',
      'remote',
      '--node',
      'gone',
      '--platform',
      'linux/arm64',
      dead,
    ]);
    ok(['create', '--name', 'half', '--append', '--node', 'live', amd.endpoint]);
    const r = run([
      'build',
      '--builder',
      'half',
      '--platform',
      'linux/arm64',
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      '--metadata-file',
      join(dir, 'half.json'),
      ctxDir,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /WARNING: node gone \(tcp:\/\/127\.0\.0\.1:\d+\): connecting to .*; its platforms go to the other nodes of builder half\n/,
    );
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'half.json'), 'utf8'))['polyarch.build.nodes'], {
      'linux/arm64': 'live',
    });
    // No node can build windows/amd64: an error before anything runs, naming the nodes tried.
    const w = run(['build', '--builder', 'half', '--platform', 'windows/amd64', ctxDir]);
    assert.equal(w.status, 1);
    assert.match(
      w.stderr,
      /\nERROR: no node can build platform windows\/amd64: tried live \(.*\); gone \(unreachable: .*\)\n$/,
    );
  });

  test('unreachable endpoint and wrong TLS certificate: one-line errors naming the node, exit 1', async () => {
    const dead = `tcp://127.0.0.1:${await freePort()}`;
    ok(['create', '--name', 'down', '--driver', 'remote', dead]);
    const r = run(['build', '--builder', 'down', ctxDir]);
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      new RegExp(
        `^ERROR: node down0 \\(${dead.replace(/[/.]/g, '\\$&')}\\): connecting to .*ECONNREFUSED.*\n$`,
      ),
    );
    // A client certificate from another CA.
    const other = await makeCerts(join(dir, 'other'));
    ok([
      'create',
      '--name',
      'badtls',
      '--driver',
      'remote',
      '--driver-opt',
      `cacert=${arm.tls!.cacert},cert=${other.client.cert},key=${other.client.key},servername=${arm.tls!.servername}`,
      arm.endpoint,
    ]);
    const t = run(['build', '--builder', 'badtls', ctxDir]);
    assert.equal(t.status, 1);
    assert.match(
      t.stderr,
      /^ERROR: node badtls0 \(tcp:\/\/127\.0\.0\.1:\d+\): connecting to .*: TLS handshake failed: .*unknown ca.*\n$/,
    );
    // The server's certificate checked against the wrong CA.
    ok([
      'create',
      '--name',
      'badca',
      '--driver',
      'remote',
      '--driver-opt',
      `cacert=${other.client.cacert},cert=${arm.tls!.cert},key=${arm.tls!.key},servername=${arm.tls!.servername}`,
      arm.endpoint,
    ]);
    const c = run(['build', '--builder', 'badca', ctxDir]);
    assert.equal(c.status, 1);
    assert.match(
      c.stderr,
      /^ERROR: node badca0 \(tcp:\/\/127\.0\.0\.1:\d+\): connecting to .*certificate.*\n$/,
    );
  });

  test('a base image on an htpasswd registry is pulled with config.json credentials, via the session', () => {
    const t = testEnv();
    const c = join(dir, 'basic-ctx');
    mkdirSync(c, { recursive: true });
    writeFileSync(join(c, 'Dockerfile'), `FROM ${t.registryBasic}/library/busybox\nRUN echo ok > /ok\n`);
    const out = join(dir, 'basic.tar');
    const args = ['build', '--builder', 'bk', '--platform', 'linux/amd64', '-o', `type=tar,dest=${out}`, c];
    // Without credentials the daemon is refused.
    const denied = run(args);
    assert.equal(denied.status, 1);
    assert.match(denied.stderr, /\nERROR: node amd .*(401|[Uu]nauthorized|authoriz)/);
    const cfg = join(dir, 'docker-basic');
    mkdirSync(cfg, { recursive: true });
    const auth = Buffer.from(`${t.user}:${t.password}`).toString('base64');
    writeFileSync(join(cfg, 'config.json'), JSON.stringify({ auths: { [t.registryBasic]: { auth } } }));
    const r = run(args, { DOCKER_CONFIG: cfg });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!r.stderr.includes(t.password), 'the password is in the output');
    const list = spawnSync('tar', ['tf', out], { encoding: 'utf8' }).stdout.split('\n');
    assert.ok(list.includes('ok') && list.includes('bin/busybox'), list.slice(0, 5).join(' '));
  });

  test('a daemon that drops the connection mid-build: one-line error naming the node, nothing stored', async () => {
    // A TCP proxy to the amd daemon's socket, cut while RUN sleeps.
    const socks = new Set<Socket>();
    const proxy = createServer((down) => {
      const up = connect(amd.endpoint.slice('unix://'.length));
      socks.add(down).add(up);
      down.pipe(up).pipe(down);
      const drop = () => {
        down.destroy();
        up.destroy();
      };
      down.on('error', drop).on('close', drop);
      up.on('error', drop).on('close', drop);
    });
    await new Promise<void>((res) => proxy.listen(0, '127.0.0.1', () => res()));
    const port = (proxy.address() as { port: number }).port;
    try {
      ok(['create', '--name', 'cut', '--driver', 'remote', `tcp://127.0.0.1:${port}`]);
      const c = join(dir, 'cut-ctx');
      mkdirSync(c, { recursive: true });
      writeFileSync(join(c, 'Dockerfile'), `FROM busybox\nRUN echo start-${Date.now()} && sleep 20\n`);
      const child = spawn(bin, ['build', '--builder', 'cut', '--load', '-t', 'halfway:1', c], { env });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exit = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
      const t0 = Date.now();
      while (!stderr.includes('sleep 20') && Date.now() - t0 < 30_000)
        await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 500));
      for (const s of socks) s.destroy();
      const code = await exit;
      assert.equal(code, 1, stderr);
      const lines = stderr.trimEnd().split('\n');
      assert.match(lines.at(-1)!, /^ERROR: node cut0 \(tcp:\/\/127\.0\.0\.1:\d+\): .+$/);
      assert.ok(Date.now() - t0 < 15_000, 'the build waited for the RUN step instead of failing');
      assert.doesNotMatch(ok(['images']), /halfway/);
      // Nothing half-written in the local store either.
      const ingest = join(dir, 'root', 'store', 'ingest');
      if (existsSync(ingest)) assert.deepEqual(readdirSync(ingest), []);
      assert.match(lines.at(-1)!, /lost the connection to the daemon during the build/);
    } finally {
      proxy.close();
      for (const s of socks) s.destroy();
    }
  });

  test('SIGINT cancels the remote build: exit 130 at once, the daemon stops the step', async () => {
    const c = join(dir, 'int-ctx');
    mkdirSync(c, { recursive: true });
    writeFileSync(join(c, 'Dockerfile'), `FROM busybox\nRUN echo int-${Date.now()} && sleep 30\n`);
    const child = spawn(bin, ['build', '--builder', 'bk', '--platform', 'linux/amd64', c], { env });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exit = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    const t0 = Date.now();
    while (!stderr.includes('sleep 30') && Date.now() - t0 < 30_000)
      await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 300));
    const t1 = Date.now();
    child.kill('SIGINT');
    assert.equal(await exit, 130, stderr);
    assert.ok(Date.now() - t1 < 5000, 'the CLI did not stop promptly');
    assert.match(stderr, /ERROR: build canceled by SIGINT\n$/);
  });

  test('--build-context through the remote driver: a directory, docker-image://, git, an OCI layout', async () => {
    const git = await startGitServer();
    try {
      await git.repo('gctx', { 'g.txt': 'from git\n' });
      git.git('gctx', 'push', '-q', 'origin', 'main');
      const c = join(dir, 'named-ctx');
      const lib = join(dir, 'named-lib');
      mkdirSync(c, { recursive: true });
      mkdirSync(lib, { recursive: true });
      writeFileSync(join(lib, 'l.txt'), 'from dir\n');
      writeFileSync(
        join(c, 'Dockerfile'),
        'FROM alpine\nCOPY --from=lib l.txt /l.txt\nCOPY --from=gsrc g.txt /g.txt\nCOPY --from=layout /etc/group /layout-group\nCMD ["sh", "-c", "cat /l.txt /g.txt; head -n1 /layout-group"]\n',
      );
      // Spawned without blocking: the git server answers from this process.
      const child = spawn(
        bin,
        [
          'build',
          '--builder',
          'bk',
          '--platform',
          'linux/amd64',
          '--build-context',
          `lib=${lib}`,
          '--build-context',
          'alpine=docker-image://busybox',
          '--build-context',
          `gsrc=${git.base}/gctx.git#main`,
          '--build-context',
          `layout=oci-layout://${testEnv().busyboxLayout}:busybox`,
          '--load',
          '-t',
          'bk-named:1',
          c,
        ],
        { env },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const code = await new Promise<number | null>((res) => child.once('exit', (x) => res(x)));
      assert.equal(code, 0, stderr);
      // BuildKit itself fetched the repository (buildx semantics: the URL goes to the daemon).
      assert.ok(
        git.requests.some((r) => /git-upload-pack/.test(r)),
        git.requests.join(', '),
      );
      assert.equal(
        ok(['run', '--rm', '--pull', 'never', '--platform', 'linux/amd64', 'bk-named:1']),
        'from dir\nfrom git\nroot:x:0:\n',
      );
    } finally {
      await git.stop();
    }
  });

  describe('ssh:// endpoints', { skip: sshSkip ?? false }, () => {
    let sshd: Sshd;
    let sshEnv: NodeJS.ProcessEnv;
    before(async () => {
      sshd = await startSshd(join(dir, 'sshd'));
      sshEnv = { PATH: `${sshd.pathDir}:${process.env.PATH}` };
    });
    after(() => sshd?.stop());

    test('a node reached through system ssh and buildctl dial-stdio builds and loads', () => {
      const ep = `ssh://root@127.0.0.1:${sshd.port}${amd.endpoint.slice('unix://'.length)}`;
      ok(['create', '--name', 'viassh', '--driver', 'remote', ep]);
      const insp = run(['builder', 'inspect', '--bootstrap', 'viassh'], sshEnv);
      assert.equal(insp.status, 0, insp.stderr);
      assert.match(insp.stdout, /Status: +running\nBuildKit version: +v0\.23\.2\nPlatforms: +linux\/amd64, /);
      const r = run(
        [
          'build',
          '--builder',
          'viassh',
          '--load',
          '-t',
          'viassh:1',
          '--secret',
          `id=tok,src=${join(dir, 'tok')}`,
          ctxDir,
        ],
        sshEnv,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.equal(ok(['run', '--rm', '--pull', 'never', 'viassh:1']), 'x86_64 linux/amd64 linux/amd64\n');
    });

    test('an ssh host that refuses: one-line error naming the node, exit 1', async () => {
      const ep = `ssh://root@127.0.0.1:${await freePort()}`;
      ok(['create', '--name', 'nossh', '--driver', 'remote', ep]);
      const r = run(['build', '--builder', 'nossh', ctxDir], sshEnv);
      assert.equal(r.status, 1);
      assert.match(
        r.stderr,
        /^ERROR: node nossh0 \(ssh:\/\/root@127\.0\.0\.1:\d+\): .*ssh exited \(255\): .*Connection refused\n$/,
      );
    });
  });
});
