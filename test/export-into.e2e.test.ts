/**
 * Directory outputs as a user sees them (`./bin/polyarch build -o ...`): `type=local` and
 * `type=oci,tar=false` write INTO the destination (what it holds and the image does not is
 * kept; symlinks already there are replaced, never followed out of it), `/` and the state root
 * are refused before anything is built, and the layer memo's temp files never pile up.
 *
 * Destructive cases run in a throwaway mount namespace (`unshare -m`, private propagation)
 * with a tmpfs as the destination; the refusal of `dest=/` runs with `/` remounted read-only
 * in that namespace, so even a regression cannot write the real root.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const env = testEnv();

let dir: string;
let root: string;
let ctx: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function sh(script: string, extraEnv: Record<string, string> = {}): Run {
  const r = spawnSync('bash', ['-c', script], {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config, PA: bin, ...extraEnv },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function polyarch(args: string[], opts: { root?: string } = {}): Run {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, POLYARCH_ROOT: opts.root ?? root, POLYARCH_CONFIG: env.config },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run): Run {
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  return r;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'polyarch-export-into-'));
  root = join(dir, 'state');
  ctx = join(dir, 'ctx');
  await mkdir(ctx);
  // /hello, /etc/passwd (from the base) and /etc/image.conf; /lnk is the image's own symlink
  // to a host directory, written as a link and never followed.
  await writeFile(
    join(ctx, 'Dockerfile'),
    `FROM ${env.busybox}\nRUN echo from-image > /hello && echo conf > /etc/image.conf && ln -s ${dir}/victim /lnk\n`,
  );
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A destination holding the user's own files and symlinks that point out of it. */
async function prepareDest(dest: string, victim: string): Promise<void> {
  await mkdir(join(dest, 'etc'), { recursive: true });
  await mkdir(join(dest, 'keep-dir'), { recursive: true });
  await writeFile(join(dest, 'etc', 'mine.conf'), 'mine\n');
  await writeFile(join(dest, 'keep-dir', 'file'), 'kept\n');
  await writeFile(join(dest, 'other'), 'other\n');
  await mkdir(join(victim, 'bin'), { recursive: true });
  await writeFile(join(victim, 'target'), 'victim\n');
  // dest/bin -> victim/bin (image has /bin), dest/hello -> victim/target (image has /hello).
  await symlink(join(victim, 'bin'), join(dest, 'bin'));
  await symlink(join(victim, 'target'), join(dest, 'hello'));
}

async function checkMerged(dest: string, victim: string): Promise<void> {
  // Kept: what the image does not have.
  assert.equal(await readFile(join(dest, 'etc', 'mine.conf'), 'utf8'), 'mine\n');
  assert.equal(await readFile(join(dest, 'keep-dir', 'file'), 'utf8'), 'kept\n');
  assert.equal(await readFile(join(dest, 'other'), 'utf8'), 'other\n');
  // Written: what the image has.
  assert.equal(await readFile(join(dest, 'hello'), 'utf8'), 'from-image\n');
  assert.equal(await readFile(join(dest, 'etc', 'image.conf'), 'utf8'), 'conf\n');
  assert.match(await readFile(join(dest, 'etc', 'passwd'), 'utf8'), /^root:/);
  // Links pointing out were replaced, not followed.
  assert.ok(lstatSync(join(dest, 'bin')).isDirectory(), 'dest/bin is now a real directory');
  assert.ok(lstatSync(join(dest, 'bin', 'busybox')).isFile());
  assert.ok(lstatSync(join(dest, 'hello')).isFile(), 'dest/hello is now a regular file');
  assert.deepEqual(await readdir(join(victim, 'bin')), [], 'nothing was written through dest/bin');
  assert.equal(await readFile(join(victim, 'target'), 'utf8'), 'victim\n');
  // The image's own symlink is a link in dest.
  assert.equal(await readlink(join(dest, 'lnk')), `${dir}/victim`);
  // No staging or temp names left beside or inside the destination.
  const beside = (await readdir(dirname(dest))).filter((n) => n.startsWith('.tmp-'));
  assert.deepEqual(beside, []);
  const find = spawnSync('find', [dest, '-name', '.tmp-*'], { encoding: 'utf8' });
  assert.equal(find.stdout, '', 'no temp names inside dest');
}

describe('type=local writes into the destination', () => {
  test('a directory holding other files and outward symlinks keeps them (same file system)', async () => {
    const dest = join(dir, 'out-same');
    const victim = join(dir, 'victim');
    await prepareDest(dest, victim);
    ok(
      polyarch([
        'build',
        '--progress',
        'quiet',
        '--platform',
        'linux/amd64',
        '-o',
        `type=local,dest=${dest}`,
        ctx,
      ]),
    );
    await checkMerged(dest, victim);
    // Again: a second export over the first changes nothing the image does not have.
    ok(
      polyarch([
        'build',
        '--progress',
        'quiet',
        '--platform',
        'linux/amd64',
        '-o',
        `type=local,dest=${dest}`,
        ctx,
      ]),
    );
    await checkMerged(dest, victim);
  });

  test('a tmpfs mounted as the destination (copies across file systems), in a throwaway mount namespace', async () => {
    const dest = join(dir, 'out-tmpfs');
    const victim = join(dir, 'victim-tmpfs');
    await mkdir(dest);
    // Everything runs inside the namespace: the tmpfs exists only there, so the checks are
    // printed from inside and compared here.
    const prep = `
      set -e
      mount -t tmpfs -o size=64m polyarch-test "$DEST"
      mkdir -p "$DEST/etc" "$DEST/keep-dir" "$VICTIM/bin"
      echo mine > "$DEST/etc/mine.conf"; echo kept > "$DEST/keep-dir/file"; echo other > "$DEST/other"
      echo victim > "$VICTIM/target"
      ln -s "$VICTIM/bin" "$DEST/bin"; ln -s "$VICTIM/target" "$DEST/hello"
      "$PA" build --progress quiet --platform linux/amd64 -o "type=local,dest=$DEST" "$CTX"
      findmnt -n -o FSTYPE "$DEST"
      cat "$DEST/etc/mine.conf" "$DEST/keep-dir/file" "$DEST/other" "$DEST/hello" "$DEST/etc/image.conf"
      stat -c '%F' "$DEST/bin" "$DEST/hello" "$DEST/bin/busybox"
      readlink "$DEST/lnk"
      ls -A "$VICTIM/bin" | wc -l; cat "$VICTIM/target"
      find "$DEST" -name '.tmp-*' | wc -l
    `;
    const r = sh(`unshare -m --propagation private bash -c '${prep.replaceAll("'", "'\\''")}'`, {
      DEST: dest,
      VICTIM: victim,
      CTX: ctx,
    });
    assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'tmpfs',
      'mine',
      'kept',
      'other',
      'from-image',
      'conf',
      'directory',
      'regular file',
      'regular file',
      `${dir}/victim`,
      '0',
      'victim',
      '0',
    ]);
    assert.deepEqual(await readdir(dest), [], 'the tmpfs was only in the namespace');
  });

  test('a directory holding a mount point is never removed to make room for a file', () => {
    const dest = join(dir, 'out-mount');
    const script = `
      set -e
      mkdir -p "$DEST/hello"
      mount -t tmpfs -o size=1m polyarch-test "$DEST/hello"
      echo precious > "$DEST/hello/data"
      set +e
      "$PA" build --progress quiet --platform linux/amd64 -o "type=local,dest=$DEST" "$CTX"
      echo "rc=$?"
      cat "$DEST/hello/data"
    `;
    const r = sh(`unshare -m --propagation private bash -c '${script.replaceAll("'", "'\\''")}'`, {
      DEST: dest,
      CTX: ctx,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['rc=1', 'precious']);
    assert.match(
      r.stderr,
      /^ERROR: writing .*\/hello: the image has a file there, .*holds the mount point .*\/hello: not removed\n$/,
    );
  });

  test('type=oci,tar=false into a directory keeps other files and replaces a symlinked blobs/', async () => {
    const dest = join(dir, 'out-oci');
    const victim = join(dir, 'victim-oci');
    await mkdir(dest, { recursive: true });
    await mkdir(victim, { recursive: true });
    await writeFile(join(dest, 'README'), 'mine\n');
    await symlink(victim, join(dest, 'blobs'));
    ok(
      polyarch([
        'build',
        '--progress',
        'quiet',
        '--platform',
        'linux/amd64',
        '-o',
        `type=oci,dest=${dest},tar=false`,
        ctx,
      ]),
    );
    assert.equal(await readFile(join(dest, 'README'), 'utf8'), 'mine\n');
    assert.ok(lstatSync(join(dest, 'blobs')).isDirectory());
    assert.deepEqual(await readdir(victim), []);
    const index = JSON.parse(await readFile(join(dest, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    assert.ok(existsSync(join(dest, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7))));
    const skopeo = spawnSync('skopeo', ['inspect', '--raw', `oci:${dest}`], { encoding: 'utf8' });
    assert.equal(skopeo.status, 0, skopeo.stderr);
  });
});

describe('refused destinations: before anything is built', () => {
  const cases: [name: string, dest: () => string, why: RegExp][] = [
    ['/', () => '/', /dest "\/" is the root directory \/: an image written there would replace host files/],
    ['a symlink to /', () => join(dir, 'to-root'), /\(\/\) is the root directory \//],
    ['the state root', () => root, /is polyarch's state root/],
    ['a directory holding the state root', () => dir, /contains polyarch's state root/],
    ['a path inside the state root', () => join(root, 'store'), /is inside polyarch's state root/],
  ];
  before(async () => {
    await symlink('/', join(dir, 'to-root'));
  });
  for (const [name, dest, why] of cases)
    test(`dest = ${name}`, async () => {
      // A fresh state root on a tmpfs, `/` read-only: in this namespace nothing can write `/`.
      const fresh = join(dir, `refuse-${name.replaceAll(/\W/g, '_')}`);
      await mkdir(fresh);
      const d = dest();
      const stateRoot = d === root || d.startsWith(`${root}/`) || d === dir ? root : join(fresh, 'state');
      const script = `
        mount -t tmpfs -o size=16m polyarch-test "$FRESH" || exit 99
        mount -o remount,bind,ro / || exit 98
        POLYARCH_ROOT="$SROOT" "$PA" build --progress plain --platform linux/amd64 -o "type=local,dest=$D" "$CTX"
        echo "rc=$?"
        ls -A "$SROOT" 2>/dev/null | tr '\\n' ' '
      `;
      const r = sh(`unshare -m --propagation private bash -c '${script.replaceAll("'", "'\\''")}'`, {
        FRESH: fresh,
        D: d,
        SROOT: stateRoot,
        CTX: ctx,
      });
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines[0], 'rc=1', r.stderr);
      const errs = r.stderr.trim().split('\n');
      assert.equal(errs.length, 1, `one error line, no build output: ${r.stderr}`);
      assert.match(errs[0]!, /^ERROR: invalid output "type=local,dest=.*": dest /);
      assert.match(errs[0]!, why);
      assert.match(errs[0]!, /choose another directory$/);
      if (stateRoot !== root) {
        // Nothing was pulled, unpacked or built in the fresh state root.
        const made = (lines[1] ?? '').trim().split(' ').filter(Boolean);
        for (const n of ['store', 'snapshots', 'build']) assert.ok(!made.includes(n), `${n} made: ${made}`);
      }
    });

  test('type=tar,dest=/ and type=oci,tar=false,dest=/ too', () => {
    for (const o of ['type=tar,dest=/', 'type=oci,tar=false,dest=/']) {
      const r = polyarch(['build', '--progress', 'quiet', '-o', o, ctx]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^ERROR: invalid output .*dest "\/" is the root directory \//);
    }
  });
});

describe('the layer memo leaves no temp files', () => {
  test('builds exporting images leave none, and ones of dead writers are swept', async () => {
    const exportDir = join(root, 'export');
    await mkdir(exportDir, { recursive: true });
    // A temp file of a writer that is gone (a pid that just ended), and one of a live writer.
    const gone = spawnSync('true').pid;
    const dead = join(exportDir, `.tmp-layers.json-${gone}-0badc0de`);
    const live = join(exportDir, `.tmp-layers.json-${process.pid}-0badc0de`);
    await writeFile(dead, '{');
    await writeFile(live, '{');
    ok(
      polyarch([
        'build',
        '--progress',
        'quiet',
        '--platform',
        'linux/amd64,linux/arm64',
        '-t',
        'into:1',
        ctx,
      ]),
    );
    const bad = join(dir, 'ctx-fail');
    await mkdir(bad, { recursive: true });
    await writeFile(join(bad, 'Dockerfile'), `FROM ${env.busybox}\nRUN echo a > /a\nRUN exit 3\n`);
    assert.equal(
      polyarch(['build', '--progress', 'quiet', '--platform', 'linux/amd64', '-t', 'into:2', bad]).status,
      1,
    );
    const left = (await readdir(exportDir)).filter((n) => n.startsWith('.tmp-'));
    assert.deepEqual(left, [`.tmp-layers.json-${process.pid}-0badc0de`]);
    assert.ok(existsSync(join(exportDir, 'layers.json')));
    await rm(live);
  });
});
