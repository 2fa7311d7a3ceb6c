/**
 * Compose-file variable interpolation and `.env` files, as the compose specification defines
 * them (compose-spec/interpolation.md):
 *
 *   interpolate('${TAG:-latest}', { lookup: (n) => env[n] })          // "latest" when TAG is unset or empty
 *   interpolateTree(doc, { lookup, file: 'compose.yaml', warn })        // every string value, errors name the path
 *   parseDotEnv(text, { lookup })                                       // KEY=VALUE lines → Record
 *
 * Forms: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
 * `${VAR:?err}` / `${VAR?err}` (error when unset [or empty]), `${VAR:+alt}` / `${VAR+alt}`
 * (alt when set [and non-empty]), `$$` for a literal `$`. Defaults and alternatives may nest
 * further interpolations. An unset variable with no default becomes "" with a warning, like
 * docker compose.
 */
import { PolyarchError } from '../util/errors.js';

export interface InterpolateOptions {
  /** Variable value, or undefined when unset. */
  lookup: (name: string) => string | undefined;
  /** Called once per unset variable used without a default. Default: ignored. */
  warn?: (message: string) => void;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/** Thrown for a malformed expression or a `${VAR:?err}` whose variable is missing. */
export class InterpolationError extends PolyarchError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'InterpolationError';
  }
}

/** Interpolates one string; see the module comment. */
export function interpolate(input: string, opts: InterpolateOptions): string {
  const { value, end } = scan(input, 0, opts, false);
  if (end !== input.length) throw new InterpolationError(`invalid interpolation format for "${input}"`);
  return value;
}

/**
 * Reads from `start` until the end of the input or, when `nested`, an unmatched `}`; returns
 * the expanded text and the index where it stopped (at the `}`).
 */
function scan(
  s: string,
  start: number,
  opts: InterpolateOptions,
  nested: boolean,
): { value: string; end: number } {
  let out = '';
  let i = start;
  while (i < s.length) {
    const c = s[i]!;
    if (nested && c === '}') return { value: out, end: i };
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = s[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
    } else if (next === '{') {
      const r = braced(s, i, opts);
      out += r.value;
      i = r.end;
    } else {
      const m = NAME.exec(s.slice(i + 1));
      if (!m)
        throw new InterpolationError(
          `invalid interpolation format for "${s}": "$" must be followed by a name, "{" or "$"`,
        );
      out += get(m[0], opts);
      i += 1 + m[0].length;
    }
  }
  if (nested) throw new InterpolationError(`invalid interpolation format for "${s}": missing "}"`);
  return { value: out, end: i };
}

/** `${...}` starting at `at` (the `$`); returns the value and the index after the `}`. */
function braced(s: string, at: number, opts: InterpolateOptions): { value: string; end: number } {
  const bad = (why: string) => new InterpolationError(`invalid interpolation format for "${s}": ${why}`);
  const m = NAME.exec(s.slice(at + 2));
  if (!m) throw bad('"${" must be followed by a variable name');
  const name = m[0];
  let i = at + 2 + name.length;
  if (s[i] === '}') return { value: get(name, opts), end: i + 1 };
  if (i >= s.length) throw bad('missing "}"');
  const colon = s[i] === ':';
  if (colon) i++;
  const op = s[i];
  if (op !== '-' && op !== '?' && op !== '+')
    throw bad(`unexpected "${s.slice(at + 2 + name.length, i + 1)}" after \${${name}`);
  const value = opts.lookup(name);
  const present = colon ? value !== undefined && value !== '' : value !== undefined;
  // The operand is expanded only when it is used, so `${A:-${B:?x}}` fails only if A is missing.
  const lazy: InterpolateOptions = { lookup: opts.lookup, ...(opts.warn ? { warn: opts.warn } : {}) };
  const operand = (use: boolean) => {
    const r = scan(s, i + 1, use ? lazy : { lookup: () => 'unused' }, true);
    return { text: r.value, end: r.end + 1 };
  };
  if (op === '-') {
    const r = operand(!present);
    return { value: present ? value! : r.text, end: r.end };
  }
  if (op === '+') {
    const r = operand(present);
    return { value: present ? r.text : '', end: r.end };
  }
  const r = operand(!present);
  if (!present)
    throw new InterpolationError(
      `required variable ${name} is missing a value${r.text ? `: ${r.text}` : ''}`,
    );
  return { value: value!, end: r.end };
}

function get(name: string, opts: InterpolateOptions): string {
  const v = opts.lookup(name);
  if (v === undefined) {
    opts.warn?.(`The "${name}" variable is not set. Defaulting to a blank string.`);
    return '';
  }
  return v;
}

/**
 * Interpolates every string value (not the keys) of a parsed YAML document. Errors are
 * `FILE: PATH: message`, the path dotted like `services.web.build.args.VERSION`.
 */
export function interpolateTree(doc: unknown, opts: InterpolateOptions & { file: string }): unknown {
  const walk = (v: unknown, path: string[]): unknown => {
    if (typeof v === 'string') {
      try {
        return interpolate(v, opts);
      } catch (err) {
        if (err instanceof InterpolationError)
          throw new InterpolationError(`${opts.file}: ${path.join('.') || '(root)'}: ${err.message}`);
        throw err;
      }
    }
    if (Array.isArray(v)) return v.map((x, n) => walk(x, [...path, String(n)]));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, [...path, k]);
      return out;
    }
    return v;
  };
  return walk(doc, []);
}

/**
 * A `.env` file: `KEY=VALUE` lines, `export ` allowed, `#` comments, blank lines. Values may
 * be single-quoted (literal), double-quoted (`\n`, `\t`, `\\`, `\"` escapes; interpolated) or
 * bare (trimmed, ` #` starts a comment; interpolated). Interpolation sees the earlier keys of
 * the file and then `lookup`. A line without `=` names a variable taken from `lookup`.
 */
export function parseDotEnv(
  text: string,
  opts: { lookup: (name: string) => string | undefined; file?: string },
): Record<string, string> {
  const out: Record<string, string> = {};
  const lookup = (n: string) => out[n] ?? opts.lookup(n);
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    let line = lines[n]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('export ')) line = line.slice(7).trimStart();
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    const where = `${opts.file ?? '.env'}:${n + 1}`;
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key))
      throw new PolyarchError('INVALID_ARGUMENT', `${where}: invalid variable name "${key}"`);
    if (eq < 0) {
      const v = opts.lookup(key);
      if (v !== undefined) out[key] = v;
      continue;
    }
    let raw = line.slice(eq + 1).trimStart();
    let value: string;
    if (raw.startsWith("'")) {
      const close = raw.indexOf("'", 1);
      if (close < 0) throw new PolyarchError('INVALID_ARGUMENT', `${where}: unterminated single quote`);
      value = raw.slice(1, close);
    } else if (raw.startsWith('"')) {
      // A double-quoted value may span lines, like compose's dotenv parser allows.
      let body = '';
      let i = 1;
      for (;;) {
        if (i >= raw.length) {
          if (n + 1 >= lines.length)
            throw new PolyarchError('INVALID_ARGUMENT', `${where}: unterminated double quote`);
          body += '\n';
          raw += lines[++n]!;
          continue;
        }
        const c = raw[i]!;
        if (c === '"') break;
        if (c === '\\' && i + 1 < raw.length) {
          const e = raw[i + 1]!;
          body +=
            e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e === '"' || e === '\\' ? e : `\\${e}`;
          i += 2;
          continue;
        }
        body += c;
        i++;
      }
      value = interpolate(body, { lookup });
    } else {
      const hash = raw.search(/\s#/);
      if (hash >= 0) raw = raw.slice(0, hash);
      value = interpolate(raw.trim(), { lookup });
    }
    out[key] = value;
  }
  return out;
}
