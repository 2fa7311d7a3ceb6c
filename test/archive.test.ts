/**
 * `polyarch save` / `load` through bin/polyarch: oci-archive and docker-archive round trips
 * into empty stores, skopeo reading what save writes and writing what load reads, gzip and
 * stdin, and broken archives that must fail with one line and leave the store unchanged.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { storeDir } from '../src/content/index.js';
import type { Index, Manifest } from '../src/oci/index.js';
import { hostPlatform } from '../src/platform/index.js';
import { testEnv } from './env/index.js';

const env = testEnv();
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tmp = mkdtempSync(join(tmpdir(), 'polyarch-archive-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A store of its own: POLYARCH_ROOT under tmp. */
function root(name: string) {
  const r = join(tmp, name);
  const procEnv = { ...process.env, POLYARCH_ROOT: r, SOURCE_DATE_EPOCH: '1700000000' };
  const dir = storeDir(procEnv);
  const run = (args: string[], input?: Buffer) => {
    const p = spawnSync(bin, args, { env: procEnv, ...(input ? { input } : {}), maxBuffer: 64 << 20 });
    return { status: p.status, stdout: p.stdout, stderr: p.stderr.toString() };
  };
  const ok = (args: string[], input?: Buffer): string => {
    const p = run(args, input);
    assert.equal(p.status, 0, `polyarch ${args.join(' ')}: ${p.stderr}`);
    return p.stdout.toString();
  };
  const index = (): Index =>
    existsSync(join(dir, 'index.json'))
      ? (JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as Index)
      : { schemaVersion: 2, manifests: [] };
  const refs = () =>
    Object.fromEntries(
      index().manifests.map((m) => [m.annotations?.['org.opencontainers.image.ref.name'], m.digest]),
    );
  const blobs = () =>
    existsSync(join(dir, 'blobs', 'sha256')) ? readdirSync(join(dir, 'blobs', 'sha256')).sort() : [];
  const blob = <T>(digest: string): T =>
    JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as T;
  return { dir, run, ok, refs, blobs, blob };
}

const src = root('src');
const rootfs = (p: string) => env.busyboxRootfs[p]!;
let multi: string;
let arm64Manifest: string;

before(() => {
  src.ok(['import', '--platform', 'linux/amd64', '-c', 'CMD ["sh"]', rootfs('linux/amd64'), 'bb:1']);
  multi = src
    .ok(['import', '--platform', 'linux/arm64', '-c', 'CMD ["sh"]', rootfs('linux/arm64/v8'), 'bb:1'])
    .trim();
  arm64Manifest = src.blob<Index>(multi).manifests[1]!.digest;
  src.ok(['tag', 'bb:1', '127.0.0.1:5000/other/bb:2']);
});

function untar(file: string, to: string): void {
  mkdirSync(to, { recursive: true });
  execFileSync('tar', ['-C', to, '-xf', file]);
}

function tarDir(from: string, file: string): void {
  execFileSync('tar', ['-C', from, '-cf', file, '.']);
}

test('oci-archive: save then load into an empty store gives the same names and digests', () => {
  const file = join(tmp, 'bb.oci.tar');
  src.ok(['save', '-o', file, 'bb:1', '127.0.0.1:5000/other/bb:2']);
  const again = join(tmp, 'bb2.oci.tar');
  src.ok(['save', '-o', again, 'bb:1', '127.0.0.1:5000/other/bb:2']);
  assert.ok(readFileSync(file).equals(readFileSync(again)), 'save is byte-reproducible');
  assert.ok(
    readFileSync(file).equals(src.run(['save', 'bb:1', '127.0.0.1:5000/other/bb:2']).stdout),
    'stdout',
  );
  assert.deepEqual(
    readdirSync(tmp).filter((f) => f.includes('.tmp-')),
    [],
    'no temp file left beside the output',
  );

  const dst = root('oci-dst');
  const out = dst.ok(['load', '-i', file]);
  assert.equal(out, 'Loaded image: bb:1\nLoaded image: 127.0.0.1:5000/other/bb:2\n');
  assert.deepEqual(dst.refs(), {
    'docker.io/library/bb:1': multi,
    '127.0.0.1:5000/other/bb:2': multi,
  });
  assert.deepEqual(dst.blobs(), src.blobs());

  // skopeo reads the archive by the full name.
  const info = JSON.parse(
    execFileSync(
      'skopeo',
      ['inspect', '--override-arch', 'arm64', `oci-archive:${file}:docker.io/library/bb:1`],
      {
        encoding: 'utf8',
      },
    ),
  );
  assert.equal(info.Architecture, 'arm64');
  const raw = JSON.parse(
    execFileSync('skopeo', ['inspect', '--raw', `oci-archive:${file}:127.0.0.1:5000/other/bb:2`], {
      encoding: 'utf8',
    }),
  ) as Index;
  assert.equal(raw.manifests.length, 2);
});

test('docker-archive: one platform per image, skopeo reads it, load keeps the digests', () => {
  const file = join(tmp, 'bb.docker.tar');
  src.ok([
    'save',
    '--format',
    'docker',
    '--platform',
    'linux/arm64',
    '-o',
    file,
    'bb:1',
    '127.0.0.1:5000/other/bb:2',
  ]);
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', file, 'manifest.json'], { encoding: 'utf8' }));
  const config = src.blob<Manifest>(arm64Manifest).config.digest;
  assert.equal(manifest.length, 1, 'two names of one image: one entry');
  assert.deepEqual(manifest[0].RepoTags, ['bb:1', '127.0.0.1:5000/other/bb:2']);
  assert.equal(manifest[0].Config, `${config.slice(7)}.json`);

  const info = JSON.parse(
    execFileSync('skopeo', ['inspect', `docker-archive:${file}`], { encoding: 'utf8' }),
  );
  assert.equal(info.Architecture, 'arm64');
  const diffId = src.blob<{ rootfs: { diff_ids: string[] } }>(config).rootfs.diff_ids[0];
  assert.deepEqual(info.Layers, [diffId], 'layers are uncompressed tars named by diff_id');

  // Loading recompresses the layer the way import did: the very same manifest digest.
  const dst = root('docker-dst');
  assert.equal(dst.ok(['load', '-i', file]), 'Loaded image: bb:1\nLoaded image: 127.0.0.1:5000/other/bb:2\n');
  assert.deepEqual(dst.refs(), {
    'docker.io/library/bb:1': arm64Manifest,
    '127.0.0.1:5000/other/bb:2': arm64Manifest,
  });

  // Without --platform the host's platform is saved.
  const host = join(tmp, 'host.docker.tar');
  src.ok(['save', '--format', 'docker', '-o', host, 'bb:1']);
  const hostInfo = JSON.parse(
    execFileSync('skopeo', ['inspect', `docker-archive:${host}`], { encoding: 'utf8' }),
  );
  assert.equal(hostInfo.Architecture, hostPlatform().architecture);
});

test('archives written by skopeo load, also gzip-compressed from stdin', () => {
  const oci = join(tmp, 'sk.oci.tar');
  const docker = join(tmp, 'sk.docker.tar');
  execFileSync('skopeo', [
    'copy',
    '-q',
    '--all',
    `oci:${env.busyboxLayout}:busybox`,
    `oci-archive:${oci}:skopeo/busybox:1`,
  ]);
  execFileSync('skopeo', [
    'copy',
    '-q',
    '--override-arch',
    'arm64',
    `oci:${env.busyboxLayout}:busybox`,
    `docker-archive:${docker}:example.com/bb:arm`,
  ]);
  const dst = root('skopeo-dst');
  assert.equal(dst.ok(['load', '-i', oci]), 'Loaded image: skopeo/busybox:1\n');
  const gz = execFileSync('gzip', ['-c', docker], { maxBuffer: 64 << 20 });
  assert.equal(dst.ok(['load'], gz), 'Loaded image: example.com/bb:arm\n');
  const refs = dst.refs();
  assert.equal(refs['docker.io/skopeo/busybox:1'], env.busyboxDigest);
  // The docker-archive image keeps its config (docker's image ID) byte for byte.
  const arm = dst.blob<Index>(env.busyboxDigest).manifests.find((m) => m.platform?.architecture === 'arm64')!;
  const loaded = dst.blob<Manifest>(refs['example.com/bb:arm']!);
  assert.equal(loaded.config.digest, dst.blob<Manifest>(arm.digest).config.digest);
});

test('broken archives: one-line errors, store unchanged', () => {
  const good = join(tmp, 'good.oci.tar');
  src.ok(['save', '-o', good, 'bb:1']);
  const goodDocker = join(tmp, 'good.docker.tar');
  src.ok(['save', '--format', 'docker', '-o', goodDocker, 'bb:1']);
  const layer = src.blob<Manifest>(arm64Manifest).layers[0]!.digest.slice(7);

  // A blob whose content does not match its name.
  const corrupt = join(tmp, 'corrupt');
  untar(good, corrupt);
  const blobPath = join(corrupt, 'blobs', 'sha256', layer);
  const bytes = readFileSync(blobPath);
  bytes[1000] = bytes[1000]! ^ 0xff;
  writeFileSync(blobPath, bytes);
  tarDir(corrupt, join(tmp, 'corrupt.tar'));

  // A layer the manifest needs is missing.
  unlinkSync(blobPath);
  tarDir(corrupt, join(tmp, 'missing.tar'));

  // docker-archive whose config's diff_id does not match the layer.
  const dock = join(tmp, 'dock');
  untar(goodDocker, dock);
  const m = JSON.parse(readFileSync(join(dock, 'manifest.json'), 'utf8'));
  const cfg = JSON.parse(readFileSync(join(dock, m[0].Config), 'utf8'));
  cfg.rootfs.diff_ids[0] = `sha256:${createHash('sha256').update('other').digest('hex')}`;
  writeFileSync(join(dock, 'c.json'), JSON.stringify(cfg));
  m[0].Config = 'c.json';
  writeFileSync(join(dock, 'manifest.json'), JSON.stringify(m));
  tarDir(dock, join(tmp, 'diffid.tar'));

  writeFileSync(join(tmp, 'not-a-tar'), 'hello\n'.repeat(200));
  writeFileSync(join(tmp, 'truncated.tar'), readFileSync(good).subarray(0, 100_000));
  const empty = join(tmp, 'empty-dir');
  mkdirSync(join(empty, 'x'), { recursive: true });
  tarDir(empty, join(tmp, 'neither.tar'));

  const dst = root('bad-dst');
  dst.ok(['images']);
  const snapshot = () => JSON.stringify([dst.refs(), dst.blobs(), readdirSync(join(dst.dir, 'ingest'))]);
  const before = snapshot();
  const cases: Array<[string, string, RegExp]> = [
    ['missing file', join(tmp, 'nope.tar'), /^ERROR: archive .*nope\.tar: ENOENT/],
    ['not a tar', join(tmp, 'not-a-tar'), /^ERROR: archive .*not-a-tar: not a tar archive/],
    ['truncated', join(tmp, 'truncated.tar'), /^ERROR: archive .*truncated\.tar: tar: .*unexpected end/],
    [
      'corrupt blob',
      join(tmp, 'corrupt.tar'),
      new RegExp(`^ERROR: archive .*corrupt\\.tar: blob blobs/sha256/${layer} does not match its name`),
    ],
    [
      'missing blob',
      join(tmp, 'missing.tar'),
      /^ERROR: archive .*missing\.tar: blob sha256:\w+ \(manifest sha256:\w+\) is neither in the archive nor in the store/,
    ],
    [
      'wrong diff_id',
      join(tmp, 'diffid.tar'),
      /^ERROR: archive .*diffid\.tar: layer \w+\.tar has diff_id sha256:\w+, its config says sha256:\w+/,
    ],
    [
      'neither format',
      join(tmp, 'neither.tar'),
      /^ERROR: archive .*neither\.tar: it is neither an oci-archive/,
    ],
  ];
  for (const [name, file, re] of cases) {
    const r = dst.run(['load', '-i', file]);
    assert.equal(r.status, 1, `${name}: ${r.stderr}`);
    assert.match(r.stderr, re, name);
    assert.equal(r.stderr.split('\n').length, 2, `${name}: one line`);
    assert.equal(snapshot(), before, `${name}: store unchanged`);
  }
});

test('save errors leave no output file', () => {
  const out = join(tmp, 'never.tar');
  const cases: Array<[string, string[], number, RegExp]> = [
    [
      'unknown image',
      ['save', '-o', out, 'bb:1', 'nope:1'],
      1,
      /^ERROR: no such image "nope:1" in the local store\n$/,
    ],
    [
      'platform not in the index',
      ['save', '--format', 'docker', '--platform', 'linux/s390x', '-o', out, 'bb:1'],
      1,
      /^ERROR: image "docker.io\/library\/bb:1" has no linux\/s390x manifest in the store \(has linux\/amd64, linux\/arm64\)/,
    ],
    ['bad format', ['save', '--format', 'zip', '-o', out, 'bb:1'], 2, /^ERROR: invalid --format "zip"/],
    [
      'no such directory',
      ['save', '-o', join(tmp, 'no', 'dir.tar'), 'bb:1'],
      1,
      /^ERROR: writing .*dir\.tar: ENOENT/,
    ],
  ];
  for (const [name, args, status, re] of cases) {
    const r = src.run(args);
    assert.equal(r.status, status, `${name}: ${r.stderr}`);
    assert.match(r.stderr, re, name);
    assert.equal(existsSync(out), false, name);
  }
});
