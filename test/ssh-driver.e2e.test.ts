/**
 * The ssh driver end to end: real sshd "hosts" (test/env/sshnode.ts: Debian's sshd on
 * loopback ports, each node with its own host key and state root) running this polyarch as
 * `polyarch __node serve`, real runc and QEMU on the node, the test registry.
 *
 * A builder of this machine's engine (linux/amd64) and an ssh node pinned to linux/arm64 and
 * linux/arm/v7 pushes one index, each platform built where it was placed; a rebuild after a
 * one-file change sends one file and reruns only the steps after COPY; --load brings the
 * node's blobs into the local store; a node killed mid-build has its platforms rebuilt here;
 * host key mismatch, an incompatible polyarch and a node without runc are one-line errors.
 */
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';
import { type SshHost, sshHostSkipReason, startSshHost } from './env/sshnode.js';

const skip = sshHostSkipReason();
if (skip) console.log(`# skipping the ssh driver e2e tests: ${skip}`);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');

/** Every file under `dir` containing `needle`. */
function filesHolding(dir: string, needle: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile())
        try {
          if (readFileSync(p).includes(needle)) out.push(p);
        } catch {}
    }
  };
  walk(dir);
  return out;
}

/** How the plain progress says the step whose name starts with `label` ended: DONE, CACHED or ERROR. */
function outcome(stderr: string, label: string): string | undefined {
  const lines = stderr.split('\n');
  const head = lines.find((l) => /^#\d+ /.test(l) && l.slice(l.indexOf(' ') + 1).startsWith(label));
  if (!head) return undefined;
  const id = head.slice(0, head.indexOf(' '));
  for (const l of lines) {
    const m = new RegExp(`^${id} (DONE|CACHED|ERROR)\\b`).exec(l);
    if (m) return m[1];
  }
  return undefined;
}

describe('ssh driver nodes', { skip: skip ?? false, concurrency: false }, () => {
  let dir: string;
  let arm: SshHost;
  let spare: SshHost;
  let env: NodeJS.ProcessEnv;
  let reg: string;
  let ctxDir: string;
  let armRoot: string;
  const SECRET = `s3cr3t-ssh-${process.pid}-${Date.now()}`;

  const run = (args: string[], extra: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> =>
    spawnSync(bin, args, { encoding: 'utf8', env: { ...env, ...extra }, timeout: 300_000 });
  const ok = (args: string[], extra: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> => {
    const r = run(args, extra);
    assert.equal(r.status, 0, `polyarch ${args.join(' ')}:\n${r.stderr}`);
    return r;
  };
  const skopeo = (args: string[]) => {
    const r = spawnSync('skopeo', args, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  const sshOpts = (h: SshHost, root: string, polyarch = bin) =>
    `key=${h.clientKey},polyarch=${polyarch},root=${root}`;
  const nodeServes = (h: SshHost) =>
    h.pids().filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('__node');
      } catch {
        return false;
      }
    });

  /** Waits (up to 20 s) until none of `pids` runs. */
  const gone = async (pids: number[]) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const alive = pids.filter((pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      });
      if (alive.length === 0) return;
      assert.ok(Date.now() < deadline, `node processes ${alive.join(', ')} still run`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const mountsUnder = (root: string) =>
    readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m.startsWith(`${root}/`));

  before(async () => {
    const t = testEnv();
    reg = t.registry;
    dir = mkdtempSync(join(tmpdir(), 'sshdriver-e2e-'));
    [arm, spare] = await Promise.all([
      startSshHost(join(dir, 'arm-host'), { config: t.config }),
      startSshHost(join(dir, 'spare-host'), { config: t.config }),
    ]);
    armRoot = join(dir, 'arm-root');
    mkdirSync(join(dir, 'docker'));
    writeFileSync(join(dir, 'docker', 'config.json'), '{}');
    env = {
      ...process.env,
      PATH: `${arm.pathDir}:${process.env.PATH}`,
      POLYARCH_ROOT: join(dir, 'root'),
      POLYARCH_CONFIG: t.config,
      DOCKER_CONFIG: join(dir, 'docker'),
      POLYARCH_BUILDER: '',
      BUILDX_BUILDER: '',
      POLYARCH_PROGRESS: 'plain',
    };
    ctxDir = join(dir, 'ctx');
    mkdirSync(join(ctxDir, 'src'), { recursive: true });
    writeFileSync(
      join(ctxDir, 'Dockerfile'),
      [
        'FROM busybox',
        'ARG TARGETPLATFORM',
        'ARG BUILDPLATFORM',
        'RUN --mount=type=secret,id=tok,required=true sha256sum /run/secrets/tok | cut -c1-64 > /secret.sha256 && echo "$(uname -m) $TARGETPLATFORM $BUILDPLATFORM" > /built',
        'WORKDIR /app',
        'COPY . .',
        'RUN cat src/keep.txt > /copied',
        'CMD ["cat", "/built"]',
        '',
      ].join('\n'),
    );
    writeFileSync(join(ctxDir, 'src', 'keep.txt'), 'kept\n');
    writeFileSync(join(ctxDir, 'src', 'other.txt'), 'other\n');
    writeFileSync(join(ctxDir, 'ignored.txt'), 'must not be sent\n');
    writeFileSync(join(ctxDir, '.dockerignore'), 'ignored.txt\n');
    writeFileSync(join(dir, 'tok'), SECRET);
    ok(['create', '--name', 'mix', '--node', 'here', '--platform', 'linux/amd64']);
    ok([
      'create',
      '--name',
      'mix',
      '--append',
      '--node',
      'arm',
      '--driver',
      'ssh',
      '--platform',
      'linux/arm64,linux/arm/v7',
      '--driver-opt',
      sshOpts(arm, armRoot),
      arm.endpoint,
    ]);
  });

  after(async () => {
    await Promise.all([arm?.stop(), spare?.stop()]);
    if (!dir) return;
    // Whatever a failed test left mounted under the nodes' roots, so the directory can go.
    for (const m of mountsUnder(dir).reverse()) spawnSync('umount', ['-l', m]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('inspect --bootstrap runs polyarch on the node: its version, native and emulated platforms', () => {
    const r = ok(['builder', 'inspect', '--bootstrap', 'mix']);
    const block = r.stdout.slice(r.stdout.indexOf('Name:             arm\n'));
    assert.match(block, /Endpoint: +ssh:\/\/root@127\.0\.0\.1:\d+\n/);
    assert.match(block, /Status: +running\n/);
    assert.match(block, /BuildKit version: +polyarch\/v\d+\.\d+\.\d+/);
    // Pinned first (marked), then the node's own platform, then what its QEMU runs.
    assert.match(block, /Platforms: +linux\/arm64\*, linux\/arm\/v7\*, linux\/amd64, /);
    const ls = ok(['ls']).stdout;
    assert.match(ls, /\\_ arm +\\_ ssh:\/\/root@127\.0\.0\.1:\d+ +running +polyarch\/v/);
    assert.deepEqual(nodeServes(arm), [], 'a polyarch process stayed on the node');
  });

  test('one index from this machine and the ssh node, each platform built where it was placed', () => {
    const ref = `${reg}/sshdriver-e2e/mix:1`;
    const md = join(dir, 'md1.json');
    const r = ok([
      'build',
      '--builder',
      'mix',
      '--platform',
      'linux/amd64,linux/arm64,linux/arm/v7',
      '-t',
      ref,
      '--push',
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      '--metadata-file',
      md,
      ctxDir,
    ]);
    // Progress names each step's node (this machine builds one platform: no platform prefix).
    assert.equal(outcome(r.stderr, '[here] [1/5] FROM'), 'DONE');
    assert.equal(outcome(r.stderr, '[here] [2/5] RUN --mount'), 'DONE');
    assert.equal(outcome(r.stderr, '[arm] [linux/arm64 2/5] RUN --mount'), 'DONE');
    assert.equal(outcome(r.stderr, '[arm] [linux/arm/v7 2/5] RUN --mount'), 'DONE');
    assert.doesNotMatch(r.stderr, /\[here\] \[linux\/arm|\[arm\] \[linux\/amd64/);
    assert.match(r.stderr, /\[arm\] transferring context: 4 of 4 files, \d+ bytes/);
    assert.ok(!r.stderr.includes(SECRET), 'the secret is in the progress output');
    const meta = JSON.parse(readFileSync(md, 'utf8'));
    assert.deepEqual(meta['polyarch.build.nodes'], {
      'linux/amd64': 'here',
      'linux/arm64': 'arm',
      'linux/arm/v7': 'arm',
    });
    assert.equal(meta['polyarch.build.transfer'].arm.sent.files, 4);
    const index = JSON.parse(skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]));
    const plats = index.manifests.map(
      (m: { platform: { os: string; architecture: string; variant?: string } }) =>
        [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/'),
    );
    assert.deepEqual(plats.sort(), ['linux/amd64', 'linux/arm/v7', 'linux/arm64']);
    assert.equal(
      meta['containerimage.digest'],
      skopeo(['inspect', '--format', '{{.Digest}}', '--tls-verify=false', `docker://${ref}`]).trim(),
    );
    const sha = createHash('sha256').update(SECRET).digest('hex');
    for (const [p, arch] of [
      ['linux/amd64', 'x86_64'],
      ['linux/arm64', 'aarch64'],
      ['linux/arm/v7', 'armv7l'],
    ] as const) {
      assert.equal(ok(['run', '--rm', '--platform', p, ref]).stdout, `${arch} ${p} linux/amd64\n`);
      assert.equal(
        ok(['run', '--rm', '--platform', p, ref, 'sh', '-c', 'cd /app && ls -A | sort | tr "\\n" " "'])
          .stdout,
        '.dockerignore Dockerfile src ',
      );
      assert.equal(ok(['run', '--rm', '--platform', p, ref, 'cat', '/secret.sha256']).stdout, `${sha}\n`);
    }
    // The secret went over the channel only: nothing on the node's disk holds it.
    assert.deepEqual(filesHolding(armRoot, SECRET), []);
    assert.deepEqual(nodeServes(arm), [], 'a polyarch process stayed on the node');
  });

  test('registry credentials reach the node for the build that needs them, never its disk', () => {
    const t = testEnv();
    const docker = join(dir, 'docker-auth');
    mkdirSync(docker);
    const auth = Buffer.from(`${t.user}:${t.password}`).toString('base64');
    writeFileSync(join(docker, 'config.json'), JSON.stringify({ auths: { [t.registryBasic]: { auth } } }));
    const ref = `${t.registryBasic}/sshdriver-e2e/auth:1`;
    // Without credentials the node's push is refused, and the error names the node.
    const denied = run([
      'build',
      '--builder',
      'mix',
      '--platform',
      'linux/arm64',
      '-t',
      ref,
      '--push',
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      ctxDir,
    ]);
    assert.equal(denied.status, 1, denied.stderr);
    assert.match(denied.stderr, /ERROR: node arm \(ssh:\/\/root@127\.0\.0\.1:\d+\): /);
    const r = ok(
      [
        'build',
        '--builder',
        'mix',
        '--platform',
        'linux/arm64',
        '-t',
        ref,
        '--push',
        '--secret',
        `id=tok,src=${join(dir, 'tok')}`,
        ctxDir,
      ],
      { DOCKER_CONFIG: docker },
    );
    assert.match(r.stderr, /\[arm\] pushing /);
    assert.ok(!r.stderr.includes(t.password));
    // The node was the build's only one: it pushed the manifest with its tag itself, as a
    // plain single-platform build does (no index of one).
    const raw = JSON.parse(
      skopeo([
        'inspect',
        '--raw',
        '--tls-verify=false',
        '--creds',
        `${t.user}:${t.password}`,
        `docker://${ref}`,
      ]),
    );
    assert.equal(raw.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.equal(
      skopeo([
        'inspect',
        '--format',
        '{{.Architecture}}',
        '--tls-verify=false',
        '--creds',
        `${t.user}:${t.password}`,
        `docker://${ref}`,
      ]).trim(),
      'arm64',
    );
    assert.deepEqual(filesHolding(armRoot, t.password), []);
    assert.deepEqual(filesHolding(armRoot, auth), []);
  });

  test('a rebuild after a one-file change sends that file and reruns only what follows COPY', () => {
    writeFileSync(join(ctxDir, 'src', 'keep.txt'), `changed ${Date.now()}\n`);
    const ref = `${reg}/sshdriver-e2e/mix:2`;
    const md = join(dir, 'md2.json');
    const r = ok([
      'build',
      '--builder',
      'mix',
      '--platform',
      'linux/amd64,linux/arm64,linux/arm/v7',
      '-t',
      ref,
      '--push',
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      '--metadata-file',
      md,
      ctxDir,
    ]);
    const meta = JSON.parse(readFileSync(md, 'utf8'));
    assert.equal(meta['polyarch.build.transfer'].arm.sent.files, 1);
    assert.match(r.stderr, /\[arm\] transferring context: 1 of 4 files, \d+ bytes/);
    // On the node: the RUN before COPY is a cache hit, COPY and the RUN after it run again.
    for (const p of ['linux/arm64', 'linux/arm/v7']) {
      assert.equal(outcome(r.stderr, `[arm] [${p} 2/5] RUN --mount`), 'CACHED');
      assert.equal(outcome(r.stderr, `[arm] [${p} 3/5] WORKDIR`), 'CACHED');
      assert.equal(outcome(r.stderr, `[arm] [${p} 4/5] COPY . .`), 'DONE');
      assert.equal(outcome(r.stderr, `[arm] [${p} 5/5] RUN cat`), 'DONE');
    }
    for (const p of ['linux/arm64', 'linux/arm/v7'])
      assert.match(ok(['run', '--rm', '--platform', p, ref, 'cat', '/copied']).stdout, /^changed \d+\n$/);
  });

  test('--load brings the node-built image into the local store: only the blobs it lacks', () => {
    // A context tree and a cached file no build used for weeks: this build's session drops them.
    const staleTree = join(armRoot, 'node', 'contexts', 'f'.repeat(32));
    mkdirSync(join(staleTree, 'tree'), { recursive: true });
    writeFileSync(join(staleTree, 'index.json'), '{}');
    utimesSync(join(staleTree, 'index.json'), 1000, 1000);
    const staleBlob = join(armRoot, 'node', 'context', 'sha256', 'e'.repeat(64));
    writeFileSync(staleBlob, 'old');
    utimesSync(staleBlob, 1000, 1000);
    const r = ok([
      'build',
      '--builder',
      'mix',
      '--platform',
      'linux/arm64',
      '-t',
      'sshdriver-load:1',
      '--load',
      '--label',
      `sshdriver.load=${Date.now()}`,
      '--secret',
      `id=tok,src=${join(dir, 'tok')}`,
      '--metadata-file',
      join(dir, 'md3.json'),
      ctxDir,
    ]);
    assert.match(r.stderr, /\[arm\] /);
    const meta = JSON.parse(readFileSync(join(dir, 'md3.json'), 'utf8'));
    assert.deepEqual(meta['polyarch.build.nodes'], { 'linux/arm64': 'arm' });
    // The layers are those of mix:2's arm64 image, which `run` pulled into the store above;
    // only what the new label changed (config, manifest) comes back from the node.
    assert.equal(meta['polyarch.build.transfer'].arm.received.blobs, 2);
    assert.ok(!existsSync(staleTree) && !existsSync(staleBlob), 'the stale context cache was kept');
    // The tree this context uses stays.
    assert.equal(
      readdirSync(join(armRoot, 'node', 'contexts')).filter((n) => /^[0-9a-f]{32}$/.test(n)).length,
      1,
    );
    assert.equal(
      ok(['run', '--rm', '--pull', 'never', '--platform', 'linux/arm64', 'sshdriver-load:1']).stdout,
      'aarch64 linux/arm64 linux/amd64\n',
    );
  });

  test('a node killed mid-build: its platforms are rebuilt on this machine, the build succeeds', async () => {
    const node = await startSshHost(join(dir, 'doomed-host'), { config: testEnv().config });
    try {
      ok(['create', '--name', 'doomed', '--node', 'here', '--platform', 'linux/amd64']);
      ok([
        'create',
        '--name',
        'doomed',
        '--append',
        '--node',
        'far',
        '--driver',
        'ssh',
        '--platform',
        'linux/arm64',
        '--driver-opt',
        sshOpts(node, join(dir, 'doomed-root')),
        node.endpoint,
      ]);
      const c = join(dir, 'slow');
      mkdirSync(c, { recursive: true });
      writeFileSync(
        join(c, 'Dockerfile'),
        `FROM busybox\nRUN echo start-${Date.now()} && sleep 4 && uname -m > /arch\n`,
      );
      const ref = `${reg}/sshdriver-e2e/doomed:1`;
      const md = join(dir, 'md4.json');
      const child = spawn(
        bin,
        [
          'build',
          '--builder',
          'doomed',
          '--platform',
          'linux/arm64',
          '-t',
          ref,
          '--push',
          '--metadata-file',
          md,
          c,
        ],
        { env: { ...env, PATH: `${node.pathDir}:${process.env.PATH}` }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      let killed = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!killed && /\[far\] [^\n]*RUN echo start/.test(stderr)) {
          killed = true;
          void node.killSshd();
        }
      });
      let serving: number[] = [];
      const poll = setInterval(() => {
        if (!killed) serving = nodeServes(node);
      }, 50);
      const code = await new Promise<number | null>((res) => child.once('close', (c) => res(c)));
      clearInterval(poll);
      assert.ok(killed, `the build never reached RUN on the node:\n${stderr}`);
      // The node's polyarch saw its session end, stopped the build and cleaned up.
      assert.ok(serving.length > 0);
      await gone(serving);
      assert.deepEqual(mountsUnder(join(dir, 'doomed-root')), []);
      assert.equal(code, 0, stderr);
      assert.match(
        stderr,
        /WARNING: node far \(ssh:\/\/root@127\.0\.0\.1:\d+\): the connection was lost mid-build \(ssh exited \(255\)[^\n]*; building linux\/arm64 on node here instead\n/,
      );
      const meta = JSON.parse(readFileSync(md, 'utf8'));
      assert.deepEqual(meta['polyarch.build.nodes'], { 'linux/arm64': 'here' });
      assert.equal(ok(['run', '--rm', '--platform', 'linux/arm64', ref, 'cat', '/arch']).stdout, 'aarch64\n');
      // The local store is consistent.
      ok(['images']);
    } finally {
      await node.stop();
    }
  });

  test('a node killed mid-build with nowhere else to go: one clear error naming it', async () => {
    const node = await startSshHost(join(dir, 'lonely-host'), { config: testEnv().config });
    try {
      ok([
        'create',
        '--name',
        'lonely',
        '--driver',
        'ssh',
        '--platform',
        'linux/arm64',
        '--driver-opt',
        sshOpts(node, join(dir, 'lonely-root')),
        node.endpoint,
      ]);
      const c = join(dir, 'slow2');
      mkdirSync(c, { recursive: true });
      writeFileSync(join(c, 'Dockerfile'), `FROM busybox\nRUN echo start-${Date.now()} && sleep 4\n`);
      const child = spawn(bin, ['build', '--builder', 'lonely', '--platform', 'linux/arm64', c], {
        env: { ...env, PATH: `${node.pathDir}:${process.env.PATH}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      let killed = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!killed && /RUN echo start/.test(stderr)) {
          killed = true;
          void node.killSshd();
        }
      });
      let serving: number[] = [];
      const poll = setInterval(() => {
        if (!killed) serving = nodeServes(node);
      }, 50);
      const code = await new Promise<number | null>((res) => child.once('close', (c) => res(c)));
      clearInterval(poll);
      assert.equal(code, 1, stderr);
      assert.ok(serving.length > 0);
      await gone(serving);
      assert.deepEqual(mountsUnder(join(dir, 'lonely-root')), []);
      assert.match(
        stderr,
        /\nERROR: node lonely0 \(ssh:\/\/root@127\.0\.0\.1:\d+\): the connection was lost mid-build \(ssh exited \(255\)[^\n]*\)\n$/,
      );
    } finally {
      await node.stop();
    }
  });

  test('Ctrl-C during a step on the node ends the process there, which cleans up', async () => {
    const c = join(dir, 'slow3');
    mkdirSync(c, { recursive: true });
    writeFileSync(join(c, 'Dockerfile'), `FROM busybox\nRUN echo start-${Date.now()} && sleep 30\n`);
    const child = spawn(bin, ['build', '--builder', 'mix', '--platform', 'linux/arm64', c], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let serving: number[] = [];
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (serving.length === 0 && /\[arm\] [^\n]*RUN echo start/.test(stderr)) {
        serving = nodeServes(arm);
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((res) => child.once('close', (c) => res(c)));
    assert.equal(code, 130, stderr);
    assert.match(stderr, /ERROR: build canceled by SIGINT\n$/);
    assert.ok(serving.length > 0, 'no polyarch process ran on the node');
    await gone(serving);
    assert.deepEqual(nodeServes(arm), []);
    assert.deepEqual(mountsUnder(armRoot), []);
  });

  test('bad nodes: host key mismatch, an incompatible polyarch, no runc — one line naming the node', () => {
    // Host key mismatch: the spare host answers, but known_hosts holds another host's key for it.
    const wrong = join(dir, 'wrong-known');
    mkdirSync(wrong);
    const otherKey = readFileSync(arm.knownHosts, 'utf8').split(' ').slice(1).join(' ');
    writeFileSync(join(wrong, 'known_hosts'), `[127.0.0.1]:${spare.port} ${otherKey}`);
    writeFileSync(
      join(wrong, 'ssh_config'),
      `Host *\n  StrictHostKeyChecking yes\n  UserKnownHostsFile ${join(wrong, 'known_hosts')}\n  LogLevel ERROR\n`,
    );
    mkdirSync(join(wrong, 'bin'));
    writeFileSync(
      join(wrong, 'bin', 'ssh'),
      `#!/bin/sh\nexec /usr/bin/ssh -F ${join(wrong, 'ssh_config')} "$@"\n`,
    );
    chmodSync(join(wrong, 'bin', 'ssh'), 0o755);
    ok([
      'create',
      '--name',
      'badkey',
      '--driver',
      'ssh',
      '--driver-opt',
      sshOpts(spare, join(dir, 'x')),
      spare.endpoint,
    ]);
    let r = run(['builder', 'inspect', '--bootstrap', 'badkey'], {
      PATH: `${join(wrong, 'bin')}:${process.env.PATH}`,
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /^ERROR: bootstrapping builder badkey: node badkey0 \(ssh:\/\/root@127\.0\.0\.1:\d+\): ssh exited \(255\): Host key verification failed\.\n$/,
    );
    // A polyarch speaking another node protocol.
    const future = join(dir, 'future-polyarch');
    writeFileSync(future, '#!/bin/sh\necho "POLYARCH-NODE/99 polyarch/v9.9.9"\ncat >/dev/null\n');
    chmodSync(future, 0o755);
    ok([
      'create',
      '--name',
      'future',
      '--driver',
      'ssh',
      '--driver-opt',
      sshOpts(arm, join(dir, 'y'), future),
      arm.endpoint,
    ]);
    r = run(['build', '--builder', 'future', ctxDir]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /^ERROR: node future0 \(ssh:\/\/root@127\.0\.0\.1:\d+\): incompatible polyarch on the node: polyarch\/v9\.9\.9 speaks node protocol 99, this polyarch \(v[\d.]+\) speaks 1; install polyarch v[\d.]+ on the node\n$/m,
    );
    // A node without runc.
    const norunc = join(dir, 'norunc-polyarch');
    writeFileSync(norunc, `#!/bin/sh\nPOLYARCH_RUNC=/nonexistent/runc exec ${bin} "$@"\n`);
    chmodSync(norunc, 0o755);
    ok([
      'create',
      '--name',
      'norunc',
      '--driver',
      'ssh',
      '--driver-opt',
      sshOpts(arm, join(dir, 'z'), norunc),
      arm.endpoint,
    ]);
    r = run(['builder', 'inspect', '--bootstrap', 'norunc']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /^ERROR: bootstrapping builder norunc: node norunc0 \(ssh:\/\/root@127\.0\.0\.1:\d+\): runc is not installed on the node \(build steps run with runc\): install runc there\n$/,
    );
    // A step that fails on the node: its error, naming the node, and nothing left running there.
    const failing = join(dir, 'failing');
    mkdirSync(failing);
    writeFileSync(join(failing, 'Dockerfile'), 'FROM busybox\nRUN echo about to fail && exit 3\n');
    r = run(['build', '--builder', 'mix', '--platform', 'linux/arm64', failing]);
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /\nERROR: node arm \(ssh:\/\/root@127\.0\.0\.1:\d+\): [^\n]*exit code: 3[^\n]*\n$/,
    );
    assert.match(r.stderr, /about to fail/);
    assert.deepEqual(nodeServes(arm), []);
    // A node that cannot be reached: its platforms go to the others, with a warning naming it.
    ok(['create', '--name', 'partial', '--node', 'here', '--platform', 'linux/amd64']);
    ok([
      'create',
      '--name',
      'partial',
      '--append',
      '--node',
      'gone',
      '--driver',
      'ssh',
      '--platform',
      'linux/arm64',
      '--driver-opt',
      `key=${arm.clientKey}`,
      'ssh://root@127.0.0.1:1',
    ]);
    r = run([
      'build',
      '--builder',
      'partial',
      '--platform',
      'linux/arm64',
      '--metadata-file',
      join(dir, 'md5.json'),
      join(dir, 'slow'),
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /WARNING: node gone \(ssh:\/\/root@127\.0\.0\.1:1\): ssh exited \(255\): [^\n]*refused; its platforms go to the other nodes of builder partial\n/,
    );
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'md5.json'), 'utf8'))['polyarch.build.nodes'], {
      'linux/arm64': 'here',
    });
    // No polyarch at all on the node.
    ok([
      'create',
      '--name',
      'nopa',
      '--driver',
      'ssh',
      '--driver-opt',
      sshOpts(arm, join(dir, 'w'), '/nonexistent/polyarch'),
      arm.endpoint,
    ]);
    r = run(['builder', 'inspect', '--bootstrap', 'nopa']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /node nopa0 \(ssh:\/\/[^)]+\): \/nonexistent\/polyarch was not found on the node/);
  });
});
