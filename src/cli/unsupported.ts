/**
 * Flags that docker and docker buildx have and polyarch does not (yet), per command. An unknown
 * option is normally answered with commander's "Did you mean …?", which for these points a
 * buildx user at the wrong flag (`--ssh` → `--push`, `--call` → `--pull`); for them the error
 * says what is true instead. Flags polyarch takes are never listed here.
 */
import type { Command } from 'commander';

const BUILD = [
  '--add-host',
  '--allow',
  '--cgroup-parent',
  '--detach',
  '--no-cache-filter',
  '--print',
  '--shm-size',
  '--ulimit',
  '--debug',
  '--invoke',
  '--root',
  '--server-config',
  '--compress',
  '--cpu-period',
  '--cpu-quota',
  '--cpu-shares',
  '--cpuset-cpus',
  '--cpuset-mems',
  '--force-rm',
  '--isolation',
  '--memory',
  '--memory-swap',
  '--rm',
  '--security-opt',
  '--squash',
];

const RUN = [
  '--add-host',
  '--cap-add',
  '--cap-drop',
  '--cpus',
  '--device',
  '--dns',
  '--gpus',
  '--hostname',
  '--init',
  '--ipc',
  '--label',
  '-l',
  '--link',
  '--log-driver',
  '-m',
  '--memory',
  '--mount',
  '--pid',
  '--privileged',
  '--read-only',
  '--security-opt',
  '--shm-size',
  '--stop-signal',
  '--stop-timeout',
  '--sysctl',
  '--tmpfs',
  '--ulimit',
  '--userns',
  '--volumes-from',
];

/** Command name → the docker/buildx flags it lacks. */
export const UNSUPPORTED_FLAGS: Readonly<Record<string, readonly string[]>> = {
  build: BUILD,
  run: RUN,
};

type WithUnknownOption = Command & { unknownOption(flag: string): void };

/**
 * Makes `cmd` answer an unknown option that `UNSUPPORTED_FLAGS` lists for it with "not
 * supported yet" (exit 2, like any unknown option) instead of a misleading suggestion.
 */
export function explainUnsupportedFlags(cmd: Command): void {
  const missing = UNSUPPORTED_FLAGS[cmd.name()];
  if (!missing) return;
  const c = cmd as WithUnknownOption;
  const standard = c.unknownOption.bind(c);
  c.unknownOption = (flag: string) => {
    const name = flag.split('=')[0] ?? flag;
    if (!missing.includes(name)) return standard(flag);
    const own = cmd.name() === 'build' ? 'docker buildx build' : `docker ${cmd.name()}`;
    cmd.error(`error: unknown option '${name}': ${own}'s ${name} is not supported by polyarch yet`, {
      code: 'commander.unknownOption',
    });
  };
}
