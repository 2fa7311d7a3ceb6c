import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { applyLayer, applyLayerBlob, cleanEntryPath } from './apply.js';
import { compressLayer } from './compress.js';
import { overlayDiffEntries, packOverlayDiff } from './diff.js';
import { packDir } from './pack.js';
import { type TarEntryInput, writeTar } from './tar.js';
import { makeTree, manifest } from './testtree.js';
import { xattrBackend } from './xattr.js';

const tmp = mkdtempSync(join(tmpdir(), 'polyarch-apply-'));
const mounts: string[] = [];
after(() => {
  for (const m of mounts) {
    try {
      execFileSync('umount', [m]);
    } catch {}
  }
  rmSync(tmp, { recursive: true, force: true });
});
const isRoot = process.getuid?.() === 0;

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

let n = 0;
function freshDir(name: string): string {
  const d = join(tmp, `${name}-${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

async function tarOf(entries: TarEntryInput[]): Promise<Buffer> {
  return collect(writeTar(entries));
}

const file = (path: string, content = 'x'): TarEntryInput => ({
  header: { path, type: 'file', size: Buffer.byteLength(content), mode: 0o644 },
  body: Buffer.from(content),
});
const dir = (path: string): TarEntryInput => ({ header: { path, type: 'dir', mode: 0o755 } });
const sym = (path: string, linkpath: string): TarEntryInput => ({
  header: { path, type: 'symlink', linkpath },
});
const hard = (path: string, linkpath: string): TarEntryInput => ({
  header: { path, type: 'hardlink', linkpath },
});

describe('applyLayer', () => {
  test('pack → apply reproduces the tree (types, modes, owners, hardlinks, mtimes) and returns the diff_id', async () => {
    const src = freshDir('src');
    makeTree(src, { mtime: 1_600_000_000 });
    const tar = await collect(packDir(src));
    const dest = freshDir('dest');
    const r = await applyLayer([tar], dest);
    assert.equal(r.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
    assert.equal(r.size, tar.length);
    assert.deepEqual(manifest(dest, { mtime: true }), manifest(src, { mtime: true }));
  });

  test('gzip blob: decompressed by magic, same diff_id as compression reported', async () => {
    const src = freshDir('src');
    makeTree(src);
    const blob = join(tmp, 'blob.gz');
    const { createWriteStream, createReadStream } = await import('node:fs');
    const c = await compressLayer(Readable.from(packDir(src)), createWriteStream(blob), { threads: 2 });
    const dest = freshDir('dest');
    const r = await applyLayerBlob(createReadStream(blob), dest);
    assert.equal(r.compression, 'gzip');
    assert.equal(r.diffId, c.diffId);
    assert.deepEqual(manifest(dest), manifest(src));
  });

  test('cleanEntryPath', () => {
    assert.deepEqual(cleanEntryPath('./a//b/./c/'), ['a', 'b', 'c']);
    assert.deepEqual(cleanEntryPath('/etc/x'), ['etc', 'x']);
    assert.deepEqual(cleanEntryPath('a/../b'), ['b']);
    assert.throws(
      () => cleanEntryPath('../../etc/x'),
      /layer entry "..\/..\/etc\/x": path climbs out of the root/,
    );
    assert.throws(() => cleanEntryPath('a/../../x'), /climbs out/);
  });
});

describe('applyLayer never writes outside the root', () => {
  const outside = freshDir('outside');
  writeFileSync(join(outside, 'victim'), 'original');

  const cases: Array<{
    name: string;
    entries: TarEntryInput[];
    error?: RegExp;
    check?: (root: string) => void;
  }> = [
    {
      name: '../ escape is rejected',
      entries: [file('../../outside/victim', 'pwned')],
      error: /climbs out of the root/,
    },
    {
      name: 'a/../../ escape is rejected',
      entries: [file('a/../../victim', 'pwned')],
      error: /climbs out of the root/,
    },
    {
      name: 'absolute path lands inside the root',
      entries: [file(`${outside}/victim`, 'inside')],
      check: (root) => assert.equal(readFileSync(join(root, outside, 'victim'), 'utf8'), 'inside'),
    },
    {
      name: 'symlink to / as parent is resolved inside the root',
      entries: [sym('a', '/'), file(`a${outside}/victim`, 'inside')],
      check: (root) => {
        assert.equal(readFileSync(join(root, outside, 'victim'), 'utf8'), 'inside');
        assert.equal(readlinkSync(join(root, 'a')), '/');
      },
    },
    {
      name: 'symlink to ../../.. as parent stops at the root',
      entries: [sym('up', '../../../../..'), file(`up${outside}/victim`, 'inside')],
      check: (root) => assert.equal(readFileSync(join(root, outside, 'victim'), 'utf8'), 'inside'),
    },
    {
      name: 'symlink to the outside directory as parent',
      entries: [sym('o', outside), file('o/victim', 'inside')],
      check: (root) => assert.equal(readFileSync(join(root, outside, 'victim'), 'utf8'), 'inside'),
    },
    {
      name: 'file over a symlink replaces the symlink, not its target',
      entries: [sym('v', `${outside}/victim`), file('v', 'replaced')],
      check: (root) => {
        assert.ok(lstatSync(join(root, 'v')).isFile());
        assert.equal(readFileSync(join(root, 'v'), 'utf8'), 'replaced');
      },
    },
    {
      name: 'hardlink climbing out is rejected',
      entries: [hard('h', '../../outside/victim')],
      error: /climbs out of the root/,
    },
    {
      name: 'hardlink with an absolute target means a path in the root',
      entries: [hard('h', `${outside}/victim`)],
      error: /hardlink target ".*victim" does not exist/,
    },
    {
      name: 'hardlink through a symlinked parent stays inside',
      entries: [sym('o', outside), hard('h', 'o/victim')],
      error: /does not exist/,
    },
    {
      name: 'symlink loop as parent',
      entries: [sym('l', 'l'), file('l/x')],
      error: /too many levels of symbolic links/,
    },
    { name: 'file as parent', entries: [file('f'), file('f/x')], error: /parent .* is not a directory/ },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const root = freshDir('root');
      const tar = await tarOf(c.entries);
      if (c.error) await assert.rejects(applyLayer([tar], root), c.error);
      else {
        await applyLayer([tar], root);
        c.check?.(root);
      }
      assert.equal(
        readFileSync(join(outside, 'victim'), 'utf8'),
        'original',
        'the outside file is untouched',
      );
    });
  }

  test('symlink pre-existing in the lower tree is not followed', async () => {
    const root = freshDir('root');
    symlinkSync(outside, join(root, 'lowerlink'));
    await applyLayer([await tarOf([file('lowerlink/victim', 'inside')])], root);
    assert.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'original');
    assert.equal(readFileSync(join(root, outside, 'victim'), 'utf8'), 'inside');
  });
});

const layer1: TarEntryInput[] = [
  dir('etc'),
  file('etc/hosts', 'hosts'),
  file('etc/passwd', 'passwd'),
  dir('usr'),
  dir('usr/lib'),
  file('usr/lib/libc.so', 'libc'),
  file('usr/old', 'old'),
  dir('var'),
  file('var/keep', 'keep'),
  file('usr/+implicit/lower', 'lower'),
  file('var/+d/old', 'old'),
];
const layer2: TarEntryInput[] = [
  dir('etc'),
  file('etc/.wh.hosts', ''),
  dir('usr'),
  file('usr/+implicit/child', 'parent dir implied, written before the opaque marker'),
  file('usr/+plus', 'written before the opaque marker'),
  file('usr/.wh..wh..opq', ''),
  dir('usr/lib'),
  file('usr/lib/new.so', 'new'),
  file('var/+d/new', 'new'),
  file('var/.wh.+d', ''),
  file('var/.wh.nonexistent', ''),
];
const expectedAfter2 = [
  'etc dir',
  'etc/passwd file',
  'usr dir',
  'usr/+implicit dir',
  'usr/+implicit/child file',
  'usr/+plus file',
  'usr/lib dir',
  'usr/lib/new.so file',
  'var dir',
  'var/+d dir',
  'var/+d/new file',
  'var/keep file',
];

function shape(root: string): string[] {
  return manifest(root).map((l) => l.split(' ').slice(0, 2).join(' '));
}

describe('whiteouts', () => {
  test('plain directory: .wh. deletes, opaque clears lower content but keeps this layer', async () => {
    const root = freshDir('wh');
    await applyLayer([await tarOf(layer1)], root);
    await applyLayer([await tarOf(layer2)], root);
    assert.deepEqual(shape(root), expectedAfter2);
  });

  test('overlay upperdir: 0/0 char device and opaque xattr; mounted it shows the same tree', {
    skip: !isRoot && 'needs root (mknod, trusted xattrs, mount)',
  }, async (t) => {
    if (!(await xattrBackend())) return t.skip('no xattr tool (getfattr or python3)');
    const lower = freshDir('lower');
    await applyLayer([await tarOf(layer1)], lower);
    const upper = freshDir('upper');
    await applyLayer([await tarOf(layer2)], upper, { target: 'overlay' });
    const wh = lstatSync(join(upper, 'etc/hosts'));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout device');
    const opq = execFileSync(
      'python3',
      [
        '-c',
        `import os; print(os.getxattr(${JSON.stringify(join(upper, 'usr'))}, 'trusted.overlay.opaque'))`,
      ],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(opq.trim(), "b'y'");
    const work = freshDir('work');
    const merged = freshDir('merged');
    execFileSync('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
      merged,
    ]);
    mounts.push(merged);
    try {
      assert.deepEqual(shape(merged), expectedAfter2);
    } finally {
      execFileSync('umount', [merged]);
      mounts.pop();
    }
  });
});

describe('overlay diff', () => {
  test('changes made through a real overlay mount become a layer that reproduces them', {
    skip: !isRoot && 'needs root (mount)',
  }, async (t) => {
    if (!(await xattrBackend())) return t.skip('no xattr tool (getfattr or python3)');
    const base = freshDir('base');
    makeTree(base);
    const baseTar = await collect(packDir(base));
    const lower = freshDir('lower');
    await applyLayer([baseTar], lower);
    const upper = freshDir('upper');
    const work = freshDir('work');
    const merged = freshDir('merged');
    execFileSync('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lower},upperdir=${upper},workdir=${work}`,
      merged,
    ]);
    mounts.push(merged);
    let want: string[];
    try {
      rmSync(join(merged, 'etc/hosts')); // whiteout
      rmSync(join(merged, 'usr'), { recursive: true }); // then recreated: opaque
      mkdirSync(join(merged, 'usr/bin'), { recursive: true });
      writeFileSync(join(merged, 'usr/bin/new'), 'new');
      writeFileSync(join(merged, 'etc/ssl/big'), 'smaller now'); // copy-up
      writeFileSync(join(merged, 'added'), 'added');
      want = manifest(merged);
    } finally {
      execFileSync('umount', [merged]);
      mounts.pop();
    }
    const entries = await overlayDiffEntries(upper);
    const paths = entries.map((e) => e.path).sort();
    assert.ok(paths.includes('etc/.wh.hosts'), 'whiteout entry');
    assert.ok(paths.includes('usr/.wh..wh..opq'), 'opaque entry');
    const diffTar = await collect(await packOverlayDiff(upper, { sourceDateEpoch: 1_700_000_000 }));
    const again = await collect(await packOverlayDiff(upper, { sourceDateEpoch: 1_700_000_000 }));
    assert.ok(diffTar.equals(again), 'deterministic');
    const replay = freshDir('replay');
    await applyLayer([baseTar], replay);
    await applyLayer([diffTar], replay);
    assert.deepEqual(manifest(replay), want);
    assert.ok(!existsSync(join(replay, 'usr/bin/su')), 'opaque dir hid the lower content');
  });
});

describe('applying archives made by other tools', () => {
  test('GNU tar -c . (./ prefixes, root entry, hardlinks) applies to the same tree', async () => {
    const src = freshDir('gnu-src');
    makeTree(src, { mtime: 1_500_000_000 });
    const tar = execFileSync('tar', ['-C', src, '--format=posix', '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    const dest = freshDir('gnu-dest');
    const r = await applyLayer([tar], dest);
    assert.equal(r.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
    assert.deepEqual(manifest(dest, { mtime: true }), manifest(src, { mtime: true }));
  });

  test('sparse files are refused, not silently corrupted', async () => {
    const src = freshDir('sparse');
    execFileSync('truncate', ['-s', '10M', join(src, 'holes')]);
    writeFileSync(join(src, 'holes'), 'data', { flag: 'r+' });
    const tar = execFileSync('tar', ['-C', src, '--sparse', '--format=posix', '-cf', '-', 'holes']);
    await assert.rejects(applyLayer([tar], freshDir('sparse-dest')), /sparse files are not supported/);
  });
});
