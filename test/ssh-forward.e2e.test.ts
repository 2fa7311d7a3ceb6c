/**
 * `build --ssh` into `RUN --mount=type=ssh` through ./bin/polyarch: a step lists the keys of the
 * forwarded agent with the host's own ssh-add (copied into the image with its libraries), from
 * key files (an agent polyarch starts) and from the caller's SSH_AUTH_SOCK; a missing agent is
 * an error when required, a warning otherwise; no key or socket path reaches a layer.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { testEnv } from './env/index.js';
import { copyHostSshAdd, sshAddSkipReason } from './env/sshbin.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const env = testEnv();
const work = mkdtempSync(join(tmpdir(), 'polyarch-ssh-'));
const root = join(work, 'root');
const ctx = join(work, 'ctx');
const key = join(work, 'id_ed25519');
let fingerprint = '';
let agent: ReturnType<typeof spawn> | undefined;
const agentSock = join(work, 'agent.sock');
const hasSsh = sshAddSkipReason() === undefined;

function polyarch(args: string[], extraEnv: Record<string, string> = {}) {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    cwd: ctx,
    timeout: 180_000,
    env: { ...process.env, SSH_AUTH_SOCK: '', POLYARCH_ROOT: root, POLYARCH_CONFIG: env.config, ...extraEnv },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  if (!hasSsh) return;
  mkdirSync(ctx, { recursive: true });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'polyarch-test', '-f', key]);
  fingerprint = execFileSync('ssh-keygen', ['-lf', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
  const sshAdd = copyHostSshAdd(join(ctx, 'sshbin'));
  writeFileSync(
    join(ctx, 'Dockerfile'),
    `FROM ${env.busybox}\nCOPY sshbin /sshbin\n` +
      `RUN --mount=type=ssh echo "$SSH_AUTH_SOCK" > /sock && ${sshAdd} -l > /keys || echo "ssh-add failed: $?" > /keys\n`,
  );
  writeFileSync(
    join(ctx, 'required.Dockerfile'),
    `FROM ${env.busybox}\nRUN --mount=type=ssh,required=true true\n`,
  );
  writeFileSync(
    join(ctx, 'optional.Dockerfile'),
    `FROM ${env.busybox}\nRUN --mount=type=ssh,id=other echo ran > /ran\n`,
  );
});

after(() => {
  agent?.kill();
  rmSync(work, { recursive: true, force: true });
});

/** The image's files as one text: every layer of the OCI export, decompressed. */
function layersText(dest: string): string {
  const out = join(work, `x-${Math.random().toString(16).slice(2)}`);
  mkdirSync(out);
  execFileSync('tar', ['-xf', dest, '-C', out]);
  const blobs = join(out, 'blobs', 'sha256');
  let text = '';
  for (const b of readdirSync(blobs)) {
    const data = readFileSync(join(blobs, b));
    text += (data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : data).toString('latin1');
  }
  return text;
}

/** Builds `tag` with `args`, then returns a file of it (through `run`) and its layers' text. */
function buildImage(tag: string, args: string[], extraEnv: Record<string, string> = {}) {
  const r = polyarch(['build', '--no-cache', '-t', tag, ...args, '.'], extraEnv);
  assert.equal(r.status, 0, r.stderr);
  const cat = (file: string) => {
    const c = polyarch(['run', '--rm', tag, 'cat', file]);
    assert.equal(c.status, 0, c.stderr);
    return c.stdout;
  };
  const archive = join(work, `${tag.replace(/\W/g, '-')}.tar`);
  const saved = polyarch(['save', '-o', archive, tag]);
  assert.equal(saved.status, 0, saved.stderr);
  return { cat, text: layersText(archive) };
}

describe('RUN --mount=type=ssh', {
  skip: hasSsh ? false : 'needs openssh-client (ssh-add) on an amd64 host',
}, () => {
  test('key files: polyarch starts an agent with them, and the step sees its keys', () => {
    const { cat, text } = buildImage('ssh:keys', ['--ssh', `default=${key}`]);
    assert.match(
      cat('/keys'),
      new RegExp(`^256 ${fingerprint.replace(/[+/]/g, '\\$&')} polyarch-test \\(ED25519\\)\n`),
    );
    assert.equal(cat('/sock'), '/run/buildkit/ssh_agent.0\n');
    // The private key and the host-side paths are in no layer, and in no file of the state root.
    const secret = readFileSync(key, 'utf8').split('\n')[1]!;
    assert.ok(!text.includes(secret), 'the private key is not in the image');
    assert.ok(!text.includes(work), 'no host path is in the image');
    assert.equal(spawnSync('grep', ['-rlF', secret, root]).stdout.length, 0, 'the key is in no state file');
  });

  test("the caller's agent (SSH_AUTH_SOCK) with --ssh default", async () => {
    agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
    for (let i = 0; i < 100 && spawnSync('test', ['-S', agentSock]).status !== 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    execFileSync('ssh-add', ['-q', key], { env: { ...process.env, SSH_AUTH_SOCK: agentSock } });
    const { cat, text } = buildImage('ssh:agent', ['--ssh', 'default'], { SSH_AUTH_SOCK: agentSock });
    assert.match(cat('/keys'), /^256 \S+ polyarch-test \(ED25519\)\n/);
    assert.ok(!text.includes(agentSock), "the agent's path is not in the image");
  });

  test('no agent: required=true fails, otherwise a warning and the step runs', () => {
    const req = polyarch(['build', '-f', 'required.Dockerfile', '.']);
    assert.equal(req.status, 1);
    assert.match(req.stderr, /no SSH key "default" forwarded from the client \(use --ssh default\)/);
    const opt = polyarch(['build', '--progress', 'plain', '-f', 'optional.Dockerfile', '.']);
    assert.equal(opt.status, 0, opt.stderr);
    assert.match(opt.stderr, /WARNING: RUN --mount=type=ssh: no SSH agent forwarded for id "other"/);
    const noAgent = polyarch(['build', '--ssh', 'default', '-f', 'required.Dockerfile', '.']);
    assert.equal(noAgent.status, 1);
    assert.match(noAgent.stderr, /--ssh default: no SSH agent: SSH_AUTH_SOCK is not set/);
    const bad = polyarch(['build', '--ssh', 'bad id', '.']);
    assert.equal(bad.status, 2);
  });
});
