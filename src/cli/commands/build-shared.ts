/**
 * Helpers shared by the commands that build (`build` on every driver, `compose build`):
 * `--build-arg` parsing, cancelling on signals and BuildKit's report of a failed step or
 * Dockerfile.
 */
import { PolyarchError, UsageError } from '../../util/errors.js';

/**
 * SIGINT/SIGTERM cancel a build (local or remote): `signal` aborts it; after a failure,
 * `canceled(write)` reports the cancellation and gives its exit code (130 or 143), or
 * undefined when no signal came. `dispose()` stops listening.
 */
export function cancelOnSignals(): {
  signal: AbortSignal;
  canceled(write: (text: string) => void): number | undefined;
  dispose(): void;
} {
  const abort = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    signalled ??= sig;
    abort.abort(new PolyarchError('ABORTED', `build canceled by ${sig}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: abort.signal,
    canceled(write) {
      if (!signalled) return undefined;
      write(`ERROR: build canceled by ${signalled}\n`);
      return signalled === 'SIGTERM' ? 143 : 130;
    },
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** `--build-arg K=V`s; a bare `K` takes the value from `env`, or is skipped (buildx). */
export function parseBuildArgs(values: string[], env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid --build-arg "${v}": the name is empty`);
    if (eq < 0) {
      // buildx: `--build-arg NAME` takes the value from the environment, or is skipped.
      const fromEnv = env[v];
      if (fromEnv !== undefined) out[v] = fromEnv;
    } else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

/** BuildKit's report of a failed step: the error, the step's last log lines, the source line. */
export function formatStepError(err: {
  message: string;
  vertexName: string;
  logTail: string[];
  file: string;
  range: { start: { line: number }; end: { line: number } };
  lines: readonly string[];
}): string {
  const out = [`ERROR: failed to solve: ${err.message}`];
  out.push('------', ` > ${err.vertexName}:`);
  for (const l of err.logTail) out.push(`${l}`);
  out.push('------', `--> ${err.file}:${err.range.start.line}`);
  for (let n = err.range.start.line; n <= err.range.end.line; n++) {
    const t = err.lines[n - 1];
    if (t !== undefined) out.push(` ${n} | >>> ${t}`);
  }
  return `${out.join('\n')}\n`;
}

/**
 * The report of a build failure the user caused (a failing step, or a Dockerfile error), or
 * undefined for any other error. The modules are the callers' own lazy imports.
 */
export function buildFailureReport(
  err: unknown,
  mods: { engine: typeof import('../../build/index.js'); df: typeof import('../../dockerfile/index.js') },
): string | undefined {
  if (err instanceof mods.engine.BuildStepError) return formatStepError(err);
  if (mods.df.isDockerfileError(err)) return mods.df.formatDockerfileError(err);
  return undefined;
}
