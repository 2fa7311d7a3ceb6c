/**
 * How Go prints values, for the template engine (template.ts): `fmt`'s `%v` of plain data,
 * `fmt.Sprintf` for the common verbs, `encoding/json` output, and `text/tabwriter` alignment.
 *
 *   printValue(['a', 1])                        // "[a 1]"
 *   sprintf('%-6s|%03d', ['ab', 7])             // "ab    |007"
 *   goJson({ a: '<b>' }, { indent: '  ' })      // "{\n  \"a\": \"\\u003cb\\u003e\"\n}"
 *   tabwrite('A\tBB\nCCC\tD\n', { minwidth: 10, padding: 3 })
 *
 * Data is plain JavaScript: strings, numbers (integers print as Go ints), booleans, `null`
 * (Go's nil), `undefined` (a missing map entry: `<no value>`), arrays (slices), `Map`s (Go
 * maps: keys sorted when printed or marshalled), and objects (structs: fields in key order).
 * Objects may carry the symbols below to look like a particular Go value.
 */

/** The Go type name shown in errors (`can't evaluate field X in type <name>`). */
export const GO_TYPE: unique symbol = Symbol('go.type');
/** A method returning how `%v` prints the value (Go's fmt.Stringer). */
export const GO_STRING: unique symbol = Symbol('go.string');
/** A method returning what `json` marshals instead of the value itself (Go's json.Marshaler). */
export const GO_JSON: unique symbol = Symbol('go.json');

/** JSON text `goJson` writes as it is (what a Go MarshalJSON method returns). */
export class RawJson {
  constructor(readonly json: string) {}
}

type Tagged = { [GO_TYPE]?: string; [GO_STRING]?: () => string; [GO_JSON]?: () => unknown };

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map);
}

/** Go's name for the dynamic type of `v`, as fmt's `%!d(string=x)` and template errors show it. */
export function goTypeName(v: unknown): string {
  if (v === undefined || v === null) return '<nil>';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float64';
  if (typeof v === 'function') return 'func';
  if (Array.isArray(v)) return '[]interface {}';
  if (v instanceof Map) return 'map[string]interface {}';
  return (v as Tagged)[GO_TYPE] ?? 'struct';
}

/** A number as Go's `%v` prints an int or a float64. */
function formatNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? '+Inf' : '-Inf';
  const s = String(n);
  // Go's %v of a float64 uses an exponent from 1e21 (as JS does) and writes e+21 / e-07.
  return s.replace(/e([+-])(\d)$/, 'e$10$2');
}

/** Map keys in Go's order: numbers numerically, otherwise as strings. */
export function sortedKeys(m: Map<unknown, unknown>): unknown[] {
  return [...m.keys()].sort((a, b) =>
    typeof a === 'number' && typeof b === 'number'
      ? a - b
      : String(a) < String(b)
        ? -1
        : String(a) > String(b)
          ? 1
          : 0,
  );
}

/** What `{{.}}` prints for `v` (fmt's `%v`). */
export function printValue(v: unknown): string {
  if (v === undefined) return '<no value>';
  return formatV(v);
}

function formatV(v: unknown): string {
  if (v === undefined || v === null) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'function') return '<func>';
  const s = (v as Tagged)[GO_STRING];
  if (typeof s === 'function') return s.call(v);
  if (Array.isArray(v)) return `[${v.map(formatV).join(' ')}]`;
  if (v instanceof Map)
    return `map[${sortedKeys(v)
      .map((k) => `${formatV(k)}:${formatV(v.get(k))}`)
      .join(' ')}]`;
  return `{${Object.values(v as object)
    .map((x) => formatV(typeof x === 'function' ? undefined : x))
    .join(' ')}}`;
}

// ---------------------------------------------------------------------------------------
// printf

const PRINTF_VERB = /%([+\-# 0]*)(\*|\d+)?(?:\.(\*|\d*))?(.|$)/gs;

function pad(s: string, width: number | undefined, left: boolean, zero: boolean): string {
  if (width === undefined || s.length >= width) return s;
  if (left) return s + ' '.repeat(width - s.length);
  if (zero) {
    const sign = /^[+\- ]/.test(s) ? s[0]! : '';
    return sign + '0'.repeat(width - s.length) + s.slice(sign.length);
  }
  return ' '.repeat(width - s.length) + s;
}

function badVerb(verb: string, arg: unknown): string {
  if (arg === undefined || arg === null) return `%!${verb}(<nil>)`;
  return `%!${verb}(${goTypeName(arg)}=${formatV(arg)})`;
}

/** Go's strconv.Quote, close enough: JSON escapes without the HTML ones. */
function goQuote(s: string): string {
  return JSON.stringify(s).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * fmt.Sprintf for the verbs templates use: %v %s %d %q %x %X %o %b %c %t %f %F %e %g %%,
 * with flags `-`, `+`, ` `, `0`, a width and a precision (`*` takes them from the
 * arguments). Wrong types print as Go does (`%!d(string=x)`), so do missing and extra
 * arguments (`%!s(MISSING)`, `%!(EXTRA int=1)`).
 */
export function sprintf(format: string, args: readonly unknown[]): string {
  let argi = 0;
  const next = (): { ok: boolean; v: unknown } =>
    argi < args.length ? { ok: true, v: args[argi++] } : { ok: false, v: undefined };
  let out = format.replace(PRINTF_VERB, (_m, flags: string, w?: string, p?: string, verb?: string) => {
    if (verb === '%' && !flags && w === undefined && p === undefined) return '%';
    let width: number | undefined;
    let prec: number | undefined;
    if (w === '*') {
      const a = next();
      width = typeof a.v === 'number' ? Math.trunc(a.v) : undefined;
    } else if (w !== undefined) width = Number(w);
    if (p === '*') {
      const a = next();
      prec = typeof a.v === 'number' ? Math.trunc(a.v) : undefined;
    } else if (p !== undefined) prec = p === '' ? 0 : Number(p);
    if (!verb) return '%!(NOVERB)';
    const left = flags.includes('-');
    const zero = flags.includes('0') && !left;
    const plus = flags.includes('+');
    const space = flags.includes(' ');
    const a = next();
    if (!a.ok) return `%!${verb}(MISSING)`;
    const v = a.v;
    const signed = (s: string, n: number) => (n >= 0 ? (plus ? `+${s}` : space ? ` ${s}` : s) : s);
    switch (verb) {
      case 'v':
      case 's': {
        if (verb === 's' && (typeof v === 'number' || typeof v === 'boolean')) return badVerb(verb, v);
        let s = formatV(v);
        if (prec !== undefined && typeof v === 'string') s = [...s].slice(0, prec).join('');
        return pad(s, width, left, false);
      }
      case 'q':
        if (typeof v === 'string') return pad(goQuote(v), width, left, false);
        if (typeof v === 'number' && Number.isInteger(v))
          return pad(`'${String.fromCodePoint(v)}'`, width, left, false);
        if (Array.isArray(v) && v.every((x) => typeof x === 'string'))
          return pad(`[${v.map(goQuote).join(' ')}]`, width, left, false);
        return badVerb(verb, v);
      case 'd':
        if (typeof v !== 'number' || !Number.isInteger(v)) return badVerb(verb, v);
        return pad(signed(String(v), v), width, left, zero);
      case 'x':
      case 'X':
      case 'o':
      case 'b': {
        let s: string;
        if (typeof v === 'number' && Number.isInteger(v)) {
          const base = verb === 'o' ? 8 : verb === 'b' ? 2 : 16;
          s = signed(v.toString(base), v);
        } else if (typeof v === 'string' && (verb === 'x' || verb === 'X'))
          s = Buffer.from(v).toString('hex');
        else return badVerb(verb, v);
        return pad(verb === 'X' ? s.toUpperCase() : s, width, left, zero);
      }
      case 'c':
        if (typeof v !== 'number' || !Number.isInteger(v)) return badVerb(verb, v);
        return pad(String.fromCodePoint(v), width, left, false);
      case 't':
        if (typeof v !== 'boolean') return badVerb(verb, v);
        return pad(String(v), width, left, false);
      case 'f':
      case 'F':
      case 'e':
      case 'g': {
        if (typeof v !== 'number') return badVerb(verb, v);
        let s: string;
        if (verb === 'e') s = v.toExponential(prec ?? 6).replace(/e([+-])(\d)$/, 'e$10$2');
        else if (verb === 'g')
          s = prec === undefined ? formatNumber(v) : String(Number(v.toPrecision(prec || 1)));
        else s = v.toFixed(prec ?? 6);
        return pad(signed(s, v), width, left, zero);
      }
      default:
        return badVerb(verb, v);
    }
  });
  if (argi < args.length)
    out += `%!(EXTRA ${args
      .slice(argi)
      .map((a) => `${goTypeName(a)}=${formatV(a)}`)
      .join(', ')})`;
  return out;
}

// ---------------------------------------------------------------------------------------
// encoding/json

export interface JsonOptions {
  /** json.MarshalIndent's indent; default none (compact, as json.Marshal). */
  indent?: string;
  /** Escape `<`, `>`, `&` as \u003c etc. (json.Marshal's default). Default true. */
  escapeHTML?: boolean;
}

function jsonString(s: string, escapeHTML: boolean): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c === 0x08) out += '\\b';
    else if (c === 0x0c) out += '\\f';
    else if (
      c < 0x20 ||
      c === 0x2028 ||
      c === 0x2029 ||
      (escapeHTML && (ch === '<' || ch === '>' || ch === '&'))
    )
      out += `\\u${c.toString(16).padStart(4, '0')}`;
    else if (c >= 0xd800 && c <= 0xdfff) {
      // A lone surrogate is invalid UTF-8 to Go: it becomes U+FFFD.
      const pair = c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
      if (pair) {
        out += ch + s[i + 1]!;
        i++;
      } else out += '\ufffd';
    } else out += ch;
  }
  return `${out}"`;
}

/**
 * `v` as Go's encoding/json writes it: maps with sorted keys, objects in key order
 * (undefined fields left out), functions called (methods), `GO_JSON` honoured.
 */
export function goJson(v: unknown, opts: JsonOptions = {}): string {
  const escapeHTML = opts.escapeHTML ?? true;
  const indent = opts.indent ?? '';
  const seen = new Set<unknown>();
  const enc = (x: unknown, depth: string): string => {
    if (typeof x === 'function') x = x();
    if (x !== null && typeof x === 'object' && typeof (x as Tagged)[GO_JSON] === 'function')
      x = (x as Tagged)[GO_JSON]!();
    if (x === undefined || x === null) return 'null';
    if (x instanceof RawJson) return x.json;
    if (typeof x === 'string') return jsonString(x, escapeHTML);
    if (typeof x === 'number') return Number.isFinite(x) ? formatNumber(x) : 'null';
    if (typeof x === 'boolean') return String(x);
    if (typeof x === 'bigint') return x.toString();
    if (seen.has(x)) return 'null';
    seen.add(x);
    try {
      const inner = depth + indent;
      const nl = indent ? `\n${inner}` : '';
      const end = indent ? `\n${depth}` : '';
      const colon = indent ? ': ' : ':';
      let items: string[];
      let open: string;
      let close: string;
      if (Array.isArray(x) || x instanceof Uint8Array) {
        if (x instanceof Uint8Array) return jsonString(Buffer.from(x).toString('base64'), escapeHTML);
        items = x.map((e) => enc(e, inner));
        [open, close] = ['[', ']'];
      } else if (x instanceof Map) {
        items = sortedKeys(x).map(
          (k) => `${jsonString(String(k), escapeHTML)}${colon}${enc(x.get(k), inner)}`,
        );
        [open, close] = ['{', '}'];
      } else {
        items = Object.entries(x as object)
          .filter(([, e]) => e !== undefined)
          .map(([k, e]) => `${jsonString(k, escapeHTML)}${colon}${enc(e, inner)}`);
        [open, close] = ['{', '}'];
      }
      if (items.length === 0) return open + close;
      return `${open}${nl}${items.join(`,${nl}`)}${end}${close}`;
    } finally {
      seen.delete(x);
    }
  };
  return enc(v, '');
}

// ---------------------------------------------------------------------------------------
// text/tabwriter

export interface TabwriterOptions {
  /** Minimal cell width including padding. Default 0. */
  minwidth?: number;
  /** Padding added to a cell's width. Default 1. */
  padding?: number;
  /** Pad character. Default ' '. */
  padchar?: string;
}

/**
 * Go's text/tabwriter (elastic tabstops) over a whole text, with space padding: cells end
 * at a tab; tab-terminated cells in adjacent lines form a column, padded to its widest cell
 * plus `padding` (at least `minwidth`); text after a line's last tab is not padded. Widths
 * count code points, like docker's fork (which counts East Asian wide runes as 2).
 */
export function tabwrite(text: string, opts: TabwriterOptions = {}): string {
  const minwidth = opts.minwidth ?? 0;
  const padding = opts.padding ?? 1;
  const padchar = opts.padchar ?? ' ';
  const lines = text.split('\n').map((l) => l.split('\t'));
  const width = (s: string) => [...s].length;
  const out: string[] = [];
  const widths: number[] = [];
  const writeLines = (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const line = lines[i]!;
      let s = '';
      line.forEach((cell, j) => {
        s += cell;
        if (j < widths.length && j < line.length - 1)
          s += padchar.repeat(Math.max(0, widths[j]! - width(cell)));
      });
      out.push(s);
    }
  };
  const format = (line0: number, line1: number) => {
    const column = widths.length;
    for (let t = line0; t < line1; t++) {
      if (column >= lines[t]!.length - 1) continue;
      writeLines(line0, t);
      line0 = t;
      let w = minwidth;
      for (; t < line1; t++) {
        const line = lines[t]!;
        if (column >= line.length - 1) break;
        w = Math.max(w, width(line[column]!) + padding);
      }
      widths.push(w);
      format(line0, t);
      widths.pop();
      line0 = t;
    }
    writeLines(line0, line1);
  };
  format(0, lines.length);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------
// Times

/** go-units HumanDuration: `5 days`, `About an hour`, `Less than a second`. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

/** Go's time.Time.String() of whole seconds, in UTC: `2021-03-04 02:24:42 +0000 UTC`. */
export function goTimeString(d: Date): string {
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} +0000 UTC`;
}
