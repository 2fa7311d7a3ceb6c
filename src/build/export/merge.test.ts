import assert from 'node:assert/strict';
import { lstatSync } from 'node:fs';
import {
  chmod,
  link,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { writeIntoDir } from './archive.js';
import { mergeInto } from './merge.js';

/** A tree described as path → content ('dir/' a directory, '-> target' a symlink). */
type Tree = Record<string, string>;

async function make(root: string, tree: Tree): Promise<void> {
  await mkdir(root, { recursive: true });
  for (const [p, v] of Object.entries(tree)) {
    const full = join(root, p);
    if (p.endsWith('/')) await mkdir(full, { recursive: true });
    else if (v.startsWith('-> ')) await symlink(v.slice(3), full);
    else await writeFile(full, v);
  }
}

/** The tree under `root` in the same notation (symlinks not followed). */
async function read(root: string, prefix = '', out: Tree = {}): Promise<Tree> {
  for (const name of (await readdir(join(root, prefix))).sort()) {
    const p = prefix ? `${prefix}/${name}` : name;
    const full = join(root, p);
    const st = lstatSync(full);
    if (st.isSymbolicLink()) out[p] = `-> ${await readlink(full)}`;
    else if (st.isDirectory()) {
      out[`${p}/`] = '';
      await read(root, p, out);
    } else out[p] = await readFile(full, 'utf8');
  }
  return out;
}

describe('mergeInto: the image written into an existing directory', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const tmp = async () => {
    const d = await mkdtemp(join(tmpdir(), 'polyarch-merge-'));
    dirs.push(d);
    return d;
  };

  const cases: {
    name: string;
    dest: (outside: string) => Tree;
    image: Tree;
    want: (outside: string) => Tree;
  }[] = [
    {
      name: 'keeps what the image does not have, replaces what it has',
      dest: () => ({ 'etc/': '', 'etc/mine': 'mine', 'etc/passwd': 'old', other: 'o' }),
      image: { 'etc/': '', 'etc/passwd': 'new', hello: 'hi' },
      want: () => ({ 'etc/': '', 'etc/mine': 'mine', 'etc/passwd': 'new', hello: 'hi', other: 'o' }),
    },
    {
      name: 'a file over a directory, a directory over a file',
      dest: () => ({ 'a/': '', 'a/x': 'x', b: 'file' }),
      image: { a: 'now a file', 'b/': '', 'b/y': 'y' },
      want: () => ({ a: 'now a file', 'b/': '', 'b/y': 'y' }),
    },
    {
      name: 'a symlink in dest pointing outside is replaced, never followed',
      dest: (outside) => ({ etc: `-> ${outside}`, hello: `-> ${outside}/file` }),
      image: { 'etc/': '', 'etc/passwd': 'root', hello: 'hi' },
      want: () => ({ 'etc/': '', 'etc/passwd': 'root', hello: 'hi' }),
    },
    {
      name: "the image's own symlinks are written as links",
      dest: () => ({ 'lnk/': '', 'lnk/x': 'replaced' }),
      image: { lnk: '-> /etc', abs: '-> /' },
      want: () => ({ abs: '-> /', lnk: '-> /etc' }),
    },
  ];
  for (const c of cases)
    it(c.name, async () => {
      const d = await tmp();
      const outside = join(d, 'outside');
      await make(outside, { file: 'victim' });
      await make(join(d, 'dest'), c.dest(outside));
      await make(join(d, 'staged'), c.image);
      await mergeInto(join(d, 'staged'), join(d, 'dest'));
      assert.deepEqual(await read(join(d, 'dest')), c.want(outside));
      assert.deepEqual(await read(outside), { file: 'victim' }, 'nothing outside dest changed');
    });

  it('keeps hardlinks and modes', async () => {
    const d = await tmp();
    await make(join(d, 'dest'), {});
    await make(join(d, 'staged'), { 'bin/': '', 'bin/a': 'x' });
    await link(join(d, 'staged', 'bin', 'a'), join(d, 'staged', 'bin', 'b'));
    await chmod(join(d, 'staged', 'bin', 'a'), 0o4755);
    await mergeInto(join(d, 'staged'), join(d, 'dest'));
    const [a, b] = await Promise.all(['a', 'b'].map((n) => stat(join(d, 'dest', 'bin', n))));
    assert.equal(a!.ino, b!.ino);
    assert.equal(a!.mode & 0o7777, 0o4755);
  });

  it('an abort leaves the destination as it was', async () => {
    const d = await tmp();
    await make(join(d, 'dest'), { keep: 'k', hello: 'old' });
    await make(join(d, 'staged'), { hello: 'new', more: 'm' });
    const ac = new AbortController();
    ac.abort(new Error('stop'));
    await assert.rejects(mergeInto(join(d, 'staged'), join(d, 'dest'), ac.signal));
    assert.deepEqual(await read(join(d, 'dest')), { hello: 'old', keep: 'k' });
  });

  it('writeIntoDir: a failing fill leaves dest as it was and no staging dir beside it', async () => {
    const d = await tmp();
    await make(join(d, 'dest'), { keep: 'k' });
    await assert.rejects(
      writeIntoDir(join(d, 'dest'), async (dir) => {
        await writeFile(join(dir, 'half'), 'x');
        throw new Error('unpack failed');
      }),
      /writing .*dest: unpack failed/,
    );
    assert.deepEqual(await read(join(d, 'dest')), { keep: 'k' });
    assert.deepEqual((await readdir(d)).sort(), ['dest']);
  });

  it('writeIntoDir: removes staging dirs that killed exports left beside dest', async () => {
    const d = await tmp();
    const stale = join(d, '.tmp-dest-999999999-0badc0de');
    await make(stale, { junk: 'j' });
    await writeIntoDir(join(d, 'dest'), async (dir) => writeFile(join(dir, 'f'), 'f'));
    assert.deepEqual((await readdir(d)).sort(), ['dest']);
    assert.deepEqual(await read(join(d, 'dest')), { f: 'f' });
  });
});
