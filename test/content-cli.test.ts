/**
 * The store commands through bin/polyarch, with POLYARCH_ROOT in a temp dir: images
 * (image ls), tag, rmi, prune, du — and bad input that must leave the store unchanged.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ContentStore, storeDir } from '../src/content/index.js';
import { gzipSync } from 'node:zlib';
import { formatTable, humanSize } from '../src/cli/commands/images.js';
import { writeTar } from '../src/layer/tar.js';
import { type Descriptor, MediaType } from '../src/oci/index.js';

/** A gzip layer holding one file of `size` bytes: unpacked `size`, compressed far less. */
async function layerOf(size: number, fill: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of writeTar([
    { header: { path: 'data', type: 'file', size }, body: Buffer.alloc(size, fill) },
  ]))
    parts.push(Buffer.from(c));
  return gzipSync(Buffer.concat(parts));
}

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const root = mkdtempSync(join(tmpdir(), 'polyarch-cli-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
const env = { ...process.env, POLYARCH_ROOT: root };
const dir = storeDir(env);

function polyarch(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { env, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function snapshot(): { index: string; blobs: string[] } {
  return {
    index: readFileSync(join(dir, 'index.json'), 'utf8'),
    blobs: readdirSync(join(dir, 'blobs', 'sha256')).sort(),
  };
}

let index: Descriptor;
let amd: Descriptor;

before(async () => {
  const store = await ContentStore.open(dir);
  const manifests: Descriptor[] = [];
  for (const [architecture, layerSize] of [
    ['amd64', 1_500_000],
    ['arm64', 2_200_000],
  ] as const) {
    const layer = await store.writeBlob(await layerOf(layerSize, architecture));
    const config = await store.writeJson(
      { architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } },
      MediaType.OciConfig,
    );
    const m = await store.writeJson(
      {
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config,
        layers: [{ mediaType: MediaType.OciLayerGzip, ...layer }],
      },
      MediaType.OciManifest,
    );
    manifests.push({ ...m, platform: { architecture, os: 'linux' } });
  }
  amd = manifests[0]!;
  index = await store.writeJson(
    { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests },
    MediaType.OciIndex,
  );
  await store.tag('docker.io/library/busybox:latest', index);
  await store.tag('localhost:5000/app:1', amd);
});

test('humanSize follows docker (decimal units, 3 significant digits)', () => {
  const cases: Array<[number, string]> = [
    [0, '0B'],
    [855, '855B'],
    [1000, '1kB'],
    [1240, '1.24kB'],
    [1_500_151, '1.5MB'],
    [12_345_678, '12.3MB'],
    [1_234_567_890, '1.23GB'],
  ];
  for (const [n, want] of cases) assert.equal(humanSize(n), want, String(n));
  assert.equal(
    formatTable([
      ['A', 'BB'],
      ['CCCCCCCCCCC', 'D'],
    ]),
    'A             BB\nCCCCCCCCCCC   D\n',
  );
});

test('images lists one row per platform; image ls is the same; a filter narrows it', () => {
  const r = polyarch('images');
  assert.equal(r.status, 0, r.stderr);
  const id = index.digest.slice(7, 19);
  const amdId = amd.digest.slice(7, 19);
  const lines = r.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^REPOSITORY\s+TAG\s+PLATFORM\s+IMAGE ID\s+CREATED\s+SIZE$/);
  const cells = lines.slice(1).map((l) => l.split(/ {3,}/));
  // SIZE is docker's: the unpacked content of that platform's layers (these configs have no time).
  assert.deepEqual(cells, [
    ['busybox', 'latest', 'linux/amd64', id, 'N/A', '1.5MB'],
    ['busybox', 'latest', 'linux/arm64', id, 'N/A', '2.2MB'],
    ['localhost:5000/app', '1', 'linux/amd64', amdId, 'N/A', '1.5MB'],
  ]);
  assert.equal(r.stderr, '');
  assert.equal(polyarch('image', 'ls').stdout, r.stdout);
  const only = polyarch('images', 'busybox').stdout.trimEnd().split('\n');
  assert.equal(only.length, 3);
  assert.deepEqual(polyarch('images', '-q').stdout, `${id}\n${amdId}\n`);
  const json = polyarch('images', '--format', 'json')
    .stdout.trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(json[1].Platform, 'linux/arm64');
  assert.equal(json[1].Digest, index.digest);
});

test('images --format: docker templates, table, json; --filter; --tree', () => {
  const id = index.digest.slice(7, 19);
  const ok = (...args: string[]) => {
    const r = polyarch(...args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // docker's docs: compare the sizes of images
  assert.equal(
    ok('images', '--format', '{{.Repository}}:{{.Tag}} {{.Size}}'),
    'busybox:latest 1.5MB\nbusybox:latest 2.2MB\nlocalhost:5000/app:1 1.5MB\n',
  );
  const sizes = ok('images', '--format', '{{.Platform}} {{.Size}} {{.ContentSize}}').trimEnd().split('\n');
  for (const line of sizes) {
    const [, unpacked, content] = line.split(' ');
    assert.notEqual(unpacked, content, 'the compressed size is its own field');
    assert.match(content!, /^\d+(\.\d+)?kB$/);
  }
  assert.equal(
    ok('images', '--format', 'table {{.ID}}\t{{.Repository}}\t{{.Tag}}', 'busybox'),
    `IMAGE ID       REPOSITORY   TAG\n${id}   busybox      latest\n${id}   busybox      latest\n`,
  );
  const json = ok('images', '--format', 'json', 'localhost:5000/app').trimEnd().split('\n');
  assert.equal(json.length, 1);
  const row = JSON.parse(json[0]!);
  assert.deepEqual(Object.keys(row), [...Object.keys(row)].sort(), 'keys sorted, as docker prints them');
  assert.equal(row.Repository, 'localhost:5000/app');
  assert.equal(row.Size, '1.5MB');
  assert.equal(row.Containers, 'N/A');
  assert.equal(
    ok(
      'images',
      '--format',
      '{{range $i, $p := split .Platform "/"}}{{if $i}}-{{end}}{{upper $p}}{{end}}',
      'localhost:5000/app',
    ),
    'LINUX-AMD64\n',
  );
  assert.equal(
    ok('images', '--filter', 'reference=busy*', '--format', '{{.Platform}}'),
    'linux/amd64\nlinux/arm64\n',
  );
  assert.equal(
    ok('images', '-f', 'reference=localhost:5000/*:1', '--format', '{{.Repository}}'),
    'localhost:5000/app\n',
  );
  assert.equal(ok('images', '--filter', 'platform=linux/arm64', '--format', '{{.Repository}}'), 'busybox\n');
  assert.equal(ok('images', '--filter', 'dangling=true', '-q'), '');
  assert.equal(ok('images', '--filter', 'dangling=false', '--format', '{{.Tag}}').split('\n').length, 4);
  const tree = ok('images', '--tree').split('\n');
  assert.equal(tree[0], `IMAGE${' '.repeat(18)}ID             DISK USAGE   CONTENT SIZE   EXTRA`);
  assert.match(tree[1]!, new RegExp(`^busybox:latest +${id} +3\\.7MB +\\S+kB$`));
  assert.match(tree[2]!, new RegExp(`^├─ linux/amd64 +${amd.digest.slice(7, 19)} +1\\.5MB +\\S+kB$`));
  assert.match(tree[3]!, /^└─ linux\/arm64 +\w{12} +2\.2MB +\S+kB$/);
  assert.equal(tree[4], '');
  assert.match(tree[5]!, new RegExp(`^localhost:5000/app:1 +${amd.digest.slice(7, 19)} +1\\.5MB`));
  assert.match(tree[6]!, /^└─ linux\/amd64 /);
  const clash = polyarch('images', '--tree', '--format', 'json');
  assert.equal(clash.status, 2);
  assert.equal(clash.stderr, 'ERROR: --format is not yet supported with --tree\n');
});

test('bad input: a missing ref is exit 1 with one ERROR line, and the store is unchanged', () => {
  const before = snapshot();
  for (const args of [
    ['rmi', 'nope'],
    ['rmi', 'busybox', 'nope:1'],
    ['tag', 'nope', 'other'],
  ]) {
    const r = polyarch(...args);
    assert.equal(r.status, 1, args.join(' '));
    const missing = args[args.length - 1] === 'other' ? 'nope' : args[args.length - 1]!;
    assert.equal(r.stderr, `ERROR: no such image "${missing}" in the local store\n`, args.join(' '));
    assert.equal(r.stdout, '');
    assert.deepEqual(snapshot(), before, args.join(' '));
  }
  const usage = polyarch('images', '--filter', 'color=red');
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /^ERROR: invalid --filter "color=red": unknown filter "color"/);
  const bad = polyarch('images', '--format', '{{.Repository}} {{.Nope}}');
  assert.equal(bad.status, 1, 'a template error exits 1, as docker');
  assert.equal(
    bad.stderr,
    `ERROR: template parsing error: template: :1:18: executing "" at <.Nope>: can't evaluate field Nope in type *formatter.imageContext\n`,
  );
  assert.equal(bad.stdout, '');
  const parse = polyarch('images', '--format', '{{.Repository | nope}}');
  assert.equal(parse.status, 1);
  assert.equal(parse.stderr, 'ERROR: template parsing error: template: :1:16: function "nope" not defined\n');
});

test('tag, du, rmi of a shared image, prune, then rmi of everything', async () => {
  let r = polyarch('tag', 'busybox', 'mybox:2');
  assert.equal(r.status, 0, r.stderr);
  const store = await ContentStore.open(dir);
  assert.equal((await store.resolve('docker.io/library/mybox:2'))?.digest, index.digest);

  r = polyarch('du');
  assert.equal(r.status, 0, r.stderr);
  // du counts the blobs as stored (compressed).
  const total = humanSize(
    snapshot().blobs.reduce((n, b) => n + statSync(join(dir, 'blobs', 'sha256', b)).size, 0),
  );
  assert.match(r.stdout, new RegExp(`^docker\\.io/library/busybox:latest\\s+7\\s+${total}\\s+0B$`, 'm'));
  assert.match(r.stdout, /^localhost:5000\/app:1\s+3\s+\S+\s+0B$/m);
  assert.match(r.stdout, new RegExp(`^Total:\\s+7 blobs, ${total}$`, 'm'));

  // Another name still reaches every blob: untagging frees nothing.
  r = polyarch('rmi', 'mybox:2', 'localhost:5000/app:1');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'Untagged: docker.io/library/mybox:2\nUntagged: localhost:5000/app:1\n');
  assert.equal(snapshot().blobs.length, 7);

  const loose = await store.writeBlob(Buffer.alloc(4321, 1));
  r = polyarch('prune');
  assert.equal(r.status, 0, r.stderr);
  // No build cache here: the cache part frees nothing (buildx prints `Total: 0B` too).
  assert.equal(r.stdout, 'Total:    0B\nDeleted blobs: 1\nTotal reclaimed space: 4.32kB\n');
  assert.equal(await store.has(loose.digest), false);

  r = polyarch('rmi', 'busybox');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `Untagged: docker.io/library/busybox:latest\nDeleted: 7 blobs, ${total}\n`);
  assert.deepEqual(snapshot().blobs, []);
  assert.equal(polyarch('images').stdout, 'REPOSITORY   TAG       PLATFORM   IMAGE ID   CREATED   SIZE\n');
  assert.match(polyarch('du').stdout, /^Total:\s+0 blobs, 0B$/m);
});
