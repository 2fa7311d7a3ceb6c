import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { compressLayer } from './compress.js';
import { applyLayer } from './apply.js';
import { packDir } from './pack.js';
import { parseGetfattrDump, readAllXattrs, setXattrs, xattrBackend } from './xattr.js';
import { makeTree, manifest } from './testtree.js';
import { readTar } from './tar.js';

const tmp = mkdtempSync(join(tmpdir(), 'polyarch-pack-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

describe('packDir', () => {
  const a = join(tmp, 'a');
  const b = join(tmp, 'b');
  makeTree(a, { mtime: 1_800_000_000 });
  makeTree(b, { mtime: 1_900_000_123 });
  const epoch = 1_700_000_000;

  test('same tree, different mtimes on disk, SOURCE_DATE_EPOCH: identical bytes and digests', async () => {
    const ta = await collect(packDir(a, { sourceDateEpoch: epoch }));
    const tb = await collect(packDir(b, { sourceDateEpoch: epoch }));
    assert.ok(ta.equals(tb), 'tars are byte-identical');
    const ga = await compressLayer(Readable.from([ta]), createNull(), { threads: 2 });
    const gb = await compressLayer(Readable.from([tb]), createNull(), { threads: 1 });
    assert.equal(ga.digest, gb.digest);
    assert.equal(ga.diffId, gb.diffId);
    // without the epoch the mtimes show
    const ua = await collect(packDir(a));
    const ub = await collect(packDir(b));
    assert.ok(!ua.equals(ub));
  });

  test('entries: sorted bytewise, no ./ prefix, normalised owners, hardlinks, no socket', async () => {
    const sock = join(tmp, 'socktree');
    mkdirSync(sock);
    writeFileSync(join(sock, 'file'), 'f');
    const server = createServer();
    await new Promise<void>((r) => server.listen(join(sock, 'sock'), r));
    try {
      const paths: string[] = [];
      for await (const e of readTar(packDir(sock))) paths.push(e.header.path);
      assert.deepEqual(paths, ['file']);
    } finally {
      server.close();
    }

    const headers = [];
    for await (const e of readTar(packDir(a, { sourceDateEpoch: epoch }))) headers.push(e.header);
    const paths = headers.map((h) => h.path);
    const sorted = [...paths].sort((x, y) =>
      Buffer.compare(Buffer.from(x.replace(/\/$/, '')), Buffer.from(y.replace(/\/$/, ''))),
    );
    assert.deepEqual(paths, sorted);
    // whole paths compare bytewise: "a" < "a-b" < "a/x" < "a0" ('-' 0x2d < '/' 0x2f < '0' 0x30)
    const order = ['a/', 'a-b', 'a/x', 'a0'].map((p) => paths.indexOf(p));
    assert.deepEqual(
      [...order].sort((x, y) => x - y),
      order,
    );
    assert.ok(order[0]! >= 0);
    assert.ok(paths.every((p) => !p.startsWith('./') && !p.startsWith('/')));
    for (const h of headers) {
      assert.equal(h.uname, '');
      assert.equal(h.gname, '');
      assert.ok(h.mtime <= epoch);
      if (h.type !== 'char' && h.type !== 'block') assert.equal(h.devmajor + h.devminor, 0);
    }
    const su = headers.find((h) => h.path === 'usr/bin/su')!;
    const link = headers.find((h) => h.path === 'usr/bin/su-hardlink')!;
    assert.equal(su.type, 'file');
    assert.equal(su.mode, 0o4755);
    assert.equal(link.type, 'hardlink');
    assert.equal(link.linkpath, 'usr/bin/su');
    assert.equal(headers.find((h) => h.path === 'tmp/')!.mode, 0o1777);
    if (isRoot) {
      const hosts = headers.find((h) => h.path === 'etc/hosts')!;
      assert.equal(hosts.uid, 1234);
      assert.equal(hosts.gid, 2097153);
      const dev = headers.find((h) => h.path === 'null')!;
      assert.deepEqual([dev.type, dev.devmajor, dev.devminor], ['char', 1, 3]);
    }
  });

  test('sub-second mtimes only when asked', async () => {
    const dir = join(tmp, 'subsec');
    mkdirSync(dir);
    writeFileSync(join(dir, 'f'), '');
    utimesSync(join(dir, 'f'), 1_600_000_000.25, 1_600_000_000.25);
    const [plain] = await headersOf(packDir(dir));
    const [precise] = await headersOf(packDir(dir, { subsecondMtime: true }));
    assert.equal(plain!.mtimeNsec, 0);
    assert.equal(precise!.mtime, 1_600_000_000);
    assert.ok(Math.abs(precise!.mtimeNsec - 250_000_000) < 1000);
  });

  test('GNU tar extracts the same tree', async () => {
    const file = join(tmp, 'a.tar');
    writeFileSync(file, await collect(packDir(a, { sourceDateEpoch: epoch })));
    const dest = join(tmp, 'gnu-x');
    mkdirSync(dest);
    execFileSync('tar', ['-xpf', file, '-C', dest, '--numeric-owner']);
    assert.deepEqual(manifest(dest), manifest(a));
    const listing = execFileSync('tar', ['-tvf', file], { encoding: 'utf8' });
    assert.match(listing, /usr\/bin\/su-hardlink link to usr\/bin\/su/);
  });
});

async function headersOf(gen: AsyncIterable<Buffer>) {
  const out = [];
  for await (const e of readTar(gen)) out.push(e.header);
  return out;
}

function createNull() {
  return new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });
}

describe('xattrs', () => {
  const value = Buffer.from([0x00, 0xff, 0x0a, 0x3d, 0x00, 0x01]);
  test('read from disk only when asked, binary-safe through tar and apply', async (t) => {
    if (!(await xattrBackend())) return t.skip('no xattr tool (getfattr or python3)');
    const dir = join(tmp, 'xattrs');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'sub', 'f'), 'f');
    await setXattrs([
      { path: join(dir, 'sub', 'f'), name: 'user.bin', value },
      { path: join(dir, 'sub'), name: 'user.dir', value: Buffer.from('d') },
    ]);
    if (isRoot)
      await setXattrs([
        { path: join(dir, 'sub', 'f'), name: 'trusted.overlay.origin', value: Buffer.from('x') },
      ]);
    const plain = await headersOf(packDir(dir));
    assert.ok(plain.every((h) => h.xattrs.size === 0));
    const withX = await headersOf(packDir(dir, { xattrs: true }));
    const f = withX.find((h) => h.path === 'sub/f')!;
    assert.deepEqual([...f.xattrs], [['user.bin', value]], 'trusted.overlay.* left out');
    assert.deepEqual(withX.find((h) => h.path === 'sub/')!.xattrs.get('user.dir'), Buffer.from('d'));
    const dest = join(tmp, 'xattrs-applied');
    mkdirSync(dest);
    await applyLayer(packDir(dir, { xattrs: true }), dest);
    const back = await readAllXattrs(dest);
    assert.deepEqual(back.get(join(dest, 'sub', 'f'))?.get('user.bin'), value);
  });

  test('getfattr dump parsing', () => {
    const dump = [
      '# file: /x/a\\040b',
      'security.capability=0x0100000200200000',
      'user.empty=',
      '',
      '# file: /x/d',
      'trusted.overlay.opaque=0x79',
      '',
    ].join('\n');
    const m = parseGetfattrDump(dump);
    assert.deepEqual(m.get('/x/a b')?.get('security.capability'), Buffer.from('0100000200200000', 'hex'));
    assert.deepEqual(m.get('/x/a b')?.get('user.empty'), Buffer.alloc(0));
    assert.deepEqual(m.get('/x/d')?.get('trusted.overlay.opaque'), Buffer.from('y'));
  });
});
