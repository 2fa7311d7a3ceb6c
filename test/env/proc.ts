/**
 * Small process and port helpers for the test environment (test/env/*).
 *
 *   const out = await run('skopeo', ['inspect', '--raw', 'oci:/x:busybox']);
 *   const port = await freePort();
 *
 * `run` rejects with the command line and its stderr when the command fails, so a broken
 * environment explains itself instead of failing a test three steps later.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

export interface RunOptions {
  /** Bytes written to the command's stdin (default: nothing, stdin closed). */
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to completion and resolves with its stdout (as a Buffer). */
export function runBuffer(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`, { cause: e })));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(Buffer.concat(out));
      const why = signal ? `killed by ${signal}` : `exit code ${code}`;
      const stderr = Buffer.concat(err).toString('utf8').trim();
      reject(new Error(`${[cmd, ...args].join(' ')}: ${why}${stderr ? `: ${stderr}` : ''}`));
    });
    child.stdin.on('error', () => {}); // the command may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command to completion and resolves with its stdout as UTF-8 text. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return (await runBuffer(cmd, args, opts)).toString('utf8');
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it). Another process
 * may take it before the caller binds it; callers that spawn servers retry on that.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
