/**
 * Runs ./bin/polyarch without blocking the test process — for tests whose servers (the git
 * server, an ssh-agent) live in that process, where spawnSync would stall them.
 *
 *   const r = await runCli(['build', '.'], { cwd, env });   // { status, stdout, stderr }
 *   await cliOk(runCli([...], opts));                        // asserts exit 0, names stderr
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..'), 'bin', 'polyarch');

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: readonly string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<CliRun> {
  return new Promise((done, fail) => {
    const child = spawn(bin, [...args], { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000);
    child.on('error', fail);
    child.on('close', (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    });
  });
}

/** The run, once it exited 0 (else an assertion naming its stderr). */
export async function cliOk(run: CliRun | Promise<CliRun>): Promise<CliRun> {
  const r = await run;
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  return r;
}
