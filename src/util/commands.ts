/**
 * Short system commands (mount, umount) run through one long-lived `/bin/sh` child instead of
 * a spawn each.
 *
 *   const out = await runShort('mount', ['-t', 'overlay', 'overlay', '-o', opts, target], { cwd });
 *   // resolves with the command's output (stdout and stderr together); rejects with a
 *   // CommandError carrying the exit status and that output
 *
 * Why: every spawn forks this process, and Node's page tables are large; a build runs dozens of
 * mount/umount calls and each fork cost the (busy) main thread several milliseconds. The shell
 * is small, so its forks are cheap, and the main thread only writes a line and reads a reply.
 *
 * Commands run one at a time, in call order. The shell ignores SIGINT/SIGTERM/SIGHUP (so a ^C
 * meant for polyarch does not kill it before the cleanup's unmounts) and exits when its stdin
 * closes, that is with this process; the commands it runs get default signal handling back.
 * It is unref'd while idle, so it never keeps the process alive. If it dies, pending
 * commands fail and the next one starts a new shell.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { PolyarchError } from './errors.js';

export class CommandError extends PolyarchError {
  readonly status: number;
  readonly output: string;
  constructor(command: string, status: number, output: string) {
    super('IO', `${command}: ${output.trim() || `exit status ${status}`}`);
    this.name = 'CommandError';
    this.status = status;
    this.output = output;
  }
}

/** A shell-quoted word. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

interface Pending {
  command: string;
  resolve: (out: string) => void;
  reject: (err: Error) => void;
}

class Shell {
  readonly #child: ChildProcessByStdio<Writable, Readable, null>;
  readonly #token = `__polyarch_${randomBytes(8).toString('hex')}_`;
  readonly #pending: Pending[] = [];
  #buf = '';
  dead = false;

  constructor() {
    this.#child = spawn('/bin/sh', [], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.#child.stdin.write("trap '' INT TERM HUP\n");
    this.#child.stdout.setEncoding('utf8');
    this.#child.stdout.on('data', (c: string) => this.#data(c));
    const fail = (why: string) => {
      this.dead = true;
      for (const p of this.#pending.splice(0))
        p.reject(new PolyarchError('IO', `${p.command}: command shell ${why}`));
    };
    this.#child.on('error', (err) => fail(`failed: ${err.message}`));
    this.#child.on('exit', (code, sig) => fail(`exited (${sig ?? code})`));
    this.#child.stdin.on('error', () => undefined); // reported by 'exit'
    this.#idle();
  }

  #idle(): void {
    this.#child.unref();
    (this.#child.stdout as unknown as { unref?: () => void }).unref?.();
    (this.#child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  #busy(): void {
    this.#child.ref();
    (this.#child.stdout as unknown as { ref?: () => void }).ref?.();
    (this.#child.stdin as unknown as { ref?: () => void }).ref?.();
  }

  #data(chunk: string): void {
    // Search only the new text (plus a token's length back): a long output stays linear.
    const from = Math.max(0, this.#buf.length - this.#token.length - 12);
    this.#buf += chunk;
    for (let scan = from; ; scan = 0) {
      const at = this.#buf.indexOf(this.#token, scan);
      if (at < 0) return;
      const end = this.#buf.indexOf('\n', at);
      if (end < 0) return;
      const status = Number(this.#buf.slice(at + this.#token.length, end));
      // The reply line starts on a line of its own (printf '\n…'): drop that newline.
      const output = this.#buf.slice(0, Math.max(0, at - 1));
      this.#buf = this.#buf.slice(end + 1);
      const p = this.#pending.shift();
      if (this.#pending.length === 0) this.#idle();
      if (!p) continue;
      if (status === 0) p.resolve(output);
      else p.reject(new CommandError(p.command, status, output));
    }
  }

  run(cmd: string, args: string[], opts: RunShortOptions): Promise<string> {
    const command = [cmd, ...args].join(' ');
    const cd = opts.cwd !== undefined ? `cd ${shellQuote(opts.cwd)} && ` : '';
    const line =
      // The command gets default signal handling back (the shell itself ignores them).
      `(trap - INT TERM HUP; ${cd}exec ${[cmd, ...args].map(shellQuote).join(' ')})` +
      ` </dev/null ${opts.discardStderr ? '2>/dev/null' : '2>&1'}; printf '\\n${this.#token}%d\\n' "$?"\n`;
    return new Promise((resolve, reject) => {
      if (this.dead) return reject(new PolyarchError('IO', `${command}: command shell is gone`));
      if (this.#pending.length === 0) this.#busy();
      this.#pending.push({ command, resolve, reject });
      this.#child.stdin.write(line);
    });
  }
}

let shell: Shell | undefined;

export interface RunShortOptions {
  /** Working directory. Default: this process's. */
  cwd?: string;
  /** Drop stderr instead of returning it with stdout. Default false. */
  discardStderr?: boolean;
}

/** Runs `cmd args` (found on PATH) through the shared shell; see the module header. */
export function runShort(cmd: string, args: string[], opts: RunShortOptions = {}): Promise<string> {
  if (!shell || shell.dead) shell = new Shell();
  return shell.run(cmd, args, opts);
}
