/**
 * Go templates (a careful subset of text/template) for every `--format` flag, with Go's
 * error wording so a docker user recognises them.
 *
 *   const t = parseTemplate('{{.Repository}}:{{.Tag}} {{.Size}}');
 *   t.execute({ Repository: 'busybox', Tag: 'latest', Size: '4.26MB' }); // "busybox:latest 4.26MB"
 *   formatRows('table {{.ID}}\t{{.Tag}}', rows, { header: {...} });  // formatter.ts
 *
 * Supported: text and `{{/* comments *\/}}`; `{{- ` / ` -}}` trim markers; fields `.A.B`
 * (on objects: the exact key, else a key equal ignoring case and `_`/`.`/`-`, so `.Digest`
 * finds a JSON `digest` and `.RootFS.DiffIDs` finds `rootfs.diff_ids`; function-valued
 * fields are methods, called), `.`, `$`, variables (`$x := …`, `$x = …`), string, raw
 * string, number, `true`/`false`/`nil` literals, parenthesised pipelines, `|` pipelines;
 * `if`/`else if`/`else`, `range` (slices, maps in key order, integers; `$i, $e :=`;
 * `else`; `break`, `continue`), `with`/`else with`/`else`; functions `and or not len index
 * slice eq ne lt le gt ge print printf println` (Go's builtins) and docker's `json split
 * join title lower upper pad truncate`. Not supported: `define`, `template`, `block`, `call`.
 *
 * Errors are `TemplateError`s (exit code 1, as docker's): parse errors
 * `template: :LINE:COL: function "nope" not defined`, execution errors
 * `template: :1:2: executing "" at <.Nope>: can't evaluate field Nope in type T`.
 * Columns count from 0 within the line, as Go's do.
 */
import { PolyarchError } from './errors.js';
import { GO_TYPE, goTypeName, isPlainObject, printValue, sortedKeys } from './gofmt.js';
import {
  BUILTINS,
  type TemplateFunc,
  type TemplateOptions,
  truthy,
  WrongArgs,
  WrongType,
} from './template-funcs.js';

export { GO_JSON, GO_STRING, GO_TYPE, goJson, printValue, RawJson, sprintf, tabwrite } from './gofmt.js';
export { HEADER_FUNCS, type TemplateFunc, type TemplateOptions, truthy } from './template-funcs.js';

export class TemplateError extends PolyarchError {
  constructor(message: string) {
    super('TEMPLATE', message, { exitCode: 1 });
    this.name = 'TemplateError';
  }
}

// ---------------------------------------------------------------------------------------
// Syntax tree

type Arg =
  | { k: 'field'; pos: number; names: string[] }
  | { k: 'var'; pos: number; name: string; names: string[] }
  | { k: 'dot'; pos: number }
  | { k: 'ident'; pos: number; name: string }
  | { k: 'lit'; pos: number; value: unknown; text: string }
  | { k: 'pipe'; pos: number; pipe: Pipe; names: string[] };

interface Cmd {
  pos: number;
  args: Arg[];
}

interface Pipe {
  pos: number;
  decl: string[];
  assign: boolean;
  cmds: Cmd[];
}

interface ControlNode {
  k: 'if' | 'with' | 'range';
  pos: number;
  pipe: Pipe;
  list: Node[];
  elseList: Node[] | undefined;
}

type Node =
  | { k: 'text'; text: string }
  | { k: 'action'; pos: number; pipe: Pipe }
  | ControlNode
  | { k: 'break' | 'continue'; pos: number };

function argString(a: Arg): string {
  switch (a.k) {
    case 'field':
      return a.names.map((n) => `.${n}`).join('');
    case 'var':
      return a.name + a.names.map((n) => `.${n}`).join('');
    case 'dot':
      return '.';
    case 'ident':
      return a.name;
    case 'lit':
      return a.text;
    case 'pipe':
      return `(${pipeString(a.pipe)})${a.names.map((n) => `.${n}`).join('')}`;
  }
}

function pipeString(p: Pipe): string {
  const decl = p.decl.length ? `${p.decl.join(', ')} ${p.assign ? '=' : ':='} ` : '';
  return decl + p.cmds.map((c) => c.args.map(argString).join(' ')).join(' | ');
}

// ---------------------------------------------------------------------------------------
// Lexer: one action's tokens

type Tok =
  | { t: 'field'; pos: number; name: string }
  | { t: 'var'; pos: number; name: string }
  | { t: 'dot'; pos: number }
  | { t: 'ident'; pos: number; name: string }
  | { t: 'lit'; pos: number; value: unknown; text: string }
  | { t: '|' | '(' | ')' | ',' | ':=' | '='; pos: number }
  | { t: 'space'; pos: number }
  | { t: 'end'; pos: number };

const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const isAlnum = (c: string | undefined) => c !== undefined && /[\p{L}\p{N}_]/u.test(c);

class Parser {
  readonly #src: string;
  readonly #funcs: ReadonlySet<string>;
  #pos = 0;
  #toks: Tok[] = [];
  #ti = 0;
  #vars: string[][] = [['$']];

  constructor(src: string, funcs: ReadonlySet<string>) {
    this.#src = src;
    this.#funcs = funcs;
  }

  fail(pos: number, msg: string): never {
    throw new TemplateError(`template: ${location(this.#src, pos)}: ${msg}`);
  }

  parse(): Node[] {
    const { list, end } = this.#list();
    if (end) this.fail(end.pos, `unexpected {{${end.word}}}`);
    return list;
  }

  /** Nodes up to `{{end}}`/`{{else …}}` (returned) or the end of the text. */
  #list(): { list: Node[]; end?: { word: 'end' | 'else'; pos: number } } {
    const list: Node[] = [];
    for (;;) {
      const open = this.#src.indexOf('{{', this.#pos);
      let text = this.#src.slice(this.#pos, open < 0 ? undefined : open);
      if (open < 0) {
        if (text) list.push({ k: 'text', text });
        return { list };
      }
      let start = open + 2;
      if (this.#src[start] === '-' && isSpace(this.#src[start + 1])) {
        text = text.replace(/[ \t\r\n]+$/, '');
        start += 2;
      }
      if (text) list.push({ k: 'text', text });
      this.#pos = start;
      // A comment: {{/* … */}} with nothing else in the action.
      const lead = this.#src.slice(start).match(/^[ \t\r\n]*/)![0].length;
      if (this.#src.startsWith('/*', start + lead)) {
        const close = this.#src.indexOf('*/', start + lead + 2);
        if (close < 0) this.fail(open, 'unclosed comment');
        const after = this.#src.slice(close + 2);
        const m = /^([ \t\r\n]+-)?\}\}/.exec(after);
        if (!m) this.fail(close, 'comment ends before closing delimiter');
        this.#pos = close + 2 + m[0].length;
        if (m[1]) this.#trimAfter();
        continue;
      }
      this.#lexAction(open);
      const first = this.#peekNonSpace();
      if (
        first.t === 'ident' &&
        ['end', 'else', 'if', 'range', 'with', 'break', 'continue'].includes(first.name)
      ) {
        this.#next();
        switch (first.name) {
          case 'end':
            this.#expectEnd('end');
            return { list, end: { word: 'end', pos: first.pos } };
          case 'else':
            // `{{else}}` ends the list; `{{else if …}}` is handled by the caller reading on.
            return { list, end: { word: 'else', pos: first.pos } };
          case 'break':
          case 'continue':
            if (!this.#inRange) this.fail(first.pos, `{{${first.name}}} outside {{range}}`);
            this.#expectEnd(first.name);
            list.push({ k: first.name, pos: first.pos });
            continue;
          default:
            list.push(this.#control(first.name as 'if' | 'range' | 'with', first.pos));
            continue;
        }
      }
      if (first.t === 'ident' && ['define', 'template', 'block'].includes(first.name))
        this.fail(first.pos, `{{${first.name}}} is not supported`);
      const pipe = this.#pipeline('command', true);
      list.push({ k: 'action', pos: pipe.pos, pipe });
    }
  }

  #rangeDepth = 0;
  get #inRange(): boolean {
    return this.#rangeDepth > 0;
  }

  #control(kind: 'if' | 'range' | 'with', pos: number): Node {
    this.#vars.push([]);
    const pipe = this.#pipeline(kind, kind === 'range');
    if (kind === 'range') this.#rangeDepth++;
    const body = this.#list();
    if (kind === 'range') this.#rangeDepth--;
    if (!body.end) this.fail(this.#src.length, 'unexpected EOF');
    let elseList: Node[] | undefined;
    if (body.end.word === 'else') {
      const nextTok = this.#peekNonSpace();
      if ((kind === 'if' || kind === 'with') && nextTok.t === 'ident' && nextTok.name === kind) {
        // `{{else if x}}` is `{{else}}{{if x}}…{{end}}` sharing this {{end}}.
        this.#next();
        elseList = [this.#control(kind, nextTok.pos)];
      } else {
        this.#expectEnd('else');
        const rest = this.#list();
        if (!rest.end) this.fail(this.#src.length, 'unexpected EOF');
        if (rest.end.word !== 'end') this.fail(rest.end.pos, 'expected end; found {{else}}');
        elseList = rest.list;
      }
    }
    this.#vars.pop();
    return { k: kind, pos, pipe, list: body.list, elseList };
  }

  #trimAfter(): void {
    while (isSpace(this.#src[this.#pos])) this.#pos++;
  }

  #expectEnd(word: string): void {
    const t = this.#peekNonSpace();
    if (t.t !== 'end') this.fail(t.pos, `unexpected ${this.#describe(t)} in ${word}`);
    this.#next();
  }

  // -- tokens

  #lexAction(open: number): void {
    const toks: Tok[] = [];
    const src = this.#src;
    let p = this.#pos;
    let parens = 0;
    for (;;) {
      if (p >= src.length) this.fail(open, 'unclosed action');
      const c = src[p]!;
      if (src.startsWith('}}', p) && parens === 0) {
        toks.push({ t: 'end', pos: p });
        this.#pos = p + 2;
        break;
      }
      if (isSpace(c)) {
        const s = p;
        while (isSpace(src[p])) p++;
        if (src[p] === '-' && src.startsWith('}}', p + 1)) {
          toks.push({ t: 'end', pos: s });
          this.#pos = p + 3;
          this.#trimAfter();
          break;
        }
        toks.push({ t: 'space', pos: s });
        continue;
      }
      if (src.startsWith('}}', p)) this.fail(p, 'unclosed left paren');
      if (c === '|' || c === ',' || c === '(' || c === ')') {
        if (c === '(') parens++;
        if (c === ')') {
          if (parens === 0) this.fail(p, 'unexpected right paren');
          parens--;
        }
        toks.push({ t: c, pos: p++ });
        continue;
      }
      if (c === ':' && src[p + 1] === '=') {
        toks.push({ t: ':=', pos: p });
        p += 2;
        continue;
      }
      if (c === '=') {
        toks.push({ t: '=', pos: p++ });
        continue;
      }
      if (c === '"' || c === '`') {
        const s = p;
        let value = '';
        if (c === '`') {
          const e = src.indexOf('`', p + 1);
          if (e < 0) this.fail(s, 'unterminated raw quoted string');
          value = src.slice(p + 1, e);
          p = e + 1;
        } else {
          p++;
          for (;;) {
            const ch = src[p];
            if (ch === undefined || ch === '\n') this.fail(s, 'unterminated quoted string');
            if (ch === '"') break;
            if (ch === '\\') p += 2;
            else p++;
          }
          p++;
          try {
            value = JSON.parse(
              src
                .slice(s, p)
                .replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1')
                .replace(/\\a/g, '\\u0007')
                .replace(/\\v/g, '\\u000b')
                .replace(/\\'/g, "'"),
            );
          } catch {
            this.fail(s, `invalid syntax: ${src.slice(s, p)}`);
          }
        }
        toks.push({ t: 'lit', pos: s, value, text: src.slice(s, p) });
        continue;
      }
      if (c === "'") {
        const m = /^'(\\.|[^\\'])'/u.exec(src.slice(p));
        if (!m) this.fail(p, 'unterminated character constant');
        const ch = m[1]!.length === 2 ? (JSON.parse(`"${m[1]}"`) as string) : m[1]!;
        toks.push({ t: 'lit', pos: p, value: ch.codePointAt(0), text: m[0] });
        p += m[0].length;
        continue;
      }
      const num =
        /^[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?)/.exec(
          src.slice(p),
        );
      if (num && (/\d/.test(c) || ((c === '-' || c === '+' || c === '.') && /\d/.test(src[p + 1] ?? '')))) {
        const text = num[0];
        const clean = text.replace(/_/g, '');
        const value = /^[+-]?0[bBoO]/.test(clean)
          ? (clean.startsWith('-') ? -1 : 1) * Number(clean.replace(/^[+-]/, ''))
          : Number(clean);
        if (Number.isNaN(value)) this.fail(p, `bad number syntax: "${text}"`);
        toks.push({ t: 'lit', pos: p, value, text });
        p += text.length;
        continue;
      }
      if (c === '.') {
        const s = p;
        p++;
        let name = '';
        while (isAlnum(src[p])) name += src[p++];
        toks.push(name ? { t: 'field', pos: s, name } : { t: 'dot', pos: s });
        continue;
      }
      if (c === '$') {
        const s = p;
        p++;
        let name = '$';
        while (isAlnum(src[p])) name += src[p++];
        toks.push({ t: 'var', pos: s, name });
        continue;
      }
      if (isAlnum(c)) {
        const s = p;
        let name = '';
        while (isAlnum(src[p])) name += src[p++];
        if (name === 'true' || name === 'false')
          toks.push({ t: 'lit', pos: s, value: name === 'true', text: name });
        else if (name === 'nil') toks.push({ t: 'lit', pos: s, value: null, text: name });
        else toks.push({ t: 'ident', pos: s, name });
        continue;
      }
      const cp = c.codePointAt(0)!;
      this.fail(p, `bad character U+${cp.toString(16).toUpperCase().padStart(4, '0')} '${c}'`);
    }
    this.#toks = toks;
    this.#ti = 0;
  }

  #peek(): Tok {
    return this.#toks[this.#ti] ?? { t: 'end', pos: this.#src.length };
  }

  #next(): Tok {
    const t = this.#peek();
    if (this.#ti < this.#toks.length) this.#ti++;
    return t;
  }

  #peekNonSpace(): Tok {
    while (this.#peek().t === 'space') this.#ti++;
    return this.#peek();
  }

  #describe(t: Tok): string {
    switch (t.t) {
      case 'end':
        return '"}}"';
      case 'field':
        return `<.${t.name}>`;
      case 'var':
        return `<${t.name}>`;
      case 'ident':
        return `<${t.name}>`;
      case 'lit':
        return t.text;
      case 'dot':
        return '<.>';
      case 'space':
        return 'space';
      default:
        return `"${t.t}"`;
    }
  }

  // -- pipelines

  #pipeline(context: string, allowDecl: boolean): Pipe {
    const start = this.#peekNonSpace();
    const decl: string[] = [];
    let assign = false;
    // `$x :=`, `$x =`, `$i, $e :=` (range only takes two).
    const save = this.#ti;
    if (start.t === 'var') {
      const names: string[] = [];
      let ok = false;
      for (;;) {
        const v = this.#peekNonSpace();
        if (v.t !== 'var') break;
        this.#next();
        names.push(v.name);
        const op = this.#peekNonSpace();
        if (op.t === ':=' || op.t === '=') {
          this.#next();
          assign = op.t === '=';
          ok = true;
          break;
        }
        if (op.t === ',' && allowDecl && context === 'range' && names.length === 1) {
          this.#next();
          continue;
        }
        break;
      }
      if (ok) {
        if (names.length > 1 && context !== 'range') this.fail(start.pos, 'too many declarations in command');
        for (const n of names) {
          if (assign) this.#lookupVar(n, start.pos);
          else this.#vars[this.#vars.length - 1]!.push(n);
        }
        decl.push(...names);
      } else this.#ti = save;
    }
    const cmds: Cmd[] = [];
    for (;;) {
      const cmd = this.#command();
      if (cmd.args.length === 0) this.fail(cmd.pos, `missing value for ${context}`);
      cmds.push(cmd);
      const t = this.#peekNonSpace();
      if (t.t === '|') {
        this.#next();
        continue;
      }
      if (t.t === 'end' || t.t === ')') break;
      this.fail(t.pos, `unexpected ${this.#describe(t)} in ${context}`);
    }
    for (let i = 1; i < cmds.length; i++) {
      const a = cmds[i]!.args[0]!;
      if (a.k === 'lit' || a.k === 'dot' || (a.k === 'pipe' && a.names.length === 0))
        this.fail(a.pos, `non executable command in pipeline stage ${i + 1}`);
    }
    const t = this.#peekNonSpace();
    if (t.t === 'end') this.#next();
    return { pos: start.pos, decl, assign, cmds };
  }

  #lookupVar(name: string, pos: number): void {
    if (!this.#vars.some((scope) => scope.includes(name))) this.fail(pos, `undefined variable "${name}"`);
  }

  #command(): Cmd {
    const pos = this.#peekNonSpace().pos;
    const args: Arg[] = [];
    for (;;) {
      const t = this.#peekNonSpace();
      if (t.t === 'end' || t.t === '|' || t.t === ')') break;
      args.push(this.#operand());
      const after = this.#peek();
      if (after.t !== 'space' && after.t !== 'end' && after.t !== '|' && after.t !== ')')
        this.fail(after.pos, `unexpected ${this.#describe(after)} in operand`);
    }
    return { pos, args };
  }

  #fields(): string[] {
    const names: string[] = [];
    while (this.#peek().t === 'field') names.push((this.#next() as { name: string }).name);
    return names;
  }

  #operand(): Arg {
    const t = this.#next();
    switch (t.t) {
      case 'field':
        return { k: 'field', pos: t.pos, names: [t.name, ...this.#fields()] };
      case 'var':
        this.#lookupVar(t.name, t.pos);
        return { k: 'var', pos: t.pos, name: t.name, names: this.#fields() };
      case 'dot':
        if (this.#peek().t === 'field') this.fail(t.pos, 'unexpected . after term "."');
        return { k: 'dot', pos: t.pos };
      case 'lit':
        return { k: 'lit', pos: t.pos, value: t.value, text: t.text };
      case 'ident':
        if (!this.#funcs.has(t.name)) this.fail(t.pos, `function "${t.name}" not defined`);
        return { k: 'ident', pos: t.pos, name: t.name };
      case '(': {
        const pipe = this.#pipeline('parenthesized pipeline', false);
        const close = this.#next();
        if (close.t !== ')') this.fail(t.pos, 'unclosed left paren');
        return { k: 'pipe', pos: t.pos, pipe, names: this.#fields() };
      }
      default:
        this.fail(t.pos, `unexpected ${this.#describe(t)} in operand`);
    }
  }
}

/** `:LINE:COL` of an offset, as Go's ErrorContext writes it (column from 0). */
function location(src: string, pos: number): string {
  const before = src.slice(0, pos);
  const nl = before.lastIndexOf('\n');
  const line = 1 + (before.match(/\n/g)?.length ?? 0);
  return `:${line}:${nl < 0 ? pos : pos - nl - 1}`;
}

// ---------------------------------------------------------------------------------------
// Execution

class Break {}
class Continue {}

/** A key that names a Go field: case, `_`, `.` and `-` ignored. */
const foldKey = (k: string) => k.toLowerCase().replace(/[_.-]/g, '');

function field(receiver: unknown, name: string, fail: (msg: string) => never): unknown {
  if (receiver === undefined) return undefined; // a missing map entry: <no value> all the way down
  if (receiver === null) fail(`nil pointer evaluating interface {}.${name}`);
  if (receiver instanceof Map) return receiver.get(name);
  if (isPlainObject(receiver)) {
    let key: string | undefined = Object.hasOwn(receiver, name) ? name : undefined;
    if (key === undefined) {
      const want = foldKey(name);
      key = Object.keys(receiver).find((k) => foldKey(k) === want);
    }
    if (key === undefined) fail(`can't evaluate field ${name} in type ${goTypeName(receiver)}`);
    return receiver[key];
  }
  fail(`can't evaluate field ${name} in type ${goTypeName(receiver)}`);
}

export class Template {
  readonly source: string;
  readonly #root: Node[];
  readonly #funcs: Record<string, TemplateFunc>;

  constructor(source: string, opts: TemplateOptions = {}) {
    this.source = source;
    this.#funcs = { ...BUILTINS, ...opts.funcs };
    this.#root = new Parser(source, new Set(Object.keys(this.#funcs))).parse();
  }

  /** Runs the template on `data`; `funcs` replace functions for this run (e.g. HEADER_FUNCS). */
  execute(data: unknown, funcs?: Readonly<Record<string, TemplateFunc>>): string {
    const out: string[] = [];
    try {
      new Exec(this.source, funcs ? { ...this.#funcs, ...funcs } : this.#funcs, data, out).walk(
        data,
        this.#root,
      );
    } catch (err) {
      if (err instanceof TemplateError) (err as TemplateError & { partial?: string }).partial = out.join('');
      throw err;
    }
    return out.join('');
  }
}

class Exec {
  readonly #vars: Array<{ name: string; value: unknown }>;

  constructor(
    readonly src: string,
    readonly funcs: Record<string, TemplateFunc>,
    root: unknown,
    readonly out: string[],
  ) {
    this.#vars = [{ name: '$', value: root }];
  }

  error(pos: number, context: string, msg: string): never {
    throw new TemplateError(`template: ${location(this.src, pos)}: executing "" at <${context}>: ${msg}`);
  }

  walk(dot: unknown, list: Node[]): void {
    for (const n of list) {
      switch (n.k) {
        case 'text':
          this.out.push(n.text);
          break;
        case 'action': {
          const v = this.pipe(dot, n.pipe);
          if (n.pipe.decl.length === 0) this.out.push(this.print(v, n.pipe));
          break;
        }
        case 'if':
        case 'with': {
          const mark = this.#vars.length;
          const v = this.pipe(dot, n.pipe);
          if (truthy(v)) this.walk(n.k === 'with' ? v : dot, n.list);
          else if (n.elseList) this.walk(dot, n.elseList);
          this.#vars.length = mark;
          break;
        }
        case 'range':
          this.range(dot, n);
          break;
        case 'break':
          throw new Break();
        case 'continue':
          throw new Continue();
      }
    }
  }

  print(v: unknown, pipe: Pipe): string {
    if (typeof v === 'function') {
      const a = pipe.cmds[pipe.cmds.length - 1]!.args[0]!;
      this.error(a.pos, argString(a), "can't print a function");
    }
    return printValue(v);
  }

  range(dot: unknown, n: ControlNode): void {
    const mark = this.#vars.length;
    // The declared variables get each element, not the whole value.
    const value = this.pipe(dot, { ...n.pipe, decl: [] });
    let items: Array<[unknown, unknown]>;
    if (Array.isArray(value)) items = value.map((e, i) => [i, e]);
    else if (value instanceof Map) items = sortedKeys(value).map((k) => [k, value.get(k)]);
    else if (typeof value === 'number' && Number.isInteger(value))
      items = Array.from({ length: Math.max(0, value) }, (_, i) => [i, i]);
    else if (value === undefined || value === null) items = [];
    else if (isPlainObject(value) && !(GO_TYPE in value))
      // An untyped object is JSON's map (labels, annotations): its entries in key order.
      items = Object.keys(value)
        .sort()
        .map((k) => [k, value[k]]);
    else this.error(n.pos, pipeString(n.pipe), `range can't iterate over ${printValue(value)}`);
    if (items.length === 0) {
      if (n.elseList) this.walk(dot, n.elseList);
      this.#vars.length = mark;
      return;
    }
    for (const [k, e] of items) {
      const inner = this.#vars.length;
      if (n.pipe.decl.length === 1) this.#vars.push({ name: n.pipe.decl[0]!, value: e });
      else if (n.pipe.decl.length === 2)
        this.#vars.push({ name: n.pipe.decl[0]!, value: k }, { name: n.pipe.decl[1]!, value: e });
      try {
        this.walk(e, n.list);
      } catch (err) {
        if (err instanceof Break) break;
        if (!(err instanceof Continue)) throw err;
      } finally {
        this.#vars.length = inner;
      }
    }
    this.#vars.length = mark;
  }

  pipe(dot: unknown, p: Pipe): unknown {
    let v: unknown;
    let has = false;
    for (const c of p.cmds) {
      v = this.command(dot, c, has ? { value: v } : undefined);
      has = true;
    }
    for (const name of p.decl) {
      if (p.assign) {
        const slot = [...this.#vars].reverse().find((x) => x.name === name);
        if (slot) slot.value = v;
      } else this.#vars.push({ name, value: v });
    }
    return v;
  }

  command(dot: unknown, c: Cmd, final: { value: unknown } | undefined): unknown {
    const first = c.args[0]!;
    const rest = c.args.slice(1);
    switch (first.k) {
      case 'ident':
        return this.call(dot, first, rest, final);
      case 'field':
        return this.chain(dot, dot, first, first.names, rest, final);
      case 'var':
        return this.chain(dot, this.variable(first.name), first, first.names, rest, final);
      case 'pipe':
        return this.chain(dot, this.pipe(dot, first.pipe), first, first.names, rest, final);
      default:
        if (rest.length > 0 || final)
          this.error(first.pos, argString(first), `can't give argument to non-function ${argString(first)}`);
        return this.arg(dot, first);
    }
  }

  variable(name: string): unknown {
    for (let i = this.#vars.length - 1; i >= 0; i--)
      if (this.#vars[i]!.name === name) return this.#vars[i]!.value;
    return undefined;
  }

  /** Walks `.A.B` from `receiver`; the last name may be a method taking `args` (and `final`). */
  chain(
    dot: unknown,
    receiver: unknown,
    node: Arg,
    names: string[],
    args: Arg[],
    final?: { value: unknown },
  ): unknown {
    const ctx = argString(node);
    const fail = (msg: string): never => this.error(node.pos, ctx, msg);
    let v = receiver;
    names.forEach((name, i) => {
      const last = i === names.length - 1;
      v = field(v, name, fail);
      if (typeof v === 'function') {
        const params = last ? [...args.map((a) => this.arg(dot, a)), ...(final ? [final.value] : [])] : [];
        try {
          v = (v as TemplateFunc)(...params);
        } catch (err) {
          fail(`error calling ${name}: ${err instanceof Error ? err.message : String(err)}`);
        }
      } else if (last && (args.length > 0 || final))
        fail(`${name} has arguments but cannot be invoked as function`);
    });
    if (names.length === 0 && (args.length > 0 || final)) fail(`can't give argument to non-function ${ctx}`);
    return v;
  }

  call(dot: unknown, fn: Extract<Arg, { k: 'ident' }>, argNodes: Arg[], final?: { value: unknown }): unknown {
    const f = this.funcs[fn.name]!;
    // and/or stop at the first argument that decides them, as Go's do.
    if ((fn.name === 'and' || fn.name === 'or') && argNodes.length > 0) {
      let v: unknown;
      for (const a of argNodes) {
        v = this.arg(dot, a);
        if (truthy(v) === (fn.name === 'or')) return v;
      }
      return final ? final.value : v;
    }
    const args = argNodes.map((a) => this.arg(dot, a));
    if (final) args.push(final.value);
    try {
      return f(...args);
    } catch (err) {
      if (err instanceof WrongType) {
        const node = argNodes[err.index];
        if (node) this.error(node.pos, argString(node), err.message);
        this.error(fn.pos, fn.name, err.message);
      }
      if (err instanceof WrongArgs) this.error(fn.pos, fn.name, err.message);
      if (err instanceof TemplateError) throw err;
      this.error(
        fn.pos,
        fn.name,
        `error calling ${fn.name}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  arg(dot: unknown, a: Arg): unknown {
    switch (a.k) {
      case 'dot':
        return dot;
      case 'lit':
        return a.value;
      case 'field':
        return this.chain(dot, dot, a, a.names, []);
      case 'var':
        return this.chain(dot, this.variable(a.name), a, a.names, []);
      case 'pipe':
        return this.chain(dot, this.pipe(dot, a.pipe), a, a.names, []);
      case 'ident':
        return this.call(dot, a, []);
    }
  }
}

/** Parses `source`; a syntax error is a TemplateError naming line and column. */
export function parseTemplate(source: string, opts: TemplateOptions = {}): Template {
  return new Template(source, opts);
}
