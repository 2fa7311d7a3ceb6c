/**
 * Shell-like word expansion with BuildKit's semantics (frontend/dockerfile/shell/lex.go).
 *
 * `processWord(word, env)` expands `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`,
 * `${V:?msg}`, `${V?msg}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}`, `${V//p/r}`,
 * removes quotes and escapes, and returns the result, the whitespace-split words, and which
 * variable names were found (`matched`) or not (`unmatched`) — the latter feeds the
 * UndefinedVar / UndefinedArgInFrom checks. Errors are `ShellError`s whose message matches
 * BuildKit's (`failed to process "…": …`). Pure; no I/O.
 */

export class ShellError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ShellError';
  }
}

export interface LexOptions {
  /** The escape character (`\` by default; `` ` `` after `# escape=``). */
  escape?: string;
  /** Keep quote characters in the output (used to detect quoted heredoc names). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  rawEscapes?: boolean;
  /** Leave references to unset variables as they are (`$X`, `${X}`) instead of ''. */
  skipUnsetEnv?: boolean;
  /** Treat quotes as ordinary characters (heredoc bodies). */
  skipProcessQuotes?: boolean;
}

export interface WordResult {
  result: string;
  words: string[];
  matched: ReadonlySet<string>;
  unmatched: ReadonlySet<string>;
}

const NONE: ReadonlySet<string> = new Set();

export type EnvLike = ReadonlyMap<string, string> | Readonly<Record<string, string>>;

const EOF = '';

const SPACE_RE = /^\s$/u;
const LETTER_RE = /^\p{L}$/u;
const DIGIT_RE = /^\p{Nd}$/u;
// ASCII fast paths: these run once per character of every expanded word.
function isSpace(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 128) return c === 32 || (c >= 9 && c <= 13);
  return SPACE_RE.test(ch);
}
function isLetter(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 128) return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
  return LETTER_RE.test(ch);
}
function isDigit(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 128) return c >= 48 && c <= 57;
  return DIGIT_RE.test(ch);
}
function isSpecialParam(ch: string): boolean {
  return '@*#?-$!0'.includes(ch) && ch !== '';
}

class Words {
  word = '';
  words: string[] = [];
  inWord = false;
  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else this.addRawChar(ch);
  }
  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }
  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  get(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** `${…}` nested in `${…}` deeper than this is an error (each level is a native call frame). */
export const MAX_EXPANSION_DEPTH = 1000;

/** One expansion at a time; reused (like BuildKit's Lex.shellWord) to spare allocations. */
class ShellWord {
  private pos = 0;
  private rawEscapes = false;
  private src = '';
  private env: ReadonlyMap<string, string> = new Map();
  private opts: Required<LexOptions> = DEFAULT_OPTS;
  private wantWords = false;
  private depth = 0;
  matched: Set<string> | undefined;
  unmatched: Set<string> | undefined;
  /** Words of the last top-level run, when wanted. */
  words: string[] = [];

  reset(src: string, env: ReadonlyMap<string, string>, opts: Required<LexOptions>, wantWords: boolean): this {
    this.pos = 0;
    this.src = src;
    this.env = env;
    this.opts = opts;
    this.wantWords = wantWords;
    this.depth = 0;
    this.rawEscapes = opts.rawEscapes;
    this.matched = undefined;
    this.unmatched = undefined;
    this.words = [];
    return this;
  }

  // Characters are code points (Go's scanner reads runes); indexing avoids copying the word.
  private peek(): string {
    const c = this.src.codePointAt(this.pos);
    if (c === undefined) return EOF;
    return c > 0xffff ? String.fromCodePoint(c) : this.src[this.pos]!;
  }
  private next(): string {
    const ch = this.peek();
    this.pos += ch.length;
    return ch;
  }

  run(): string {
    return this.processStopOn(EOF, this.rawEscapes);
  }

  private processStopOn(stop: string, rawEscapes: boolean): string {
    let result = '';
    // Word splitting is only wanted at the top level, and only by callers that ask for it.
    const words = stop === EOF && this.wantWords ? new Words() : undefined;
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    const esc = this.opts.escape;
    const src = this.src;
    try {
      while (this.pos < src.length) {
        if (!words) {
          // Copy a run of ordinary characters at once.
          let end = this.pos;
          while (end < src.length) {
            const c = src[end]!;
            if (
              c === '$' ||
              c === esc ||
              c === stop ||
              ((c === "'" || c === '"') && !this.opts.skipProcessQuotes)
            )
              break;
            end++;
          }
          if (end > this.pos) {
            result += src.slice(this.pos, end);
            this.pos = end;
            continue;
          }
        }
        let ch = this.peek();
        if (stop !== EOF && ch === stop) {
          this.next();
          return result;
        }
        if (ch === '$' || ((ch === "'" || ch === '"') && !this.opts.skipProcessQuotes)) {
          const tmp =
            ch === '$'
              ? this.processDollar()
              : ch === "'"
                ? this.processSingleQuote()
                : this.processDoubleQuote();
          result += tmp;
          if (ch === '$') words?.addString(tmp);
          else words?.addRawString(tmp);
          continue;
        }
        ch = this.next();
        if (ch === esc) {
          if (this.rawEscapes) {
            words?.addRawChar(ch);
            result += ch;
          }
          ch = this.next();
          if (ch === EOF) break;
          words?.addRawChar(ch);
        } else words?.addChar(ch);
        result += ch;
      }
      if (stop !== EOF)
        throw new ShellError(`unexpected end of statement while looking for matching ${stop}`);
      if (words) this.words = words.get();
      return result;
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    let result = '';
    let ch = this.next();
    if (this.opts.rawQuotes) result += ch;
    for (;;) {
      ch = this.next();
      if (ch === EOF)
        throw new ShellError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    let result = '';
    let ch = this.next();
    if (this.opts.rawQuotes) result += ch;
    for (;;) {
      const p = this.peek();
      if (p === EOF)
        throw new ShellError('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        ch = this.next();
        if (this.opts.rawQuotes) result += ch;
        return result;
      }
      if (p === '$') {
        result += this.processDollar();
        continue;
      }
      ch = this.next();
      if (ch === this.opts.escape) {
        if (this.rawEscapes) result += ch;
        const n = this.peek();
        if (n === EOF) continue;
        if (n === '"' || n === '$' || n === this.opts.escape) ch = this.next();
      }
      result += ch;
    }
  }

  /** The value, or undefined when unset (recorded in matched/unmatched). */
  private getEnv(name: string): string | undefined {
    const v = this.env.get(name);
    if (v !== undefined) (this.matched ??= new Set()).add(name);
    else (this.unmatched ??= new Set()).add(name);
    return v;
  }

  private processName(): string {
    // Scans positions and slices once: building the name a character at a time allocates.
    const start = this.pos;
    const first = this.peek();
    if (first === EOF) return '';
    if (isDigit(first)) {
      while (this.peek() !== EOF && isDigit(this.peek())) this.next();
      return this.src.slice(start, this.pos);
    }
    if (isSpecialParam(first)) return this.next();
    for (;;) {
      const ch = this.peek();
      if (ch === EOF || (!isLetter(ch) && !isDigit(ch) && ch !== '_')) break;
      this.next();
    }
    return this.src.slice(start, this.pos);
  }

  private processDollar(): string {
    this.next();
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return `$${name}`;
      return value ?? '';
    }
    if (this.depth >= MAX_EXPANSION_DEPTH)
      throw new ShellError(`\${…} nested more than ${MAX_EXPANSION_DEPTH} levels deep`);
    this.depth++;
    try {
      return this.processBraces();
    } finally {
      this.depth--;
    }
  }

  /** `${…}`, at its `{`. */
  private processBraces(): string {
    this.next();
    const first = this.peek();
    if (first === EOF) throw new ShellError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':')
      throw new ShellError('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.next();
    let chs = ch;
    let nullIsUnset = false;
    if (ch === '}') {
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}}`;
      return value ?? '';
    }
    if (ch === ':') {
      nullIsUnset = true;
      ch = this.next();
      chs += ch;
    }
    if (nullIsUnset || ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      const raw = ch === '#' || ch === '%';
      let word: string;
      try {
        word = this.processStopOn('}', raw);
      } catch (err) {
        if (this.peek() === EOF) throw new ShellError("syntax error: missing '}'");
        throw err;
      }
      const got = this.getEnv(name);
      const set = got !== undefined;
      const value = got ?? '';
      if (this.opts.skipUnsetEnv && !set) return `\${${name}${chs}${word}}`;
      switch (ch) {
        case '-':
          return !set || (nullIsUnset && value === '') ? word : value;
        case '+':
          return !set || (nullIsUnset && value === '') ? '' : word;
        case '?':
          if (!set) throw new ShellError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
          if (nullIsUnset && value === '')
            throw new ShellError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
          return value;
        case '%':
        case '#': {
          let greedy = false;
          if (word.length > 0 && word[0] === ch) {
            greedy = true;
            word = word.slice(1);
          }
          return ch === '%' ? trimSuffix(word, value, greedy) : trimPrefix(word, value, greedy);
        }
      }
      throw new ShellError(`unsupported modifier (${chs}) in substitution`);
    }
    if (ch === '/') {
      const all = this.peek() === '/';
      if (all) this.next();
      let pattern: string;
      let replacement: string;
      try {
        pattern = this.processStopOn('/', true);
      } catch (err) {
        if (this.peek() === EOF) throw new ShellError("syntax error: missing '/' in $" + '{}');
        throw err;
      }
      try {
        replacement = this.processStopOn('}', true);
      } catch (err) {
        if (this.peek() === EOF) throw new ShellError("syntax error: missing '}'");
        throw err;
      }
      const got = this.getEnv(name);
      let value = got ?? '';
      if (this.opts.skipUnsetEnv && got === undefined) return `\${${name}/${pattern}/${replacement}}`;
      const re = patternToRegex(pattern, true, false, all);
      if (all) value = value.replace(re, () => replacement);
      else {
        const m = re.exec(value);
        if (m) value = value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
      }
      return value;
    }
    throw new ShellError(`unsupported modifier (${chs}) in substitution`);
  }
}

/**
 * A shell wildcard pattern (`*`, `?`, `\` escapes; no bracket expressions) as a RegExp,
 * exactly as BuildKit's convertShellPatternToRegex builds it.
 */
export function patternToRegex(pattern: string, greedy: boolean, anchored: boolean, global = false): RegExp {
  const chars = Array.from(pattern);
  let out = anchored ? '^' : '';
  const star = greedy ? '.*' : '.*?';
  for (let i = 0; i < chars.length; i++) {
    const tok = chars[i]!;
    if (tok === '*') {
      out += star;
      continue;
    }
    if (tok === '?') {
      out += '.';
      continue;
    }
    if (tok === '\\') {
      const n = chars[i + 1];
      // `}` and `/` are escaped only to get past the ${} parser; the escape is not part of the pattern.
      if (n === '}' || n === '/') continue;
      if (n !== '*' && n !== '?' && n !== '\\')
        throw new ShellError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${n ?? ''}'`);
      out += `\\${n}`;
      i++;
      continue;
    }
    out += /[[\]{}.+()|^$]/.test(tok) ? `\\${tok}` : tok;
  }
  return new RegExp(out, global ? 'gu' : 'u');
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = patternToRegex(pattern, greedy, true).exec(value);
  return m ? value.slice(m[0].length) : value;
}

/** Reverses a pattern without reversing its escapes (`a\*c` → `c\*a`). */
export function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out: string[] = new Array(runes.length);
  const last = runes.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = runes[i]!;
    const o = last - i;
    if (tok === '\\' && i !== last) {
      out[o - 1] = tok;
      out[o] = runes[i + 1]!;
      i += 2;
    } else {
      out[o] = tok;
      i++;
    }
  }
  return out.join('');
}

function reverse(s: string): string {
  return Array.from(s).reverse().join('');
}

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // A regexp cannot find the shortest rightmost match, so search the reversed value.
  return reverse(trimPrefix(reversePattern(pattern), reverse(value), greedy));
}

function toMap(env: EnvLike): ReadonlyMap<string, string> {
  if (env instanceof Map) return env;
  return new Map(Object.entries(env as Record<string, string>));
}

/** The result for a word with nothing to expand; its words are split only when asked for. */
class PlainResult implements WordResult {
  private split: string[] | undefined;
  readonly matched = NONE;
  readonly unmatched = NONE;
  constructor(readonly result: string) {}
  get words(): string[] {
    this.split ??= this.result.split(/\s+/u).filter((w) => w !== '');
    return this.split;
  }
}

/** Expands one word; throws ShellError (`failed to process "w": why`). */
export function processWord(word: string, env: EnvLike, opts: LexOptions = {}): WordResult {
  // Fast path: most words have nothing to expand, unquote or unescape.
  const esc = opts.escape ?? '\\';
  if (
    !word.includes('$') &&
    !word.includes(esc) &&
    (opts.skipProcessQuotes || (!word.includes("'") && !word.includes('"')))
  )
    return new PlainResult(word);
  return expand(word, env, opts, false);
}

const DEFAULT_OPTS: Required<LexOptions> = {
  escape: '\\',
  rawQuotes: false,
  rawEscapes: false,
  skipUnsetEnv: false,
  skipProcessQuotes: false,
};
const SW = new ShellWord();

function fullOpts(opts: LexOptions): Required<LexOptions> {
  if (
    (opts.escape === undefined || opts.escape === '\\') &&
    !opts.rawQuotes &&
    !opts.rawEscapes &&
    !opts.skipUnsetEnv &&
    !opts.skipProcessQuotes
  )
    return DEFAULT_OPTS;
  return {
    escape: opts.escape ?? '\\',
    rawQuotes: opts.rawQuotes ?? false,
    rawEscapes: opts.rawEscapes ?? false,
    skipUnsetEnv: opts.skipUnsetEnv ?? false,
    skipProcessQuotes: opts.skipProcessQuotes ?? false,
  };
}

function expand(word: string, env: EnvLike, opts: LexOptions, wantWords: boolean): WordResult {
  const sw = SW.reset(word, toMap(env), fullOpts(opts), wantWords);
  try {
    const result = sw.run();
    const matched = sw.matched ?? NONE;
    const unmatched = sw.unmatched ?? NONE;
    if (wantWords) return { result, words: sw.words, matched, unmatched };
    let split: string[] | undefined;
    // Splitting is rarely wanted after expansion: redo the work with splitting when asked.
    return {
      result,
      get words() {
        split ??= expand(word, env, opts, true).words;
        return split;
      },
      matched,
      unmatched,
    };
  } catch (err) {
    // A word thousands of characters long is named by its start only.
    const shown = word.length > 200 ? `${word.slice(0, 200)}…` : word;
    if (err instanceof ShellError)
      throw new ShellError(`failed to process ${JSON.stringify(shown)}: ${err.message}`);
    // A native stack too small even for the nesting allowed: still one clear error.
    if (err instanceof RangeError && /call stack/.test(err.message))
      throw new ShellError(`failed to process ${JSON.stringify(shown)}: \${…} nested too deep`);
    throw err;
  }
}

/** Expands and splits on unquoted whitespace (`ProcessWords`). */
export function processWords(word: string, env: EnvLike, opts: LexOptions = {}): string[] {
  return expand(word, env, opts, true).words;
}
