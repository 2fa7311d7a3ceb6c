/**
 * Typed errors shared by every layer of polyarch.
 *
 * Every error the library raises on purpose is a `PolyarchError` with a stable `code`
 * (for programs), a one-line message that names the input and the rule it broke (for
 * people), and an optional `cause`. The CLI prints `ERROR: <message>` and exits with
 * `exitCode` (1 for failures, 2 for bad usage), never a stack trace.
 */

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'USAGE'
  | 'INVALID_PLATFORM'
  | 'INVALID_DIGEST'
  | 'INVALID_MANIFEST'
  | 'DIGEST_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'UNSUPPORTED'
  | 'IO'
  | 'INTERNAL'
  | (string & {});

export interface ErrorOptions {
  cause?: unknown;
  exitCode?: number;
}

export class PolyarchError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, opts: ErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'PolyarchError';
    this.code = code;
    this.exitCode = opts.exitCode ?? 1;
  }
}

/** Bad command-line usage: exit code 2. */
export class UsageError extends PolyarchError {
  constructor(message: string, opts: ErrorOptions = {}) {
    super('USAGE', message, { ...opts, exitCode: 2 });
    this.name = 'UsageError';
  }
}

export function isPolyarchError(err: unknown): err is PolyarchError {
  return err instanceof PolyarchError;
}

/** The message of any thrown value, for wrapping as context (`pulling x: <why>`). */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
