/**
 * AST node → typed instruction, before any variable expansion (BuildKit's
 * frontend/dockerfile/instructions). `toInstruction(node, ctx)` validates arity, flags and
 * the exec (JSON) vs shell form, and throws located `DockerfileError`s. The planner
 * (plan.ts) expands the words each instruction expands, in the right environment.
 */
import { DockerfileError } from './errors.js';
import { type Heredoc, type Node, parseHeredocWord, splitInstruction } from './parser.js';

interface Base {
  range: Node['range'];
  node: Node;
}

export interface FromInstruction extends Base {
  kind: 'FROM';
  image: string;
  /** Stage name, lower-cased as BuildKit does. */
  name?: string;
  /** `AS` keyword as written (for FromAsCasing) and the name as written (StageNameCasing). */
  asKeyword?: string;
  rawName?: string;
  platform?: string;
}

export interface RunInstruction extends Base {
  kind: 'RUN';
  /** Exec form: the argv; shell form: one element, the command line. */
  cmd: string[];
  shellForm: boolean;
  heredocs: Heredoc[];
  mounts: string[];
  network?: string;
  security?: string;
}

export interface CmdInstruction extends Base {
  kind: 'CMD' | 'ENTRYPOINT';
  cmd: string[];
  shellForm: boolean;
}

export interface KeyValue {
  key: string;
  value: string;
}

export interface EnvInstruction extends Base {
  kind: 'ENV' | 'LABEL';
  pairs: KeyValue[];
  /** `ENV key value` (whitespace-separated legacy form). */
  legacy: boolean;
}

export interface CopyInstruction extends Base {
  kind: 'COPY' | 'ADD';
  /** Source words (heredoc markers removed: see `contents`). */
  sources: string[];
  /** Inline sources from heredocs: path = the heredoc name. */
  contents: { path: string; data: string; expand: boolean }[];
  dest: string;
  json: boolean;
  from?: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  parents: boolean;
  exclude: string[];
  checksum?: string;
  keepGitDir?: boolean;
}

export interface ListInstruction extends Base {
  kind: 'EXPOSE' | 'VOLUME';
  values: string[];
}

export interface StringInstruction extends Base {
  kind: 'USER' | 'WORKDIR' | 'STOPSIGNAL' | 'MAINTAINER';
  value: string;
}

export interface ArgInstruction extends Base {
  kind: 'ARG';
  args: { key: string; value?: string }[];
}

export interface OnbuildInstruction extends Base {
  kind: 'ONBUILD';
  /** The trigger instruction's text, unexpanded (stored in the image config as is). */
  expression: string;
}

export interface HealthcheckInstruction extends Base {
  kind: 'HEALTHCHECK';
  /** `['NONE']`, `['CMD', ...argv]` or `['CMD-SHELL', line]` (the image config's Test). */
  test: string[];
  shellForm: boolean;
  /** Durations in nanoseconds (0 = inherit/default), as the image config stores them. */
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}

export interface ShellInstruction extends Base {
  kind: 'SHELL';
  shell: string[];
}

export type Instruction =
  | FromInstruction
  | RunInstruction
  | CmdInstruction
  | EnvInstruction
  | CopyInstruction
  | ListInstruction
  | StringInstruction
  | ArgInstruction
  | OnbuildInstruction
  | HealthcheckInstruction
  | ShellInstruction;

export interface InstructionContext {
  file: string;
  lines: readonly string[];
  escape: string;
}

type FlagKind = 'bool' | 'string' | 'list';
type FlagSpec = Record<string, FlagKind>;
type FlagValues = { bools: Map<string, boolean>; strings: Map<string, string>; lists: Map<string, string[]> };

const FLAGS: Record<string, FlagSpec> = {
  from: { platform: 'string' },
  run: { mount: 'list', network: 'string', security: 'string' },
  copy: {
    from: 'string',
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    parents: 'bool',
    exclude: 'list',
  },
  add: {
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    exclude: 'list',
    checksum: 'string',
    'keep-git-dir': 'bool',
  },
  healthcheck: {
    interval: 'string',
    timeout: 'string',
    'start-period': 'string',
    'start-interval': 'string',
    retries: 'string',
  },
};

function parseFlags(node: Node, fail: (m: string) => never): FlagValues {
  const spec = FLAGS[node.keyword] ?? {};
  const out: FlagValues = { bools: new Map(), strings: new Map(), lists: new Map() };
  const seen = new Set<string>();
  for (const word of node.flags) {
    if (!word.startsWith('--')) fail(`Arg should start with -- : ${word}`);
    const body = word.slice(2);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const value = eq < 0 ? undefined : body.slice(eq + 1);
    const kind = spec[name];
    if (!kind) fail(`unknown flag: ${name}`);
    if (kind !== 'list' && seen.has(name)) fail(`Duplicate flag specified: ${name}`);
    seen.add(name);
    if (kind === 'bool') {
      if (value === undefined || value === '') out.bools.set(name, true);
      else if (/^true$/i.test(value)) out.bools.set(name, true);
      else if (/^false$/i.test(value)) out.bools.set(name, false);
      else fail(`expecting boolean value for flag ${name}, not: ${value}`);
    } else if (value === undefined) fail(`Missing a value on flag: ${name}`);
    else if (kind === 'string') out.strings.set(name, value);
    else out.lists.set(name, [...(out.lists.get(name) ?? []), value]);
  }
  return out;
}

/** BuildKit's parseWords: whitespace-split, keeping quotes and escapes for later expansion. */
export function parseWords(rest: string, escapeToken: string): string[] {
  const words: string[] = [];
  const chars = Array.from(rest);
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = chars[pos] ?? '';
    if (phase === 'spaces') {
      if (pos === chars.length) break;
      if (/\s/.test(ch)) continue;
      phase = 'word';
    }
    if (pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (/\s/.test(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escapeToken) {
        if (pos + 1 === chars.length) continue;
        word += ch;
        pos++;
        ch = chars[pos]!;
      }
      word += ch;
      continue;
    }
    if (ch === quote) phase = 'word';
    if (ch === escapeToken && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += ch;
      ch = chars[pos]!;
    }
    word += ch;
  }
  return words;
}

function fields(s: string): string[] {
  return s.split(/[\t\v\f\r ]+/).filter((w) => w !== '');
}

/** Exec form when the text is a JSON array of strings; a JSON array of anything else is an error. */
function maybeJSON(
  rest: string,
  fail: (m: string) => never,
): { json: true; args: string[] } | { json: false } {
  const t = rest.trim();
  if (!t.startsWith('[')) return { json: false };
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch {
    return { json: false };
  }
  if (!Array.isArray(v)) return { json: false };
  if (!v.every((x) => typeof x === 'string'))
    fail('when using JSON array syntax, arrays must be comprised of strings only');
  return { json: true, args: v as string[] };
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** Go's time.ParseDuration (what HEALTHCHECK flags use), in nanoseconds. */
export function parseGoDuration(s: string): number | undefined {
  if (s === '0') return 0;
  const m = /^([-+]?)((?:\d*\.?\d+(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(s);
  if (!m) return undefined;
  let total = 0;
  for (const part of m[2]!.matchAll(/(\d*\.?\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * DURATION_UNITS[part[2]!]!;
  }
  return Math.round(m[1] === '-' ? -total : total);
}

export function toInstruction(node: Node, ctx: InstructionContext): Instruction {
  const fail = (msg: string): never => {
    throw new DockerfileError(msg, { file: ctx.file, range: node.range, lines: ctx.lines });
  };
  const KW = node.keyword.toUpperCase();
  const flags = parseFlags(node, fail);
  const base = { range: node.range, node };
  const rest = node.rest;
  switch (node.keyword) {
    case 'from': {
      const words = fields(rest);
      if (words.length !== 1 && !(words.length === 3 && words[1]!.toLowerCase() === 'as'))
        fail('FROM requires either one or three arguments');
      const out: FromInstruction = { kind: 'FROM', ...base, image: words[0]! };
      if (words.length === 3) {
        const name = words[2]!.toLowerCase();
        if (!/^[a-z][a-z0-9-_.]*$/.test(name))
          fail(
            `invalid name for build stage: "${words[2]}", name can't start with a number or contain symbols`,
          );
        out.name = name;
        out.rawName = words[2]!;
        out.asKeyword = words[1]!;
      }
      const p = flags.strings.get('platform');
      if (p !== undefined) out.platform = p;
      return out;
    }
    case 'run': {
      const j = maybeJSON(rest, fail);
      const out: RunInstruction = {
        kind: 'RUN',
        ...base,
        cmd: j.json ? j.args : [rest],
        shellForm: !j.json,
        heredocs: node.heredocs,
        mounts: flags.lists.get('mount') ?? [],
      };
      const network = flags.strings.get('network');
      if (network !== undefined) {
        if (!['default', 'none', 'host'].includes(network)) fail(`unsupported network mode "${network}"`);
        out.network = network;
      }
      const security = flags.strings.get('security');
      if (security !== undefined) {
        if (!['sandbox', 'insecure'].includes(security)) fail(`unsupported security mode "${security}"`);
        out.security = security;
      }
      return out;
    }
    case 'cmd':
    case 'entrypoint': {
      const j = maybeJSON(rest, fail);
      return {
        kind: KW as 'CMD' | 'ENTRYPOINT',
        ...base,
        cmd: j.json ? j.args : [rest],
        shellForm: !j.json,
      };
    }
    case 'env':
    case 'label': {
      if (rest === '') fail(`${KW} requires at least one argument`);
      const words = parseWords(rest, ctx.escape);
      if (words.length === 0) fail(`${KW} requires at least one argument`);
      if (!words[0]!.includes('=')) {
        const parts = /^(\S+)\s+([\s\S]*)$/.exec(rest);
        if (!parts) fail(`${KW} must have two arguments`);
        return { kind: KW as 'ENV', ...base, pairs: [{ key: parts![1]!, value: parts![2]! }], legacy: true };
      }
      const pairs: KeyValue[] = [];
      for (const w of words) {
        const eq = w.indexOf('=');
        if (eq < 0) fail(`Syntax error - can't find = in "${w}". Must be of the form: name=value`);
        if (eq === 0) fail(`${KW} names can not be blank`);
        pairs.push({ key: w.slice(0, eq), value: w.slice(eq + 1) });
      }
      return { kind: KW as 'ENV', ...base, pairs, legacy: false };
    }
    case 'copy':
    case 'add': {
      const j = maybeJSON(rest, fail);
      const words = j.json ? j.args : fields(rest);
      if (words.length < 2)
        fail(
          `${KW} requires at least two arguments, but only ${words.length === 1 ? 'one was' : 'none were'} provided. Destination could not be determined.`,
        );
      const srcWords = words.slice(0, -1);
      const sources: string[] = [];
      const contents: CopyInstruction['contents'] = [];
      for (const w of srcWords) {
        const marker = j.json ? undefined : parseHeredocWord(w);
        const h = marker && node.heredocs.find((d) => d.name === marker.name);
        if (h) {
          const data = h.chomp ? h.content.replace(/^\t+/gm, '') : h.content;
          contents.push({ path: h.name, data, expand: h.expand });
        } else sources.push(w);
      }
      const out: CopyInstruction = {
        kind: KW as 'COPY' | 'ADD',
        ...base,
        sources,
        contents,
        dest: words[words.length - 1]!,
        json: j.json,
        link: flags.bools.get('link') ?? false,
        parents: flags.bools.get('parents') ?? false,
        exclude: flags.lists.get('exclude') ?? [],
      };
      for (const k of ['from', 'chown', 'chmod', 'checksum'] as const) {
        const v = flags.strings.get(k);
        if (v !== undefined) out[k] = v;
      }
      if (node.keyword === 'add') out.keepGitDir = flags.bools.get('keep-git-dir') ?? false;
      return out;
    }
    case 'expose': {
      const values = fields(rest);
      if (values.length === 0) fail('EXPOSE requires at least one argument');
      return { kind: 'EXPOSE', ...base, values };
    }
    case 'volume': {
      const j = maybeJSON(rest, fail);
      const values = j.json ? j.args : fields(rest);
      if (values.length === 0) fail('VOLUME requires at least one argument');
      for (const v of values) if (v.trim() === '') fail('VOLUME specified can not be an empty string');
      return { kind: 'VOLUME', ...base, values };
    }
    case 'user':
    case 'workdir':
    case 'stopsignal':
    case 'maintainer': {
      if (rest === '') fail(`${KW} requires exactly one argument`);
      return { kind: KW as 'USER', ...base, value: rest };
    }
    case 'arg': {
      const words = parseWords(rest, ctx.escape);
      if (words.length === 0) fail('ARG requires at least one argument');
      const args = words.map((w) => {
        const eq = w.indexOf('=');
        if (eq === 0) fail('ARG names can not be blank');
        return eq < 0 ? { key: w } : { key: w.slice(0, eq), value: w.slice(eq + 1) };
      });
      return { kind: 'ARG', ...base, args };
    }
    case 'onbuild': {
      if (rest === '') fail('ONBUILD requires at least one argument');
      const inner = splitInstruction(rest).rawKeyword.toLowerCase();
      if (inner === 'onbuild') fail("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (inner === 'from' || inner === 'maintainer')
        fail(`${inner.toUpperCase()} isn't allowed as an ONBUILD trigger`);
      return { kind: 'ONBUILD', ...base, expression: rest };
    }
    case 'healthcheck': {
      const m = /^(\S+)\s*([\s\S]*)$/.exec(rest);
      if (!m) fail('HEALTHCHECK requires at least one argument');
      const typ = m![1]!.toUpperCase();
      const durations = { interval: 0, timeout: 0, startPeriod: 0, startInterval: 0 };
      const keys = [
        ['interval', 'interval'],
        ['timeout', 'timeout'],
        ['start-period', 'startPeriod'],
        ['start-interval', 'startInterval'],
      ] as const;
      if (typ === 'NONE') {
        if (m![2]!.trim() !== '') fail('HEALTHCHECK NONE takes no arguments');
        if (node.flags.length > 0) fail('HEALTHCHECK NONE takes no flags');
        return { kind: 'HEALTHCHECK', ...base, test: ['NONE'], shellForm: false, ...durations, retries: 0 };
      }
      if (typ !== 'CMD') fail(`Unknown type "${typ}" in HEALTHCHECK (try CMD)`);
      const cmdRest = m![2]!;
      if (cmdRest.trim() === '') fail('Missing command after HEALTHCHECK CMD');
      const j = maybeJSON(cmdRest, fail);
      for (const [flag, key] of keys) {
        const raw = flags.strings.get(flag);
        if (raw === undefined) continue;
        const d = parseGoDuration(raw);
        if (d === undefined) fail(`invalid duration for --${flag}: "${raw}"`);
        if (d! < 0 || (d! > 0 && d! < 1e6)) fail(`Interval "${flag}" cannot be less than 1ms`);
        durations[key] = d!;
      }
      let retries = 0;
      const r = flags.strings.get('retries');
      if (r !== undefined) {
        if (!/^-?\d+$/.test(r)) fail(`invalid value for --retries: "${r}"`);
        retries = Number(r);
        if (retries < 0) fail(`--retries cannot be negative (${retries})`);
      }
      return {
        kind: 'HEALTHCHECK',
        ...base,
        test: j.json ? ['CMD', ...j.args] : ['CMD-SHELL', cmdRest.trim()],
        shellForm: !j.json,
        ...durations,
        retries,
      };
    }
    case 'shell': {
      const j = maybeJSON(rest, fail);
      if (!j.json) fail('SHELL requires the arguments to be in JSON form');
      const shell = (j as { args: string[] }).args;
      if (shell.length === 0) fail('SHELL requires at least one argument');
      return { kind: 'SHELL', ...base, shell };
    }
  }
  return fail(`unknown instruction: ${node.rawKeyword}`);
}
