/**
 * The host's `ssh-add` and every library it loads, copied into `dir` so a step can run it
 * inside a busybox image through its own loader (amd64 hosts only): tests of `--ssh`
 * forwarding list the forwarded agent's keys with it.
 *
 *   const run = copyHostSshAdd(join(ctx, 'sshbin'));   // then `COPY sshbin /sshbin` and
 *   `RUN --mount=type=ssh ${run} -l > /keys`
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';

/** Why the host's ssh-add cannot be used in an image here, or undefined when it can. */
export function sshAddSkipReason(): string | undefined {
  if (process.arch !== 'x64') return 'the copied ssh-add runs on amd64 hosts only';
  if (spawnSync('ssh-add', ['--help']).error) return 'ssh-add (openssh-client) is not installed';
  return undefined;
}

/** Copies ssh-add and its libraries into `dir`; returns the command that runs it from `/sshbin`. */
export function copyHostSshAdd(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const sshAdd = execFileSync('sh', ['-c', 'command -v ssh-add'], { encoding: 'utf8' }).trim();
  copyFileSync(sshAdd, join(dir, 'ssh-add'));
  for (const line of execFileSync('ldd', [sshAdd], { encoding: 'utf8' }).split('\n')) {
    const lib = /(\/\S+) \(0x/.exec(line)?.[1];
    if (lib) copyFileSync(lib, join(dir, basename(lib)));
  }
  const loader = readdirSync(dir).find((f) => f.startsWith('ld-linux'))!;
  return `/sshbin/${loader} --library-path /sshbin /sshbin/ssh-add`;
}
