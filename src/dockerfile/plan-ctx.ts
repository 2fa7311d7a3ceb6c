/**
 * What the planner's parts (plan.ts, dispatch.ts, mounts.ts, plan-checks.ts) share while
 * planning one Dockerfile; internal to src/dockerfile.
 */
import type { RuleName } from './checks.js';
import { DockerfileError, type Range } from './errors.js';
import type { FromInstruction, Instruction } from './instructions.js';
import type { PlanStage } from './plan-types.js';
import { type EnvLike, type LexOptions, processWord, ShellError } from './shell.js';

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

export const EMPTY_ENV: ReadonlyMap<string, string> = new Map();
export const RAW_LEX: LexOptions = { skipProcessQuotes: true };

export class Expander {
  constructor(
    private readonly ctx: Ctx,
    private readonly range: Range,
    private readonly env: EnvLike,
    private readonly onUnmatched?: (name: string) => void,
  ) {}
  /** Expands without removing quotes (heredoc bodies); the escape character is always `\`. */
  raw(w: string): string {
    return this.run(w, RAW_LEX);
  }
  word(w: string): string {
    return this.run(w, this.ctx.lexOptions);
  }
  /** Expands and splits into words (EXPOSE). */
  words(w: string): string[] {
    this.run(w, this.ctx.lexOptions);
    return processWord(w, this.env, this.ctx.lexOptions).words;
  }
  private run(w: string, opts: LexOptions): string {
    try {
      const r = processWord(w, this.env, opts);
      if (this.onUnmatched) for (const n of r.unmatched) this.onUnmatched(n);
      return r.result;
    } catch (err) {
      if (err instanceof ShellError)
        throw new DockerfileError(err.message, {
          file: this.ctx.file,
          range: this.range,
          lines: this.ctx.lines,
        });
      throw err;
    }
  }
}

export function envList(env: Map<string, string>): string[] {
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/** A stage's build state while dispatching (what `FROM <stage>` inherits). */
export interface StageState {
  /** Env of the image config (base image + ENV). */
  env: Map<string, string>;
  /** BuildKit's state env: image env, then every ENV and ARG value, later wins. */
  runEnv: Map<string, string>;
  /** ARG values in scope (inherited through FROM <stage>, as BuildKit does). */
  args: Map<string, string>;
  /** ARG names declared (with or without value). */
  declared: Set<string>;
  workdir: string;
  user: string;
  shell: string[];
  /** The image config has a Shell (SHELL, or the base image's): JSONArgsRecommended is quiet. */
  shellSet: boolean;
  /** A WORKDIR was set in this Dockerfile (WorkdirRelativePath checks only the first). */
  workdirSet: boolean;
  /** ONBUILD expressions of this stage, run by stages built FROM it. */
  onbuild: string[];
}

export interface DispatchedStage {
  decl: StageDecl;
  stage: Omit<PlanStage, 'key' | 'targetIndependent'>;
  state: StageState;
  /** The state taken from the base image config (hashed into the key). */
  baseState?: string;
  /** Error expanding this stage; thrown only if the stage turns out to be needed. */
  error?: unknown;
  /** Where each stage dependency was introduced (for locating a cycle). */
  depRanges: Map<number, Range>;
  /** A use of a stage defined later: an error once cycles have been ruled out. */
  deferredError?: DockerfileError;
  ownTargetDependence: boolean;
}

export const TARGET_ARGS = new Set(['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT']);
