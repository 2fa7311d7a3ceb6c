/**
 * `--change` instructions for `import` (docker import's): a small Dockerfile-instruction
 * parser applied to an image's container config.
 *
 *   const cfg = applyChanges({}, ['CMD ["sh"]', 'ENV PATH=/bin:/usr/bin', 'EXPOSE 80/udp']);
 *
 * Supported, as Docker parses them: CMD and ENTRYPOINT (exec form: a JSON array of strings;
 * anything else is shell form, run as `/bin/sh -c "<text>"`), ENV and LABEL (`K=V ...` with
 * quotes and backslash escapes, or the legacy `K V with spaces`), EXPOSE (`80`, `53/udp`,
 * ranges `8000-8002`), USER, VOLUME (JSON array or words), WORKDIR (relative paths join the
 * previous WORKDIR), STOPSIGNAL (a signal name or number). `$VAR` and `${VAR}` (plus
 * `${VAR:-default}` and `${VAR:+alt}`) expand from the ENV set so far, except in CMD,
 * ENTRYPOINT and VOLUME's JSON form, as in a Dockerfile. As in Docker, an ENTRYPOINT clears
 * the CMD unless a CMD is among the changes.
 */
import { posix } from 'node:path';
import type { ContainerConfig } from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';

export const CHANGE_INSTRUCTIONS = [
  'CMD',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'LABEL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
] as const;

const SIGNALS = [
  'ABRT',
  'ALRM',
  'BUS',
  'CHLD',
  'CLD',
  'CONT',
  'FPE',
  'HUP',
  'ILL',
  'INT',
  'IO',
  'IOT',
  'KILL',
  'PIPE',
  'POLL',
  'PROF',
  'PWR',
  'QUIT',
  'SEGV',
  'STKFLT',
  'STOP',
  'SYS',
  'TERM',
  'TRAP',
  'TSTP',
  'TTIN',
  'TTOU',
  'URG',
  'USR1',
  'USR2',
  'VTALRM',
  'WINCH',
  'XCPU',
  'XFSZ',
];

function bad(change: string, rule: string): PolyarchError {
  return new PolyarchError('INVALID_ARGUMENT', `invalid --change "${change}": ${rule}`);
}

/** A JSON array of strings, or undefined when `text` is not one (then it is shell form). */
function jsonArray(text: string): string[] | undefined {
  if (!text.startsWith('[')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) return undefined;
  return v as string[];
}

/** Expands `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR:+w}` from `env`; `\$` is a literal `$`. */
function expand(word: string, env: Map<string, string>, change: string): string {
  let out = '';
  for (let i = 0; i < word.length; i++) {
    const c = word[i]!;
    if (c !== '$') {
      out += c;
      continue;
    }
    if (word[i + 1] === '{') {
      const close = word.indexOf('}', i + 2);
      if (close < 0) throw bad(change, `missing "}" in "${word}"`);
      const body = word.slice(i + 2, close);
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$/s.exec(body);
      if (!m) throw bad(change, `bad substitution "\${${body}}"`);
      const value = env.get(m[1]!);
      if (m[2] === '-') out += value ? value : m[3]!;
      else if (m[2] === '+') out += value ? m[3]! : '';
      else out += value ?? '';
      i = close;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(word.slice(i + 1));
    if (!m) {
      out += c;
      continue;
    }
    out += env.get(m[0]) ?? '';
    i += m[0].length;
  }
  return out;
}

/**
 * Splits text into words like a Dockerfile's ENV/LABEL/VOLUME arguments: white space
 * separates, single and double quotes group (and are removed), a backslash escapes the next
 * character (inside double quotes only `"`, `\` and `$`). Variables expand outside single
 * quotes; an escaped `$` stays literal.
 */
export function splitWords(text: string, env: Map<string, string>, change: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  // Pending raw text to expand; quoted/escaped parts are appended already expanded or literal.
  let raw = '';
  const flush = () => {
    word += expand(raw, env, change);
    raw = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      if (inWord) {
        flush();
        words.push(word);
        word = '';
        inWord = false;
      }
      continue;
    }
    inWord = true;
    if (c === '\\') {
      if (i + 1 >= text.length) throw bad(change, 'a trailing backslash escapes nothing');
      flush();
      word += text[++i]!;
    } else if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close < 0) throw bad(change, 'unterminated single quote');
      flush();
      word += text.slice(i + 1, close);
      i = close;
    } else if (c === '"') {
      flush();
      let j = i + 1;
      let part = '';
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === '\\' && j + 1 < text.length && '"\\$'.includes(text[j + 1]!)) {
          // An escaped `$` must survive expansion: expand what came before, then add it.
          if (text[j + 1] === '$') {
            word += expand(part, env, change);
            part = '';
            word += '$';
          } else part += text[j + 1];
          j++;
        } else part += text[j];
      }
      if (j >= text.length) throw bad(change, 'unterminated double quote');
      word += expand(part, env, change);
      i = j;
    } else raw += c;
  }
  if (inWord) {
    flush();
    words.push(word);
  }
  return words;
}

/** `K=V K2=V2` pairs, or the legacy single `K V with spaces`. */
function keyValues(
  inst: string,
  args: string,
  env: Map<string, string>,
  change: string,
): Array<[string, string]> {
  const words = splitWords(args, env, change);
  if (words.length === 0) throw bad(change, `${inst} needs at least one argument`);
  if (!words[0]!.includes('=')) {
    // Legacy form: the first word is the key, the rest of the line (as written) the value.
    const rest = args
      .trim()
      .slice(args.trim().search(/\s/) + 1)
      .trim();
    if (words.length < 2 || args.trim().search(/\s/) < 0)
      throw bad(change, `${inst} needs KEY=VALUE (or KEY VALUE)`);
    return [[words[0]!, splitWords(rest, env, change).join(' ')]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw bad(change, `${inst} "${w}" is not KEY=VALUE`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

function execOrShell(args: string): string[] {
  return jsonArray(args) ?? ['/bin/sh', '-c', args];
}

/** `80` → `80/tcp`; `53/udp`; `8000-8002` → three ports. */
function exposedPorts(word: string, change: string): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(word);
  if (!m) throw bad(change, `invalid port "${word}" (want PORT[-PORT][/tcp|udp|sctp])`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  const proto = (m[3] ?? 'tcp').toLowerCase();
  if (from < 1 || to > 65535 || to < from) throw bad(change, `invalid port range "${word}"`);
  const out: string[] = [];
  for (let p = from; p <= to; p++) out.push(`${p}/${proto}`);
  return out;
}

function stopSignal(value: string, change: string): string {
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (n < 1 || n > 64) throw bad(change, `invalid signal number ${value}`);
    return value;
  }
  const name = value.toUpperCase().replace(/^SIG/, '');
  if (SIGNALS.includes(name) || /^RTMIN(\+\d+)?$|^RTMAX(-\d+)?$/.test(name)) return value;
  throw bad(change, `invalid signal "${value}"`);
}

/**
 * Applies `changes` in order to a copy of `config` and returns it. Unknown instructions are
 * an error naming the change and the supported set.
 */
export function applyChanges(config: ContainerConfig, changes: readonly string[]): ContainerConfig {
  const cfg: ContainerConfig = structuredClone(config);
  const env = new Map<string, string>();
  for (const e of cfg.Env ?? []) {
    const eq = e.indexOf('=');
    env.set(eq < 0 ? e : e.slice(0, eq), eq < 0 ? '' : e.slice(eq + 1));
  }
  const cmdSet = changes.some((c) => /^\s*cmd(\s|$)/i.test(c));
  for (const change of changes) {
    const m = /^\s*([A-Za-z]+)(?:\s+([\s\S]*))?$/.exec(change);
    if (!m) throw bad(change, 'expected INSTRUCTION ARGUMENTS');
    const inst = m[1]!.toUpperCase();
    const args = (m[2] ?? '').trim();
    if (!(CHANGE_INSTRUCTIONS as readonly string[]).includes(inst))
      throw bad(change, `${inst} is not a supported change (${CHANGE_INSTRUCTIONS.join(', ')})`);
    if (args === '') throw bad(change, `${inst} needs an argument`);
    switch (inst) {
      case 'CMD':
        cfg.Cmd = execOrShell(args);
        break;
      case 'ENTRYPOINT':
        cfg.Entrypoint = execOrShell(args);
        if (!cmdSet) delete cfg.Cmd;
        break;
      case 'ENV':
        for (const [k, v] of keyValues(inst, args, env, change)) env.set(k, v);
        cfg.Env = [...env].map(([k, v]) => `${k}=${v}`);
        break;
      case 'LABEL':
        cfg.Labels = { ...cfg.Labels, ...Object.fromEntries(keyValues(inst, args, env, change)) };
        break;
      case 'EXPOSE': {
        const ports = { ...cfg.ExposedPorts };
        for (const w of splitWords(args, env, change)) for (const p of exposedPorts(w, change)) ports[p] = {};
        cfg.ExposedPorts = ports;
        break;
      }
      case 'USER': {
        const words = splitWords(args, env, change);
        if (words.length !== 1) throw bad(change, 'USER takes one argument (user[:group])');
        cfg.User = words[0]!;
        break;
      }
      case 'VOLUME': {
        const vols = jsonArray(args) ?? splitWords(args, env, change);
        if (vols.length === 0 || vols.some((v) => v === '')) throw bad(change, 'VOLUME needs a path');
        cfg.Volumes = { ...cfg.Volumes, ...Object.fromEntries(vols.map((v) => [v, {}])) };
        break;
      }
      case 'WORKDIR': {
        const dir = splitWords(args, env, change).join(' ');
        cfg.WorkingDir = posix.resolve(cfg.WorkingDir || '/', dir);
        break;
      }
      case 'STOPSIGNAL': {
        const words = splitWords(args, env, change);
        if (words.length !== 1) throw bad(change, 'STOPSIGNAL takes one argument');
        cfg.StopSignal = stopSignal(words[0]!, change);
        break;
      }
    }
  }
  return cfg;
}
