/**
 * `--build-context NAME=VALUE` through ./bin/polyarch: a directory, docker-image://, an OCI
 * layout, a git repository (test/env/git-server.ts) and an http(s) file, each changing what
 * `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME` see; a context replacing a stage
 * and an image (`FROM alpine`); warm rebuilds that fetch nothing; bad values.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type GitServer, startGitServer } from './env/git-server.js';
import { type CliRun, cliOk, runCli } from './env/cli.js';
import { testEnv } from './env/index.js';

const env = testEnv();
let root: string;
let work: string;
let git: GitServer;
let files: Server;
let filesBase: string;
const fileRequests: string[] = [];

type Run = CliRun;

/** Runs the CLI without blocking this process: the git and file servers live in it. */
function polyarch(args: string[]): Promise<Run> {
  return runCli(args, {
    cwd: work,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config },
  });
}

const ok = cliOk;

/** Writes `dockerfile` into a fresh context dir and returns the dir. */
async function context(name: string, dockerfile: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

/** Builds, then runs the image: what it prints. */
async function buildRun(dir: string, tag: string, extra: string[], platform?: string): Promise<string> {
  await ok(
    polyarch(['build', '-q', ...(platform ? ['--platform', platform] : []), '-t', tag, ...extra, dir]),
  );
  return (
    await ok(polyarch(['run', '--rm', '--pull', 'never', ...(platform ? ['--platform', platform] : []), tag]))
  ).stdout;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-named-'));
  work = await mkdtemp(join(tmpdir(), 'polyarch-named-cwd-'));
  git = await startGitServer();
  await git.repo('lib', { 'lib.txt': 'from git\n', 'sub/inner.txt': 'inner\n' });
  git.git('lib', 'push', '-q', 'origin', 'main');
  files = createServer((req, res) => {
    const etag = '"tool-v1"';
    if (req.url === '/dl/tool.sh' && req.headers['if-none-match'] === etag) {
      fileRequests.push(`${req.url} 304`);
      res.writeHead(304, { etag }).end();
    } else if (req.url === '/dl/tool.sh') {
      fileRequests.push(`${req.url} 200`);
      res.writeHead(200, { etag }).end('echo from-http\n');
    } else res.writeHead(404).end('no');
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  filesBase = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
});

after(async () => {
  await git?.stop();
  await new Promise<void>((r) => (files ? files.close(() => r()) : r()));
  await rm(root, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

describe('--build-context', () => {
  test('a directory: FROM, COPY --from and RUN --mount from= read it; a change rebuilds', async () => {
    const lib = join(work, 'libdir');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a.txt'), 'one\n');
    await writeFile(join(lib, 'secret.txt'), 'ignored\n');
    await writeFile(join(lib, '.dockerignore'), 'secret.txt\n');
    const dir = await context(
      'dirctx',
      `FROM libctx AS files
FROM ${env.busybox}
COPY --from=libctx a.txt /copied.txt
COPY --from=files / /fromstage/
RUN --mount=from=libctx,target=/m cat /m/a.txt > /mounted.txt
CMD ["sh", "-c", "cat /copied.txt /mounted.txt; ls /fromstage | tr '\\\\n' ' '"]
`,
    );
    const flag = ['--build-context', `libctx=${lib}`];
    assert.equal(await buildRun(dir, 'nc:dir1', flag), 'one\none\na.txt ');
    await writeFile(join(lib, 'a.txt'), 'two\n');
    assert.equal(await buildRun(dir, 'nc:dir2', flag), 'two\ntwo\na.txt ');
    // Without the context, `libctx` is an image that does not exist: the flag really changed it.
    const without = await polyarch(['build', '-q', dir]);
    assert.equal(without.status, 1);
  });

  test('a context replaces a stage of its name and FROM alpine (docker-image://, per platform)', async () => {
    const lib = join(work, 'replacement');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'x.txt'), 'replaced\n');
    const dir = await context(
      'stagectx',
      `FROM ${env.busybox} AS base
RUN exit 3
FROM alpine
COPY --from=base x.txt /x.txt
CMD ["sh", "-c", "cat /x.txt; uname -m"]
`,
    );
    const flags = [
      '--build-context',
      `base=${lib}`,
      '--build-context',
      `alpine=docker-image://${env.busybox}`,
    ];
    assert.equal(await buildRun(dir, 'nc:stage-amd64', flags, 'linux/amd64'), 'replaced\nx86_64\n');
    assert.equal(await buildRun(dir, 'nc:stage-arm64', flags, 'linux/arm64'), 'replaced\naarch64\n');
    // The stage itself (RUN exit 3) fails without the context.
    const without = await polyarch([
      'build',
      '-q',
      '--build-context',
      `alpine=docker-image://${env.busybox}`,
      dir,
    ]);
    assert.equal(without.status, 1);
    assert.match(without.stderr, /exit code: 3/);
    // The full name of the image is the same context name (docker.io/library/alpine:latest = alpine).
    const full = await context('fullname', 'FROM docker.io/library/alpine:latest\nCMD ["echo", "full"]\n');
    assert.equal(
      await buildRun(full, 'nc:full', ['--build-context', `alpine=docker-image://${env.busybox}`]),
      'full\n',
    );
  });

  test('an OCI layout by tag (its config comes along); a missing tag names the layout', async () => {
    const dir = await context('layoutctx', 'FROM base\nRUN echo "$PATH" > /p\nCMD ["cat", "/p"]\n');
    const out = await buildRun(dir, 'nc:layout', [
      '--build-context',
      `base=oci-layout://${env.busyboxLayout}:busybox`,
    ]);
    assert.match(out, /\/bin/);
    const bad = await polyarch([
      'build',
      '-q',
      '--build-context',
      `base=oci-layout://${env.busyboxLayout}:nope`,
      dir,
    ]);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, new RegExp(`OCI layout ${env.busyboxLayout} has no image tagged "nope"`));
  });

  test('a git repository and an http file; a warm rebuild fetches nothing', async () => {
    const commit = git.git('lib', 'rev-parse', 'HEAD').trim();
    const dir = await context(
      'remotectx',
      `FROM ${env.busybox}
COPY --from=src lib.txt /lib.txt
COPY --from=sub inner.txt /inner.txt
COPY --from=tool tool.sh /tool.sh
CMD ["sh", "-c", "cat /lib.txt /inner.txt; sh /tool.sh"]
`,
    );
    const flags = [
      '--build-context',
      `src=${git.base}/lib.git#${commit}`,
      '--build-context',
      `sub=${git.base}/lib.git#main:sub`,
      '--build-context',
      `tool=${filesBase}/dl/tool.sh`,
    ];
    assert.equal(await buildRun(dir, 'nc:remote1', flags), 'from git\ninner\nfrom-http\n');
    const gitBefore = git.requests.length;
    const filesBefore = fileRequests.length;
    const rebuilt = await ok(polyarch(['build', '--progress', 'plain', ...flags, dir]));
    // Every step is a cache hit: FROM and the three COPYs run nothing.
    assert.equal(rebuilt.stderr.match(/^#\d+ CACHED$/gm)?.length, 4, rebuilt.stderr);
    const warm = git.requests.slice(gitBefore);
    // The commit needs no request; the branch one ls-remote, no fetch of objects.
    assert.ok(warm.length <= 2, warm.join(', '));
    assert.ok(
      warm.every((r) => /info\/refs|git-upload-pack/.test(r)),
      warm.join(', '),
    );
    // The http file is asked for with its ETag: 304, nothing downloaded.
    assert.deepEqual(fileRequests.slice(filesBefore), ['/dl/tool.sh 304']);
    const fetches = warm.filter((r) => r.startsWith('POST')).length;
    assert.ok(fetches <= 1, `at most one ls-remote POST: ${warm.join(', ')}`);
  });

  test('bad values: an unknown scheme, a missing directory, an unknown ref, an unused name', async () => {
    const dir = await context('badctx', `FROM ${env.busybox}\nCOPY --from=x a /a\n`);
    const scheme = await polyarch(['build', '-q', '--build-context', 'x=bogus://h/y', dir]);
    assert.equal(scheme.status, 2);
    assert.equal(
      scheme.stderr,
      'ERROR: invalid --build-context x=bogus://h/y: unsupported context source "bogus://" (expected a directory, docker-image://, oci-layout://, a git URL or an http(s) URL)\n',
    );
    const noEq = await polyarch(['build', '-q', '--build-context', 'novalue', dir]);
    assert.equal(noEq.status, 2);
    const missing = await polyarch(['build', '-q', '--build-context', `x=${join(work, 'absent')}`, dir]);
    assert.equal(missing.status, 1);
    assert.match(
      missing.stderr,
      /^ERROR: failed to get build context x=.*absent: path ".*absent" not found\n$/,
    );
    const url = `${git.base}/lib.git`.replace('http://', 'http://user:hunter2@');
    const ref = await polyarch(['build', '-q', '--build-context', `x=${url}#nope`, dir]);
    assert.equal(ref.status, 1);
    assert.match(
      ref.stderr,
      /failed to get build context x=http:\/\/user:xxxxx@127\.0\.0\.1:\d+\/lib\.git#nope: /,
    );
    assert.doesNotMatch(ref.stderr, /hunter2/);
    const sub = await polyarch(['build', '-q', '--build-context', `x=${git.base}/lib.git#main:nope`, dir]);
    assert.equal(sub.status, 1);
    assert.match(sub.stderr, /failed to get build context x=.*lib\.git#main:nope: path "nope" not found/);
    const host = await polyarch([
      'build',
      '-q',
      '--build-context',
      'x=https://u:hunter2@127.0.0.1:1/r.git',
      dir,
    ]);
    assert.equal(host.status, 1);
    assert.match(
      host.stderr,
      /^ERROR: failed to get build context x=https:\/\/u:xxxxx@127\.0\.0\.1:1\/r\.git: .+\n$/,
    );
    assert.doesNotMatch(host.stderr, /hunter2/);
    const http = await polyarch(['build', '-q', '--build-context', `x=${filesBase}/absent.txt`, dir]);
    assert.equal(http.status, 1);
    assert.match(
      http.stderr,
      /failed to get build context x=http:\/\/127\.0\.0\.1:\d+\/absent\.txt: HTTP 404/,
    );
    const lib = join(work, 'libdir2');
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, 'a'), 'a\n');
    const unused = await ok(
      polyarch(['build', '-q', '--build-context', `x=${lib}`, '--build-context', `y=${lib}`, dir]),
    );
    assert.match(unused.stderr, /WARNING: --build-context y=.*: the build does not use "y"/);
  });
});
