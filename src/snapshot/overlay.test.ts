import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { isMountPoint, Snapshotter, snapshotId } from './overlay.js';

let root: string;
let snaps: Snapshotter;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-snap-'));
  snaps = await Snapshotter.open({ root });
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const K1 = `sha256:${'1'.repeat(64)}`;
const K2 = `sha256:${'2'.repeat(64)}`;
const K3 = `sha256:${'3'.repeat(64)}`;

describe('snapshot ids', () => {
  test('short, hex, colon-free, stable', () => {
    assert.match(snapshotId(K1), /^[0-9a-f]{16}$/);
    assert.equal(snapshotId(K1), snapshotId(K1));
    assert.notEqual(snapshotId(K1), snapshotId(K2));
  });
  test('rejects an empty key', () => assert.throws(() => snapshotId(''), /key is empty/));
});

describe('overlay snapshots', () => {
  test('create, prepare, mount, write, commit, stack', async () => {
    let calls = 0;
    const s1 = await snaps.create(K1, [], async (fs) => {
      calls++;
      await writeFile(join(fs, 'a'), 'from-1');
      await writeFile(join(fs, 'shadowed'), 'old');
    });
    assert.equal(s1.kind, 'committed');
    assert.equal(await readFile(join(s1.fs, 'a'), 'utf8'), 'from-1');
    // A second create of the same key reuses it without filling.
    const again = await snaps.create(K1, [], async () => {
      calls++;
    });
    assert.equal(again.fs, s1.fs);
    assert.equal(calls, 1);

    await snaps.create(K2, [K1], async (fs) => {
      await writeFile(join(fs, 'b'), 'from-2');
      await writeFile(join(fs, 'shadowed'), 'new');
    });
    const target = join(root, 'mnt');
    await mkdir(target);
    const act = await snaps.prepare('run-1', [K1, K2]);
    await act.mount(target);
    try {
      assert.ok(await isMountPoint(target));
      assert.equal(await readFile(join(target, 'a'), 'utf8'), 'from-1');
      assert.equal(await readFile(join(target, 'b'), 'utf8'), 'from-2');
      assert.equal(await readFile(join(target, 'shadowed'), 'utf8'), 'new', 'upper-most parent wins');
      await writeFile(join(target, 'c'), 'from-run');
      await rm(join(target, 'a'));
      await assert.rejects(snaps.commit('run-1', K3), /still mounted/);
    } finally {
      await act.unmount();
    }
    assert.equal(await isMountPoint(target), false);
    assert.equal(await readFile(join(act.upper, 'c'), 'utf8'), 'from-run');
    assert.ok(existsSync(join(s1.fs, 'a')), 'the lower snapshot is untouched');

    const s3 = await snaps.commit('run-1', K3);
    assert.deepEqual(s3.parents, [K1, K2]);
    assert.deepEqual(await snaps.chain(K3), [K1, K2, K3]);
    assert.equal(await snaps.has('run-1'), false, 'the active snapshot is gone after commit');

    const act2 = await snaps.prepare('run-2', await snaps.chain(K3));
    await act2.mount(target);
    try {
      assert.equal(await readFile(join(target, 'c'), 'utf8'), 'from-run');
      assert.equal(existsSync(join(target, 'a')), false, 'the whiteout hides a');
      assert.equal(await readFile(join(target, 'b'), 'utf8'), 'from-2');
    } finally {
      await act2.unmount();
    }
    await snaps.remove('run-2');
    assert.equal(await snaps.has('run-2'), false);
  });

  test('list, stat and re-opening an active snapshot by key', async () => {
    const act = await snaps.prepare('reopen', [K1]);
    const again = await snaps.active('reopen');
    assert.equal(again.upper, act.upper);
    assert.deepEqual(again.mountArgs('/x'), act.mountArgs('/x'));
    const listed = await snaps.list();
    assert.ok(listed.some((i) => i.key === 'reopen' && i.kind === 'active'));
    assert.ok(listed.some((i) => i.key === K1 && i.kind === 'committed'));
    assert.equal((await snaps.stat(K1))?.fs, (await snaps.paths([K1]))[0]);
    await assert.rejects(snaps.active(K1), /active snapshot .* does not exist/);
    await snaps.remove('reopen');
  });

  test('usage counts bytes and inodes, hard links once', async () => {
    await snaps.create('sized', [], async (fs) => {
      await writeFile(join(fs, 'big'), Buffer.alloc(64 * 1024, 1));
      await link(join(fs, 'big'), join(fs, 'big-link'));
      await mkdir(join(fs, 'd'));
    });
    const u = await snaps.usage('sized');
    assert.equal(u.inodes, 2);
    assert.ok(u.size >= 64 * 1024 && u.size < 128 * 1024, `size ${u.size}`);
    await assert.rejects(snaps.usage('nope'), /snapshot "nope" does not exist/);
    await snaps.remove('sized');
  });

  test('zero parents: a bind of the upper dir', async () => {
    const act = await snaps.prepare('scratch', []);
    assert.deepEqual(act.mountArgs('/x').slice(0, 1), ['--bind']);
    const target = await mkdtemp(join(root, 'm-'));
    await act.mount(target);
    await writeFile(join(target, 'f'), 'x');
    await act.unmount();
    assert.equal(await readFile(join(act.upper, 'f'), 'utf8'), 'x');
    await snaps.remove('scratch');
  });

  test('read-only views: one parent is a ro bind, two are a ro overlay', async () => {
    const one = await snaps.view('view-1', [K1]);
    assert.deepEqual(one.mountArgs('/x').slice(0, 3), ['--bind', '-o', 'ro']);
    const target = await mkdtemp(join(root, 'm-'));
    await one.mount(target);
    try {
      await assert.rejects(writeFile(join(target, 'nope'), 'x'), /EROFS/);
      assert.equal(await readFile(join(target, 'a'), 'utf8'), 'from-1');
    } finally {
      await one.unmount();
    }
    const two = await snaps.view('view-2', [K1, K2]);
    assert.match(two.mountArgs('/x').join(' '), /ro,lowerdir=/);
    await two.mount(target);
    try {
      await assert.rejects(writeFile(join(target, 'nope'), 'x'), /EROFS/);
      assert.equal(await readFile(join(target, 'b'), 'utf8'), 'from-2');
    } finally {
      await two.unmount();
    }
    await assert.rejects(snaps.commit('view-2', 'x'), /read-only view/);
    await snaps.remove('view-1');
    await snaps.remove('view-2');
  });

  test('known-bad inputs', async () => {
    await assert.rejects(
      snaps.prepare('bad', ['sha256:missing']),
      /parent snapshot "sha256:missing" does not exist/,
    );
    await snaps.prepare('dup', []);
    await assert.rejects(snaps.prepare('dup', []), /already exists/);
    await assert.rejects(snaps.prepare('bad2', ['dup']), /is active, not committed/);
    await assert.rejects(snaps.commit('nope', 'k'), /active snapshot "nope" does not exist/);
    await snaps.remove('dup');
    await snaps.remove('never-existed');
  });

  test('mount options beyond one page are refused clearly', async () => {
    const keys: string[] = [];
    for (let i = 0; i < 210; i++) {
      const k = `layer-${i}`;
      await snaps.create(k, [], async () => undefined);
      keys.push(k);
    }
    const act = await snaps.prepare('deep', keys);
    assert.throws(
      () => act.mountArgs('/x'),
      /overlay mount options are \d+ bytes for 210 layers: the kernel limit is 4095/,
    );
    await snaps.remove('deep');
    for (const k of keys) await snaps.remove(k);
  });

  test('a failed fill leaves nothing under the final name', async () => {
    await assert.rejects(
      snaps.create('failing', [], async (fs) => {
        await writeFile(join(fs, 'half'), 'x');
        throw new Error('extraction broke');
      }),
      /extraction broke/,
    );
    assert.equal(await snaps.has('failing'), false);
    assert.deepEqual(
      (await readdir(snaps.dir)).filter((n) => n.startsWith('tmp-')),
      [],
    );
  });

  test('a killed creator leaves only a temp dir, swept on open; its stale lock is broken', async () => {
    // Simulate a process that died mid-extraction: its temp dir and lock name a dead pid.
    const dead = await deadPid();
    const id = snapshotId('crashed');
    await mkdir(join(snaps.dir, `tmp-${dead}-abc`, 'fs'), { recursive: true });
    await writeFile(join(snaps.dir, `${id}.lock`), String(dead));
    assert.equal(await snaps.has('crashed'), false);
    const reopened = await Snapshotter.open({ root });
    assert.ok(!(await readdir(snaps.dir)).includes(`tmp-${dead}-abc`));
    const made = await reopened.create('crashed', [], async (fs) => writeFile(join(fs, 'ok'), 'y'));
    assert.equal(await readFile(join(made.fs, 'ok'), 'utf8'), 'y');
    assert.equal(existsSync(join(snaps.dir, `${id}.lock`)), false);
    await reopened.remove('crashed');
  });

  test('two processes creating the same key: one fills, both get it', async () => {
    const mod = pathToFileURL(join(import.meta.dirname, 'overlay.js')).href;
    const script = `
      import { Snapshotter } from ${JSON.stringify(mod)};
      import { appendFile, writeFile } from 'node:fs/promises';
      const s = await Snapshotter.open({ root: process.argv[1] });
      const info = await s.create('shared', [], async (fs) => {
        await appendFile(process.argv[2], process.pid + '\\n');
        await new Promise((r) => setTimeout(r, 400));
        await writeFile(fs + '/who', String(process.pid));
      });
      process.stdout.write(info.fs);
    `;
    const log = join(root, 'fills.log');
    const runOne = () =>
      new Promise<string>((res, rej) => {
        const p = spawn(process.execPath, ['--input-type=module', '-e', script, root, log]);
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => process.stderr.write(d));
        p.on('exit', (code) => (code === 0 ? res(out) : rej(new Error(`child exited ${code}`))));
      });
    const [a, b] = await Promise.all([runOne(), runOne()]);
    assert.equal(a, b);
    const fills = (await readFile(log, 'utf8')).trim().split('\n');
    assert.equal(fills.length, 1, 'exactly one process filled the snapshot');
    assert.equal(await readFile(join(a, 'who'), 'utf8'), fills[0]);
    await snaps.remove('shared');
  });
});

/** A pid that is not running (a child that has exited). */
async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => p.on('exit', r));
  return p.pid!;
}
