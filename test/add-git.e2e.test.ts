/**
 * `ADD <git URL> <dest>` through ./bin/polyarch against a real `git http-backend`
 * (test/env/git-server.ts): a branch, a subdirectory, `--keep-git-dir`, `--checksum=<commit>`,
 * a warm rebuild that asks the server nothing, and the errors (unknown ref, wrong checksum for
 * a repository and for an http file) naming the URL with its password masked.
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
let commit: string;

type Run = CliRun;

/** Runs the CLI without blocking this process: the git server lives in it. */
function polyarch(args: string[]): Promise<Run> {
  return runCli(args, {
    cwd: work,
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config },
  });
}

const ok = cliOk;

let n = 0;
/** Builds `dockerfile` (empty context) and runs the image: what it prints. */
async function buildRun(dockerfile: string, extra: string[] = []): Promise<string> {
  const dir = join(work, `ctx${++n}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  const tag = `addgit:${n}`;
  await ok(polyarch(['build', '-q', '-t', tag, ...extra, dir]));
  return (await ok(polyarch(['run', '--rm', '--pull', 'never', tag]))).stdout;
}

async function buildFails(dockerfile: string): Promise<Run> {
  const dir = join(work, `ctx${++n}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  const r = await polyarch(['build', '-q', dir]);
  assert.equal(r.status, 1, r.stderr);
  return r;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'polyarch-addgit-'));
  work = await mkdtemp(join(tmpdir(), 'polyarch-addgit-cwd-'));
  git = await startGitServer();
  await git.repo('tool', { README: 'tool readme\n', 'bin/run.sh': 'echo running\n' });
  git.git('tool', 'push', '-q', 'origin', 'main');
  commit = git.git('tool', 'rev-parse', 'HEAD').trim();
  files = createServer((req, res) => {
    if (req.url === '/data.txt') res.writeHead(200).end('data\n');
    else res.writeHead(404).end('no');
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  filesBase = `127.0.0.1:${(files.address() as AddressInfo).port}`;
});

after(async () => {
  await git?.stop();
  await new Promise<void>((r) => (files ? files.close(() => r()) : r()));
  await rm(root, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

describe('ADD <git URL>', () => {
  test('a branch and a subdirectory; .git only with --keep-git-dir', async () => {
    const url = `${git.base}/tool.git`;
    assert.equal(
      await buildRun(
        `FROM ${env.busybox}\nADD ${url}#main /src\nADD ${url}#main:bin /bin2\nCMD ["sh", "-c", "cat /src/README; sh /bin2/run.sh; ls -a /src | tr '\\\\n' ' '"]\n`,
      ),
      'tool readme\nrunning\n. .. README bin ',
    );
    assert.equal(
      await buildRun(
        `FROM ${env.busybox}\nADD --keep-git-dir=true ${url}#main /src\nCMD ["sh", "-c", "cat /src/.git/HEAD >/dev/null && echo has-git"]\n`,
      ),
      'has-git\n',
    );
  });

  test('--checksum pins the commit; a warm rebuild of a pinned commit asks the server nothing', async () => {
    const url = `${git.base}/tool.git`;
    const df = `FROM ${env.busybox}\nADD --checksum=${commit} ${url}#${commit} /src\nCMD ["cat", "/src/README"]\n`;
    assert.equal(await buildRun(df), 'tool readme\n');
    const before = git.requests.length;
    assert.equal(await buildRun(df), 'tool readme\n');
    assert.deepEqual(git.requests.slice(before), [], 'the commit is in the cache: no request at all');
    // A branch checked against its commit, and a short prefix of it.
    assert.equal(
      await buildRun(
        `FROM ${env.busybox}\nADD --checksum=${commit.slice(0, 12)} ${url}#main /src\nCMD ["cat", "/src/README"]\n`,
      ),
      'tool readme\n',
    );
  });

  test('errors name the URL, password masked: wrong checksum, unknown ref, http checksum', async () => {
    const url = `${git.base}/tool.git`.replace('http://', 'http://someone:s3cr3tpw@');
    const wrong = 'f'.repeat(40);
    const mismatch = await buildFails(`FROM ${env.busybox}\nADD --checksum=${wrong} ${url}#main /src\n`);
    assert.match(
      mismatch.stderr,
      new RegExp(
        `ADD http://someone:xxxxx@127\\.0\\.0\\.1:\\d+/tool\\.git#main: checksum mismatch: expected commit ${wrong}, got ${commit}`,
      ),
    );
    const ref = await buildFails(`FROM ${env.busybox}\nADD ${url}#nope /src\n`);
    assert.match(
      ref.stderr,
      /ADD http:\/\/someone:xxxxx@127\.0\.0\.1:\d+\/tool\.git#nope: git ref "nope" not found/,
    );
    const sum = `sha256:${'0'.repeat(64)}`;
    const http = await buildFails(
      `FROM ${env.busybox}\nADD --checksum=${sum} http://u:s3cr3tpw@${filesBase}/data.txt /d\n`,
    );
    assert.match(
      http.stderr,
      new RegExp(`ADD http://u:xxxxx@${filesBase}/data.txt: digest mismatch: expected ${sum}, got sha256:`),
    );
    // Only the Dockerfile excerpt (the user's own text) shows it; messages and step names do not.
    for (const r of [mismatch, ref, http])
      assert.doesNotMatch(r.stderr.split('\n-->')[0]!, /s3cr3tpw/, r.stderr);
  });
});
