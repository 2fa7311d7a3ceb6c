/**
 * A parser for the small TOML subset that registries.toml (buildkitd.toml's form) needs:
 * `[table."quoted.key"]` headers with bare or quoted dotted keys, `key = value` pairs with
 * basic ("…", with escapes) or literal ('…') strings, booleans, integers, and arrays of
 * those (which may span lines and end with a comma), and `#` comments. Anything else is an
 * error naming `file:line` and what was expected — no TOML dependency is allowed here.
 *
 *   const doc = parseToml(text, '/root/.config/polyarch/registries.toml');
 *   doc.registry?.['docker.io']?.mirrors
 */
import { PolyarchError } from '../util/errors.js';

export type TomlValue = string | boolean | number | TomlValue[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

const BARE_KEY = /^[A-Za-z0-9_-]+/;

class Cursor {
  pos = 0;
  line = 1;
  constructor(
    readonly text: string,
    readonly file: string,
  ) {}
  error(what: string): PolyarchError {
    return new PolyarchError('INVALID_CONFIG', `${this.file}:${this.line}: ${what}`);
  }
  peek(): string {
    return this.text[this.pos] ?? '';
  }
  eof(): boolean {
    return this.pos >= this.text.length;
  }
  /** Skips spaces and tabs (not newlines). */
  skipBlank(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }
  /** Skips blanks, comments and newlines (inside arrays). */
  skipAll(): void {
    for (;;) {
      this.skipBlank();
      const c = this.peek();
      if (c === '#') this.skipComment();
      else if (c === '\n') {
        this.pos++;
        this.line++;
      } else if (c === '\r' && this.text[this.pos + 1] === '\n') this.pos++;
      else return;
    }
  }
  skipComment(): void {
    while (!this.eof() && this.peek() !== '\n') this.pos++;
  }
  /** After a statement only a comment may follow on the line. */
  endOfLine(): void {
    this.skipBlank();
    if (this.peek() === '#') this.skipComment();
    if (this.peek() === '\r') this.pos++;
    if (this.eof()) return;
    if (this.peek() !== '\n')
      throw this.error(`unexpected "${this.peek()}" after the value (expected end of line)`);
    this.pos++;
    this.line++;
  }
}

function parseKey(c: Cursor): string[] {
  const parts: string[] = [];
  for (;;) {
    c.skipBlank();
    const ch = c.peek();
    if (ch === '"' || ch === "'") parts.push(parseString(c));
    else {
      const m = BARE_KEY.exec(c.text.slice(c.pos));
      if (!m) throw c.error(`expected a key, found ${ch === '' || ch === '\n' ? 'end of line' : `"${ch}"`}`);
      parts.push(m[0]);
      c.pos += m[0].length;
    }
    c.skipBlank();
    if (c.peek() !== '.') return parts;
    c.pos++;
  }
}

const ESCAPES: Record<string, string> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' };

function parseString(c: Cursor): string {
  const quote = c.peek();
  c.pos++;
  let out = '';
  for (;;) {
    const ch = c.peek();
    if (ch === '' || ch === '\n') throw c.error(`unterminated string (missing closing ${quote})`);
    c.pos++;
    if (ch === quote) return out;
    if (ch === '\\' && quote === '"') {
      const e = c.peek();
      c.pos++;
      if (e === 'u' || e === 'U') {
        const n = e === 'u' ? 4 : 8;
        const hex = c.text.slice(c.pos, c.pos + n);
        if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== n) throw c.error(`invalid \\${e} escape in string`);
        out += String.fromCodePoint(Number.parseInt(hex, 16));
        c.pos += n;
      } else if (ESCAPES[e] !== undefined) out += ESCAPES[e];
      else throw c.error(`invalid escape "\\${e}" in string`);
    } else out += ch;
  }
}

function parseValue(c: Cursor): TomlValue {
  c.skipBlank();
  const ch = c.peek();
  if (ch === '"' || ch === "'") {
    if (c.text.startsWith(ch.repeat(3), c.pos)) throw c.error('multi-line strings are not supported');
    return parseString(c);
  }
  if (ch === '[') {
    c.pos++;
    const arr: TomlValue[] = [];
    for (;;) {
      c.skipAll();
      if (c.peek() === ']') {
        c.pos++;
        return arr;
      }
      if (c.eof()) throw c.error('unterminated array (missing "]")');
      arr.push(parseValue(c));
      c.skipAll();
      if (c.peek() === ',') c.pos++;
      else if (c.peek() !== ']') throw c.error(`expected "," or "]" in array, found "${c.peek()}"`);
    }
  }
  const m = /^(true|false|[+-]?[0-9][0-9_]*)(?=[\s,\]#]|$)/.exec(c.text.slice(c.pos));
  if (m) {
    c.pos += m[0].length;
    if (m[0] === 'true') return true;
    if (m[0] === 'false') return false;
    return Number(m[0].replace(/_/g, ''));
  }
  const word = /^[^\s,\]#]*/.exec(c.text.slice(c.pos))?.[0] ?? '';
  throw c.error(
    `unsupported value ${word === '' ? '(missing)' : `"${word}"`} (expected a "string", true/false, a number or [array])`,
  );
}

function descend(root: TomlTable, path: string[], c: Cursor): TomlTable {
  let t = root;
  for (const k of path) {
    const next = t[k];
    if (next === undefined) {
      const created: TomlTable = {};
      t[k] = created;
      t = created;
    } else if (typeof next === 'object' && !Array.isArray(next)) t = next;
    else throw c.error(`key "${path.join('.')}" is already a value, not a table`);
  }
  return t;
}

export function parseToml(text: string, file: string): TomlTable {
  const c = new Cursor(text, file);
  const root: TomlTable = {};
  let current = root;
  const defined = new Set<string>();
  for (;;) {
    c.skipAll();
    if (c.eof()) return root;
    if (c.peek() === '[') {
      c.pos++;
      if (c.peek() === '[') throw c.error('arrays of tables ([[…]]) are not supported');
      const path = parseKey(c);
      if (c.peek() !== ']') throw c.error(`expected "]" to close the table header`);
      c.pos++;
      const id = JSON.stringify(path);
      if (defined.has(id)) throw c.error(`table [${path.join('.')}] is defined twice`);
      defined.add(id);
      current = descend(root, path, c);
      c.endOfLine();
      continue;
    }
    const key = parseKey(c);
    if (c.peek() !== '=') throw c.error(`expected "=" after key "${key.join('.')}"`);
    c.pos++;
    const value = parseValue(c);
    const table = descend(current, key.slice(0, -1), c);
    const last = key[key.length - 1]!;
    if (last in table) throw c.error(`key "${key.join('.')}" is defined twice`);
    table[last] = value;
    c.endOfLine();
  }
}
