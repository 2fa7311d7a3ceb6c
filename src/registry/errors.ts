/**
 * Typed registry errors. A registry reports failures as JSON (`{"errors":[{"code","message",
 * "detail"}]}`, distribution's spec); `RegistryError` keeps those codes, the HTTP status, and
 * whether the failure is `temporary` — the flag that decides whether the transport retries
 * (modelled on go-containerregistry's transport/error.go).
 */
import { PolyarchError } from '../util/errors.js';

export interface RegistryErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

/** Error codes of the distribution spec that are worth another try. */
const TEMPORARY_CODES = new Set(['BLOB_UPLOAD_INVALID', 'TOOMANYREQUESTS', 'UNKNOWN', 'UNAVAILABLE']);
/** Statuses that mean "try again later" whatever the body says. */
const TEMPORARY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

export class RegistryError extends PolyarchError {
  readonly status: number | undefined;
  readonly errors: RegistryErrorEntry[];
  readonly temporary: boolean;
  /** Milliseconds the registry asked us to wait (Retry-After), when it did. */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: string,
    message: string,
    opts: {
      status?: number;
      errors?: RegistryErrorEntry[];
      temporary?: boolean;
      retryAfterMs?: number;
      cause?: unknown;
    } = {},
  ) {
    super(code, message, { cause: opts.cause });
    this.name = 'RegistryError';
    this.status = opts.status;
    this.errors = opts.errors ?? [];
    this.temporary = opts.temporary ?? false;
    this.retryAfterMs = opts.retryAfterMs;
  }

  /** True if the registry named `code` among its errors. */
  hasCode(code: string): boolean {
    return this.errors.some((e) => e.code === code);
  }
}

/** Parses a registry error body; tolerates non-JSON bodies (proxies answer with HTML). */
export function parseErrorBody(text: string): RegistryErrorEntry[] {
  try {
    const v = JSON.parse(text) as { errors?: unknown };
    if (Array.isArray(v.errors))
      return v.errors
        .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
        .map((e) => ({
          code: typeof e.code === 'string' ? e.code : 'UNKNOWN',
          ...(typeof e.message === 'string' ? { message: e.message } : {}),
          ...(e.detail !== undefined ? { detail: e.detail } : {}),
        }));
  } catch {
    // fall through
  }
  return [];
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/**
 * The error for an unexpected response. `what` names the request (`GET manifest
 * 127.0.0.1:5000/app:1`); the message carries the registry's codes and messages.
 */
export function responseError(
  what: string,
  status: number,
  bodyText: string,
  retryAfter?: string,
): RegistryError {
  const errors = parseErrorBody(bodyText);
  const temporary = TEMPORARY_STATUS.has(status) || errors.some((e) => TEMPORARY_CODES.has(e.code));
  const detail = errors.length
    ? errors.map((e) => `${e.code}${e.message ? `: ${e.message}` : ''}`).join('; ')
    : `HTTP ${status}${STATUS_TEXT[status] ? ` ${STATUS_TEXT[status]}` : ''}`;
  const code = errors[0]?.code ?? STATUS_CODE[status] ?? 'REGISTRY';
  const retryAfterMs = parseRetryAfter(retryAfter);
  return new RegistryError(code, `${what}: ${detail}`, {
    status,
    errors,
    temporary,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
  });
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

const STATUS_CODE: Record<number, string> = {
  401: 'UNAUTHORIZED',
  403: 'DENIED',
  404: 'NOT_FOUND',
  429: 'TOOMANYREQUESTS',
};
