/**
 * Errors that point into a Dockerfile. `DockerfileError` is a PolyarchError (code
 * `DOCKERFILE`, exit 1) whose message is `<file>:<line>: <why>` and which carries the source
 * range and lines, so `formatDockerfileError` can print SPEC's
 * `ERROR: …` / `--> Dockerfile:LINE` / source-line block.
 */
import { PolyarchError } from '../util/errors.js';
import type { CheckWarning } from './checks.js';

/** 1-based line, 0-based character (BuildKit's parser.Position). */
export interface Position {
  line: number;
  character: number;
}

export interface Range {
  start: Position;
  end: Position;
}

export interface DockerfileErrorOptions {
  file: string;
  range: Range;
  /** The Dockerfile's lines (index 0 = line 1), for showing context. */
  lines?: readonly string[];
  cause?: unknown;
}

export class DockerfileError extends PolyarchError {
  readonly file: string;
  readonly range: Range;
  readonly lines: readonly string[];
  /** The reason without the location prefix. */
  readonly reason: string;
  /** Build-check warnings found before the error (set by planBuild). */
  warnings: readonly CheckWarning[] = [];

  constructor(reason: string, opts: DockerfileErrorOptions) {
    super('DOCKERFILE', `${opts.file}:${opts.range.start.line}: ${reason}`, { cause: opts.cause });
    this.name = 'DockerfileError';
    this.file = opts.file;
    this.range = opts.range;
    this.lines = opts.lines ?? [];
    this.reason = reason;
  }
}

export function isDockerfileError(err: unknown): err is DockerfileError {
  return err instanceof DockerfileError;
}

/** The source lines of a range, each `  N | >>> text`, as buildx shows them. */
export function sourceContext(lines: readonly string[], range: Range): string[] {
  const out: string[] = [];
  const width = String(range.end.line).length;
  for (let n = range.start.line; n <= range.end.line; n++) {
    const text = lines[n - 1];
    if (text === undefined) continue;
    out.push(` ${String(n).padStart(width)} | >>> ${text}`);
  }
  return out;
}

/**
 * The full report for a located error:
 * `ERROR: <file>:<line>: <why>`, then `--> <file>:<line>` and the source line(s).
 */
export function formatDockerfileError(err: DockerfileError): string {
  const lines = [`ERROR: ${err.message}`, `--> ${err.file}:${err.range.start.line}`];
  lines.push(...sourceContext(err.lines, err.range));
  return `${lines.join('\n')}\n`;
}
