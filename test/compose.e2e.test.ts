// biome-ignore-all lint/suspicious/noTemplateCurlyInString: compose file text, not templates
/**
 * `polyarch compose build` end to end through bin/polyarch: a two-service project (one built
 * for linux/amd64 + linux/arm64 through build.platforms, one single-platform with args from
 * `.env` interpolation), `FROM busybox` resolved through the test registry (docker.io mirror
 * in $POLYARCH_TEST_CONFIG), real runc and QEMU, a private state root. Checks the store
 * (`polyarch images`), `polyarch run` of each platform, building one service, `--push` to the
 * test registry (skopeo reads the index back) and a bad file's one-line error.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-compose-e2e-'));
const work = mkdtempSync(join(tmpdir(), 'polyarch-compose-ctx-'));
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});
const env: NodeJS.ProcessEnv = {
  ...process.env,
  POLYARCH_ROOT: root,
  POLYARCH_CONFIG: tenv.config,
  POLYARCH_PROGRESS: 'plain',
};
delete env.COMPOSE_PROJECT_NAME;
delete env.COMPOSE_FILE;

function project(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  for (const [f, data] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    writeFileSync(join(dir, f), data);
  }
  return dir;
}

function polyarch(cwd: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { cwd, env, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `polyarch images` rows of one repository: its platforms, sorted. */
function platformsOf(repository: string): string[] {
  const r = polyarch(work, 'images');
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => l.split(/\s+/)[0] === repository);
  return rows.map((l) => l.split(/\s+/).find((c) => /^linux\//.test(c)) ?? '?').sort();
}

const dockerfile = (greeting: string) =>
  `FROM busybox\nARG GREETING=${greeting}\nRUN uname -m > /arch && echo "$GREETING" > /greeting\nCMD ["sh", "-c", "cat /arch /greeting"]\n`;

const dir = project('Demo_App', {
  'web/Dockerfile': dockerfile('hello-web'),
  'worker/Dockerfile': dockerfile('hello-worker'),
  '.env': 'WORKER_GREETING=from-dotenv\nWORKER_PLATFORM="linux/arm64"\n',
  'compose.yaml': [
    'services:',
    '  web:',
    '    build:',
    '      context: web',
    '      platforms: [linux/amd64, linux/arm64]',
    '  worker:',
    '    platform: ${WORKER_PLATFORM}',
    '    build:',
    '      context: ./worker',
    '      args:',
    '        GREETING: ${WORKER_GREETING:-unset}',
    '  db:',
    '    image: postgres:16',
    '',
  ].join('\n'),
});

test('compose build: both services, build.platforms and .env args, project name from the directory', () => {
  const r = polyarch(dir, 'compose', 'build');
  assert.equal(r.status, 0, r.stderr);
  // Progress names carry the service, like compose's.
  assert.match(r.stderr, /\[web linux\/arm64 2\/2\] RUN uname -m/);
  assert.match(r.stderr, /\[worker 2\/2\] RUN uname -m/);
  assert.deepEqual(platformsOf('demo_app-web'), ['linux/amd64', 'linux/arm64']);
  assert.deepEqual(platformsOf('demo_app-worker'), ['linux/arm64']);

  const arm = polyarch(dir, 'run', '--rm', '--platform', 'linux/arm64', 'demo_app-web');
  assert.equal(arm.status, 0, arm.stderr);
  assert.equal(arm.stdout, 'aarch64\nhello-web\n');
  const amd = polyarch(dir, 'run', '--rm', '--platform', 'linux/amd64', 'demo_app-web');
  assert.equal(amd.status, 0, amd.stderr);
  assert.equal(amd.stdout, 'x86_64\nhello-web\n');
  const worker = polyarch(dir, 'run', '--rm', '--platform', 'linux/arm64', 'demo_app-worker');
  assert.equal(worker.status, 0, worker.stderr);
  assert.equal(worker.stdout, 'aarch64\nfrom-dotenv\n');
});

test('compose build SERVICE builds only that service; the environment wins over .env', () => {
  const only = project('only', {
    Dockerfile: dockerfile('x'),
    '.env': 'G=from-dotenv\n',
    'compose.yaml':
      'name: solo\nservices:\n  web:\n    build:\n      context: .\n      args:\n        - GREETING=${G}\n  worker:\n    build: .\n',
  });
  const r = spawnSync(bin, ['compose', 'build', 'web'], {
    cwd: only,
    env: { ...env, G: 'from-env' },
    encoding: 'utf8',
    timeout: 300_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(platformsOf('solo-web').length, 1);
  assert.deepEqual(platformsOf('solo-worker'), []);
  const run = polyarch(only, 'run', '--rm', 'solo-web');
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /\nfrom-env\n$/);
});

test('compose build --push pushes a multi-platform index to the registry', () => {
  const repoName = `compose-e2e/web-${process.pid}`;
  const ref = `${tenv.registry}/${repoName}:1`;
  const pushDir = project('push', {
    Dockerfile: dockerfile('pushed'),
    'compose.yaml': `services:\n  web:\n    image: ${ref}\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n`,
  });
  const r = polyarch(pushDir, 'compose', 'build', '--push');
  assert.equal(r.status, 0, r.stderr);
  const raw = spawnSync('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], {
    encoding: 'utf8',
  });
  assert.equal(raw.status, 0, raw.stderr);
  const index = JSON.parse(raw.stdout) as { manifests: { platform: { architecture: string } }[] };
  assert.deepEqual(index.manifests.map((m) => m.platform.architecture).sort(), ['amd64', 'arm64']);
  // The image is in the local store as well.
  assert.deepEqual(platformsOf(`${tenv.registry}/${repoName}`), ['linux/amd64', 'linux/arm64']);
});

test('compose build --push refuses an image name without a registry, naming the service', () => {
  const r = polyarch(dir, 'compose', 'build', '--push', 'web');
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /^ERROR: service "web": cannot push image "demo_app-web": the name has no registry/m,
  );
});

const bad: [string, string, RegExp][] = [
  [
    'platforms not a list',
    'services:\n  web:\n    build:\n      context: .\n      platforms: linux/arm64\n',
    /^ERROR: compose\.yaml: services\.web\.build\.platforms: must be array\n$/,
  ],
  [
    'missing required variable',
    'services:\n  web:\n    image: ${NOPE:?set NOPE}\n',
    /^ERROR: compose\.yaml: services\.web\.image: required variable NOPE is missing a value: set NOPE\n$/,
  ],
  ['unknown service', 'services:\n  web:\n    build: .\n', /^ERROR: no such service: api\n$/],
];
for (const [name, text, want] of bad)
  test(`bad compose file: ${name}`, () => {
    const d = project(`bad-${name.replace(/\W+/g, '-')}`, {
      'compose.yaml': text,
      Dockerfile: 'FROM busybox\n',
    });
    const r = polyarch(d, 'compose', 'build', ...(name === 'unknown service' ? ['api'] : []));
    assert.equal(r.status, name === 'unknown service' ? 2 : 1, r.stderr);
    assert.match(r.stderr, want);
  });

test('depends_on: a service built FROM another service image of the project builds after it', () => {
  const d = project('deps', {
    'base/Dockerfile': 'FROM busybox\nRUN echo from-base > /base\n',
    'compose.yaml': [
      'name: deps',
      'services:',
      '  app:',
      '    depends_on: [base]',
      '    build:',
      '      context: .',
      '      dockerfile_inline: |',
      '        FROM deps-base',
      '        RUN cat /base > /copied',
      '        CMD ["cat", "/copied"]',
      '  base:',
      '    build: base',
      '',
    ].join('\n'),
  });
  const r = polyarch(d, 'compose', 'build');
  assert.equal(r.status, 0, r.stderr);
  const run = polyarch(d, 'run', '--rm', 'deps-app');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'from-base\n');
});

test('build.additional_contexts: a directory (relative to the project) and service:NAME, built first', () => {
  const d = project('extra', {
    'shared/motd.txt': 'shared file\n',
    'base/Dockerfile': 'FROM busybox\nRUN echo from-base-service > /base\n',
    'compose.yaml': [
      'name: extra',
      'services:',
      '  app:',
      '    build:',
      '      context: .',
      '      additional_contexts:',
      '        shared: ./shared',
      '        basesvc: service:base',
      '      dockerfile_inline: |',
      '        FROM basesvc',
      '        COPY --from=shared motd.txt /motd.txt',
      '        CMD ["cat", "/base", "/motd.txt"]',
      '  base:',
      '    build: base',
      '',
    ].join('\n'),
  });
  const r = polyarch(d, 'compose', 'build');
  assert.equal(r.status, 0, r.stderr);
  const run = polyarch(d, 'run', '--rm', 'extra-app');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'from-base-service\nshared file\n');
  // A bad value names the service and the context.
  writeFileSync(
    join(d, 'compose.yaml'),
    'services:\n  app:\n    build:\n      context: .\n      additional_contexts:\n        x: bogus://nope\n',
  );
  const bad = polyarch(d, 'compose', 'build');
  assert.equal(bad.status, 1);
  assert.match(
    bad.stderr,
    /service "app": build\.additional_contexts\.x: invalid --build-context x=bogus:\/\/nope/,
  );
});

test('a failing RUN names the service and shows the step, exit 1', () => {
  const d = project('failing', {
    Dockerfile: 'FROM busybox\nRUN echo about-to-fail && exit 3\n',
    'compose.yaml': 'services:\n  broken:\n    build: .\n',
  });
  const r = polyarch(d, 'compose', 'build');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^ERROR: service "broken" failed to build\nERROR: failed to solve: /m);
  assert.match(r.stderr, /--> Dockerfile:2\n 2 \| >>> RUN echo about-to-fail && exit 3/);
});
