/**
 * `polyarch import` through bin/polyarch with POLYARCH_ROOT in a temp dir: the env's busybox
 * rootfs dirs for several platforms under one name (an index; re-import replaces a platform),
 * tarballs (gzip, zstd, stdin), --change and -m, umoci reading the result, and bad input that
 * must leave the store unchanged.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { storeDir } from '../src/content/index.js';
import type { Descriptor, ImageConfig, Index, Manifest } from '../src/oci/index.js';
import { hostPlatform } from '../src/platform/index.js';
import { testEnv } from './env/index.js';

const env = testEnv();
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tmp = mkdtempSync(join(tmpdir(), 'polyarch-import-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const procEnv = { ...process.env, POLYARCH_ROOT: join(tmp, 'root'), SOURCE_DATE_EPOCH: '1700000000' };
const dir = storeDir(procEnv);
const rootfs = (p: string) => env.busyboxRootfs[p]!;

function polyarch(args: string[], input?: Buffer): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { env: procEnv, encoding: 'utf8', ...(input ? { input } : {}) });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(args: string[], input?: Buffer): string {
  const r = polyarch(args, input);
  assert.equal(r.status, 0, `polyarch ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

function blob<T>(digest: string): T {
  return JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as T;
}

function ref(name: string): Descriptor | undefined {
  const idx = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Index;
  return idx.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === name);
}

function configOf(manifestDigest: string): ImageConfig {
  return blob<ImageConfig>(blob<Manifest>(manifestDigest).config.digest);
}

function snapshot(): string {
  const blobs = existsSync(join(dir, 'blobs', 'sha256'))
    ? readdirSync(join(dir, 'blobs', 'sha256')).sort()
    : [];
  const index = existsSync(join(dir, 'index.json')) ? readFileSync(join(dir, 'index.json'), 'utf8') : '';
  return `${index}\n${blobs.join('\n')}`;
}

const platformsOf = (idx: Index) =>
  idx.manifests.map((m) =>
    [m.platform!.os, m.platform!.architecture, m.platform!.variant].filter(Boolean).join('/'),
  );

test('several platforms under one name build an index; re-import replaces one in place', () => {
  const first = ok(['import', '--platform', 'linux/amd64', rootfs('linux/amd64'), 'multi:1']);
  const single = ref('docker.io/library/multi:1')!;
  assert.equal(single.digest, first);
  assert.equal(single.mediaType, 'application/vnd.oci.image.manifest.v1+json');

  ok(['import', '--platform', 'linux/arm64', rootfs('linux/arm64/v8'), 'multi:1']);
  const root = ok(['import', '--platform', 'linux/arm/v7', rootfs('linux/arm/v7'), 'multi:1']);
  const desc = ref('docker.io/library/multi:1')!;
  assert.equal(desc.digest, root);
  assert.equal(desc.mediaType, 'application/vnd.oci.image.index.v1+json');
  const idx = blob<Index>(root);
  assert.deepEqual(platformsOf(idx), ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
  assert.equal(idx.manifests[0]!.digest, first, 'the first manifest is kept as it was');
  for (const m of idx.manifests) {
    const cfg = configOf(m.digest);
    assert.deepEqual(
      [cfg.os, cfg.architecture, cfg.variant],
      [m.platform!.os, m.platform!.architecture, m.platform!.variant],
    );
    assert.equal(cfg.created, '2023-11-14T22:13:20Z', 'created is SOURCE_DATE_EPOCH');
    assert.equal(
      blob<Manifest>(m.digest).layers[0]!.mediaType,
      'application/vnd.oci.image.layer.v1.tar+gzip',
    );
  }

  // Same tree, same platform: same digests (SOURCE_DATE_EPOCH set), nothing changes.
  assert.equal(ok(['import', '--platform', 'linux/arm/v7', rootfs('linux/arm/v7'), 'multi:1']), root);

  // A changed arm64 image replaces the arm64 entry where it was; `arm64/v8` is the same platform.
  const replaced = ok([
    'import',
    '--platform',
    'linux/arm64/v8',
    '-c',
    'CMD ["sh"]',
    rootfs('linux/arm64/v8'),
    'multi:1',
  ]);
  const idx2 = blob<Index>(replaced);
  assert.deepEqual(platformsOf(idx2), ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
  assert.equal(idx2.manifests[0]!.digest, idx.manifests[0]!.digest);
  assert.notEqual(idx2.manifests[1]!.digest, idx.manifests[1]!.digest);
  assert.equal(idx2.manifests[2]!.digest, idx.manifests[2]!.digest);
  assert.deepEqual(configOf(idx2.manifests[1]!.digest).config?.Cmd, ['sh']);

  const rows = ok(['images', '--format', 'json', 'multi:1'])
    .split('\n')
    .map((l) => JSON.parse(l).Platform);
  assert.deepEqual(rows, ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
});

test('concurrent imports of two platforms into one name lose neither', async () => {
  const run = (args: string[]) =>
    new Promise<number | null>((done) => {
      const child = spawn(bin, args, { env: procEnv, stdio: 'ignore' });
      child.on('close', done);
    });
  const codes = await Promise.all([
    run(['import', '--platform', 'linux/s390x', rootfs('linux/s390x'), 'race:1']),
    run(['import', '--platform', 'linux/ppc64le', rootfs('linux/ppc64le'), 'race:1']),
  ]);
  assert.deepEqual(codes, [0, 0]);
  const idx = blob<Index>(ref('docker.io/library/race:1')!.digest);
  assert.deepEqual(platformsOf(idx).sort(), ['linux/ppc64le', 'linux/s390x']);
});

test('tarballs: gzip from a file, zstd from stdin; diff_id is the tar as given', () => {
  const plain = execFileSync('tar', ['-C', rootfs('linux/ppc64le'), '-c', '.'], { maxBuffer: 64 << 20 });
  const tgz = join(tmp, 'rootfs.tar.gz');
  writeFileSync(tgz, execFileSync('gzip', ['-c'], { input: plain, maxBuffer: 64 << 20 }));
  const diffId = `sha256:${createHash('sha256').update(plain).digest('hex')}`;

  const m = ok(['import', '--platform', 'linux/ppc64le', tgz, 'tarball:gz']);
  const manifest = blob<Manifest>(m);
  const cfg = blob<ImageConfig>(manifest.config.digest);
  assert.deepEqual(cfg.rootfs.diff_ids, [diffId]);
  assert.equal(cfg.architecture, 'ppc64le');
  assert.equal(cfg.history?.[0]?.comment, `Imported from ${tgz}`);
  const layer = readFileSync(join(dir, 'blobs', 'sha256', manifest.layers[0]!.digest.slice(7)));
  assert.ok(gunzipSync(layer).equals(plain), 'the layer is the tarball recompressed');

  const zst = execFileSync('zstd', ['-q', '-c'], { input: plain, maxBuffer: 64 << 20 });
  const m2 = ok(['import', '--platform', 'linux/ppc64le', '-m', 'from a pipe', '-', 'tarball:zst'], zst);
  const cfg2 = configOf(m2);
  assert.deepEqual(cfg2.rootfs.diff_ids, [diffId]);
  assert.deepEqual(cfg2.history, [{ created: '2023-11-14T22:13:20Z', comment: 'from a pipe' }]);
  assert.equal(blob<Manifest>(m2).layers[0]!.digest, manifest.layers[0]!.digest, 'same tar, same layer');
});

test('--change sets the config; the default platform is the host', () => {
  const m = ok([
    'import',
    '--change',
    'ENTRYPOINT ["/bin/busybox"]',
    '-c',
    'CMD sh',
    '-c',
    'ENV PATH=/bin:/usr/bin HOME=/root',
    '-c',
    'WORKDIR $HOME',
    '-c',
    'EXPOSE 8080 53/udp',
    '-c',
    'LABEL org.example.k="v w"',
    '-c',
    'USER nobody',
    '-c',
    'VOLUME /data',
    '-c',
    'STOPSIGNAL SIGINT',
    rootfs('linux/amd64'),
    'changed',
  ]);
  const cfg = configOf(m);
  assert.deepEqual(cfg.config, {
    Entrypoint: ['/bin/busybox'],
    Cmd: ['/bin/sh', '-c', 'sh'],
    Env: ['PATH=/bin:/usr/bin', 'HOME=/root'],
    WorkingDir: '/root',
    ExposedPorts: { '8080/tcp': {}, '53/udp': {} },
    Labels: { 'org.example.k': 'v w' },
    User: 'nobody',
    Volumes: { '/data': {} },
    StopSignal: 'SIGINT',
  });
  assert.equal(cfg.architecture, hostPlatform().architecture);
  assert.equal(cfg.os, 'linux');
});

test('umoci unpacks an imported manifest', () => {
  ok(['import', '--platform', 'linux/amd64', '-c', 'CMD ["sh"]', rootfs('linux/amd64'), 'unpack:amd64']);
  const bundle = join(tmp, 'bundle');
  execFileSync('umoci', ['unpack', '--image', `${dir}:docker.io/library/unpack:amd64`, bundle], {
    stdio: 'pipe',
  });
  assert.ok(existsSync(join(bundle, 'rootfs', 'bin', 'busybox')));
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  assert.deepEqual(spec.process.args, ['sh']);
});

test('bad input: one-line errors naming the input, store unchanged', () => {
  const notTar = join(tmp, 'not-a-tar');
  writeFileSync(notTar, 'this is not a tar archive\n'.repeat(40));
  const before = snapshot();
  const cases: Array<{ name: string; args: string[]; status: number; re: RegExp }> = [
    {
      name: 'bad platform',
      args: ['import', '--platform', 'linux/', rootfs('linux/amd64'), 'bad:1'],
      status: 1,
      re: /^ERROR: invalid platform "linux\/": architecture is empty\n$/,
    },
    {
      name: 'unknown architecture',
      args: ['import', '--platform', 'linux/z80', rootfs('linux/amd64'), 'bad:1'],
      status: 1,
      re: /^ERROR: invalid platform "linux\/z80": unknown architecture/,
    },
    {
      name: 'missing source',
      args: ['import', join(tmp, 'nope'), 'bad:1'],
      status: 1,
      re: /^ERROR: import source ".*\/nope": ENOENT/,
    },
    {
      name: 'not a tar',
      args: ['import', notTar, 'bad:1'],
      status: 1,
      re: /^ERROR: import source ".*not-a-tar": not a tar archive/,
    },
    {
      name: 'unsupported change',
      args: ['import', '-c', 'RUN true', rootfs('linux/amd64'), 'bad:1'],
      status: 1,
      re: /^ERROR: invalid --change "RUN true": RUN is not a supported change/,
    },
    {
      name: 'digest reference',
      args: ['import', rootfs('linux/amd64'), `bad@sha256:${'a'.repeat(64)}`],
      status: 1,
      re: /^ERROR: cannot import to "bad@sha256:a+": a name with a digest cannot be tagged/,
    },
    {
      name: 'invalid name',
      args: ['import', rootfs('linux/amd64'), 'Bad:1'],
      status: 1,
      re: /^ERROR: invalid reference "Bad:1"/,
    },
    {
      name: 'missing REF',
      args: ['import', rootfs('linux/amd64')],
      status: 2,
      re: /^ERROR: missing required argument/,
    },
  ];
  for (const c of cases) {
    const r = polyarch(c.args);
    assert.equal(r.status, c.status, `${c.name}: ${r.stderr}`);
    assert.match(r.stderr, c.re, c.name);
    assert.equal(r.stdout, '', c.name);
    assert.equal(snapshot(), before, `${c.name}: store unchanged`);
  }
  assert.deepEqual(readdirSync(join(dir, 'ingest')), [], 'no temp files left');
});
