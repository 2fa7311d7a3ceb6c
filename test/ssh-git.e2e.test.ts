/**
 * git over ssh through an agent, against a real sshd on 127.0.0.1 (test/env/buildkit.ts
 * startSshd) serving a private repository: the build context and a `--build-context` as
 * `ssh://root@127.0.0.1:PORT/…/repo.git#main` with `--ssh default` (the caller's agent, or an
 * agent polyarch starts for a key file), and a `RUN --mount=type=ssh` step running `ssh -T`
 * and `git clone` (the host's ssh and git, copied into the image with their libraries). No
 * request is accepted without the agent's key; the key and the agent's socket path are in no
 * layer, no file of the state root and no build output.
 *
 * RUN steps use the host's network by default (build --network default = host, as buildx's
 * default network on a local builder), so a step reaches the sshd on the host's loopback.
 * Host keys are checked for real: the test writes a known_hosts with the sshd's key, used by
 * the host-side git (GIT_SSH_COMMAND) and copied into the image for the step's ssh.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { type Sshd, sshdSkipReason, startSshd } from './env/buildkit.js';
import { type CliRun, cliOk, runCli } from './env/cli.js';
import { testEnv } from './env/index.js';

const env = testEnv();
const skip =
  process.arch !== 'x64'
    ? 'copies the host ssh and git into an amd64 image: needs an amd64 host'
    : (sshdSkipReason() ?? (spawnSync('ssh-agent', ['-h']).error ? 'no ssh-agent' : undefined));

let work: string;
let root: string;
let sshd: Sshd;
let agent: ReturnType<typeof spawn> | undefined;
let agentSock: string;
let key: string;
let knownHosts: string;
let url: string;
let gitEnv: Record<string, string>;

type Run = CliRun;

/** Runs the CLI without blocking this process (the agent is a child of it). */
function polyarch(args: string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<Run> {
  return runCli(args, {
    cwd,
    env: {
      ...process.env,
      POLYARCH_ROOT: root,
      POLYARCH_CONFIG: env.config,
      SSH_AUTH_SOCK: '',
      ...gitEnv,
      ...extraEnv,
    },
  });
}

const ok = cliOk;

/** Copies `programs` and every library they load into `dir`, each run through wrapper scripts. */
function copyPrograms(dir: string, programs: string[]): string {
  mkdirSync(dir, { recursive: true });
  let loader = '';
  for (const prog of programs) {
    const path = execFileSync('sh', ['-c', `command -v ${prog}`], { encoding: 'utf8' }).trim();
    copyFileSync(path, join(dir, `${prog}.real`));
    for (const line of execFileSync('ldd', [path], { encoding: 'utf8' }).split('\n')) {
      const lib = /(\/\S+) \(0x/.exec(line)?.[1];
      if (lib && !existsSync(join(dir, basename(lib)))) copyFileSync(lib, join(dir, basename(lib)));
    }
  }
  loader = readdirSync(dir).find((f) => f.startsWith('ld-linux'))!;
  for (const prog of programs)
    writeFileSync(
      join(dir, prog),
      `#!/bin/sh\nexec /sshbin/${loader} --library-path /sshbin /sshbin/${prog}.real "$@"\n`,
      { mode: 0o755 },
    );
  return loader;
}

/** Every layer of a saved image as one text, decompressed. */
function layersText(archive: string): string {
  const out = join(work, `x-${Math.random().toString(16).slice(2)}`);
  mkdirSync(out);
  execFileSync('tar', ['-xf', archive, '-C', out]);
  const blobs = join(out, 'blobs', 'sha256');
  let text = '';
  for (const b of readdirSync(blobs)) {
    const data = readFileSync(join(blobs, b));
    text += (data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : data).toString('latin1');
  }
  return text;
}

before(async () => {
  if (skip) return;
  work = await mkdtemp(join(tmpdir(), 'polyarch-sshgit-'));
  root = join(work, 'root');
  sshd = await startSshd(join(work, 'sshd'), { buildkit: false });
  key = join(work, 'sshd', 'client_key');
  knownHosts = join(work, 'known_hosts');
  const hostKey = readFileSync(join(work, 'sshd', 'host_key.pub'), 'utf8')
    .split(' ')
    .slice(0, 2)
    .join(' ');
  writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${hostKey}\n`);
  gitEnv = {
    GIT_SSH_COMMAND: `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=${knownHosts}`,
  };
  // The private repository: a bare repo on the sshd's host, one commit on main.
  const bare = join(work, 'srv', 'repo.git');
  const tree = join(work, 'tree');
  const g = (cwd: string, ...args: string[]) =>
    execFileSync('git', args, {
      cwd,
      env: {
        ...process.env,
        GIT_AUTHOR_NAME: 't',
        GIT_AUTHOR_EMAIL: 't@t.invalid',
        GIT_COMMITTER_NAME: 't',
        GIT_COMMITTER_EMAIL: 't@t.invalid',
        GIT_CONFIG_NOSYSTEM: '1',
        HOME: work,
      },
    });
  mkdirSync(bare, { recursive: true });
  mkdirSync(tree);
  g(bare, 'init', '-q', '--bare', '-b', 'main');
  g(tree, 'init', '-q', '-b', 'main');
  writeFileSync(join(tree, 'private.txt'), 'private over ssh\n');
  writeFileSync(join(tree, 'Dockerfile'), `FROM ${env.busybox}\nCOPY private.txt /p\nCMD ["cat", "/p"]\n`);
  g(tree, 'add', '.');
  g(tree, 'commit', '-q', '-m', 'one');
  g(tree, 'push', '-q', bare, 'main');
  url = `ssh://root@127.0.0.1:${sshd.port}${bare}`;
  // The caller's agent, holding the only key the sshd accepts.
  agentSock = join(work, 'agent.sock');
  agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !existsSync(agentSock); i++) await new Promise((r) => setTimeout(r, 20));
  execFileSync('ssh-add', ['-q', key], { env: { ...process.env, SSH_AUTH_SOCK: agentSock } });
});

after(async () => {
  agent?.kill();
  await sshd?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('git over ssh through an agent', { skip: skip ?? false }, () => {
  test('the build context: --ssh default with the caller agent, or with a key file', async () => {
    const withAgent = await ok(
      polyarch(['build', '-q', '--ssh', 'default', '-t', 'sshgit:ctx', `${url}#main`], work, {
        SSH_AUTH_SOCK: agentSock,
      }),
    );
    assert.doesNotMatch(withAgent.stderr, new RegExp(agentSock));
    assert.equal((await ok(polyarch(['run', '--rm', 'sshgit:ctx'], work))).stdout, 'private over ssh\n');
    // A fresh state root: nothing cached, the key file's agent (started by polyarch) fetches it.
    const other = join(work, 'root2');
    await ok(
      polyarch(['build', '-q', '--ssh', `default=${key}`, `${url}#main`], work, { POLYARCH_ROOT: other }),
    );
    // The scp-like form (`git@host:path`): git hands it to ssh, which the test points at the
    // sshd's port and its root user (no `git` account is made on this machine).
    const scp = `git@127.0.0.1:${url.replace(/^ssh:\/\/root@127\.0\.0\.1:\d+/, '')}#main`;
    await ok(
      polyarch(['build', '-q', '--ssh', 'default', '-t', 'sshgit:scp', scp], work, {
        SSH_AUTH_SOCK: agentSock,
        POLYARCH_ROOT: join(work, 'root4'),
        GIT_SSH_COMMAND: `${gitEnv.GIT_SSH_COMMAND} -p ${sshd.port} -l root`,
      }),
    );
    // No agent: the sshd refuses; one clear error naming the URL.
    const denied = await polyarch(['build', '-q', `${url}#main`], work, {
      POLYARCH_ROOT: join(work, 'root3'),
    });
    assert.equal(denied.status, 1);
    assert.match(
      denied.stderr,
      new RegExp(`^ERROR: unable to prepare context: reading ${url.replace(/[.]/g, '\\.')}#main: .+\n$`),
    );
  });

  test('a named context, ADD of the ssh URL, and RUN --mount=type=ssh running ssh -T and git clone', async () => {
    const ctx = join(work, 'ctx');
    copyPrograms(join(ctx, 'sshbin'), ['ssh', 'git']);
    copyFileSync(knownHosts, join(ctx, 'known_hosts'));
    const sshOpts = '-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/known_hosts';
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM ${env.busybox}
COPY sshbin /sshbin
COPY known_hosts /known_hosts
COPY --from=src private.txt /from-context.txt
ADD ${url}#main /added
RUN --mount=type=ssh HOME=/tmp /sshbin/ssh -T ${sshOpts} -p ${sshd.port} root@127.0.0.1 echo hello-over-ssh > /ssh-out \\
 && HOME=/tmp GIT_EXEC_PATH=/sshbin GIT_SSH_COMMAND="/sshbin/ssh ${sshOpts}" /sshbin/git clone -q ${url} /cloned \\
 && rm -rf /cloned/.git
CMD ["cat", "/from-context.txt", "/added/private.txt", "/ssh-out", "/cloned/private.txt"]
`,
    );
    const built = await ok(
      polyarch(
        [
          'build',
          '--progress',
          'plain',
          '--ssh',
          'default',
          '--build-context',
          `src=${url}#main`,
          '-t',
          'sshgit:run',
          '.',
        ],
        ctx,
        { SSH_AUTH_SOCK: agentSock },
      ),
    );
    assert.equal(
      (await ok(polyarch(['run', '--rm', 'sshgit:run'], ctx))).stdout,
      'private over ssh\nprivate over ssh\nhello-over-ssh\nprivate over ssh\n',
    );
    // The key and the agent's socket path: in no layer, no state file, no output.
    const secret = readFileSync(key, 'utf8').split('\n')[1]!;
    const archive = join(work, 'run.tar');
    await ok(polyarch(['save', '-o', archive, 'sshgit:run'], ctx));
    const text = layersText(archive);
    assert.ok(text.includes('hello-over-ssh'), 'the layers were read');
    assert.ok(!text.includes(secret), 'the private key is in no layer');
    assert.ok(!text.includes(agentSock), "the agent's path is in no layer");
    for (const needle of [secret, agentSock])
      assert.equal(
        spawnSync('grep', ['-rlF', needle, root]).stdout.length,
        0,
        `${needle} is in no state file`,
      );
    assert.ok(!built.stderr.includes(agentSock) && !built.stderr.includes(secret), 'nor in the build output');
    // Without --ssh the step has no agent: the sshd refuses the clone and the step fails.
    const noAgent = await polyarch(
      ['build', '--no-cache', '-q', '--build-context', `src=${url}#main`, '.'],
      ctx,
      { SSH_AUTH_SOCK: agentSock },
    );
    assert.equal(noAgent.status, 1, noAgent.stderr);
  });
});
