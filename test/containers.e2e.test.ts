/**
 * Detached containers and published ports end to end, as a docker user tests a multi-arch
 * server: the real CLI, the test registry's busybox index, runc, QEMU, overlayfs and pasta.
 * `run -d -p HOST:80 --platform linux/arm64 … httpd`, `curl` from the host, `logs`, `exec`,
 * `stop`, `ps -a`, `rm` (then: no mount, netns, runc state or process left); two variants of
 * the same server on two ports at once; the CLI, the monitor and the container's process
 * killed with SIGKILL; bad input. Host ports come from the kernel (port 0), never fixed.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { pidRunning } from '../src/exec/network.js';
import { testEnv } from './env/index.js';
import { ensureBinfmt } from './exec-fixtures.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const env = testEnv();
let root: string;
let www: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function polyarch(args: string[], extraEnv: Record<string, string> = {}): Run {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config, ...extraEnv },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(args: string[]): Run {
  const r = polyarch(args);
  assert.equal(r.status, 0, `polyarch ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return r;
}

/** A TCP port free on every address now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** GET through curl, as a user would; retried while the server comes up. */
async function curl(port: number, path = '/index.html'): Promise<string> {
  let last = '';
  for (let i = 0; i < 50; i++) {
    const r = spawnSync('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${port}${path}`], {
      encoding: 'utf8',
    });
    if (r.status === 0) return r.stdout;
    last = r.stderr;
    await sleep(100);
  }
  throw new Error(`curl :${port}${path}: ${last}`);
}

interface Inspected {
  Id: string;
  Name: string;
  State: {
    Status: string;
    Running: boolean;
    ExitCode: number;
    Pid: number;
    StartedAt: string;
    FinishedAt: string;
  };
  Config: { Image: string; Cmd: string[]; Env: string[] };
  Platform: string;
  NetworkSettings: { Ports: Record<string, { HostIp: string; HostPort: string }[]> };
}

function inspect(ref: string): Inspected {
  const list = JSON.parse(ok(['inspect', ref]).stdout) as Inspected[];
  assert.equal(list.length, 1);
  return list[0]!;
}

async function monitorPid(id: string): Promise<number> {
  const rec = JSON.parse(await readFile(join(root, 'containers', id, 'container.json'), 'utf8')) as {
    Polyarch: { MonitorPid: number };
  };
  return rec.Polyarch.MonitorPid;
}

/** Running (a zombie waiting for pid 1 to reap it runs no more). */
const alive = pidRunning;

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** What a removed container must not leave: mounts, netns, runc state, processes. */
async function assertGone(id: string, pids: number[]): Promise<void> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  assert.ok(!mounts.includes(root), `a mount under the state root is left:\n${mounts}`);
  const netns = await readdir('/run/netns').catch(() => [] as string[]);
  assert.ok(!netns.includes(`polyarch-${id.slice(0, 12)}`), 'the network namespace is left');
  assert.ok(!existsSync(join(root, 'runc', id)), 'runc state is left');
  assert.ok(!existsSync(join(root, 'exec', id)), 'the bundle is left');
  assert.ok(!existsSync(join(root, 'containers', id)), 'the record is left');
  for (const pid of pids) assert.ok(!alive(pid), `process ${pid} is still alive`);
}

/** A server that answers with the platform it runs on and logs each request. */
const SERVER = ['sh', '-c', 'echo "serving on $(uname -m)"; exec httpd -f -v -p 80 -h /www'];

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-containers-'));
  www = join(root, 'www');
  await mkdir(www);
  await writeFile(join(www, 'index.html'), 'hello from a container\n');
  for (const p of ['linux/arm64', 'linux/s390x']) await ensureBinfmt(p);
  ok(['pull', '--platform', 'linux/arm64', env.busybox]);
});

after(async () => {
  // Nothing may outlive the tests, whatever failed.
  const ids = polyarch(['ps', '-a', '-q', '--no-trunc']).stdout.split('\n').filter(Boolean);
  if (ids.length > 0) polyarch(['rm', '-f', ...ids]);
  await rm(root, { recursive: true, force: true });
});

describe('a detached server published on a host port', () => {
  test('run -d -p, curl, logs, exec, stop, ps -a, rm: nothing left', async () => {
    const port = await freePort();
    const r = ok([
      'run',
      '-d',
      '--name',
      'web',
      '-p',
      `${port}:80`,
      '--platform',
      'linux/arm64',
      '-v',
      `${www}:/www:ro`,
      env.busybox,
      ...SERVER,
    ]);
    const id = r.stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/, 'run -d prints the full id');
    assert.match(r.stderr, new RegExp(`published 0\\.0\\.0\\.0:${port}->80/tcp`));

    assert.equal(await curl(port), 'hello from a container\n');
    const c = inspect('web');
    assert.equal(c.Id, id);
    assert.equal(c.Name, '/web');
    assert.equal(c.Platform, 'linux/arm64');
    assert.equal(c.State.Status, 'running');
    assert.equal(c.State.Running, true);
    assert.ok(c.State.Pid > 0 && alive(c.State.Pid));
    assert.deepEqual(c.NetworkSettings.Ports['80/tcp'], [{ HostIp: '0.0.0.0', HostPort: String(port) }]);
    assert.deepEqual(c.Config.Cmd, SERVER);

    const ps = ok(['ps']).stdout.split('\n');
    assert.match(ps[0]!, /^CONTAINER ID\s+IMAGE\s+PLATFORM\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
    const row = ps.find((l) => l.startsWith(id.slice(0, 12)));
    assert.ok(row, ps.join('\n'));
    assert.match(row, /linux\/arm64\s+"sh -c echo "serving…"\s+.*\bUp .*0\.0\.0\.0:\d+->80\/tcp\s+web$/);
    assert.deepEqual(ok(['ps', '-q']).stdout, `${id.slice(0, 12)}\n`);
    const json = JSON.parse(ok(['ps', '--format', 'json']).stdout) as Record<string, string>;
    assert.equal(json.Names, 'web');
    assert.equal(json.State, 'running');

    // The server's output is its log, whatever printed it: the shell, then httpd's request log.
    const logs = ok(['logs', 'web']);
    assert.match(logs.stdout, /^serving on aarch64\n/);
    assert.match(logs.stderr, /response:200/);
    assert.equal(ok(['logs', '--tail', '1', id.slice(0, 5)]).stdout, '');
    assert.equal(ok(['exec', 'web', 'cat', '/www/index.html']).stdout, 'hello from a container\n');
    assert.equal(polyarch(['exec', 'web', 'sh', '-c', 'exit 7']).status, 7);
    assert.equal(ok(['exec', 'web', 'uname', '-m']).stdout, 'aarch64\n');

    const pids = [c.State.Pid, await monitorPid(id)];
    const pasta = Number(await readFile(join(root, 'net', `${id.slice(0, 12)}.pid`), 'utf8'));
    assert.ok(alive(pasta), 'pasta runs while the container does');
    pids.push(pasta);
    assert.equal(ok(['stop', '-t', '1', 'web']).stdout, 'web\n');
    assert.ok(!alive(c.State.Pid), 'stop ended the process');
    const stopped = inspect('web');
    assert.equal(stopped.State.Status, 'exited');
    assert.equal(stopped.State.ExitCode, 137, 'httpd as pid 1 ignores SIGTERM: killed after -t 1');
    assert.match(ok(['ps', '-a']).stdout, /Exited \(137\) .* ago\s+web\n/);
    assert.equal(ok(['ps']).stdout.split('\n').length, 2, 'ps without -a lists no stopped container');
    assert.equal(ok(['wait', 'web']).stdout, '137\n');
    const exec = polyarch(['exec', 'web', 'true']);
    assert.equal(exec.status, 1);
    assert.match(exec.stderr, /^ERROR: container [0-9a-f]{64} is not running\n$/);

    assert.equal(ok(['rm', 'web']).stdout, 'web\n');
    await assertGone(id, pids);
    assert.equal(polyarch(['inspect', 'web']).status, 1);
  });

  test('two variants of the same server on two host ports at once', async () => {
    const port = await freePort();
    const r = ok([
      'run',
      '-d',
      '--name',
      'pair',
      '-p',
      `${port}:80`,
      '--platform',
      'linux/arm64,linux/s390x',
      '-v',
      `${www}:/www:ro`,
      env.busybox,
      'sh',
      '-c',
      'uname -m > /tmp/i.html; exec httpd -f -p 80 -h /tmp',
    ]);
    const ids = r.stdout.trim().split('\n');
    assert.equal(ids.length, 2, r.stdout);
    const arm = new RegExp(`^linux/arm64: published 0\\.0\\.0\\.0:${port}->80/tcp$`, 'm');
    assert.match(r.stderr, arm, 'the first platform takes the port asked for');
    const other = /^linux\/s390x: published 0\.0\.0\.0:(\d+)->80\/tcp$/m.exec(r.stderr);
    assert.ok(other, r.stderr);
    const port2 = Number(other[1]);
    assert.notEqual(port2, port);
    assert.equal(await curl(port, '/i.html'), 'aarch64\n');
    assert.equal(await curl(port2, '/i.html'), 's390x\n');
    assert.equal(inspect('pair-linux-s390x').NetworkSettings.Ports['80/tcp']![0]!.HostPort, String(port2));
    const pids = await Promise.all(ids.map(monitorPid));
    assert.equal(ok(['rm', '-f', 'pair-linux-arm64', 'pair-linux-s390x']).status, 0);
    for (const id of ids) await assertGone(id, pids);
  });
});

describe('lifecycle', () => {
  test('logs -f follows until the container exits; --tail; -t', () => {
    const id = ok([
      'run',
      '-d',
      '--platform',
      'linux/arm64',
      env.busybox,
      'sh',
      '-c',
      'for i in 1 2 3; do echo $i; sleep 0.3; done; echo oops >&2; exit 3',
    ]).stdout.trim();
    const f = ok(['logs', '-f', id]);
    assert.equal(f.stdout, '1\n2\n3\n', 'every line, and logs -f returned when the container ended');
    assert.equal(f.stderr, 'oops\n');
    assert.equal(ok(['logs', '--tail', '2', id]).stdout, '3\n');
    assert.match(ok(['logs', '-t', '--tail', '1', id]).stderr, /^\d{4}-\d\d-\d\dT[\d:.]+Z oops\n$/);
    assert.equal(ok(['wait', id]).stdout, '3\n');
    assert.equal(inspect(id).State.ExitCode, 3);
    ok(['rm', id]);
  });

  test('a foreground run without --rm is kept as an exited container, as in docker', async () => {
    const r = polyarch([
      'run',
      '--name',
      'fg',
      '--platform',
      'linux/arm64',
      env.busybox,
      'sh',
      '-c',
      'hostname; exit 4',
    ]);
    assert.equal(r.status, 4, r.stderr);
    const c = inspect('fg');
    assert.equal(r.stdout, `${c.Id.slice(0, 12)}\n`, 'its hostname is its short id');
    assert.equal(c.State.Status, 'exited');
    assert.equal(c.State.ExitCode, 4);
    assert.match(ok(['ps', '-a']).stdout, /Exited \(4\) .* ago\s+fg\n/);
    const snapshots = join(root, 'snapshots');
    const before = (await readdir(snapshots)).length;
    ok(['rm', 'fg']);
    assert.equal((await readdir(snapshots)).length, before - 1, 'rm removes its snapshot');
    await assertGone(c.Id, []);
    // --rm keeps nothing.
    ok(['run', '--rm', '--name', 'gone', '--platform', 'linux/arm64', env.busybox, 'true']);
    assert.equal(polyarch(['inspect', 'gone']).status, 1);
  });

  test('exec -i passes stdin; exec -it gives a terminal (under script(1)); -e, -w', () => {
    const id = ok(['run', '-d', '--platform', 'linux/arm64', env.busybox, 'sleep', '600']).stdout.trim();
    const piped = spawnSync(bin, ['exec', '-i', id, 'cat'], {
      encoding: 'utf8',
      input: 'to the container\n',
      env: { ...process.env, POLYARCH_ROOT: root },
    });
    assert.equal(piped.stdout, 'to the container\n', piped.stderr);
    assert.equal(ok(['exec', '-e', 'X=1', '-w', '/tmp', id, 'sh', '-c', 'echo $X $PWD']).stdout, '1 /tmp\n');
    const tty = spawnSync('script', ['-qec', `${bin} exec -it ${id} sh -c 'tty; exit 5'`, '/dev/null'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, POLYARCH_ROOT: root },
    });
    assert.equal(tty.status, 5, tty.stderr);
    assert.match(tty.stdout, /\/dev\/pts\/\d+\r?\n/);
    const missing = polyarch(['exec', id, 'no-such-command']);
    assert.equal(missing.status, 127, missing.stderr);
    assert.match(
      missing.stderr,
      /^ERROR: container [0-9a-f]{12}: cannot exec no-such-command: exec: "no-such-command": executable file not found in \$PATH\n$/,
    );
    ok(['rm', '-f', id]);
  });

  test('the docker container group: container run, ls, prune', () => {
    const r = ok([
      'container',
      'run',
      '--name',
      'grouped',
      '--platform',
      'linux/arm64',
      env.busybox,
      'sh',
      '-c',
      'echo -n grouped',
    ]);
    assert.equal(r.stdout, 'grouped');
    assert.match(ok(['container', 'ls', '-a']).stdout, /Exited \(0\) .* ago\s+grouped\n/);
    const id = inspect('grouped').Id;
    assert.equal(ok(['container', 'prune', '-f']).stdout, `Deleted Containers:\n${id}\n\n`);
    assert.equal(polyarch(['inspect', 'grouped']).status, 1);
  });

  test('run -d --rm: the container is gone once it exits', async () => {
    const id = ok([
      'run',
      '-d',
      '--rm',
      '--platform',
      'linux/arm64',
      env.busybox,
      'sleep',
      '0.5',
    ]).stdout.trim();
    assert.match(ok(['ps', '-a', '-q', '--no-trunc']).stdout, new RegExp(`^${id}$`, 'm'));
    await waitFor('the container to be removed', () => !existsSync(join(root, 'containers', id)));
    assert.doesNotMatch(ok(['ps', '-a', '-q', '--no-trunc']).stdout, new RegExp(id));
    await assertGone(id, []);
  });

  test("-P publishes the image's exposed ports on free host ports", async () => {
    const ctxDir = join(root, 'exposed');
    await mkdir(ctxDir);
    await writeFile(
      join(ctxDir, 'Dockerfile'),
      `FROM ${env.busybox}\nEXPOSE 80\nCMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n`,
    );
    ok(['build', '-q', '--platform', 'linux/arm64', '-t', 'localhost/exposed:1', ctxDir]);
    const r = ok([
      'run',
      '-d',
      '-P',
      '--platform',
      'linux/arm64',
      '-v',
      `${www}:/www:ro`,
      'localhost/exposed:1',
    ]);
    const m = /^published 0\.0\.0\.0:(\d+)->80\/tcp$/m.exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.equal(await curl(Number(m[1])), 'hello from a container\n');
    const id = r.stdout.trim();
    assert.deepEqual(Object.keys(inspect(id).NetworkSettings.Ports), ['80/tcp']);
    ok(['rm', '-f', id]);
  });
});

describe('crashes', () => {
  test('kill -9 of the CLI while it starts a container: ps still shows it, stop works', async () => {
    const cli = spawn(
      bin,
      ['run', '-d', '--name', 'orphan', '--platform', 'linux/arm64', env.busybox, 'sleep', '600'],
      {
        env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config },
        stdio: 'ignore',
      },
    );
    // SIGKILL it as soon as its container has a monitor (before or after it printed the id).
    await waitFor('the monitor', async () => {
      for (const id of await readdir(join(root, 'containers')).catch(() => [] as string[])) {
        const text = await readFile(join(root, 'containers', id, 'container.json'), 'utf8').catch(() => '');
        if (text.includes('"/orphan"') && /"MonitorPid": [1-9]/.test(text)) return true;
      }
      return false;
    });
    cli.kill('SIGKILL');
    await new Promise((r) => cli.once('exit', r));
    await waitFor('running', () => /\bUp /.test(polyarch(['ps']).stdout));
    const c = inspect('orphan');
    const monitor = await monitorPid(c.Id);
    // The monitor is in a session of its own, not the killed CLI's.
    const stat = (await readFile(`/proc/${monitor}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    assert.equal(Number(stat[3]), monitor, 'the monitor leads its own session');
    ok(['stop', '-t', '0', 'orphan']);
    assert.equal(inspect('orphan').State.ExitCode, 137);
    ok(['rm', 'orphan']);
    await assertGone(c.Id, [c.State.Pid, monitor]);
  });

  test("kill -9 of the container's process: ps shows it exited, with its code", async () => {
    const id = ok(['run', '-d', '--platform', 'linux/arm64', env.busybox, 'sleep', '600']).stdout.trim();
    const c = inspect(id);
    process.kill(c.State.Pid, 'SIGKILL');
    assert.equal(ok(['wait', id.slice(0, 12)]).stdout, '137\n');
    assert.match(ok(['ps', '-a']).stdout, new RegExp(`^${id.slice(0, 12)} .*Exited \\(137\\)`, 'm'));
    ok(['rm', id]);
    await assertGone(id, [c.State.Pid]);
  });

  test('kill -9 of the monitor: stop still ends the container, reconciled as exited', async () => {
    const id = ok(['run', '-d', '--platform', 'linux/arm64', env.busybox, 'sleep', '600']).stdout.trim();
    const c = inspect(id);
    const monitor = await monitorPid(id);
    process.kill(monitor, 'SIGKILL');
    await waitFor('the monitor to die', () => !alive(monitor));
    // runc still runs it; stop ends it through runc (a stale-bundle sweep may have ended it first).
    ok(['stop', '-t', '0', id]);
    assert.ok(!alive(c.State.Pid));
    const s = inspect(id);
    assert.equal(s.State.Status, 'exited');
    assert.equal(s.State.ExitCode, 255, 'no monitor saw the exit code');
    assert.match(ok(['ps', '-a']).stdout, /Exited \(255\)/);
    const pruned = ok(['prune', '-f']).stdout;
    assert.match(pruned, new RegExp(`^Deleted Containers:\n${id}\n`), 'prune removes stopped containers');
    await assertGone(id, [c.State.Pid]);
  });
});

describe('networks', () => {
  // A server on the host's loopback, in its own process: the tests block this one (spawnSync).
  let server: ChildProcess;
  let port: number;
  before(async () => {
    server = spawn(
      process.execPath,
      [
        '-e',
        "require('http').createServer((q, s) => s.end('from-host')).listen(0, '127.0.0.1', function () { console.log(this.address().port) })",
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    port = Number(
      await new Promise<string>((r) => server.stdout!.once('data', (b: Buffer) => r(b.toString()))),
    );
  });
  after(() => server.kill());

  test("bridge is the default: the container's own namespace reaches the host through the gateway", () => {
    const script = `ls /sys/class/net; cat /etc/resolv.conf; gw=$(ip route | awk '/^default/{print $3}'); wget -qO- http://$gw:${port}/`;
    const r = ok(['run', '--rm', '--platform', 'linux/arm64', env.busybox, 'sh', '-c', script]);
    const [ifaces, resolv, body] = [r.stdout.split('nameserver')[0]!, r.stdout, r.stdout.split('\n').at(-1)];
    assert.equal(ifaces, 'eth0\nlo\n');
    assert.match(resolv, /^nameserver 169\.254\.1\.1$/m);
    assert.equal(body, 'from-host', 'a server on the host loopback answers at the gateway address');
    assert.equal(
      ok(['run', '--rm', '--network', 'none', env.busybox, 'ls', '/sys/class/net']).stdout,
      'lo\n',
    );
  });

  test('names resolve through the stub pasta provides', (t) => {
    const host = spawnSync('getent', ['ahostsv4', 'deb.debian.org'], { encoding: 'utf8', timeout: 10_000 });
    const addr = host.status === 0 ? host.stdout.split(/\s/)[0] : undefined;
    if (!addr) return t.skip("this host's resolver resolves no test name (deb.debian.org)");
    const r = ok(['run', '--rm', '--platform', 'linux/arm64', env.busybox, 'nslookup', 'deb.debian.org']);
    assert.match(r.stdout, /^Server:\s+169\.254\.1\.1$/m);
    assert.ok(r.stdout.includes(addr), r.stdout);
  });
});

describe('bad input', () => {
  test('a taken host port: 125, and nothing left running', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '0.0.0.0', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = polyarch([
        'run',
        '-d',
        '--name',
        'clash',
        '-p',
        `${port}:80`,
        '--platform',
        'linux/arm64',
        env.busybox,
        'sleep',
        '60',
      ]);
      assert.equal(r.status, 125, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        new RegExp(
          `^ERROR: connecting the container's network: host port 0\\.0\\.0\\.0:${port}/tcp is not free: EADDRINUSE\\n$`,
        ),
      );
      const c = inspect('clash');
      assert.equal(c.State.Status, 'exited');
      assert.equal(c.State.ExitCode, 125);
      assert.equal(polyarch(['run', '--rm', '-p', `${port}:80`, env.busybox, 'true']).status, 125);
      ok(['rm', 'clash']);
      await assertGone(c.Id, []);
    } finally {
      taken.close();
    }
  });

  const cases: [string, string[], number, RegExp][] = [
    [
      'an invalid -p',
      ['run', '-p', '80:http', env.busybox],
      125,
      /^ERROR: invalid -p "80:http": container port "http" is not a number from 1 to 65535\n$/,
    ],
    [
      'a port out of range',
      ['run', '-p', '70000:80', env.busybox],
      125,
      /^ERROR: invalid -p "70000:80": host port "70000"/,
    ],
    [
      'a bad protocol',
      ['run', '-p', '80/sctp', env.busybox],
      125,
      /^ERROR: invalid -p "80\/sctp": protocol "sctp" is not tcp or udp\n$/,
    ],
    [
      '-p with the host network',
      ['run', '--network', 'host', '-p', '80', env.busybox],
      125,
      /^ERROR: -p\/-P need --network bridge \(not host\)\n$/,
    ],
    [
      '--restart=always',
      ['run', '-d', '--restart', 'always', env.busybox],
      125,
      /^ERROR: --restart=always is not supported: polyarch has no daemon/,
    ],
    [
      'an unknown network',
      ['run', '--network', 'overlay', env.busybox],
      2,
      /^ERROR: invalid --network "overlay": use bridge, host or none\n$/,
    ],
    ['logs of an unknown container', ['logs', 'nope'], 1, /^ERROR: No such container: nope\n$/],
    ['stop of an unknown container', ['stop', 'nope'], 1, /^ERROR: No such container: nope\n$/],
    ['exec in an unknown container', ['exec', 'nope', 'true'], 1, /^ERROR: No such container: nope\n$/],
    ['a bad signal', ['kill', '-s', 'NOPE', 'x'], 1, /^ERROR: invalid signal: NOPE\n$/],
    ['a bad name', ['run', '-d', '--name', 'a/b', env.busybox], 125, /^ERROR: invalid container name "a\/b"/],
  ];
  for (const [name, args, status, stderr] of cases)
    test(`error: ${name}`, () => {
      const r = polyarch(args);
      assert.equal(r.status, status, r.stderr);
      assert.match(r.stderr, stderr);
    });

  test('no pasta: 125 naming the package, and --network host still works', () => {
    const noPasta = { POLYARCH_PASTA: '/nonexistent/pasta' };
    const r = polyarch(['run', '--rm', '--platform', 'linux/arm64', env.busybox, 'true'], noPasta);
    assert.equal(r.status, 125);
    assert.match(
      r.stderr,
      /^ERROR: connecting the container's network: \/nonexistent\/pasta is not installed \(Debian package passt; or use --network host\)\n$/m,
    );
    ok(['run', '--rm', '--network', 'host', '--platform', 'linux/arm64', env.busybox, 'true']);
    assert.deepEqual(ok(['ps', '-a', '-q']).stdout, '', 'nothing kept');
  });

  test('a name in use: 125 naming the container that has it', () => {
    const id = ok([
      'run',
      '-d',
      '--name',
      'dup',
      '--platform',
      'linux/arm64',
      env.busybox,
      'sleep',
      '60',
    ]).stdout.trim();
    const r = polyarch(['run', '-d', '--name', 'dup', env.busybox, 'true']);
    assert.equal(r.status, 125);
    assert.match(
      r.stderr,
      new RegExp(`^ERROR: the container name "/dup" is already in use by container "${id}"`),
    );
    const rm = polyarch(['rm', 'dup']);
    assert.equal(rm.status, 1, 'a running container is removed only with -f');
    assert.match(rm.stderr, /container is running: stop the container before removing or force remove/);
    ok(['rm', '-f', 'dup']);
  });
});
