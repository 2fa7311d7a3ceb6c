/**
 * `exec` in a running container: `runc exec`, which takes the container's process settings
 * (environment, user, working directory) and adds ours. Resolves with the command's exit code;
 * 126/127 when it cannot be executed / is not found, as docker.
 */
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { PolyarchError } from '../util/errors.js';
import { findContainer, reconcile } from './containers.js';

const RUNC = process.env.POLYARCH_RUNC || 'runc';

export interface ExecOptions {
  interactive?: boolean;
  tty?: boolean;
  env?: string[];
  workdir?: string;
  /** Default: this process's stdout/stderr (inherited). */
  out?: (b: Buffer) => void;
  err?: (b: Buffer) => void;
}

export async function execInContainer(
  root: string,
  ref: string,
  command: string[],
  opts: ExecOptions = {},
): Promise<number> {
  const rec = await reconcile(root, await findContainer(root, ref));
  if (rec.State.Status !== 'running')
    throw new PolyarchError('CONFLICT', `container ${rec.Id} is not running`);
  const args = ['--root', join(resolve(root), 'runc'), 'exec'];
  if (opts.tty) args.push('--tty');
  for (const e of opts.env ?? []) args.push('--env', e);
  if (opts.workdir) args.push('--cwd', opts.workdir);
  args.push(rec.Id, ...command);
  const child = spawn(RUNC, args, {
    stdio: [opts.interactive || opts.tty ? 'inherit' : 'ignore', opts.out ? 'pipe' : 'inherit', 'pipe'],
  });
  if (opts.out) child.stdout!.on('data', opts.out);
  let errText = '';
  child.stderr!.on('data', (b: Buffer) => {
    errText += b.toString();
    // runc's own failure is one JSON-ish line; anything else is the command's stderr.
    if (!/level=error|"level":"error"|exec failed/.test(errText)) {
      (opts.err ?? ((x: Buffer) => process.stderr.write(x)))(b);
      errText = '';
    }
  });
  const code = await new Promise<number>((res, rej) => {
    child.on('error', (e) => rej(new PolyarchError('IO', `starting ${RUNC}: ${e.message}`)));
    child.on('close', (c, sig) => res(c ?? (sig === 'SIGKILL' ? 137 : 128 + 15)));
  });
  if (errText && /exec failed|level=error/.test(errText)) {
    // runc logs `time="…" level=error msg="exec failed: unable to start container process: exec: …"`.
    const msg = /msg="((?:[^"\\]|\\.)*)"/.exec(errText)?.[1]?.replace(/\\(.)/g, '$1') ?? errText.trim();
    const why = msg.replace(/^exec failed: /, '').replace(/^unable to start container process: /, '');
    const exitCode = /not found|no such file/.test(why) ? 127 : /permission denied/.test(why) ? 126 : 126;
    throw new PolyarchError(
      'START_FAILED',
      `container ${rec.Id.slice(0, 12)}: cannot exec ${command[0]}: ${why}`,
      { exitCode },
    );
  }
  return code;
}
