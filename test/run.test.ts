/**
 * `polyarch run` end to end: the real CLI, the test registry's busybox index, runc, overlayfs
 * and QEMU (binfmt_misc). One state root for the file, so later tests run on a warm store.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ContentStore } from '../src/content/store.js';
import { exitElf, probePlatform } from '../src/platform/index.js';
import { Snapshotter } from '../src/snapshot/overlay.js';
import { pushBusybox, startRegistry, testEnv } from './env/index.js';
import { ensureBinfmt } from './exec-fixtures.js';
import { storeImage, tarGz } from './run-fixtures.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const env = testEnv();

let root: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function polyarch(
  args: string[],
  opts: { input?: string; env?: Record<string, string>; root?: string } = {},
): Run {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    input: opts.input ?? '',
    timeout: 120_000,
    env: { ...process.env, POLYARCH_ROOT: opts.root ?? root, POLYARCH_CONFIG: env.config, ...opts.env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run): Run {
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  return r;
}

async function snapshotKeys(): Promise<string[]> {
  const snaps = await Snapshotter.open({ root });
  return (await snaps.list()).map((s) => s.key).sort();
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-run-'));
  for (const p of ['linux/arm64', 'linux/arm/v7', 'linux/ppc64le', 'linux/s390x']) await ensureBinfmt(p);
});

after(async () => {
  const keys = await snapshotKeys();
  assert.deepEqual(
    keys.filter((k) => k.startsWith('run:')),
    [],
    'no active container snapshots left',
  );
  await rm(root, { recursive: true, force: true });
});

describe('platforms', () => {
  test('with no --platform this amd64 host runs amd64 (pulling the missing image)', () => {
    const r = ok(polyarch(['run', '--rm', env.busybox, 'uname', '-m']));
    assert.equal(r.stdout, 'x86_64\n');
  });

  const cases: [platform: string, machine: string][] = [
    ['linux/arm64', 'aarch64'],
    ['linux/arm/v7', 'armv7l'],
    ['linux/ppc64le', 'ppc64le'],
    ['linux/s390x', 's390x'],
    ['linux/amd64', 'x86_64'],
  ];
  for (const [platform, machine] of cases)
    test(`--platform ${platform} prints ${machine}`, () => {
      const r = ok(polyarch(['run', '--rm', '--platform', platform, env.busybox, 'uname', '-m']));
      assert.equal(r.stdout, `${machine}\n`);
    });

  test('a platform the index lacks is an error naming the platforms it has', () => {
    const r = polyarch(['run', '--rm', '--platform', 'linux/riscv64', env.busybox, 'uname', '-m']);
    assert.equal(r.status, 125);
    assert.match(
      r.stderr,
      /^ERROR: image \S+busybox:latest has no linux\/riscv64 variant \(it has linux\/amd64, linux\/arm64\/v8, linux\/arm\/v7, linux\/ppc64le, linux\/s390x\)\n$/,
    );
    assert.equal(r.stdout, '');
  });

  test('an invalid --platform is bad usage', () => {
    const r = polyarch(['run', '--platform', 'linux/', env.busybox, 'true']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^ERROR: .*linux\//);
  });
});

describe('local images', () => {
  test('an index holding only 386 (and a foreign arm64) picks the 386 variant on amd64', async () => {
    const store = await ContentStore.open(join(root, 'store'));
    const i386 = await tarGz({ prog: { data: exitElf('386', 42), mode: 0o755 } });
    const arm64 = await tarGz({ prog: { data: exitElf('arm64', 7), mode: 0o755 } });
    await storeImage(store, 'localhost/run/only386:1', [
      { platform: 'linux/386', layers: [i386], config: { Entrypoint: ['/prog'] } },
      { platform: 'linux/arm64', layers: [arm64], config: { Entrypoint: ['/prog'] } },
    ]);
    // --pull never: the store alone answers. Whether 386 runs is the kernel's (IA32 emulation)
    // or an emulator's: where neither runs it, the same clear error as any missing emulator.
    const picked = polyarch(['run', '--rm', '--pull', 'never', 'localhost/run/only386:1']);
    if ((await probePlatform('linux/386')).ok) assert.equal(picked.status, 42, picked.stderr);
    else {
      assert.equal(picked.status, 125);
      assert.equal(picked.stderr, 'ERROR: no emulator for linux/386: run `polyarch binfmt --install 386`\n');
    }
    assert.equal(polyarch(['run', '--rm', '--platform', 'linux/arm64', 'localhost/run/only386:1']).status, 7);
    const strict = polyarch(['run', '--rm', '--platform', 'linux/amd64', 'localhost/run/only386:1']);
    assert.equal(strict.status, 125);
    assert.match(strict.stderr, /has no linux\/amd64 variant \(it has linux\/386, linux\/arm64\)/);
  });

  test('a platform with no emulator fails before starting, naming the fix', async () => {
    const store = await ContentStore.open(join(root, 'store'));
    const layer = await tarGz({ prog: { data: 'not a program', mode: 0o755 } });
    await storeImage(store, 'localhost/run/wasm:1', [
      { platform: 'linux/wasm', layers: [layer], config: { Entrypoint: ['/prog'] } },
    ]);
    const before = await snapshotKeys();
    const r = polyarch(['run', '--rm', 'localhost/run/wasm:1']);
    assert.equal(r.status, 125);
    assert.equal(r.stderr, 'ERROR: no emulator for linux/wasm: run `polyarch binfmt --install wasm`\n');
    assert.deepEqual(await snapshotKeys(), before, 'nothing unpacked or prepared');
  });

  test('--pull never with an image not in the store is an error', () => {
    const r = polyarch(['run', '--pull', 'never', 'localhost/run/absent:1', 'true']);
    assert.equal(r.status, 125);
    assert.match(r.stderr, /^ERROR: image localhost\/run\/absent:1 is not in the local store/);
  });
});

describe('image resolution', () => {
  test('the store first: pulled platforms run with the registry gone; missing ones are fetched while it is up', async () => {
    // A fresh state root: the shared one holds these blobs already (from the test registry).
    const own = await mkdtemp(join(root, 'resolve-'));
    const pa = (args: string[]) => polyarch(args, { root: own });
    const reg = await startRegistry();
    const ref = `${reg.host}/resolve/busybox:1`;
    try {
      await pushBusybox(env.busyboxLayout, ref);
      assert.equal(ok(pa(['run', '--rm', ref, 'uname', '-m'])).stdout, 'x86_64\n');
      const images = ok(pa(['images'])).stdout;
      assert.match(images, new RegExp(`${reg.host}/resolve/busybox\\s+1\\s+linux/amd64`));
      assert.doesNotMatch(images, new RegExp(`${reg.host}/resolve/busybox\\s+1\\s+linux/s390x`));
      // s390x is in the stored index but its blobs are not: fetched on demand.
      assert.equal(
        ok(pa(['run', '--rm', '--platform', 'linux/s390x', ref, 'uname', '-m'])).stdout,
        's390x\n',
      );
    } finally {
      await reg.stop();
    }
    assert.equal(ok(pa(['run', '--rm', ref, 'uname', '-m'])).stdout, 'x86_64\n');
    assert.equal(ok(pa(['run', '--rm', '--platform', 'linux/s390x', ref, 'uname', '-m'])).stdout, 's390x\n');
    const arm = pa(['run', '--rm', '--platform', 'linux/arm64', ref, 'true']);
    assert.equal(arm.status, 125);
    assert.match(arm.stderr, /^ERROR: pulling /);
    const never = pa(['run', '--rm', '--pull', 'never', '--platform', 'linux/arm64', ref, 'true']);
    assert.match(never.stderr, /linux\/arm64 is not in the local store \(and --pull=never\)/);
    const always = pa(['run', '--rm', '--pull', 'always', ref, 'true']);
    assert.equal(always.status, 125, '--pull always asks the (stopped) registry');
    const snaps = await Snapshotter.open({ root: own });
    assert.deepEqual(
      (await snaps.list()).filter((x) => x.kind === 'active' || x.key.startsWith('container:')),
      [],
    );
  });
});

describe('matrix runs', () => {
  test('one failing platform: prefixed output, a summary with each exit code, exit 1', () => {
    const r = polyarch([
      'run',
      '--rm',
      '--platform',
      'linux/amd64,linux/arm64,linux/s390x',
      env.busybox,
      'sh',
      '-c',
      'uname -m; [ "$(uname -m)" != aarch64 ]',
    ]);
    assert.equal(r.status, 1, r.stderr);
    const [output, summary] = r.stdout.split('\n\n');
    assert.equal(output, 'linux/amd64 | x86_64\nlinux/arm64 | aarch64\nlinux/s390x | s390x');
    const rows = summary!.trimEnd().split('\n');
    assert.match(rows[0]!, /^PLATFORM\s+EXIT\s+DURATION$/);
    assert.match(rows[1]!, /^linux\/amd64\s+0\s+\d+(ms|\.\d\ds)$/);
    assert.match(rows[2]!, /^linux\/arm64\s+1\s+\d+(ms|\.\d\ds)$/);
    assert.match(rows[3]!, /^linux\/s390x\s+0\s+\d+(ms|\.\d\ds)$/);
    assert.equal(rows.length, 4);
  });

  test('--all-platforms --parallel runs every variant together; stdin is given to each (-i)', () => {
    const r = ok(
      polyarch(
        [
          'run',
          '--rm',
          '-i',
          '--all-platforms',
          '--parallel',
          env.busybox,
          'sh',
          '-c',
          'read x; echo "$x $(uname -m)"',
        ],
        {
          input: 'hi\n',
        },
      ),
    );
    const lines = r.stdout.split('\n');
    const expected: [string, string][] = [
      ['linux/amd64', 'x86_64'],
      ['linux/arm64', 'aarch64'],
      ['linux/arm/v7', 'armv7l'],
      ['linux/ppc64le', 'ppc64le'],
      ['linux/s390x', 's390x'],
    ];
    for (const [p, m] of expected) {
      assert.ok(lines.includes(`${p} | hi ${m}`), `${p} output in:\n${r.stdout}`);
      assert.ok(
        lines.some((l) => new RegExp(`^${p.replaceAll('/', '\\/')}\\s+0\\s`).test(l)),
        `${p} summary row`,
      );
    }
  });

  test('a start failure in a matrix counts as 127 for its platform', () => {
    const r = polyarch([
      'run',
      '--rm',
      '--platform',
      'linux/amd64,linux/arm64',
      env.busybox,
      'no-such-command',
    ]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^linux\/amd64\s+127\s/m);
    assert.match(r.stdout, /^linux\/arm64\s+127\s/m);
    assert.match(r.stderr, /^linux\/amd64 \| ERROR: .*no-such-command/m);
  });
});

describe('options', () => {
  test('-e K=V, bare -e K, --env-file', async () => {
    const file = join(root, 'env.list');
    await writeFile(file, '# comment\nFROMFILE=file\n\nSHARED=file\n');
    const r = ok(
      polyarch(
        [
          'run',
          '--rm',
          '-e',
          'FOO=bar',
          '-e',
          'BARE',
          '-e',
          'UNSET_ONE',
          '--env-file',
          file,
          '-e',
          'SHARED=flag',
          env.busybox,
        ].concat(['sh', '-c', 'echo "$FOO $BARE $FROMFILE $SHARED [$UNSET_ONE]"']),
        { env: { BARE: 'from-caller' } },
      ),
    );
    assert.equal(r.stdout, 'bar from-caller file flag []\n');
  });

  test('-w sets the working directory; -u nobody runs as 65534', () => {
    assert.equal(ok(polyarch(['run', '--rm', '-w', '/tmp', env.busybox, 'pwd'])).stdout, '/tmp\n');
    assert.equal(ok(polyarch(['run', '--rm', '-u', 'nobody', env.busybox, 'id', '-u'])).stdout, '65534\n');
    const bad = polyarch(['run', '--rm', '-u', 'nosuchuser', env.busybox, 'true']);
    assert.equal(bad.status, 125, "a container that cannot start: docker's 125");
    assert.match(bad.stderr, /unable to find user nosuchuser/);
  });

  test('-v binds a host directory read-write, or read-only with :ro', async () => {
    const host = await mkdtemp(join(root, 'vol-'));
    ok(polyarch(['run', '--rm', '-v', `${host}:/data`, env.busybox, 'sh', '-c', 'echo written > /data/f']));
    assert.equal(await readFile(join(host, 'f'), 'utf8'), 'written\n');
    const ro = polyarch([
      'run',
      '--rm',
      '-v',
      `${host}:/data:ro`,
      env.busybox,
      'sh',
      '-c',
      'cat /data/f; echo x > /data/g',
    ]);
    assert.equal(ro.status, 1);
    assert.equal(ro.stdout, 'written\n');
    assert.deepEqual(await readdir(host), ['f']);
  });

  test('--entrypoint replaces the image entrypoint; arguments follow it', () => {
    assert.equal(
      ok(polyarch(['run', '--rm', '--entrypoint', 'echo', env.busybox, 'a', '-n', 'b'])).stdout,
      'a -n b\n',
    );
  });

  test('-i passes stdin; without it the container reads /dev/null', () => {
    assert.equal(
      ok(polyarch(['run', '--rm', '-i', env.busybox, 'cat'], { input: 'hello\n' })).stdout,
      'hello\n',
    );
    assert.equal(ok(polyarch(['run', '--rm', env.busybox, 'cat'], { input: 'hello\n' })).stdout, '');
  });

  test('-t gives the process a terminal when polyarch has one (under script(1))', () => {
    const cmd = `${bin} run --rm -t -i ${env.busybox} sh -c 'tty; exit 4'`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config },
    });
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stdout, /\/dev\/pts\/\d+\r?\n/);
    const piped = polyarch(['run', '--rm', '-t', env.busybox, 'sh', '-c', 'tty']);
    assert.equal(piped.status, 1, 'no terminal without one to give');
    assert.match(piped.stderr, /^WARNING: -t ignored: stdin is not a terminal$/m);
  });

  test('--network none leaves only the loopback interface', () => {
    const r = ok(polyarch(['run', '--rm', '--network', 'none', env.busybox, 'ls', '/sys/class/net']));
    assert.equal(r.stdout, 'lo\n');
    const host = ok(polyarch(['run', '--rm', env.busybox, 'ls', '/sys/class/net']));
    assert.notEqual(host.stdout, 'lo\n', 'the host network has more than lo');
  });

  test("the exit code is the process's; 127 when the command does not exist", () => {
    assert.equal(polyarch(['run', '--rm', env.busybox, 'sh', '-c', 'exit 3']).status, 3);
    const r = polyarch(['run', '--rm', env.busybox, 'no-such-command']);
    assert.equal(r.status, 127);
    assert.match(r.stderr, /^ERROR: container \S+: cannot start the process: .*no-such-command/m);
  });
});

describe('signals', () => {
  test("SIGTERM is forwarded to the container; polyarch exits with the container's code", async () => {
    const child = spawn(
      bin,
      [
        'run',
        '--rm',
        env.busybox,
        'sh',
        '-c',
        'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.1; done',
      ],
      { env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config } },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out === 'ready\n') child.kill('SIGTERM');
    });
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    assert.equal(out, 'ready\ngot-term\n');
    assert.equal(code, 42);
  });
});

describe('signals in a matrix', () => {
  test('SIGTERM during the first platform: it ends as its process decides, no further platform starts, exit 143', async () => {
    const child = spawn(
      bin,
      [
        'run',
        '--rm',
        '--platform',
        'linux/amd64,linux/arm64',
        env.busybox,
        'sh',
        '-c',
        'trap "echo stopping; exit 0" TERM; echo ready; while :; do sleep 0.1; done',
      ],
      { env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config } },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      const first = !out.includes('ready');
      out += b.toString();
      if (first && out.includes('ready\n')) child.kill('SIGTERM');
    });
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    assert.equal(code, 143);
    assert.match(out, /^linux\/amd64 \| ready\nlinux\/amd64 \| stopping\n/);
    assert.doesNotMatch(out, /linux\/arm64 \|/);
    assert.match(out, /^linux\/amd64\s+0\s/m);
  });
});

describe('snapshots', () => {
  test('--rm leaves no container snapshot; without it the changes are kept as container:<id>', async () => {
    const before = await snapshotKeys();
    ok(polyarch(['run', '--rm', env.busybox, 'sh', '-c', 'echo x > /marker']));
    assert.deepEqual(await snapshotKeys(), before);
    ok(polyarch(['run', env.busybox, 'sh', '-c', 'echo kept > /marker']));
    const added = (await snapshotKeys()).filter((k) => !before.includes(k));
    assert.equal(added.length, 1);
    assert.match(added[0]!, /^container:[0-9a-f]{64}$/);
    const snaps = await Snapshotter.open({ root });
    const [fs] = await snaps.paths([added[0]!]);
    assert.equal(await readFile(join(fs!, 'marker'), 'utf8'), 'kept\n');
    await snaps.remove(added[0]!);
  });

  test('a second run of the same image reuses the unpacked layers', async () => {
    const snaps = await Snapshotter.open({ root });
    const committed = async () =>
      (await snaps.list())
        .filter((s) => s.kind === 'committed')
        .map((s) => `${s.key} ${s.created}`)
        .sort();
    ok(polyarch(['run', '--rm', '--platform', 'linux/ppc64le', env.busybox, 'true']));
    const first = await committed();
    ok(polyarch(['run', '--rm', '--platform', 'linux/ppc64le', env.busybox, 'true']));
    assert.deepEqual(await committed(), first);
  });
});
