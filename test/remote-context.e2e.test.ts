/**
 * Remote build contexts through ./bin/polyarch: git over HTTP (a real `git http-backend`,
 * test/env/git-server.ts) with a branch, a tag, a commit and a `:subdir`, a private repository,
 * tarball and Dockerfile URLs; each result run per platform; warm rebuilds fetch nothing;
 * bad input is one clear error with credentials masked.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliRun, cliOk, runCli } from './env/cli.js';
import { testEnv } from './env/index.js';
import { type GitServer, startGitServer } from './env/git-server.js';

const env = testEnv();
let root: string;
let work: string;
let git: GitServer;
let files: Server;
let filesBase: string;

type Run = CliRun;

/** Runs the CLI without blocking this process: the git and file servers live in it. */
function polyarch(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  return runCli(args, {
    cwd: work,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config, ...extraEnv },
  });
}

const ok = cliOk;

const dockerfile = `FROM ${env.busybox}\nCOPY . /src\nRUN cat /src/version > /v; if [ -d /src/.git ]; then echo git >> /v; fi\nCMD ["cat", "/v"]\n`;

/** Builds `context` for two platforms as `tag` and returns what each variant prints. */
async function buildAndRun(context: string, tag: string, extra: string[] = []): Promise<string[]> {
  await ok(
    polyarch([
      'build',
      '--progress',
      'plain',
      '--platform',
      'linux/amd64,linux/arm64',
      '-t',
      tag,
      ...extra,
      context,
    ]),
  );
  const out: string[] = [];
  for (const p of ['linux/amd64', 'linux/arm64'])
    out.push((await ok(polyarch(['run', '--rm', '--pull', 'never', '--platform', p, tag]))).stdout);
  return out;
}

let first: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-remote-'));
  work = await mkdtemp(join(tmpdir(), 'polyarch-remote-cwd-'));
  git = await startGitServer();
  await git.repo('app', {
    Dockerfile: dockerfile,
    version: 'one\n',
    'sub/Dockerfile': dockerfile,
    'sub/version': 'sub\n',
  });
  first = git.git('app', 'rev-parse', 'HEAD').trim();
  git.git('app', 'tag', 'v1');
  await writeFile(join(git.git('app', 'rev-parse', '--show-toplevel').trim(), 'version'), 'two\n');
  git.git('app', 'commit', '-q', '-am', 'second');
  git.git('app', 'checkout', '-q', '-b', 'feature');
  await writeFile(join(git.git('app', 'rev-parse', '--show-toplevel').trim(), 'version'), 'feature\n');
  git.git('app', 'commit', '-q', '-am', 'feature');
  git.git('app', 'push', '-q', 'origin', 'main', 'feature', 'v1');
  await git.repo('private/secret', { Dockerfile: dockerfile, version: 'private\n' });

  // Tarball and lone-Dockerfile URLs.
  const ctx = join(work, 'tarctx');
  execFileSync('mkdir', ['-p', ctx]);
  await writeFile(join(ctx, 'Dockerfile'), dockerfile);
  await writeFile(join(ctx, 'version'), 'tarball\n');
  const tarball = execFileSync('tar', ['-C', ctx, '-czf', '-', '.']);
  const lone = `FROM ${env.busybox}\nRUN echo lone > /v\nCMD ["cat", "/v"]\n`;
  files = createServer((req, res) => {
    if (req.url === '/ctx.tar.gz') res.writeHead(200, { 'content-type': 'application/gzip' }).end(tarball);
    else if (req.url === '/Dockerfile') res.writeHead(200, { 'content-type': 'text/plain' }).end(lone);
    else if (req.url === '/binary') res.writeHead(200).end(Buffer.from([0, 1, 2, 3, 0, 5]));
    else res.writeHead(404).end('no');
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

describe('git contexts over http', async () => {
  test('a branch, a tag, a commit and a subdir, each built for two platforms and run', async () => {
    const url = `${git.base}/app.git`;
    assert.deepEqual(await buildAndRun(`${url}#main`, 'git:main'), ['two\n', 'two\n']);
    assert.deepEqual(await buildAndRun(`${url}#feature`, 'git:feature'), ['feature\n', 'feature\n']);
    assert.deepEqual(await buildAndRun(`${url}#v1`, 'git:tag'), ['one\n', 'one\n']);
    assert.deepEqual(await buildAndRun(`${url}#${first}`, 'git:commit'), ['one\n', 'one\n']);
    assert.deepEqual(await buildAndRun(`${url}#main:sub`, 'git:sub'), ['sub\n', 'sub\n']);
    // No fragment: the remote's HEAD (main).
    assert.deepEqual(await buildAndRun(url, 'git:head'), ['two\n', 'two\n']);
  });

  test('a rebuild of the same commit fetches nothing', async () => {
    const url = `${git.base}/app.git`;
    await ok(polyarch(['build', '-q', '-t', 'warm:1', `${url}#${first}`]));
    const before = git.requests.length;
    await ok(polyarch(['build', '-q', '-t', 'warm:2', `${url}#${first}`]));
    assert.equal(git.requests.length, before, 'a commit already fetched needs no request at all');
    // A branch is looked up (ls-remote) but its objects are not fetched again.
    await ok(polyarch(['build', '-q', '-t', 'warm:3', `${url}#main`]));
    const mark = git.requests.length;
    await ok(polyarch(['build', '-q', '-t', 'warm:4', `${url}#main`]));
    const warm = git.requests.slice(mark);
    assert.ok(warm.length <= 2, warm.join(', '));
    assert.ok(
      warm.every((r) => /info\/refs|git-upload-pack/.test(r)),
      warm.join(', '),
    );
  });

  test('BUILDKIT_CONTEXT_KEEP_GIT_DIR=1 keeps .git; by default it is left out', async () => {
    const url = `${git.base}/app.git#main`;
    assert.deepEqual(await buildAndRun(url, 'keep:1', ['--build-arg', 'BUILDKIT_CONTEXT_KEEP_GIT_DIR=1']), [
      'two\ngit\n',
      'two\ngit\n',
    ]);
  });

  test('a private repository: credentials from the URL or a GIT_AUTH_HEADER secret', async () => {
    const url = `${git.base}/private/secret.git`;
    const denied = await polyarch(['build', '-q', url]);
    assert.equal(denied.status, 1);
    assert.match(
      denied.stderr,
      /^ERROR: unable to prepare context: reading http:\/\/127\.0\.0\.1:\d+\/private\/secret\.git: /,
    );
    const withUser = url.replace('http://', `http://${git.user}:${git.password}@`);
    const id = (await ok(polyarch(['build', '-q', '-t', 'priv:1', withUser]))).stdout.trim();
    assert.equal((await ok(polyarch(['run', '--rm', id]))).stdout, 'private\n');
    const header = `Basic ${Buffer.from(`${git.user}:${git.password}`).toString('base64')}`;
    const secretFile = join(work, 'auth-header');
    await writeFile(secretFile, header);
    await ok(
      polyarch([
        'build',
        '-q',
        '--secret',
        `id=GIT_AUTH_HEADER,src=${secretFile}`,
        '-t',
        'priv:2',
        `${url}#main`,
      ]),
    );
    // A wrong password: the error names the URL with the password masked.
    const wrong = await polyarch([
      'build',
      '-q',
      url.replace('http://', `http://${git.user}:not-${git.password}@`),
    ]);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, new RegExp(`http://${git.user}:xxxxx@127\\.0\\.0\\.1`));
    assert.doesNotMatch(wrong.stderr + wrong.stdout, new RegExp(git.password));
    // The secret's value is in no log either.
    assert.doesNotMatch(JSON.stringify(spawnSync('grep', ['-rl', git.password, root]).stdout), /\//);
  });

  test('bad input: an unknown ref, an unreachable host, a missing subdir', async () => {
    const url = `${git.base}/app.git`;
    const ref = await polyarch(['build', `${url}#nope`]);
    assert.equal(ref.status, 1);
    assert.equal(ref.stderr, `ERROR: unable to prepare context: git ref "nope" not found in ${url}\n`);
    const host = await polyarch(['build', 'http://127.0.0.1:1/x.git#main']);
    assert.equal(host.status, 1);
    assert.match(
      host.stderr,
      /^ERROR: unable to prepare context: reading http:\/\/127\.0\.0\.1:1\/x\.git#main: .+\n$/,
    );
    const sub = await polyarch(['build', `${url}#main:nope`]);
    assert.equal(sub.status, 1);
    assert.match(
      sub.stderr,
      new RegExp(`^ERROR: unable to prepare context: path "nope" not found in ${url}#main:nope`),
    );
    const outside = await polyarch(['build', `${url}#main:../..`]);
    assert.equal(outside.status, 2);
  });
});

describe('URL contexts', async () => {
  test('a tarball URL is the context; a Dockerfile URL builds with an empty context', async () => {
    assert.deepEqual(await buildAndRun(`${filesBase}/ctx.tar.gz`, 'url:tar'), ['tarball\n', 'tarball\n']);
    assert.deepEqual(await buildAndRun(`${filesBase}/Dockerfile`, 'url:df'), ['lone\n', 'lone\n']);
  });

  test('bad input: a 404 and a file that is neither an archive nor a Dockerfile', async () => {
    const missing = await polyarch(['build', `${filesBase}/absent.tar`]);
    assert.equal(missing.status, 1);
    assert.equal(
      missing.stderr,
      `ERROR: unable to prepare context: fetching ${filesBase}/absent.tar: HTTP 404 Not Found\n`,
    );
    const binary = await polyarch(['build', `${filesBase}/binary`]);
    assert.equal(binary.status, 1);
    assert.match(binary.stderr, /not a tar archive \(plain, gzip or zstd\) nor a Dockerfile\n$/);
  });
});
