/**
 * `polyarch build --push --load` output checked by tools that share no code with polyarch:
 * skopeo reads the pushed index from the registry and from the local store (an OCI layout) and
 * both hash to the digest `--metadata-file` reports; umoci unpacks one platform's manifest
 * (its blobs copied out of the store into a fresh layout) and the RUN/COPY results and CMD are
 * there; podman pulls the pushed image and runs its linux/amd64 variant.
 *
 * podman here needs `--cgroup-manager=cgroupfs` and rlimits at or under the host's hard limits
 * (its defaults raise nofile and nproc above them and runc refuses: "error setting rlimit"),
 * and gets a private storage root (vfs: no mounts to leave behind).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-crosscheck-'));
after(() => {
  // podman's vfs storage leaves no mounts; its files are plain directories.
  rmSync(root, { recursive: true, force: true });
});
const env = {
  ...process.env,
  POLYARCH_ROOT: join(root, 'state'),
  POLYARCH_CONFIG: tenv.config,
  POLYARCH_PROGRESS: 'plain',
};
const store = join(root, 'state', 'store');
const ref = `${tenv.registry}/crosscheck/app:${randomBytes(4).toString('hex')}`;
const platforms = [
  { platform: 'linux/amd64', arch: 'amd64', machine: 'x86_64' },
  { platform: 'linux/arm64', arch: 'arm64', machine: 'aarch64' },
  { platform: 'linux/arm/v7', arch: 'arm', machine: 'armv7l' },
] as const;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
}

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeout?: number } = {}) {
  const r = spawnSync(cmd, args, {
    env: opts.env ?? process.env,
    timeout: opts.timeout ?? 240_000,
    maxBuffer: 64 << 20,
  });
  const out = { status: r.status, stdout: r.stdout, stderr: r.stderr?.toString() ?? String(r.error) };
  assert.equal(out.status, 0, `${cmd} ${args.join(' ')}: ${out.stderr}`);
  return out;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blob = (digest: string) => readFileSync(join(store, 'blobs', 'sha256', digest.slice(7)));
const platformOf = (d: Descriptor) =>
  [d.platform?.os, d.platform?.architecture, d.platform?.variant].filter(Boolean).join('/');

let digest = '';
let index: { mediaType: string; manifests: Descriptor[] };

before(() => {
  const ctx = join(root, 'ctx');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(
    join(ctx, 'Dockerfile'),
    [
      'FROM busybox',
      'ARG TARGETARCH',
      'RUN echo "arch=$TARGETARCH machine=$(uname -m)" > /built',
      'COPY hello.txt /app/hello.txt',
      'CMD ["cat", "/built", "/app/hello.txt"]',
      '',
    ].join('\n'),
  );
  writeFileSync(join(ctx, 'hello.txt'), 'hello from the context\n');
  const meta = join(root, 'meta.json');
  run(
    bin,
    [
      'build',
      '--platform',
      platforms.map((p) => p.platform).join(','),
      '-t',
      ref,
      '--push',
      '--load',
      '--metadata-file',
      meta,
      ctx,
    ],
    { env },
  );
  const m = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, unknown>;
  digest = m['containerimage.digest'] as string;
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  index = JSON.parse(blob(digest).toString('utf8'));
});

test('a warm rebuild with --push is the same image and sends nothing', () => {
  const meta = join(root, 'meta-warm.json');
  const r = run(
    bin,
    [
      'build',
      '--progress',
      'plain',
      '--platform',
      platforms.map((p) => p.platform).join(','),
      '-t',
      ref,
      '--push',
      '--metadata-file',
      meta,
      join(root, 'ctx'),
    ],
    { env },
  );
  const m = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, unknown>;
  assert.equal(m['containerimage.digest'], digest);
  const log = r.stderr.toString();
  // The registry already serves this index under the tag: no blob or manifest goes up.
  assert.match(log, /pushing /);
  assert.doesNotMatch(log, /^#\d+ (manifest |sha256:)/m, log);
});

test('base layers from an image on the same registry are mounted, not uploaded', () => {
  const ctx = join(root, 'ctx-mount');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(join(ctx, 'Dockerfile'), `FROM ${tenv.busybox}\nRUN echo mounted > /m\n`);
  const target = `${tenv.registry}/crosscheck/mount:${randomBytes(4).toString('hex')}`;
  const r = run(
    bin,
    ['build', '--progress', 'plain', '--platform', 'linux/amd64', '-t', target, '--push', ctx],
    {
      env,
    },
  );
  const log = r.stderr.toString();
  // busybox's one layer comes from the registry's library/busybox; the RUN layer goes up.
  assert.match(log, /^#\d+ mounted sha256:[0-9a-f]{64} /m, log);
  assert.match(log, /^#\d+ sha256:[0-9a-f]{64} [\d.]+\w?B \/ [\d.]+\w?B .*done$/m, log);
  run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${target}`]);
});

test('skopeo: the registry and the local store hold the index --metadata-file names', () => {
  const remote = run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]).stdout;
  assert.equal(sha256(remote), digest, 'registry index digest');
  const local = run('skopeo', ['inspect', '--raw', `oci:${store}:${ref}`]).stdout;
  assert.equal(sha256(local), digest, 'local store index digest');
  assert.deepEqual(index.manifests.map(platformOf).sort(), platforms.map((p) => p.platform).sort());
  // Every platform's manifest resolves in the registry with the same bytes as in the store.
  for (const d of index.manifests) {
    const raw = run('skopeo', [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${ref.replace(/:[^:/]+$/, '')}@${d.digest}`,
    ]).stdout;
    assert.equal(sha256(raw), d.digest, platformOf(d));
    assert.deepEqual(raw, blob(d.digest));
  }
  // skopeo's own view of the config: the image for this host is amd64 with the Dockerfile's CMD.
  const cfg = JSON.parse(
    run('skopeo', [
      'inspect',
      '--config',
      '--override-arch',
      'arm64',
      `oci:${store}:${ref}`,
    ]).stdout.toString(),
  ) as { architecture: string; config: { Cmd: string[] } };
  assert.equal(cfg.architecture, 'arm64');
  assert.deepEqual(cfg.config.Cmd, ['cat', '/built', '/app/hello.txt']);
});

test('umoci: unpacking the linux/arm64 manifest shows the RUN and COPY results', () => {
  const d = index.manifests.find((m) => platformOf(m) === 'linux/arm64');
  assert.ok(d, 'no linux/arm64 in the index');
  // A fresh layout with only this manifest's blobs, copied byte for byte from the store.
  const layout = join(root, 'layout-arm64');
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const manifest = JSON.parse(blob(d.digest).toString('utf8')) as {
    config: Descriptor;
    layers: Descriptor[];
  };
  for (const b of [d, manifest.config, ...manifest.layers])
    copyFileSync(
      join(store, 'blobs', 'sha256', b.digest.slice(7)),
      join(layout, 'blobs', 'sha256', b.digest.slice(7)),
    );
  const entry = { ...d, annotations: { 'org.opencontainers.image.ref.name': 'arm64' } };
  delete entry.platform;
  writeFileSync(join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [entry] }));
  const bundle = join(root, 'bundle-arm64');
  run('umoci', ['unpack', '--image', `${layout}:arm64`, bundle]);
  const rootfs = join(bundle, 'rootfs');
  assert.equal(readFileSync(join(rootfs, 'built'), 'utf8'), 'arch=arm64 machine=aarch64\n');
  assert.equal(readFileSync(join(rootfs, 'app', 'hello.txt'), 'utf8'), 'hello from the context\n');
  // The base layer is there too: busybox for aarch64 (ELF e_machine 183).
  const elf = readFileSync(join(rootfs, 'bin', 'busybox'));
  assert.equal(elf.readUInt16LE(18), 183);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { args: string[] };
  };
  assert.deepEqual(spec.process.args, ['cat', '/built', '/app/hello.txt']);
});

test('podman runs the pushed linux/amd64 image', () => {
  const p = join(root, 'podman');
  const r = run(
    'podman',
    [
      '--root',
      join(p, 'root'),
      '--runroot',
      join(p, 'run'),
      '--storage-driver',
      'vfs',
      '--cgroup-manager=cgroupfs',
      // runc, as polyarch uses: Debian 12's crun 1.8 fails on this host.
      '--runtime',
      'runc',
      'run',
      '--rm',
      '--network',
      'host',
      '--ulimit',
      'nofile=1024:1024',
      '--ulimit',
      'nproc=1024:1024',
      '--tls-verify=false',
      '--platform',
      'linux/amd64',
      `docker://${ref}`,
    ],
    { timeout: 120_000 },
  );
  assert.equal(r.stdout.toString(), 'arch=amd64 machine=x86_64\nhello from the context\n');
});
