// biome-ignore-all lint/suspicious/noTemplateCurlyInString: compose file text, not templates
/**
 * `polyarch compose up -d | ps | logs | down | push | config` end to end through bin/polyarch:
 * two services on two platforms (arm64 and s390x under QEMU) where the client reaches the
 * server by its service name and the server's port is published on the host; then a
 * two-service project with per-service platforms built by `compose build` and pushed by
 * `compose push` to the test registry. A private state root; host ports from the kernel.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';
import { ensureBinfmt } from './exec-fixtures.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-compose-up-'));
const work = mkdtempSync(join(tmpdir(), 'polyarch-compose-up-ctx-'));
const env: NodeJS.ProcessEnv = {
  ...process.env,
  POLYARCH_ROOT: root,
  POLYARCH_CONFIG: tenv.config,
  POLYARCH_PROGRESS: 'plain',
};
delete env.COMPOSE_PROJECT_NAME;
delete env.COMPOSE_FILE;

function polyarch(cwd: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { cwd, env, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
function ok(cwd: string, ...args: string[]): string {
  const r = polyarch(cwd, ...args);
  assert.equal(r.status, 0, `polyarch ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function project(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  for (const [f, data] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    writeFileSync(join(dir, f), data);
  }
  return dir;
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

before(async () => {
  for (const p of ['linux/arm64', 'linux/s390x']) await ensureBinfmt(p);
});
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

test('compose up -d: two platforms, the client reaches the server by name; ps, logs, down', async () => {
  const port = await freePort();
  const dir = project('pair', {
    '.env': `PORT=${port}\n`,
    'compose.yaml': [
      'name: pair',
      'services:',
      '  web:',
      `    image: ${tenv.busybox}`,
      '    platform: linux/arm64',
      "    command: sh -c 'mkdir -p /w && uname -m > /w/index.html && exec httpd -f -v -p 8000 -h /w'",
      '    ports: ["${PORT}:8000"]',
      '  client:',
      `    image: ${tenv.busybox}`,
      '    platform: linux/s390x',
      '    depends_on: [web]',
      '    environment:',
      '      TARGET: web',
      '    command: ["sh", "-c", "while true; do echo \\"client on $$(uname -m) got $$(wget -qO- http://$$TARGET:8000/)\\"; sleep 0.5; done"]',
      '',
    ].join('\n'),
  });
  const up = polyarch(dir, 'compose', 'up', '-d');
  assert.equal(up.status, 0, up.stderr);
  assert.equal(
    up.stderr,
    ' Container pair-web-1  Started (linux/arm64)\n Container pair-client-1  Started (linux/s390x)\n',
    'depends_on order',
  );
  let logs = '';
  for (let i = 0; i < 100 && !/client on s390x got aarch64/.test(logs); i++) {
    await sleep(100);
    logs = ok(dir, 'compose', 'logs', 'client');
  }
  assert.match(
    logs,
    /^pair-client-1 {2}\| client on s390x got aarch64$/m,
    'the client reached web by its name',
  );
  const curl = spawnSync('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${port}/`], {
    encoding: 'utf8',
  });
  assert.equal(curl.stdout, 'aarch64\n', curl.stderr);
  assert.match(ok(dir, 'compose', 'logs', 'web'), /^pair-web-1 {2}\| .*response:200$/m);

  const ps = ok(dir, 'compose', 'ps').split('\n');
  assert.match(ps[0]!, /^NAME\s+IMAGE\s+PLATFORM\s+COMMAND\s+SERVICE\s+CREATED\s+STATUS\s+PORTS$/);
  assert.match(
    ps.find((l) => l.startsWith('pair-web-1')) ?? '',
    new RegExp(`linux/arm64 .*\\bweb\\b.*Up .*0\\.0\\.0\\.0:${port}->8000/tcp$`),
  );
  assert.match(ps.find((l) => l.startsWith('pair-client-1')) ?? '', /linux\/s390x .*\bclient\b.*Up /);
  // up again leaves running services alone.
  const again = polyarch(dir, 'compose', 'up', '-d');
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stderr, '');
  assert.equal(ok(dir, 'compose', 'ps', '-q').trim().split('\n').length, 2);

  const down = polyarch(dir, 'compose', 'down', '-t', '0');
  assert.equal(down.status, 0, down.stderr);
  assert.equal(down.stderr, ' Container pair-client-1  Removed\n Container pair-web-1  Removed\n');
  assert.equal(ok(dir, 'ps', '-a', '-q'), '');
  assert.ok(
    !readdirSync('/run/netns').some((n) =>
      readdirSync(join(root, 'net')).includes(`${n.replace(/^polyarch-/, '')}.pid`),
    ),
    'the project network is gone',
  );
  assert.deepEqual(readdirSync(join(root, 'net')), []);
});

test('compose build, then compose push: per-service platforms reach the registry', () => {
  const repoName = `${tenv.registry}/compose-push-${process.pid}`;
  const dir = project('shipit', {
    'web/Dockerfile': 'FROM busybox\nRUN uname -m > /arch\n',
    'worker/Dockerfile': 'FROM busybox\nRUN uname -m > /arch\n',
    'compose.yaml': [
      'services:',
      '  web:',
      `    image: ${repoName}/web:1`,
      '    build:',
      '      context: web',
      '      platforms: [linux/amd64, linux/arm64]',
      '  worker:',
      `    image: ${repoName}/worker:1`,
      '    platform: linux/s390x',
      '    build: worker',
      '',
    ].join('\n'),
  });
  ok(dir, 'compose', 'build', '-q');
  const push = polyarch(dir, 'compose', 'push');
  assert.equal(push.status, 0, push.stderr);
  assert.match(
    push.stderr,
    new RegExp(`^ Service web {2}Pushed {2}${repoName}/web:1@sha256:[0-9a-f]{64}$`, 'm'),
  );
  assert.match(
    push.stderr,
    new RegExp(`^ Service worker {2}Pushed {2}${repoName}/worker:1@sha256:[0-9a-f]{64}$`, 'm'),
  );
  const web = ok(dir, 'imagetools', 'inspect', `${repoName}/web:1`);
  assert.match(web, /Platform:\s+linux\/amd64/);
  assert.match(web, /Platform:\s+linux\/arm64/);
  // The worker's single platform, fetched back from the registry and run.
  assert.equal(
    ok(
      dir,
      'run',
      '--rm',
      '--pull',
      'always',
      '--platform',
      'linux/s390x',
      `${repoName}/worker:1`,
      'cat',
      '/arch',
    ),
    's390x\n',
  );
  const bad = polyarch(dir, 'compose', 'push', 'nope');
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, 'ERROR: no such service: nope\n');
});

test('compose config prints the resolved model; up needs -d', () => {
  const dir = project('cfg', {
    '.env': 'TAG=7\n',
    'compose.yaml': `services:\n  app:\n    image: example/app:\${TAG}\n    platform: linux/arm64\n`,
  });
  assert.equal(
    ok(dir, 'compose', 'config'),
    'name: cfg\nservices:\n  app:\n    image: example/app:7\n    platform: linux/arm64\n',
  );
  assert.equal(ok(dir, 'compose', 'config', '--services'), 'app\n');
  const up = polyarch(dir, 'compose', 'up');
  assert.equal(up.status, 2);
  assert.match(up.stderr, /^ERROR: compose up runs detached only: use compose up -d/);
});
