/**
 * `polyarch build` end to end through bin/polyarch: real runc, real QEMU (binfmt_misc), base
 * images from the test registry (docker.io mirrored there through $POLYARCH_TEST_CONFIG), a
 * private state root per file. Covers multi-platform RUN under emulation, a cross-compiling
 * stage built once, the cache (warm rebuild, one changed COPY source), clear errors with no
 * leftovers, and SIGINT during a RUN.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from '../src/build/index.js';
import { canExecute, parsePlatform } from '../src/platform/index.js';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-build-e2e-'));
const work = mkdtempSync(join(tmpdir(), 'polyarch-build-ctx-'));
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});
const env = { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: tenv.config, POLYARCH_PROGRESS: 'plain' };

function context(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, data] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    writeFileSync(join(dir, f), data);
  }
  return dir;
}

function polyarch(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { env, encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Vertex lines of plain progress, by name: '#N [..] RUN ..' → its status lines. */
function steps(output: string): Map<string, string[]> {
  const byId = new Map<string, string>();
  const out = new Map<string, string[]>();
  for (const line of output.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const [, id, rest] = m as unknown as [string, string, string];
    if (!byId.has(id)) {
      byId.set(id, rest);
      out.set(rest, []);
    } else out.get(byId.get(id)!)!.push(rest);
  }
  return out;
}

function statusOf(lines: string[] | undefined): 'CACHED' | 'DONE' | 'ERROR' | undefined {
  if (!lines) return undefined;
  if (lines.includes('CACHED')) return 'CACHED';
  if (lines.some((l) => l.startsWith('DONE'))) return 'DONE';
  if (lines.some((l) => l.startsWith('ERROR'))) return 'ERROR';
  return undefined;
}

/** Nothing of this build left behind: no mounts under the root, no runc containers, no active snapshots. */
function assertNoLeftovers(): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter((l) => l.includes(root));
  assert.deepEqual(mounts, [], 'mounts left under the state root');
  const runcRoot = join(root, 'runc');
  const containers = spawnSync('runc', ['--root', runcRoot, 'list', '-q'], {
    encoding: 'utf8',
  }).stdout.trim();
  assert.equal(containers, '', 'runc containers left');
  const snapDir = join(root, 'snapshots');
  for (const name of readdirSync(snapDir)) {
    assert.ok(!name.startsWith('tmp-'), `temporary snapshot dir ${name} left`);
    if (!/^[0-9a-f]{16}$/.test(name)) continue;
    const meta = JSON.parse(readFileSync(join(snapDir, name, 'meta.json'), 'utf8')) as {
      kind: string;
      key: string;
    };
    assert.equal(meta.kind, 'committed', `active snapshot ${meta.key} left`);
  }
  const tmpDir = join(root, 'build', 'tmp');
  let tmp: string[] = [];
  try {
    tmp = readdirSync(tmpDir);
  } catch {}
  assert.deepEqual(tmp, [], 'temporary build dirs left');
}

const classic = context('classic', {
  Dockerfile: [
    'FROM busybox',
    'ARG TARGETPLATFORM',
    'ARG TARGETARCH',
    'RUN echo "machine=$(uname -m) platform=$TARGETPLATFORM arch=$TARGETARCH" | tee /built-on',
    'WORKDIR /app',
    'COPY . .',
    'CMD ["cat", "/built-on"]',
    '',
  ].join('\n'),
  'hello.txt': 'hello\n',
  '.dockerignore': 'ignored.txt\n',
  'ignored.txt': 'must not be copied\n',
});

test('classic multi-arch build: each platform RUNs under its own architecture', () => {
  const r = polyarch('build', '--platform', 'linux/amd64,linux/arm64,linux/arm/v7', classic);
  assert.equal(r.status, 0, r.stderr);
  for (const [machine, platform, arch] of [
    ['x86_64', 'linux/amd64', 'amd64'],
    ['aarch64', 'linux/arm64', 'arm64'],
    ['armv7l', 'linux/arm/v7', 'arm'],
  ])
    assert.match(r.stderr, new RegExp(`machine=${machine} platform=${platform} arch=${arch}\\n`));
  const s = steps(r.stderr);
  assert.equal(
    statusOf(
      s.get(
        '[linux/arm/v7 2/4] RUN echo "machine=$(uname -m) platform=$TARGETPLATFORM arch=$TARGETARCH" | tee /built-on',
      ),
    ),
    'DONE',
  );
  assert.ok(
    [...s.keys()].some((k) =>
      /^\[linux\/arm64 1\/4\] FROM docker\.io\/library\/busybox:latest@sha256:[0-9a-f]{64}$/.test(k),
    ),
    [...s.keys()].join('\n'),
  );
  assert.ok(s.has('[internal] load build context'));
  assert.ok(s.has('[internal] load .dockerignore'));
  assertNoLeftovers();
});

test('warm rebuild runs nothing; a changed COPY source re-runs exactly the steps after it', () => {
  const dir = context('cache', {
    Dockerfile: [
      'FROM busybox',
      'RUN echo first-run',
      'COPY a.txt /a.txt',
      'RUN cat /a.txt',
      'COPY b.txt /b.txt',
      '',
    ].join('\n'),
    'a.txt': 'A1\n',
    'b.txt': 'B1\n',
  });
  const iid = (name: string) => join(dir, '..', `cache-${name}.iid`);
  const buildAs = (name: string) =>
    polyarch('build', '--platform', 'linux/arm64', '-t', 'cache-test:latest', '--iidfile', iid(name), dir);
  const cold = buildAs('cold');
  assert.equal(cold.status, 0, cold.stderr);
  assert.match(cold.stderr, /first-run/);
  const warm = buildAs('warm');
  assert.equal(warm.status, 0, warm.stderr);
  const w = steps(warm.stderr);
  for (const name of [
    '[2/5] RUN echo first-run',
    '[3/5] COPY a.txt /a.txt',
    '[4/5] RUN cat /a.txt',
    '[5/5] COPY b.txt /b.txt',
  ])
    assert.equal(statusOf(w.get(name)), 'CACHED', `${name} in\n${warm.stderr}`);
  assert.doesNotMatch(warm.stderr, /^#\d+ [\d.]+ first-run$/m);
  // All from the cache: the history times are the cached steps' own, so the image is the same
  // one (as with BuildKit), and a push of it would be a no-op.
  assert.equal(readFileSync(iid('warm'), 'utf8'), readFileSync(iid('cold'), 'utf8'));

  writeFileSync(join(dir, 'a.txt'), 'A2\n');
  const changed = buildAs('changed');
  assert.equal(changed.status, 0, changed.stderr);
  const c = steps(changed.stderr);
  assert.equal(statusOf(c.get('[2/5] RUN echo first-run')), 'CACHED');
  assert.equal(statusOf(c.get('[3/5] COPY a.txt /a.txt')), 'DONE');
  assert.equal(statusOf(c.get('[4/5] RUN cat /a.txt')), 'DONE');
  assert.equal(statusOf(c.get('[5/5] COPY b.txt /b.txt')), 'DONE');
  assert.match(changed.stderr, /A2/);
  assert.notEqual(readFileSync(iid('changed'), 'utf8'), readFileSync(iid('cold'), 'utf8'));
  // --no-cache runs everything again.
  const fresh = polyarch('build', '--no-cache', '--platform', 'linux/arm64', dir);
  assert.equal(fresh.status, 0, fresh.stderr);
  assert.equal(statusOf(steps(fresh.stderr).get('[2/5] RUN echo first-run')), 'DONE');
  assertNoLeftovers();
});

test('a FROM --platform=$BUILDPLATFORM stage is built once for all targets', () => {
  const dir = context('cross', {
    Dockerfile: [
      'FROM --platform=$BUILDPLATFORM busybox AS build',
      'RUN echo "compiling on $(uname -m)" | tee /out',
      'FROM busybox',
      'ARG TARGETARCH',
      'COPY --from=build /out /out',
      'RUN echo "final $TARGETARCH $(uname -m)"',
      '',
    ].join('\n'),
  });
  const r = polyarch('build', '--platform', 'linux/amd64,linux/arm64,linux/arm/v7', dir);
  assert.equal(r.status, 0, r.stderr);
  const compiled = r.stderr.match(/^#\d+ [\d.]+ compiling on x86_64$/gm) ?? [];
  assert.equal(compiled.length, 1, r.stderr);
  const buildSteps = [...steps(r.stderr).keys()].filter((k) => k.includes(' build 2/2] RUN'));
  assert.equal(buildSteps.length, 1, buildSteps.join('\n'));
  assert.match(r.stderr, /final arm64 aarch64/);
  assert.match(r.stderr, /final arm armv7l/);
  assertNoLeftovers();
});

test('WORKDIR of an existing directory adds no layer; of a new one, it makes it', async () => {
  const dir = context('workdir', {
    Dockerfile: [
      'FROM busybox',
      'WORKDIR /etc',
      'RUN pwd > /pwd1',
      'WORKDIR /new/sub',
      'RUN pwd > /pwd2',
      '',
    ].join('\n'),
  });
  const result = await build({
    dockerfile: readFileSync(join(dir, 'Dockerfile'), 'utf8'),
    contextDir: dir,
    platforms: [parsePlatform('linux/amd64')],
    env,
    root,
  });
  const p = result.platforms[0]!;
  const own = p.config.history
    .slice(-4)
    .map((h) => [(h.created_by ?? '').replace(/ # buildkit$/, ''), h.empty_layer ?? false]);
  assert.deepEqual(own, [
    ['WORKDIR /etc', true],
    ['RUN /bin/sh -c pwd > /pwd1', false],
    ['WORKDIR /new/sub', false],
    ['RUN /bin/sh -c pwd > /pwd2', false],
  ]);
  const files = (n: string) =>
    execFileSync('find', [join(root, 'snapshots'), '-name', n], { encoding: 'utf8' })
      .trim()
      .split('\n')[0]!;
  assert.equal(readFileSync(files('pwd1'), 'utf8'), '/etc\n');
  assert.equal(readFileSync(files('pwd2'), 'utf8'), '/new/sub\n');
});

test('a RUN layer holds what the step changed, not what it rewrote as it was or only touched', async () => {
  const dir = context('unchanged', {
    Dockerfile: [
      'FROM busybox',
      // /etc/group rewritten byte for byte with its mtime (cp -p), /tmp only touched: both are
      // copied up by overlayfs, neither is a change. /newdir and /etc/motd-new are.
      'RUN cp -p /etc/group /group.keep && cp -p /group.keep /etc/group && rm /group.keep && touch /tmp && mkdir /newdir && echo x > /newdir/f && echo hi > /etc/motd-new',
      '',
    ].join('\n'),
  });
  const out = join(work, 'unchanged-oci');
  const r = polyarch('build', '--platform', 'linux/amd64', '--output', `type=oci,dest=${out},tar=false`, dir);
  assert.equal(r.status, 0, r.stderr);
  const blob = (d: string) => join(out, 'blobs', ...d.split(':'));
  const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
  let m = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  if (m.manifests) m = JSON.parse(readFileSync(blob(m.manifests[0].digest), 'utf8'));
  const listing = execFileSync('tar', ['-tzf', blob(m.layers.at(-1).digest)], { encoding: 'utf8' });
  const paths = listing
    .trim()
    .split('\n')
    .map((p) => p.replace(/^\.\//, '').replace(/\/$/, ''))
    .sort();
  assert.deepEqual(paths, ['etc', 'etc/motd-new', 'newdir', 'newdir/f']);
});

test('library: BuildResult has the config, history and layers the exporters need', async () => {
  const result = await build({
    dockerfile: readFileSync(join(classic, 'Dockerfile'), 'utf8'),
    contextDir: classic,
    platforms: [parsePlatform('linux/arm64')],
    env: { ...env, SOURCE_DATE_EPOCH: '1700000000' },
    root,
  });
  assert.equal(result.platforms.length, 1);
  const p = result.platforms[0]!;
  assert.equal(p.config.architecture, 'arm64');
  assert.equal(p.config.created, '2023-11-14T22:13:20Z');
  assert.deepEqual(p.config.config?.Cmd, ['cat', '/built-on']);
  assert.equal(p.config.config?.WorkingDir, '/app');
  assert.equal(p.layers[0]?.kind, 'blob');
  assert.deepEqual(
    p.layers.map((l) => l.kind),
    ['blob', 'snapshot', 'snapshot', 'snapshot'],
  );
  const own = p.config.history.slice(-6).map((h) => [h.created_by, h.empty_layer ?? false]);
  assert.deepEqual(own, [
    ['ARG TARGETPLATFORM', true],
    ['ARG TARGETARCH', true],
    [
      'RUN |2 TARGETPLATFORM=linux/arm64 TARGETARCH=arm64 /bin/sh -c echo "machine=$(uname -m) platform=$TARGETPLATFORM arch=$TARGETARCH" | tee /built-on # buildkit',
      false,
    ],
    ['WORKDIR /app', false],
    ['COPY . . # buildkit', false],
    ['CMD ["cat", "/built-on"]', true],
  ]);
  // .dockerignore: the ignored file is not in the COPY layer.
  const copyLayer = p.layers[3]!;
  assert.equal(copyLayer.kind, 'snapshot');
  const snapFs = execFileSync('find', [join(root, 'snapshots'), '-path', '*/app/*', '-name', '*.txt'], {
    encoding: 'utf8',
  });
  assert.match(snapFs, /hello\.txt/);
  assert.doesNotMatch(snapFs, /ignored\.txt/);
});

test('errors: failing RUN, missing file, unknown stage, bad Dockerfile, no emulator — exit 1, nothing left', async () => {
  const failing = context('fail-run', {
    Dockerfile: 'FROM busybox\nRUN echo before-failure && exit 3\n',
  });
  let r = polyarch('build', failing);
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /ERROR: failed to solve: process "\/bin\/sh -c echo before-failure && exit 3" did not complete successfully: exit code: 3/,
  );
  assert.match(
    r.stderr,
    /\n------\n > \[2\/2\] RUN echo before-failure && exit 3:\nbefore-failure\n------\n--> Dockerfile:2\n 2 \| >>> RUN/,
  );
  assertNoLeftovers();

  // One platform fails while another is still running: the other is stopped and cleaned up.
  const multiFail = context('multi-fail', {
    Dockerfile:
      'FROM busybox\nARG TARGETARCH\nRUN if [ "$TARGETARCH" = amd64 ]; then sleep 1; exit 5; else sleep 30; fi\n',
  });
  const t0 = Date.now();
  r = polyarch('build', '--platform', 'linux/amd64,linux/arm64', multiFail);
  assert.equal(r.status, 1);
  assert.ok(Date.now() - t0 < 20_000, 'the sibling step was not stopped');
  assert.match(r.stderr, /did not complete successfully: exit code: 5/);
  assertNoLeftovers();

  const missing = context('missing', { Dockerfile: 'FROM busybox\nCOPY missing.txt /\n' });
  r = polyarch('build', missing);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /"\/missing\.txt": not found/);
  assert.match(r.stderr, /--> Dockerfile:2/);
  assertNoLeftovers();

  const stages = context('stages', { Dockerfile: 'FROM busybox AS base\nRUN true\n' });
  r = polyarch('build', '--target', 'nope', stages);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /nope/);
  assert.match(r.stderr, /target stage "nope" could not be found/);

  // A base image without the platform: an error naming what it has, never another architecture.
  r = polyarch('build', '--platform', 'linux/riscv64', stages);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no image for platform linux\/riscv64 in the index \(it has linux\/amd64, /);
  assert.match(r.stderr, /--> Dockerfile:1/);

  r = polyarch('build', '--builder', 'nope', stages);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no builder "nope" found/);

  const bad = context('bad', { Dockerfile: 'FROMM busybox\n' });
  r = polyarch('build', bad);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--> Dockerfile:1/);

  // A platform nothing here executes (no working emulator): refused before anything starts.
  let foreign: string | undefined;
  for (const p of ['linux/sparc64', 'linux/loong64', 'linux/mips64le', 'linux/riscv64'])
    if (!(await canExecute(p))) {
      foreign = p;
      break;
    }
  assert.ok(foreign, 'every candidate platform executes here: pick another one for this test');
  const arch = foreign.split('/')[1]!;
  r = polyarch('build', '--platform', foreign, failing);
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`no emulator for ${foreign}: run \`polyarch binfmt --install ${arch}\``));
  assert.doesNotMatch(r.stderr, /before-failure/);
  assertNoLeftovers();
});

test('SIGINT during a long RUN: exit 130, no mounts or containers left, the next build works', async () => {
  // A layer made just before (packed for the output while the next step runs) must not
  // leave a half-written blob either.
  const dir = context('sigint', {
    Dockerfile: 'FROM busybox\nRUN head -c 3000000 /dev/urandom > /big\nRUN echo started && sleep 60\n',
  });
  const child = spawn(bin, ['build', '--platform', 'linux/amd64', '-t', 'sigint-test:latest', dir], { env });
  let stderr = '';
  const started = new Promise<void>((res) => {
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (/\d started\n/.test(stderr)) res();
    });
  });
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  await Promise.race([started, exited]);
  const t0 = Date.now();
  child.kill('SIGINT');
  const code = await exited;
  assert.ok(Date.now() - t0 < 20_000, 'took too long to stop');
  assert.equal(code, 130, stderr);
  assertNoLeftovers();
  assert.deepEqual(readdirSync(join(root, 'store', 'ingest')), [], 'temporary blobs left in the store');
  writeFileSync(
    join(dir, 'Dockerfile'),
    'FROM busybox\nRUN echo started && sleep 60\nFROM busybox\nRUN echo after-interrupt\n',
  );
  const r = polyarch('build', '--platform', 'linux/amd64', dir);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /after-interrupt/);
  assertNoLeftovers();
});

test('features: secret, cache mount, heredoc, ADD tar, --chown/--chmod, --label, -t into the store', () => {
  const dir = context('features', {
    Dockerfile: [
      'FROM busybox',
      `RUN --mount=type=secret,id=tok test "$(sha256sum < /run/secrets/tok | cut -c1-64)" = "${createHash('sha256').update('s3cr3t-value').digest('hex')}" && echo secret-ok`,
      'RUN --mount=type=cache,target=/cache echo x >> /cache/runs && wc -l < /cache/runs > /cache-count',
      'COPY <<EOF /etc/motd',
      'hello from a heredoc',
      'EOF',
      'ADD files.tar /unpacked/',
      'COPY --chown=nobody --chmod=640 owned.txt /owned.txt',
      'LABEL from.dockerfile=yes',
      '',
    ].join('\n'),
    'owned.txt': 'mine\n',
  });
  mkdirSync(join(work, 'tarsrc'), { recursive: true });
  writeFileSync(join(work, 'tarsrc', 'inside.txt'), 'from the tar\n');
  execFileSync('tar', ['-cf', join(dir, 'files.tar'), '-C', join(work, 'tarsrc'), 'inside.txt']);
  writeFileSync(join(work, 'secret.txt'), 's3cr3t-value');
  const r = polyarch(
    'build',
    '--platform',
    'linux/amd64,linux/arm64',
    '--secret',
    `id=tok,src=${join(work, 'secret.txt')}`,
    '--label',
    'from.flag=1',
    '-t',
    'features:1',
    dir,
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /secret-ok/);
  assert.doesNotMatch(r.stderr, /s3cr3t-value/);
  // The secret is in no layer.
  const grep = spawnSync('grep', ['-rl', 's3cr3t-value', join(root, 'snapshots'), join(root, 'build')], {
    encoding: 'utf8',
  });
  assert.equal(grep.stdout, '', 'secret found on disk');
  const images = polyarch('images');
  assert.match(images.stdout, /features +1 +linux\/amd64/);
  assert.match(images.stdout, /features +1 +linux\/arm64/);

  const snaps = join(root, 'snapshots');
  const find = (name: string) =>
    execFileSync('find', [snaps, '-path', `*/fs${name}`], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  assert.equal(readFileSync(find('/etc/motd')[0]!, 'utf8'), 'hello from a heredoc\n');
  assert.equal(readFileSync(find('/unpacked/inside.txt')[0]!, 'utf8'), 'from the tar\n');
  const owned = find('/owned.txt')[0]!;
  const st = execFileSync('stat', ['-c', '%u:%g %a', owned], { encoding: 'utf8' }).trim();
  assert.equal(st, '65534:65534 640');
  // The cache mount is per platform and outlives the build: no layer holds it.
  assert.deepEqual(find('/cache/runs'), []);
});

test('a tar context on stdin', () => {
  const dir = context('stdin', {
    Dockerfile: 'FROM busybox\nCOPY note.txt /\nRUN cat /note.txt\n',
    'note.txt': 'via-stdin\n',
  });
  const tar = execFileSync('tar', ['-cf', '-', '-C', dir, '.']);
  const r = spawnSync(bin, ['build', '--platform', 'linux/arm64', '-'], {
    env,
    input: tar,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /via-stdin/);
  assertNoLeftovers();
});

test('--network none, COPY --from an image, --pull, --build-arg and --target', () => {
  const dir = context('network', {
    Dockerfile: [
      'FROM busybox AS base',
      'ARG GREETING=unset',
      'RUN echo "greeting=$GREETING"',
      'FROM base AS final',
      'COPY --from=busybox /bin/busybox /copied-busybox',
      'RUN test -x /copied-busybox && test "$(wc -l < /proc/net/dev)" -eq 3 && echo net-none-ok',
      'FROM final AS never',
      'RUN echo this-stage-is-not-needed',
      '',
    ].join('\n'),
  });
  const r = polyarch(
    'build',
    '--pull',
    '--network',
    'none',
    '--build-arg',
    'GREETING=hi',
    '--target',
    'final',
    '--platform',
    'linux/arm64',
    dir,
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /greeting=hi/);
  assert.match(r.stderr, /net-none-ok/);
  assert.doesNotMatch(r.stderr, /this-stage-is-not-needed/);
  assertNoLeftovers();
});

test('ADD of an http URL: --checksum verified, file named from the URL, wrong checksum refused', async () => {
  const { createServer } = await import('node:http');
  const body = 'downloaded content\n';
  const server = createServer((req, res) => {
    if (req.url === '/files/data.txt') {
      res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': 'Tue, 14 Nov 2023 22:13:20 GMT' });
      res.end(body);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    const sum = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    const dir = context('add-url', {});
    const ok = await build({
      dockerfile: `FROM busybox\nADD --checksum=${sum} http://127.0.0.1:${port}/files/data.txt /dl/\nRUN cat /dl/data.txt && stat -c %a /dl/data.txt\n`,
      contextDir: dir,
      platforms: [parsePlatform('linux/amd64')],
      env,
      root,
    });
    assert.equal(ok.platforms[0]!.layers.length, 3);
    const found = execFileSync('find', [join(root, 'snapshots'), '-path', '*/fs/dl/data.txt'], {
      encoding: 'utf8',
    })
      .trim()
      .split('\n');
    assert.equal(readFileSync(found[0]!, 'utf8'), body);
    await assert.rejects(
      build({
        dockerfile: `FROM busybox\nADD --checksum=sha256:${'0'.repeat(64)} http://127.0.0.1:${port}/files/data.txt /dl/\n`,
        contextDir: dir,
        platforms: [parsePlatform('linux/amd64')],
        env,
        root,
      }),
      /digest mismatch/,
    );
    await assert.rejects(
      build({
        dockerfile: `FROM busybox\nADD http://127.0.0.1:${port}/nothing /dl/\n`,
        contextDir: dir,
        platforms: [parsePlatform('linux/amd64')],
        env,
        root,
      }),
      /HTTP 404/,
    );
  } finally {
    server.close();
  }
  assertNoLeftovers();
});

test('after a SIGKILLed build, the next build cleans up its container, mounts and snapshots', async () => {
  const dir = context('sigkill', {
    Dockerfile: 'FROM busybox\nCOPY . /ctx\nRUN echo started && sleep 60\n',
    'f.txt': 'f\n',
  });
  const child = spawn(bin, ['build', '--platform', 'linux/amd64', dir], { env });
  let stderr = '';
  const started = new Promise<void>((res) => {
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (/\d started\n/.test(stderr)) res();
    });
  });
  const exited = new Promise<void>((res) => child.on('close', () => res()));
  await Promise.race([started, exited]);
  child.kill('SIGKILL');
  await exited;
  writeFileSync(join(dir, 'Dockerfile'), 'FROM busybox\nCOPY . /ctx\nRUN echo recovered\n');
  const r = polyarch('build', '--platform', 'linux/amd64', dir);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /recovered/);
  assertNoLeftovers();
});

test('SOURCE_DATE_EPOCH: two --no-cache builds of examples/hello give the same image digest', () => {
  const digests: string[] = [];
  for (const i of [1, 2]) {
    const meta = join(work, `meta-${i}.json`);
    const r = spawnSync(
      bin,
      [
        'build',
        '--no-cache',
        '--platform',
        'linux/amd64,linux/arm64',
        '-o',
        `type=oci,dest=${join(work, `hello-${i}.tar`)}`,
        '--metadata-file',
        meta,
        join(repo, 'examples', 'hello'),
      ],
      { env: { ...env, SOURCE_DATE_EPOCH: '1700000000' }, encoding: 'utf8', timeout: 240_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    digests.push(
      (JSON.parse(readFileSync(meta, 'utf8')) as Record<string, string>)['containerimage.digest']!,
    );
  }
  assert.match(digests[0]!, /^sha256:[0-9a-f]{64}$/);
  assert.equal(digests[0], digests[1]);
});

test('-f - reads the Dockerfile from stdin; --secret env= takes a variable', () => {
  const dir = context('stdin-dockerfile', { 'x.txt': 'x\n' });
  const r = spawnSync(
    bin,
    ['build', '-f', '-', '--secret', 'id=tok,env=BUILD_TOKEN', '--platform', 'linux/amd64', dir],
    {
      env: { ...env, BUILD_TOKEN: 'from-env' },
      input:
        'FROM busybox\nCOPY x.txt /\nRUN --mount=type=secret,id=tok,env=TOK test "$TOK" = from-env && test -f /run/secrets/tok && echo stdin-dockerfile-ok\n',
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /stdin-dockerfile-ok/);
  assertNoLeftovers();
});
