/**
 * `polyarch exec [-i] [-t] [-e K=V] [-w DIR] CONTAINER COMMAND [ARG...]`: run a command in a
 * running container (`runc exec`, inheriting the container's environment, user and working
 * directory); exits with the command's code, as `docker exec`.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';

const collect = (value: string, previous: string[]) => [...previous, value];

export function register(program: Command, ctx: CliContext): void {
  program
    .command('exec')
    .description('Execute a command in a running container')
    .argument('<container>', 'Container name or ID')
    .argument('<command...>', 'Command and arguments')
    .option('-i, --interactive', 'Keep STDIN open')
    .option('-t, --tty', 'Allocate a pseudo-TTY (when stdin is a terminal)')
    .option('-e, --env <K=V>', 'Set environment variables (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'Working directory inside the container')
    .passThroughOptions()
    .action(
      async (
        ref: string,
        command: string[],
        flags: { interactive?: boolean; tty?: boolean; env: string[]; workdir?: string },
      ) => {
        const { stateRoot } = await import('../../content/paths.js');
        const { execInContainer } = await import('../../exec/exec.js');
        const real = ctx.out === process.stdout && ctx.err === process.stderr;
        const tty = Boolean(flags.tty && real && process.stdin.isTTY);
        if (flags.tty && !tty) ctx.err.write('WARNING: -t ignored: stdin is not a terminal\n');
        ctx.exitCode = await execInContainer(stateRoot(ctx.env), ref, command, {
          interactive: Boolean(flags.interactive),
          tty,
          env: flags.env.flatMap((kv) =>
            kv.includes('=') ? [kv] : ctx.env[kv] === undefined ? [] : [`${kv}=${ctx.env[kv]}`],
          ),
          ...(flags.workdir ? { workdir: flags.workdir } : {}),
          ...(real
            ? {}
            : {
                out: (b: Buffer) => ctx.out.write(b.toString()),
                err: (b: Buffer) => ctx.err.write(b.toString()),
              }),
        });
      },
    );
}
