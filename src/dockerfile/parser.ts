/**
 * Dockerfile text → AST, with BuildKit's parser rules (frontend/dockerfile/parser).
 *
 * `parseDockerfile(text, {file})` returns the parser directives (`# syntax=`, `# escape=`,
 * `# check=`), and one `Node` per instruction: its keyword, the flags written before its
 * arguments (`--from=x`, quotes removed), the argument text, heredocs read after it, and the
 * source range it spans. Continuation lines (ending with the escape character) are joined;
 * comment lines and blank lines inside a continuation are skipped (the blank ones are
 * recorded for the NoEmptyContinuation check). Errors are `DockerfileError`s with a range.
 */
import { DockerfileError, type Range } from './errors.js';
import { processWord } from './shell.js';

export interface Heredoc {
  /** The delimiter word, quotes removed. */
  name: string;
  /** The body, each line followed by `\n` (tabs not yet removed for `<<-`). */
  content: string;
  /** False when any part of the delimiter was quoted: the body is then taken literally. */
  expand: boolean;
  /** `<<-`: leading tabs are removed from each body line. */
  chomp: boolean;
  /** `3<<EOF` → 3; 0 when not written. */
  fileDescriptor: number;
}

export interface Node {
  /** The instruction keyword, lower case (`run`). */
  keyword: string;
  /** The keyword as written (for the casing checks). */
  rawKeyword: string;
  /** Flags before the arguments, `--name[=value]`, quotes removed. */
  flags: string[];
  /** Argument text after the flags, trimmed (continuations joined). */
  rest: string;
  /** The whole logical line as joined (keyword, flags and arguments). */
  original: string;
  range: Range;
  heredocs: Heredoc[];
  /** Comment lines directly above the instruction (text after `#`). */
  comments: string[];
  /** Lines inside the continuation that were blank. */
  emptyContinuationLines: number[];
}

export interface Directives {
  syntax?: string;
  /** The escape character: `\` (default) or `` ` ``. */
  escape: string;
  /** Raw `# check=` value, e.g. `skip=JSONArgsRecommended;error=true`. */
  check?: string;
  /** Line of each directive seen, by name. */
  lines: Record<string, number>;
}

export interface ParsedDockerfile {
  file: string;
  directives: Directives;
  nodes: Node[];
  /** The source split in lines (index 0 = line 1), for error and warning context. */
  lines: string[];
}

export interface ParseOptions {
  /** The file name used in errors (`Dockerfile` when not set). */
  file?: string;
}

const CONTINUATION_BACKSLASH = /\\[ \t]*$/;
const CONTINUATION_BACKTICK = /`[ \t]*$/;
const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN_DIRECTIVES = new Set(['syntax', 'escape', 'check']);
const HEREDOC_KEYWORDS = new Set(['run', 'copy', 'add']);
const HEREDOC_WORD = /^(\d*)<<(-?)([^<]*)$/;

export const KEYWORDS = [
  'add',
  'arg',
  'cmd',
  'copy',
  'entrypoint',
  'env',
  'expose',
  'from',
  'healthcheck',
  'label',
  'maintainer',
  'onbuild',
  'run',
  'shell',
  'stopsignal',
  'user',
  'volume',
  'workdir',
] as const;
const KEYWORD_SET = new Set<string>(KEYWORDS);

function isComment(line: string): boolean {
  return /^\s*#/.test(line);
}

export function levenshtein(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

/** The closest of `options` to `word` (case-insensitive, at most 2 edits), for "did you mean" hints. */
export function suggest(word: string, options: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Math.min(3, word.length);
  for (const o of options) {
    if (o === word) continue;
    const dist =
      o.toLowerCase() === word.toLowerCase() ? 0 : levenshtein(word.toLowerCase(), o.toLowerCase());
    if (dist < bestD) {
      bestD = dist;
      best = o;
    }
  }
  return best;
}

/** The closest known keyword to a misspelt one, for "did you mean" hints. */
export function suggestKeyword(word: string): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const k of KEYWORDS) {
    const dist = levenshtein(word.toLowerCase(), k);
    if (dist < bestD) {
      bestD = dist;
      best = k;
    }
  }
  return best;
}

/**
 * Splits flags off the front of an argument string the way BuildKit's extractBuilderFlags
 * does: words starting with `--`, quotes removed, `\` escaping one character; a lone `--`
 * ends the flags. Returns the remaining text and the flag words.
 */
export function extractFlags(line: string): { rest: string; flags: string[] } {
  const flags: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= line.length; pos++) {
    const ch = pos < line.length ? line[pos]! : '';
    if (phase === 'spaces') {
      if (pos === line.length) break;
      if (/\s/.test(ch)) continue;
      if (ch !== '-' || pos + 1 === line.length || line[pos + 1] !== '-')
        return { rest: line.slice(pos), flags };
      phase = 'word';
    }
    if (pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === 'word') {
      if (/\s/.test(ch)) {
        phase = 'spaces';
        if (word === '--') return { rest: line.slice(pos), flags };
        if (blankOK || word.length > 0) flags.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      let c = ch;
      if (c === '\\') {
        if (pos + 1 === line.length) continue;
        pos++;
        c = line[pos]!;
      }
      word += c;
      continue;
    }
    // phase === 'quote'
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    let c = ch;
    if (c === '\\') {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
      c = line[pos]!;
    }
    word += c;
  }
  return { rest: '', flags };
}

/** A heredoc marker word (`<<EOF`, `<<-"EOF"`, `3<<'X'`) or undefined when it is not one. */
export function parseHeredocWord(src: string): Omit<Heredoc, 'content'> | undefined {
  if (!src.includes('<<')) return undefined;
  const m = HEREDOC_WORD.exec(src);
  if (!m) return undefined;
  const rest = m[3]!;
  if (rest.length === 0) return undefined;
  const plain = processWord(rest, {}, { skipUnsetEnv: true }).words;
  if (plain.length !== 1) return undefined;
  const raw = processWord(rest, {}, { skipUnsetEnv: true, rawQuotes: true }).words;
  const quotes = (s: string) => (s.match(/['"]/g) ?? []).length;
  return {
    name: plain[0]!,
    expand: quotes(plain[0]!) === quotes(raw[0] ?? ''),
    chomp: m[2] === '-',
    fileDescriptor: m[1] ? Number(m[1]) : 0,
  };
}

function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = processWord(line, {}, { rawQuotes: true, rawEscapes: true }).words;
  } catch {
    return [];
  }
  const out: Omit<Heredoc, 'content'>[] = [];
  for (const w of words) {
    const h = parseHeredocWord(w);
    if (h) out.push(h);
  }
  return out;
}

/** Removes the leading tabs of every line (`<<-`). */
export function chompHeredocContent(content: string): string {
  return content.replace(/^\t+/gm, '');
}

/** Splits one logical line into keyword, flags and the argument text. */
export function splitInstruction(line: string): { rawKeyword: string; flags: string[]; rest: string } {
  const trimmed = line.trim();
  const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(trimmed);
  const rawKeyword = m?.[1] ?? '';
  const { rest, flags } = extractFlags(m?.[2] ?? '');
  return { rawKeyword, flags, rest: rest.trim() };
}

export function parseDockerfile(text: string, opts: ParseOptions = {}): ParsedDockerfile {
  const file = opts.file ?? 'Dockerfile';
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  // A trailing newline does not start another line.
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  const directives: Directives = { escape: '\\', lines: {} };
  let directivesDone = false;
  const located = (msg: string, start: number, end = start): DockerfileError =>
    new DockerfileError(msg, { file, range: lineRange(lines, start, end), lines });

  const possibleDirective = (line: string, lineNo: number): void => {
    if (directivesDone) return;
    const m = DIRECTIVE.exec(line);
    const key = m?.[1]?.toLowerCase();
    if (!m || !key || !KNOWN_DIRECTIVES.has(key)) {
      directivesDone = true;
      return;
    }
    if (key in directives.lines) throw located(`only one ${key} parser directive can be used`, lineNo);
    directives.lines[key] = lineNo;
    const value = m[2]!;
    if (key === 'escape') {
      if (value !== '`' && value !== '\\')
        throw located(`invalid escape token '${value}' does not match ` + '` or \\', lineNo);
      directives.escape = value;
    } else if (key === 'syntax') directives.syntax = value;
    else directives.check = value;
  };

  const continuation = (line: string): [string, boolean] => {
    const re = directives.escape === '`' ? CONTINUATION_BACKTICK : CONTINUATION_BACKSLASH;
    const m = re.exec(line);
    if (m) return [line.slice(0, m.index), false];
    return [line, true];
  };

  const nodes: Node[] = [];
  let comments: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const raw = lines[i]!;
    i++;
    const lineNo = i;
    if (isComment(raw)) {
      const c = raw.trim().slice(1).trim();
      if (c === '') comments = [];
      else comments.push(c);
    }
    let line = raw.replace(/^[ \t]+/, '');
    possibleDirective(line, lineNo);
    if (isComment(line)) line = '';
    const startLine = lineNo;
    let [joined, isEnd] = continuation(line);
    if (isEnd && joined.trim() === '') {
      if (raw.trim() === '') comments = [];
      continue;
    }
    const empty: number[] = [];
    let endLine = startLine;
    while (!isEnd && i < lines.length) {
      const next = lines[i]!;
      i++;
      possibleDirective(next, i);
      if (isComment(next)) continue;
      if (next.trim() === '') {
        empty.push(i);
        continue;
      }
      endLine = i;
      const [part, end] = continuation(next);
      joined += part;
      isEnd = end;
    }
    const { rawKeyword, flags, rest } = splitInstruction(joined);
    const keyword = rawKeyword.toLowerCase();
    if (!KEYWORD_SET.has(keyword)) {
      const hint = suggestKeyword(keyword);
      throw located(
        `unknown instruction: ${rawKeyword}${hint ? ` (did you mean ${hint.toUpperCase()}?)` : ''}`,
        startLine,
        endLine,
      );
    }
    const heredocs: Heredoc[] = [];
    const isJSON = /^\s*\[/.test(rest) && isJSONStringArray(rest);
    if (HEREDOC_KEYWORDS.has(keyword) && !isJSON && joined.includes('<<')) {
      for (const h of heredocsFromLine(joined)) {
        let content = '';
        let terminated = false;
        while (i < lines.length) {
          const body = lines[i]!;
          i++;
          endLine = i;
          const candidate = h.chomp ? body.replace(/^\t+/, '') : body;
          if (candidate === h.name) {
            terminated = true;
            break;
          }
          content += `${body}\n`;
        }
        if (!terminated) throw located('unterminated heredoc', startLine, Math.max(endLine, startLine));
        heredocs.push({ ...h, content });
      }
    }
    nodes.push({
      keyword,
      rawKeyword,
      flags,
      rest,
      original: joined.trim(),
      range: lineRange(lines, startLine, endLine),
      heredocs,
      comments,
      emptyContinuationLines: empty,
    });
    comments = [];
  }
  return { file, directives, nodes, lines };
}

/** True when `s` is a JSON array made only of strings (exec form). */
export function isJSONStringArray(s: string): boolean {
  try {
    const v: unknown = JSON.parse(s);
    return Array.isArray(v) && v.every((x) => typeof x === 'string');
  } catch {
    return false;
  }
}

export function lineRange(lines: readonly string[], start: number, end: number): Range {
  const first = lines[start - 1] ?? '';
  const last = lines[end - 1] ?? '';
  return {
    start: { line: start, character: first.length - first.replace(/^\s+/, '').length },
    end: { line: end, character: last.length },
  };
}
