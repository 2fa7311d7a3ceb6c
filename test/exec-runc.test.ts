/**
 * runc + overlayfs end to end: busybox root filesystems of three architectures stacked as
 * snapshots, commands run natively and under QEMU (binfmt_misc, F flag).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { cleanupStale, listContainers, type RunContainerOptions, runContainer } from '../src/exec/runc.js';
import { type ActiveSnapshot, Snapshotter } from '../src/snapshot/overlay.js';
import { busyboxRootfs, canExecute, ensureBinfmt } from './exec-fixtures.js';

const ARCHES: [platform: string, fixture: string, unameM: string][] = [
  ['linux/amd64', 'amd64', 'x86_64'],
  ['linux/arm64', 'arm64', 'aarch64'],
  ['linux/arm/v7', 'arm/v7', 'armv7l'],
  ['linux/ppc64le', 'ppc64le', 'ppc64le'],
  ['linux/s390x', 's390x', 's390x'],
];

let root: string;
let snaps: Snapshotter;
/** Snapshot chain (bottom first) per platform: busybox, then a layer adding users. */
const chains = new Map<string, string[]>();
let seq = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-exec-'));
  snaps = await Snapshotter.open({ root });
  for (const [platform, fixture] of ARCHES) {
    await ensureBinfmt(platform);
    const src = await busyboxRootfs(fixture);
    const base = `busybox-${platform}`;
    await snaps.create(base, [], async (fs) => {
      execFileSync('cp', ['-a', `${src}/.`, fs]);
    });
    await snaps.create(`users-${platform}`, [base], async (fs) => {
      await mkdir(join(fs, 'etc'));
      await writeFile(
        join(fs, 'etc/passwd'),
        'root:x:0:0:root:/root:/bin/sh\ntester:x:1000:1000::/home/tester:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
      );
      await writeFile(
        join(fs, 'etc/group'),
        'root:x:0:\ntester:x:1000:\nextra:x:2000:tester\nnogroup:x:65534:\n',
      );
      await mkdir(join(fs, 'srv/data'), { recursive: true });
      await writeFile(join(fs, 'srv/data/file'), 'lower-content\n');
    });
    chains.set(platform, [base, `users-${platform}`]);
  }
});

after(async () => {
  assert.deepEqual(await listContainers(root), [], 'no runc state left');
  assert.deepEqual(await mountsUnder(root), [], 'no mounts left');
  await rm(root, { recursive: true, force: true });
});

async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/mounts', 'utf8');
  return text
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(dir));
}

interface Ran {
  exitCode: number;
  stdout: string;
  stderr: string;
  active: ActiveSnapshot;
}

/** Run in a fresh active snapshot over `platform`'s chain; the caller removes `active`. */
async function run(
  platform: string,
  spec: RunContainerOptions['spec'],
  extra: Partial<RunContainerOptions> = {},
  parents = chains.get(platform)!,
): Promise<Ran> {
  const active = await snaps.prepare(`test-${process.pid}-${++seq}`, parents);
  let stdout = '';
  let stderr = '';
  try {
    const r = await runContainer({
      root,
      rootfs: active,
      platform,
      canExecute,
      spec,
      stdout: (b) => (stdout += b),
      stderr: (b) => (stderr += b),
      ...extra,
    });
    return { exitCode: r.exitCode, stdout, stderr, active };
  } catch (err) {
    await snaps.remove(active.key);
    throw err;
  }
}

async function runSimple(
  platform: string,
  spec: RunContainerOptions['spec'],
  extra: Partial<RunContainerOptions> = {},
) {
  const r = await run(platform, spec, extra);
  await snaps.remove(r.active.key);
  return r;
}

describe('architectures', () => {
  for (const [platform, , want] of ARCHES)
    test(`uname -m on ${platform} is ${want}`, async () => {
      const r = await runSimple(platform, { args: ['uname', '-m'] });
      assert.equal(r.stderr, '');
      assert.equal(r.stdout, `${want}\n`);
      assert.equal(r.exitCode, 0);
    });

  test('a platform with no emulator fails before anything starts', async () => {
    const active = await snaps.prepare('no-emu', chains.get('linux/amd64')!);
    await assert.rejects(
      runContainer({
        root,
        rootfs: active,
        platform: { os: 'linux', architecture: 'riscv64' },
        canExecute: () => false,
        spec: { args: ['true'] },
      }),
      {
        code: 'NO_EMULATOR',
        message: 'no emulator for linux/riscv64: run `polyarch binfmt --install riscv64`',
      },
    );
    assert.equal(active.target, undefined, 'never mounted');
    await snaps.remove('no-emu');
  });
});

describe('process', () => {
  test('exit codes propagate', async () => {
    assert.equal((await runSimple('linux/amd64', { args: ['sh', '-c', 'exit 3'] })).exitCode, 3);
    assert.equal((await runSimple('linux/arm64', { args: ['sh', '-c', 'exit 42'] })).exitCode, 42);
  });

  test('a command that cannot start is an error with exit code 127 or 126', async () => {
    await assert.rejects(runSimple('linux/amd64', { args: ['/nope'] }), {
      code: 'START_FAILED',
      exitCode: 127,
      message:
        /^container polyarch-[0-9a-f]{12}: cannot start the process: exec: "\/nope": stat \/nope: no such file or directory$/,
    });
    await assert.rejects(runSimple('linux/amd64', { args: ['/etc/passwd'] }), { exitCode: 126 });
    // A process exiting 1 by itself is not a start failure.
    assert.equal((await runSimple('linux/amd64', { args: ['false'] })).exitCode, 1);
  });

  test('stdout and stderr are streamed separately', async () => {
    const r = await runSimple('linux/amd64', { args: ['sh', '-c', 'echo out1; echo err1 >&2; echo out2'] });
    assert.equal(r.stdout, 'out1\nout2\n');
    assert.equal(r.stderr, 'err1\n');
  });

  test('stdin', async () => {
    const r = await runSimple('linux/amd64', { args: ['cat'] }, { stdin: 'hello\n' });
    assert.equal(r.stdout, 'hello\n');
  });

  test('Env, WorkingDir and User from the image config', async () => {
    const r = await runSimple('linux/arm64', {
      config: {
        Env: ['FOO=bar', 'PATH=/bin'],
        WorkingDir: '/srv/app',
        User: 'nobody',
        Cmd: ['sh', '-c', 'echo $FOO $PATH; pwd; id -u; id -g'],
      },
    });
    assert.equal(r.stdout, 'bar /bin\n/srv/app\n65534\n65534\n');
  });

  test('overrides, user groups and default PATH/HOSTNAME', async () => {
    const r = await runSimple('linux/amd64', {
      config: { Env: ['FOO=bar'], User: 'nobody' },
      env: ['FOO=baz'],
      user: 'tester',
      workingDir: '/tmp',
      hostname: 'box1',
      args: ['sh', '-c', 'echo $FOO $PATH $HOSTNAME $(hostname); pwd; id -u; id -G'],
    });
    assert.equal(
      r.stdout,
      'baz /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin box1 box1\n/tmp\n1000\n1000 2000\n',
    );
  });

  test("devices, masks, capabilities and no_new_privs match Docker's defaults", async () => {
    const script = [
      'echo x > /dev/null && head -c 3 /dev/zero | wc -c',
      'echo shm > /dev/shm/f && cat /dev/shm/f',
      'test -d /dev/pts && test -d /dev/mqueue && echo dirs',
      'wc -c < /proc/timer_list',
      'echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || echo proc-sys-ro',
      'touch /sys/x 2>/dev/null || echo sys-ro',
      'grep -E "^(CapEff|NoNewPrivs)" /proc/self/status',
    ].join('; ');
    const r = await runSimple('linux/amd64', { args: ['sh', '-c', script] });
    assert.equal(
      r.stdout,
      '3\nshm\ndirs\n0\nproc-sys-ro\nsys-ro\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t1\n',
    );
  });

  test('an unknown user is an error naming it', async () => {
    await assert.rejects(
      runSimple('linux/amd64', { user: 'ghost', args: ['true'] }),
      /unable to find user ghost/,
    );
  });

  test('open files limit is within the host hard limit', async () => {
    const hard = Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
    const r = await runSimple('linux/amd64', { args: ['sh', '-c', 'ulimit -Hn; ulimit -Sn'] });
    const [h, s] = r.stdout.trim().split('\n').map(Number);
    assert.ok(h! <= hard && h! > 0, `hard ${h} <= ${hard}`);
    assert.equal(s, Math.min(1024, hard));
  });
});

describe('network and mounts', () => {
  const interfaces = (procNetDev: string) =>
    procNetDev
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0]!.trim())
      .filter(Boolean);

  test('--network none has only lo; the default is the host network', async () => {
    const none = await runSimple('linux/amd64', { network: 'none', args: ['cat', '/proc/net/dev'] });
    assert.deepEqual(interfaces(none.stdout), ['lo']);
    const host = await runSimple('linux/amd64', { args: ['cat', '/proc/net/dev'] });
    assert.deepEqual(
      interfaces(host.stdout).sort(),
      interfaces(await readFile('/proc/net/dev', 'utf8')).sort(),
    );
  });

  test('-v binds: rw writes through, :ro is read-only', async () => {
    const dir = await mkdtemp(join(root, 'vol-'));
    await writeFile(join(dir, 'in'), 'from-host');
    const rw = await runSimple('linux/amd64', {
      mounts: [{ type: 'bind', source: dir, destination: '/data' }],
      args: ['sh', '-c', 'cat /data/in; echo from-container > /data/out'],
    });
    assert.equal(rw.stdout, 'from-host');
    assert.equal(await readFile(join(dir, 'out'), 'utf8'), 'from-container\n');
    const ro = await runSimple('linux/amd64', {
      mounts: [{ type: 'bind', source: dir, destination: '/data', readonly: true }],
      args: ['sh', '-c', 'cat /data/in && echo x > /data/out2'],
    });
    assert.equal(ro.stdout, 'from-host');
    assert.notEqual(ro.exitCode, 0);
    assert.match(ro.stderr, /Read-only file system/);
    assert.equal(existsSync(join(dir, 'out2')), false);
  });

  test('/etc/hosts, /etc/hostname and /etc/resolv.conf are provided', async () => {
    const r = await runSimple(
      'linux/amd64',
      {
        hostname: 'h2',
        args: ['sh', '-c', 'cat /etc/hostname /etc/resolv.conf; grep -c localhost /etc/hosts'],
      },
      { resolvConf: 'nameserver 192.0.2.1\n' },
    );
    assert.equal(r.stdout, 'h2\nnameserver 192.0.2.1\n2\n');
  });
});

describe('overlay', () => {
  test('writes land in the upper dir only; mount stubs do not; commit stacks them', async () => {
    const chain = chains.get('linux/amd64')!;
    const r = await run('linux/amd64', {
      args: ['sh', '-c', 'echo hi > /newfile; rm /bin/ls; mkdir -p /srv/x'],
    });
    assert.equal(r.exitCode, 0);
    assert.equal(await readFile(join(r.active.upper, 'newfile'), 'utf8'), 'hi\n');
    const [baseFs] = await snaps.paths([chain[0]!]);
    assert.equal(existsSync(join(baseFs!, 'newfile')), false, 'the lower snapshot is untouched');
    assert.ok(existsSync(join(baseFs!, 'bin/ls')));
    // /etc/hosts etc. were mount points runc created: not part of the change set.
    const upperEtc = existsSync(join(r.active.upper, 'etc'))
      ? await readdir(join(r.active.upper, 'etc'))
      : [];
    assert.deepEqual(upperEtc, []);
    await snaps.commit(r.active.key, 'layer-newfile');

    const r2 = await run(
      'linux/amd64',
      { args: ['sh', '-c', 'cat /newfile; ls /bin/ls; test -d /srv/x && echo dir'] },
      {},
      [...chain, 'layer-newfile'],
    );
    assert.equal(r2.stdout, 'hi\ndir\n');
    assert.match(r2.stderr, /ls: \/bin\/ls: No such file or directory/);
    await snaps.remove(r2.active.key);
    await snaps.remove('layer-newfile');
  });

  test('the upper dir is self-contained: renamed dirs and appended files are full copies', async () => {
    const r = await run('linux/amd64', {
      args: ['sh', '-c', 'mv /srv/data /srv/moved && echo more >> /srv/moved/file && cat /srv/moved/file'],
    });
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, 'lower-content\nmore\n');
    assert.equal(await readFile(join(r.active.upper, 'srv/moved/file'), 'utf8'), 'lower-content\nmore\n');
    const st = await lstat(join(r.active.upper, 'srv/data'));
    assert.ok(st.isCharacterDevice() && st.rdev === 0, 'the old name is a whiteout');
    await snaps.remove(r.active.key);
  });

  test('concurrent containers do not clash', async () => {
    const results = await Promise.all(
      ['linux/amd64', 'linux/arm64', 'linux/amd64', 'linux/arm/v7'].map((p, i) =>
        runSimple(p, { args: ['sh', '-c', `echo ${i} > /mine; sleep 0.3; cat /mine; uname -m`] }),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.stdout),
      ['0\nx86_64\n', '1\naarch64\n', '2\nx86_64\n', '3\narmv7l\n'],
    );
  });
});

describe('stopping', () => {
  test('an aborted sleep 100 ends quickly and leaves nothing behind', async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    let started = false;
    const running = runSimple(
      'linux/amd64',
      { args: ['sh', '-c', 'echo up; exec sleep 100'] },
      {
        signal: ac.signal,
        stdout: () => {
          started = true;
          ac.abort(new Error('user cancelled'));
        },
      },
    );
    await assert.rejects(running, { code: 'ABORTED', message: /aborted: user cancelled/ });
    assert.ok(started);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0}ms`);
    assert.deepEqual(await mountsUnder(root), []);
    assert.deepEqual(await listContainers(root), []);
    assert.deepEqual(await readdir(join(root, 'exec')), []);
  });

  test('aborts at any moment: before, during setup, while starting', async () => {
    const before = new AbortController();
    before.abort(new Error('early'));
    await assert.rejects(runSimple('linux/amd64', { args: ['true'] }, { signal: before.signal }), {
      code: 'ABORTED',
      message: /aborted: early/,
    });
    for (const delay of [0, 5, 20, 50]) {
      const ac = new AbortController();
      const t0 = Date.now();
      const running = runSimple('linux/amd64', { args: ['sleep', '100'] }, { signal: ac.signal });
      setTimeout(() => ac.abort(new Error(`after ${delay}ms`)), delay);
      await assert.rejects(running, { code: 'ABORTED' });
      assert.ok(Date.now() - t0 < 5000, `abort after ${delay}ms took ${Date.now() - t0}ms`);
    }
    assert.deepEqual(await mountsUnder(root), []);
    assert.deepEqual(await listContainers(root), []);
  });

  test('a timeout kills the container', async () => {
    const t0 = Date.now();
    await assert.rejects(runSimple('linux/arm64', { args: ['sleep', '100'] }, { timeoutMs: 500 }), {
      code: 'TIMEOUT',
    });
    assert.ok(Date.now() - t0 < 5000);
    assert.deepEqual(await mountsUnder(root), []);
  });

  test('SIGTERM to the node process is forwarded, then everything is cleaned up', async () => {
    const chain = chains.get('linux/amd64')!;
    const url = (p: string) => JSON.stringify(pathToFileURL(join(import.meta.dirname, p)).href);
    const script = `
      import { Snapshotter } from ${url('../src/snapshot/overlay.js')};
      import { runContainer } from ${url('../src/exec/runc.js')};
      const [root, chain] = [process.argv[1], JSON.parse(process.argv[2])];
      const snaps = await Snapshotter.open({ root });
      const active = await snaps.prepare('sig-' + process.pid, chain);
      await runContainer({ root, rootfs: active, spec: { args: ['sh', '-c', "trap 'echo got-term; exit 143' TERM; echo up; sleep 100 & wait"] },
        stdout: (b) => process.stdout.write(b) });
      process.stdout.write('not reached\\n');
    `;
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script, root, JSON.stringify(chain)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    const t0 = Date.now();
    child.stdout.on('data', (b) => {
      out += b;
      if (out === 'up\n') child.kill('SIGTERM');
    });
    const [code, sig] = await new Promise<[number | null, string | null]>((r) =>
      child.on('exit', (c, s) => r([c, s])),
    );
    assert.equal(out, 'up\ngot-term\n');
    assert.equal(sig, 'SIGTERM', `exit code ${code}`);
    assert.ok(Date.now() - t0 < 8000);
    assert.deepEqual(await mountsUnder(root), []);
    assert.deepEqual(await listContainers(root), []);
    await snaps.remove(`sig-${child.pid}`);
  });

  test('after a SIGKILLed process: cleanupStale and removeOrphans clear what it left', async () => {
    const chain = chains.get('linux/amd64')!;
    const url = (p: string) => JSON.stringify(pathToFileURL(join(import.meta.dirname, p)).href);
    const script = `
      import { Snapshotter } from ${url('../src/snapshot/overlay.js')};
      import { runContainer } from ${url('../src/exec/runc.js')};
      const [root, chain] = [process.argv[1], JSON.parse(process.argv[2])];
      const snaps = await Snapshotter.open({ root });
      const active = await snaps.prepare('killed-' + process.pid, chain);
      await runContainer({ root, rootfs: active, spec: { args: ['sh', '-c', 'echo up; exec sleep 100'] },
        stdout: (b) => process.stdout.write(b) });
    `;
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script, root, JSON.stringify(chain)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    child.stdout.on('data', () => child.kill('SIGKILL'));
    await new Promise((r) => child.on('exit', r));
    const left = await listContainers(root);
    assert.equal(left.length, 1, 'the orphaned container still runs');
    assert.equal((await mountsUnder(root)).length, 1, 'its rootfs is still mounted');

    assert.deepEqual(await cleanupStale(root), left);
    assert.deepEqual(await listContainers(root), []);
    assert.deepEqual(await mountsUnder(root), []);
    assert.deepEqual(await readdir(join(root, 'exec')), []);
    assert.deepEqual(await snaps.removeOrphans(), [`killed-${child.pid}`]);
    assert.deepEqual(await cleanupStale(root), [], 'nothing more to do');
  });
});
