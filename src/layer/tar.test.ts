import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  createReadStream,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { encodeHeader, encodePax, readTar, type TarEntryInput, type TarHeader, writeTar } from './tar.js';

const tmp = mkdtempSync(join(tmpdir(), 'polyarch-tar-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

interface ReadBack {
  header: TarHeader;
  body: Buffer;
}

async function readAll(input: AsyncIterable<Buffer> | Buffer[]): Promise<ReadBack[]> {
  const out: ReadBack[] = [];
  for await (const e of readTar(input)) out.push({ header: e.header, body: await collect(e.body) });
  return out;
}

/** Feeds the bytes in odd-sized chunks so header and body boundaries fall mid-chunk. */
function chunked(buf: Buffer, size = 333): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

const long120 = `${'d'.repeat(60)}/${'n'.repeat(59)}`; // 120 bytes, splittable into prefix/name
const long300 = `${'a'.repeat(100)}/${'b'.repeat(100)}/${'c'.repeat(98)}`; // > 255: needs PAX/L
const binaryXattr = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0x00, 0x0a, 0x3d, 0x20, 0xff]);

const cases: Array<{ name: string; entry: TarEntryInput; gnu?: boolean }> = [
  {
    name: 'regular file',
    entry: {
      header: { path: 'etc/hosts', type: 'file', size: 5, mode: 0o644, mtime: 1700000000 },
      body: Buffer.from('hello'),
    },
  },
  { name: 'empty file', entry: { header: { path: 'empty', type: 'file', size: 0 } } },
  { name: 'directory', entry: { header: { path: 'var/lib', type: 'dir', mode: 0o1777 } } },
  {
    name: 'setuid file',
    entry: { header: { path: 'bin/su', type: 'file', size: 1, mode: 0o4755 }, body: Buffer.from('x') },
  },
  { name: 'symlink', entry: { header: { path: 'lib', type: 'symlink', linkpath: 'usr/lib' } } },
  { name: 'absolute symlink', entry: { header: { path: 'a', type: 'symlink', linkpath: '/etc/passwd' } } },
  { name: 'hardlink', entry: { header: { path: 'bin/sh2', type: 'hardlink', linkpath: 'bin/sh' } } },
  {
    name: 'char device',
    entry: { header: { path: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 } },
  },
  {
    name: 'block device',
    entry: { header: { path: 'dev/sda', type: 'block', mode: 0o660, devmajor: 8, devminor: 0 } },
  },
  { name: 'fifo', entry: { header: { path: 'run/fifo', type: 'fifo', mode: 0o600 } } },
  {
    name: 'path 120 bytes (ustar prefix)',
    entry: { header: { path: long120, type: 'file', size: 1 }, body: Buffer.from('1') },
  },
  {
    name: 'path >255 bytes (PAX)',
    entry: { header: { path: long300, type: 'file', size: 2 }, body: Buffer.from('22') },
  },
  {
    name: 'path >255 bytes (GNU L)',
    gnu: true,
    entry: { header: { path: long300, type: 'file', size: 2 }, body: Buffer.from('22') },
  },
  { name: 'long link target (PAX)', entry: { header: { path: 'l', type: 'symlink', linkpath: long300 } } },
  {
    name: 'long link target (GNU K)',
    gnu: true,
    entry: { header: { path: 'l', type: 'symlink', linkpath: long300 } },
  },
  {
    name: 'non-ASCII name',
    entry: { header: { path: 'usr/share/ünïcødé/日本', type: 'file', size: 3 }, body: Buffer.from('abc') },
  },
  { name: 'non-ASCII name (GNU)', gnu: true, entry: { header: { path: 'ünï', type: 'dir' } } },
  {
    name: 'big uid/gid (PAX)',
    entry: { header: { path: 'u', type: 'file', uid: 2 ** 21 + 5, gid: 3_000_000_000 } },
  },
  {
    name: 'big uid/gid (GNU base-256)',
    gnu: true,
    entry: { header: { path: 'u', type: 'file', uid: 2 ** 21 + 5, gid: 3_000_000_000 } },
  },
  { name: 'uname/gname', entry: { header: { path: 'o', type: 'file', uname: 'root', gname: 'wheel' } } },
  {
    name: 'long non-ASCII uname (PAX)',
    entry: { header: { path: 'o', type: 'file', uname: 'ü'.repeat(40) } },
  },
  {
    name: 'sub-second mtime (PAX)',
    entry: { header: { path: 't', type: 'file', mtime: 1700000000, mtimeNsec: 123456789 } },
  },
  { name: 'mtime beyond 2^33 (PAX)', entry: { header: { path: 't', type: 'file', mtime: 2 ** 34 } } },
  {
    name: 'mtime beyond 2^33 (GNU base-256)',
    gnu: true,
    entry: { header: { path: 't', type: 'file', mtime: 2 ** 34 } },
  },
  {
    name: 'negative mtime (GNU base-256)',
    gnu: true,
    entry: { header: { path: 't', type: 'file', mtime: -100 } },
  },
  {
    name: 'binary xattrs with NUL and 0xff',
    entry: {
      header: {
        path: 'bin/ping',
        type: 'file',
        size: 4,
        xattrs: new Map([
          ['security.capability', binaryXattr],
          ['user.empty', Buffer.alloc(0)],
          ['user.ünï', Buffer.from('x\ny')],
        ]),
      },
      body: Buffer.from('ping'),
    },
  },
];

describe('tar round trip', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const bytes = await collect(writeTar([c.entry], { format: c.gnu ? 'gnu' : 'pax' }));
      assert.equal(bytes.length % 512, 0);
      const [got, ...rest] = await readAll(chunked(bytes));
      assert.equal(rest.length, 0);
      const want = c.entry.header;
      const h = got!.header;
      const wantPath = want.type === 'dir' ? `${want.path}/` : want.path;
      assert.equal(h.path, wantPath);
      assert.equal(h.type, want.type);
      for (const k of [
        'mode',
        'uid',
        'gid',
        'size',
        'mtime',
        'mtimeNsec',
        'linkpath',
        'uname',
        'gname',
      ] as const)
        if (want[k] !== undefined) assert.equal(h[k], want[k], k);
      if (want.type === 'char' || want.type === 'block') {
        assert.equal(h.devmajor, want.devmajor);
        assert.equal(h.devminor, want.devminor);
      }
      assert.deepEqual(h.xattrs, want.xattrs ?? new Map());
      const body = c.entry.body;
      assert.deepEqual(got!.body, Buffer.isBuffer(body) ? body : Buffer.alloc(0));
    });
  }

  test('many entries, bodies left unread are skipped', async () => {
    const entries: TarEntryInput[] = [];
    for (let i = 0; i < 50; i++) {
      const body = Buffer.alloc(i * 37 + 1, i);
      entries.push({ header: { path: `f${i}`, type: 'file', size: body.length }, body });
    }
    const bytes = await collect(writeTar(entries));
    const seen: string[] = [];
    let i = 0;
    for await (const e of readTar(chunked(bytes, 100))) {
      seen.push(e.header.path);
      // read some bodies fully, some partly, some not at all
      if (i % 3 === 0) assert.deepEqual(await collect(e.body), entries[i]!.body);
      else if (i % 3 === 1) for await (const _ of e.body) break;
      i++;
    }
    assert.equal(seen.length, 50);
    assert.equal(seen[49], 'f49');
  });

  test('size beyond 8 GiB: GNU base-256 and PAX size headers read back', async () => {
    const size = 2 ** 33 + 7;
    for (const format of ['gnu', 'pax'] as const) {
      const head = Buffer.concat(encodeHeader({ path: 'big', type: 'file', size }, { format }));
      // only the header is read: stop before the body that is not there
      for await (const e of readTar([head])) {
        assert.equal(e.header.size, size, format);
        break;
      }
    }
  });

  test('writing is deterministic', async () => {
    const a = await collect(writeTar(cases.filter((c) => !c.gnu).map((c) => c.entry)));
    const b = await collect(writeTar(cases.filter((c) => !c.gnu).map((c) => c.entry)));
    assert.deepEqual(a, b);
  });
});

describe('tar errors', () => {
  test('corrupt header checksum names entry and offset', async () => {
    const bytes = await collect(
      writeTar([
        { header: { path: 'ok', type: 'file', size: 1 }, body: Buffer.from('1') },
        { header: { path: 'broken', type: 'file', size: 1 }, body: Buffer.from('2') },
      ]),
    );
    bytes[1024 + 10] = 0x41; // inside the second header's name
    await assert.rejects(readAll([bytes]), /entry "brokenA?.*" at offset 1024: header checksum mismatch/);
  });

  test('truncated body', async () => {
    const bytes = await collect(
      writeTar([{ header: { path: 'f', type: 'file', size: 1000 }, body: Buffer.alloc(1000) }]),
    );
    await assert.rejects(
      readAll([bytes.subarray(0, 700)]),
      /entry "f" at offset 0: unexpected end of archive/,
    );
  });

  test('body shorter than header size is refused when writing', async () => {
    await assert.rejects(
      collect(writeTar([{ header: { path: 'f', type: 'file', size: 10 }, body: Buffer.from('abc') }])),
      /entry "f": body has only 3 bytes, header says 10/,
    );
  });

  test('gnu format refuses xattrs', () => {
    assert.throws(
      () =>
        encodeHeader(
          { path: 'x', type: 'file', xattrs: new Map([['user.a', Buffer.from('1')]]) },
          { format: 'gnu' },
        ),
      /cannot carry xattrs/,
    );
  });
});

function hasXattrSupport(): boolean {
  try {
    execFileSync('python3', ['-c', 'import os; os.setxattr'], { stdio: 'ignore' });
    const p = join(tmp, 'xattr-probe');
    writeFileSync(p, '');
    execFileSync('python3', ['-c', `import os; os.setxattr(${JSON.stringify(p)}, 'user.t', b'1')`], {
      stdio: 'ignore',
    });
    return true;
  } catch {
    return false;
  }
}

describe('interoperability with GNU tar and busybox', () => {
  const src = join(tmp, 'tree');
  mkdirSync(join(src, long120.split('/')[0]!, 'deeper', 'x'.repeat(100)), { recursive: true });
  writeFileSync(join(src, 'plain.txt'), 'plain\n');
  writeFileSync(join(src, 'ünïcødé.txt'), 'unicode\n');
  writeFileSync(join(src, long120.split('/')[0]!, 'deeper', 'x'.repeat(100), 'y'.repeat(100)), 'long\n');
  symlinkSync('/etc/passwd', join(src, 'abs-link'));
  execFileSync('ln', [join(src, 'plain.txt'), join(src, 'hard.txt')]);
  execFileSync('mkfifo', [join(src, 'fifo')]);

  const expected = new Map([
    ['plain.txt', 'plain\n'],
    ['ünïcødé.txt', 'unicode\n'],
    [`${long120.split('/')[0]}/deeper/${'x'.repeat(100)}/${'y'.repeat(100)}`, 'long\n'],
  ]);

  for (const [label, args] of [
    ['GNU tar --format=gnu', ['tar', '--format=gnu']],
    ['GNU tar --format=posix', ['tar', '--format=posix']],
    ['GNU tar --format=ustar (short names only)', ['tar', '--format=ustar']],
    ['busybox tar', ['busybox', 'tar']],
  ] as const) {
    test(`reads ${label}`, async () => {
      const out = join(tmp, `${label.replace(/\W+/g, '_')}.tar`);
      const ustar = label.includes('ustar');
      const names = ustar ? ['plain.txt', 'abs-link', 'fifo', 'hard.txt'] : ['.'];
      execFileSync(args[0], [...args.slice(1), '-cf', out, '-C', src, ...names], { stdio: 'pipe' });
      const entries = await readAll(createReadStream(out));
      const byPath = new Map(entries.map((e) => [e.header.path.replace(/^\.\//, '').replace(/\/$/, ''), e]));
      for (const [p, content] of expected) {
        if (ustar && p !== 'plain.txt') continue;
        // plain.txt and hard.txt are one inode: whichever came first carries the data
        const e =
          p === 'plain.txt'
            ? [byPath.get(p), byPath.get('hard.txt')].find((x) => x?.header.type === 'file')
            : byPath.get(p);
        assert.equal(e?.body.toString(), content, `${label}: ${p}`);
      }
      assert.equal(byPath.get('abs-link')?.header.type, 'symlink');
      assert.equal(byPath.get('abs-link')?.header.linkpath, '/etc/passwd');
      assert.equal(byPath.get('fifo')?.header.type, 'fifo');
      const hard = [byPath.get('hard.txt'), byPath.get('plain.txt')].find(
        (e) => e?.header.type === 'hardlink',
      );
      assert.ok(hard, `${label}: one of the two links is a hardlink entry`);
    });
  }

  test('reads GNU tar --format=posix --xattrs with binary values', {
    skip: !hasXattrSupport() && 'no python3/user xattrs',
  }, async () => {
    const dir = join(tmp, 'xat');
    mkdirSync(dir, { recursive: true });
    const f = join(dir, 'f');
    writeFileSync(f, 'x');
    execFileSync('python3', [
      '-c',
      `import os; os.setxattr(${JSON.stringify(f)}, 'user.bin', bytes.fromhex('${binaryXattr.toString('hex')}'))`,
    ]);
    const out = join(tmp, 'xattrs.tar');
    execFileSync('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '-cf', out, '-C', dir, 'f']);
    const [e] = await readAll(createReadStream(out));
    assert.deepEqual(e!.header.xattrs.get('user.bin'), binaryXattr);
  });

  test('GNU tar extracts what we write, xattrs included', async () => {
    const entries: TarEntryInput[] = cases
      .filter(
        (c) =>
          !c.gnu &&
          c.entry.header.type !== 'hardlink' &&
          c.entry.header.type !== 'char' &&
          c.entry.header.type !== 'block',
      )
      .filter(
        (c) => !c.name.includes('uid') && !c.name.includes('mtime beyond') && !c.name.includes('binary'),
      )
      .map((c) => c.entry);
    // one entry per path: later cases reuse names
    const seen = new Set<string>();
    const unique = entries.filter((e) => !seen.has(e.header.path) && seen.add(e.header.path));
    const xattrFile = {
      header: {
        path: 'xattr-file',
        type: 'file' as const,
        size: 1,
        xattrs: new Map([['user.bin', binaryXattr]]),
      },
      body: Buffer.from('z'),
    };
    const bytes = await collect(writeTar([...unique, xattrFile]));
    const out = join(tmp, 'ours.tar');
    writeFileSync(out, bytes);
    const listing = execFileSync('tar', ['-tvf', out], { encoding: 'utf8' });
    for (const e of unique) assert.ok(listing.includes(e.header.path), `tar -tv lists ${e.header.path}`);
    const dest = join(tmp, 'gnu-extract');
    mkdirSync(dest);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xf', out, '-C', dest]);
    assert.equal(readFileSync(join(dest, long300), 'utf8'), '22');
    assert.equal(readFileSync(join(dest, 'usr/share/ünïcødé/日本'), 'utf8'), 'abc');
    assert.equal(readFileSync(join(dest, 'etc/hosts'), 'utf8'), 'hello');
    if (hasXattrSupport()) {
      const hex = execFileSync(
        'python3',
        [
          '-c',
          `import os; print(os.getxattr(${JSON.stringify(join(dest, 'xattr-file'))}, 'user.bin').hex())`,
        ],
        {
          encoding: 'utf8',
        },
      ).trim();
      assert.equal(hex, binaryXattr.toString('hex'));
    }
  });
});

describe('tar details', () => {
  test('bodies stream: a 5 MiB file is never handed over in one piece', async () => {
    const size = 5 * 1024 * 1024;
    async function* body() {
      for (let i = 0; i < size; i += 65536) yield Buffer.alloc(65536, i / 65536);
    }
    let largest = 0;
    let total = 0;
    const tar = writeTar([{ header: { path: 'big', type: 'file', size }, body }]);
    for await (const e of readTar(tar))
      for await (const c of e.body) {
        largest = Math.max(largest, c.length);
        total += c.length;
      }
    assert.equal(total, size);
    assert.ok(largest <= 65536, `largest chunk ${largest}`);
  });

  test('PAX global header applies to later entries; a local record wins', async () => {
    const records = encodePax([
      ['uid', Buffer.from('3000000')],
      ['SCHILY.xattr.user.g', Buffer.from([0, 255])],
    ]);
    const g = encodeHeader({ path: 'pax_global_header', type: 'file', size: records.length })[0]!;
    g[156] = 'g'.charCodeAt(0);
    g.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of g) sum += b;
    g.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
    const pad = Buffer.alloc((512 - (records.length % 512)) % 512);
    const rest = await collect(
      writeTar([
        { header: { path: 'a', type: 'file' } },
        { header: { path: 'b', type: 'file', uid: 2 ** 22 } },
      ]),
    );
    const got = await readAll([g, records, pad, rest]);
    assert.deepEqual(
      got.map((e) => [e.header.path, e.header.uid, e.header.xattrs.get('user.g')]),
      [
        ['a', 3000000, Buffer.from([0, 255])],
        ['b', 2 ** 22, Buffer.from([0, 255])],
      ],
    );
  });

  for (const format of ['pax', 'gnu'] as const) {
    test(`GNU tar lists big uid/gid and long names we write (${format})`, async () => {
      const bytes = await collect(
        writeTar(
          [
            {
              header: { path: long300, type: 'file', uid: 2 ** 21 + 5, gid: 2 ** 32 - 2, size: 1 },
              body: Buffer.from('x'),
            },
            { header: { path: 'ln', type: 'symlink', linkpath: long300 } },
          ],
          { format },
        ),
      );
      const file = join(tmp, `big-${format}.tar`);
      writeFileSync(file, bytes);
      const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file], { encoding: 'utf8' });
      assert.match(listing, new RegExp(`${2 ** 21 + 5}/${2 ** 32 - 2} +1 .* ${long300}\\n`));
      assert.match(listing, new RegExp(`ln -> ${long300}\\n`));
    });
  }
});
