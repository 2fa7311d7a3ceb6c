/**
 * What a command needs from its surroundings: where to print and whether the terminal
 * is interactive. Commands receive it instead of touching `process` directly, so tests
 * can run the CLI in-process and read what it printed.
 */
export interface Output {
  write(text: string): unknown;
}

export interface CliContext {
  out: Output;
  err: Output;
  /** True when stderr is a terminal: progress may redraw in place. */
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
  /** Set by an action to the exit code the process should end with. */
  exitCode: number;
}

export function processContext(): CliContext {
  return {
    out: process.stdout,
    err: process.stderr,
    isTTY: Boolean(process.stderr.isTTY),
    env: process.env,
    exitCode: 0,
  };
}
