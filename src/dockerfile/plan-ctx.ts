import type { RuleName } from './checks.js';
import type { Range } from './errors.js';
import type { FromInstruction, Instruction } from './instructions.js';
import type { LexOptions } from './shell.js';

export interface StageDecl {
  index: number;
  from: FromInstruction;
  body: Instruction[];
  /** Digest of the stage's source lines (FROM to its last instruction), for its key. */
  textDigest: string;
}

export interface Ctx {
  file: string;
  lines: readonly string[];
  escape: string;
  buildArgs: Readonly<Record<string, string>>;
  warn: (rule: RuleName, detail: string, range: Range) => void;
  consumed: Set<string>;
  /** Lexer options for word expansion (the escape directive). */
  lexOptions: LexOptions;
}

export const PLATFORM_ARGS = [
  'BUILDPLATFORM',
  'BUILDOS',
  'BUILDARCH',
  'BUILDVARIANT',
  'TARGETPLATFORM',
  'TARGETOS',
  'TARGETARCH',
  'TARGETVARIANT',
] as const;

export function posixJoin(base: string, p: string): string {
  // Fast path: an absolute path with nothing to clean.
  if (p.startsWith('/') && !/\/\.{0,2}(?:\/|$)/.test(p)) return p;
  const abs = p.startsWith('/') ? p : `${base.replace(/\/+$/, '')}/${p}`;
  const out: string[] = [];
  for (const part of abs.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return `/${out.join('/')}`;
}
