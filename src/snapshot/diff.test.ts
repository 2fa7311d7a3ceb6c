/**
 * Layers of real overlay upper dirs, compared with their lower layers (layer/lower.ts): what a
 * step did not change stays out of the layer, what it changed is in it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { packOverlayDiff } from '../layer/diff.js';
import { readTar } from '../layer/tar.js';
import { Snapshotter } from './overlay.js';

let root: string;
let snaps: Snapshotter;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-diff-'));
  snaps = await Snapshotter.open({ root });
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

const T = new Date('2024-01-02T03:04:05Z'); // whole seconds, as a layer extracted from a tar

/** Runs `script` with sh in `dir` (the mounted snapshot), as a RUN step would change it. */
function sh(dir: string, script: string): void {
  execFileSync('sh', ['-ec', script], { cwd: dir, stdio: 'pipe' });
}

/** Paths of the tar's entries (directories with a trailing slash removed). */
async function entryPaths(upper: string, lowers: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readTar(await packOverlayDiff(upper, { xattrs: true, lowers }))) {
    out.push(e.header.path.replace(/\/$/, ''));
    for await (const _ of e.body);
  }
  return out;
}

test('a RUN layer leaves out what the step did not change and keeps what it did', async () => {
  // L1: a base layer with whole-second mtimes.
  await snaps.create('L1', [], async (fs) => {
    await mkdir(join(fs, 'etc'));
    await mkdir(join(fs, 'tmp'), { mode: 0o777 });
    await mkdir(join(fs, 'var/cache/debconf'), { recursive: true });
    await mkdir(join(fs, 'd'));
    await mkdir(join(fs, 'gone'));
    await mkdir(join(fs, 'keep'));
    for (const [p, body] of [
      ['var/cache/debconf/config.dat', 'debconf state\n'],
      ['etc/same-size', 'aaaa\n'],
      ['etc/mode', 'm\n'],
      ['etc/attr', 'x\n'],
      ['etc/removed', 'r\n'],
      ['d/old', 'o\n'],
      ['gone/f', 'g\n'],
      ['keep/f', 'k\n'],
    ] as const) {
      await writeFile(join(fs, p), body);
      await utimes(join(fs, p), T, T);
    }
    await symlink('same-size', join(fs, 'etc/link'));
    for (const d of ['etc', 'tmp', 'var/cache/debconf', 'var/cache', 'var', 'd', 'gone', 'keep'])
      await utimes(join(fs, d), T, T);
  });
  // L2 deletes gone/ (an overlay whiteout), so for the next step "gone" is a new name.
  const a2 = await snaps.prepare('a2', ['L1']);
  const m = join(root, 'mnt');
  await mkdir(m);
  await a2.mount(m);
  try {
    sh(m, 'rm -rf gone');
  } finally {
    await a2.unmount();
  }
  await snaps.commit('a2', 'L2');

  const run = await snaps.prepare('run', ['L1', 'L2']);
  await run.mount(m);
  const ref = join(root, 'ref');
  await mkdir(ref);
  try {
    sh(
      m,
      [
        // Rewritten byte-identically with the same mtime (dpkg's debconf databases): no change.
        `cp -p var/cache/debconf/config.dat ${ref}/c && cp -p ${ref}/c var/cache/debconf/config.dat`,
        // Same size, same mtime, other bytes: a change only the content shows.
        `cp -p etc/same-size ${ref}/s && printf 'bbbb\\n' > etc/same-size && touch -r ${ref}/s etc/same-size`,
        // Only tmp's mtime changes (a file made and removed there): no change.
        'touch tmp/scratch && rm tmp/scratch && touch tmp',
        // Metadata-only changes are changes.
        'chmod 600 etc/mode',
        'setfattr -n user.polyarch -v 1 etc/attr',
        // A deletion, a replaced directory (opaque), a new directory.
        'rm etc/removed',
        'rm -rf d && mkdir d && echo n > d/new',
        'mkdir newdir && echo f > newdir/f',
        // Over L2's whiteout: overlayfs marks it opaque, yet nothing below shows "gone".
        'mkdir gone && echo again > gone/f',
        // Touched but unchanged: keep/ gets a new mtime only; keep/f is untouched.
        'touch keep',
        // A file made and removed: overlayfs may leave nothing, and surely no whiteout is needed.
        'echo t > etc/transient && rm etc/transient',
      ].join('\n'),
    );
  } finally {
    await run.unmount();
  }
  await snaps.commit('run', 'L3');
  const [upper] = await snaps.paths(['L3']);
  // Kernels differ in marking a directory made over a whiteout opaque; mark both new ones, as
  // some do (and as a layer extracted with `.wh..wh..opq` markers does).
  for (const d of ['gone', 'newdir'])
    execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(upper!, d)]);
  const lowers = (await snaps.paths(['L1', 'L2'])).reverse();

  // Without the lowers every upper entry is there (the old behaviour), which shows the test
  // really produced the unchanged copies it then expects to be left out.
  const all = await entryPaths(upper!, []);
  for (const p of ['var/cache/debconf/config.dat', 'tmp', 'keep', 'gone/.wh..wh..opq', 'newdir/.wh..wh..opq'])
    assert.ok(all.includes(p), `${p} is in the upper dir: ${all.join(' ')}`);

  const paths = await entryPaths(upper!, lowers);
  for (const p of [
    'var/cache/debconf/config.dat',
    'var/cache/debconf',
    'var',
    'tmp',
    'keep',
    'keep/f',
    'gone/.wh..wh..opq',
    'etc/.wh.transient',
  ])
    assert.ok(!paths.includes(p), `${p} is not in the layer: ${paths.join(' ')}`);
  for (const p of [
    'etc',
    'etc/same-size',
    'etc/mode',
    'etc/attr',
    'etc/.wh.removed',
    'd',
    'd/.wh..wh..opq',
    'd/new',
    'newdir',
    'newdir/f',
    'gone',
    'gone/f',
  ])
    assert.ok(paths.includes(p), `${p} is in the layer: ${paths.join(' ')}`);
});

test('a file rewritten with other bytes but the same size and mtime in one lower layer', async () => {
  await snaps.create('S1', [], async (fs) => {
    await writeFile(join(fs, 'f'), 'same');
    await utimes(join(fs, 'f'), T, T);
    await writeFile(join(fs, 'g'), 'same');
    await utimes(join(fs, 'g'), T, T);
  });
  const run = await snaps.prepare('srun', ['S1']);
  const m = join(root, 'mnt2');
  await mkdir(m);
  await run.mount(m);
  try {
    sh(
      m,
      "printf diff > f && touch -d '2024-01-02 03:04:05 UTC' f && cat g > g2 && cat g2 > g && touch -r f g && rm g2",
    );
  } finally {
    await run.unmount();
  }
  await snaps.commit('srun', 'S2');
  const [upper] = await snaps.paths(['S2']);
  assert.deepEqual(await entryPaths(upper!, await snaps.paths(['S1'])), ['f']);
});
