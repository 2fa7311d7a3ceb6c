/** The plan's types: what planBuild (plan.ts) gives the build engine, per platform, stage and instruction. */
import type { CheckConfig, CheckWarning } from './checks.js';
import type { Range } from './errors.js';
import type { KeyValue } from './instructions.js';
import type { Directives } from './parser.js';
import type { PlatformSpec as Platform } from '../platform/index.js';

export type { Platform };

// ---------------------------------------------------------------------------------------------
// Types

export interface ImageConfigInfo {
  /** `KEY=VALUE` entries of the image config's Env. */
  env?: string[];
  workingDir?: string;
  user?: string;
  shell?: string[];
  /** ONBUILD triggers of the base image: they run before the stage's own instructions. */
  onBuild?: string[];
}

export interface PlanOptions {
  /** File name used in errors and warnings. Default `Dockerfile`. */
  file?: string;
  /** Target platforms. Default: `[buildPlatform]`. */
  platforms?: readonly Platform[];
  /** The platform the build runs on (BUILDPLATFORM). Default: this host. */
  buildPlatform?: Platform;
  /** `--build-arg` values. Default none. */
  buildArgs?: Readonly<Record<string, string>>;
  /** `--target` stage name. Default: the last stage. */
  target?: string;
  /** Config of a base image for a platform, when the engine has resolved it. */
  imageConfig?: (ref: string, platform: Platform) => ImageConfigInfo | undefined;
  /**
   * Named build contexts (`--build-context NAME=…`): the context name a stage name or an image
   * reference stands for, or undefined. A stage of that name is replaced by the context (its
   * instructions are not planned); an image of that name (`FROM alpine`, `COPY --from=alpine`)
   * is read from it. An earlier stage of a name still wins over a context for FROM/--from.
   */
  namedContext?: (name: string) => string | undefined;
  /** Config of a named context used as a base ({} for one with none, like a directory). */
  contextConfig?: (name: string, platform: Platform) => ImageConfigInfo | undefined;
}

/** Where a stage, a `COPY --from` or a `RUN --mount from=` takes its files from. */
export type SourceRef =
  | { type: 'scratch' }
  | { type: 'stage'; index: number; name?: string }
  | { type: 'image'; ref: string }
  /** A named build context (`--build-context NAME=…`). */
  | { type: 'context'; name: string };

/** What is in force when an instruction runs (after the instruction for ENV/ARG/…). */
export interface InstructionState {
  /** Env of the image config so far, `KEY=VALUE` (base image's first when known, then ENV). */
  env: string[];
  /**
   * The environment RUN gets and words are expanded with: the image config env, then every
   * ENV and ARG value in order, a later one replacing an earlier one (BuildKit's state env).
   */
  runEnv: string[];
  /** ARG values in scope (in `runEnv` but never kept in the image config). */
  args: Record<string, string>;
  /** Absolute working directory. */
  workdir: string;
  /** USER, '' when unset. */
  user: string;
  /** The shell for shell-form commands (SHELL; default `/bin/sh -c`). */
  shell: string[];
}

export interface RunMount {
  type: 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
  target: string;
  source?: string;
  /** Files come from this stage/image; absent = the build context (bind, cache seed). */
  from?: SourceRef;
  readonly: boolean;
  id?: string;
  sharing?: 'shared' | 'private' | 'locked';
  mode?: number;
  uid?: number;
  gid?: number;
  required?: boolean;
  /** tmpfs size in bytes. */
  size?: number;
  /** secret: also expose it as this environment variable. */
  env?: string;
}

export interface PlanHeredoc {
  name: string;
  content: string;
  expand: boolean;
  chomp: boolean;
  fileDescriptor: number;
}

interface PlanBase {
  range: Range;
  /** The instruction as written (continuations joined), for progress display and history. */
  original: string;
  /** Set on instructions that came from the base's ONBUILD triggers (located at FROM). */
  onbuild?: true;
}

/**
 * RUN. BuildKit semantics for the engine: exec form runs `args`; shell form runs
 * `[...state.shell, args[0]]`. With heredocs: when `args[0]` is exactly one heredoc marker
 * (e.g. `<<EOF`), the heredoc body is the script (run with the shell, or directly when it
 * starts with `#!`); otherwise the heredocs feed the command line's file descriptors as a shell
 * would (`sh -c "<line>\n<body>\n<NAME>"`).
 */
export interface PlanRun extends PlanBase {
  kind: 'RUN';
  args: string[];
  prependShell: boolean;
  heredocs: PlanHeredoc[];
  mounts: RunMount[];
  network: 'default' | 'none' | 'host';
  security: 'sandbox' | 'insecure';
  /** Proxy build args (HTTP_PROXY, …) that reach RUN without an ARG and stay out of the cache key. */
  proxy: Record<string, string>;
  state: InstructionState;
}

export interface PlanCopy extends PlanBase {
  kind: 'COPY' | 'ADD';
  /** Expanded source paths/URLs (relative to the context, or to `from`). */
  sources: string[];
  /** Inline files from heredocs (`COPY <<EOF /dest`), bodies expanded when allowed. */
  contents: { path: string; data: string }[];
  /** Expanded destination as written, and resolved against the workdir. */
  dest: string;
  destPath: string;
  from?: SourceRef;
  chown?: string;
  chmod?: string;
  link: boolean;
  parents: boolean;
  exclude: string[];
  checksum?: string;
  keepGitDir?: boolean;
  state: InstructionState;
}

export interface PlanCommand extends PlanBase {
  kind: 'CMD' | 'ENTRYPOINT';
  /** Exec form argv, or for shell form `[...shell, line]` already prepended (image config form). */
  args: string[];
  prependShell: boolean;
}

export interface PlanKeyValues extends PlanBase {
  kind: 'ENV' | 'LABEL';
  pairs: KeyValue[];
}

export interface PlanList extends PlanBase {
  kind: 'EXPOSE' | 'VOLUME';
  /** VOLUME: expanded paths. EXPOSE: normalised `port/proto` (`8000-8001` gives two entries). */
  values: string[];
}

export interface PlanString extends PlanBase {
  kind: 'USER' | 'STOPSIGNAL' | 'MAINTAINER' | 'ONBUILD';
  value: string;
}

export interface PlanWorkdir extends PlanBase {
  kind: 'WORKDIR';
  /** Expanded as written, and the absolute result. */
  value: string;
  path: string;
}

export interface PlanArg extends PlanBase {
  kind: 'ARG';
  /** Resolved values; `value` absent when the ARG has none. */
  args: { key: string; value?: string }[];
}

export interface PlanHealthcheck extends PlanBase {
  kind: 'HEALTHCHECK';
  test: string[];
  interval: number;
  timeout: number;
  startPeriod: number;
  startInterval: number;
  retries: number;
}

export interface PlanShell extends PlanBase {
  kind: 'SHELL';
  shell: string[];
}

export type PlanInstruction =
  | PlanRun
  | PlanCopy
  | PlanCommand
  | PlanKeyValues
  | PlanList
  | PlanString
  | PlanWorkdir
  | PlanArg
  | PlanHealthcheck
  | PlanShell;

export interface PlanStage {
  /** Position in the Dockerfile (what `COPY --from=<n>` counts). */
  index: number;
  name?: string;
  /** The FROM line. */
  range: Range;
  base: SourceRef;
  /** Resolved platform this stage builds for. */
  platform: Platform;
  /** 'flag' when FROM --platform chose it, else 'target'. */
  platformSource: 'flag' | 'target';
  /** Automatic platform args in force for this build (BUILDPLATFORM… TARGETVARIANT). */
  platformArgs: Record<string, string>;
  /** TARGET* args this stage consumed (in FROM, or declared with ARG in the stage). */
  targetArgsUsed: string[];
  /**
   * True when the stage's result cannot depend on the target platform: its platform came
   * from --platform without TARGET* args, it consumes no TARGET* arg, and every stage it
   * depends on is target-independent. Such stages have equal `key`s in every PlatformPlan.
   */
  targetIndependent: boolean;
  /** Stage indexes this stage needs (base stage, COPY --from, RUN --mount from). */
  dependsOn: number[];
  /** sha256 hex of the stage's resolved content and its dependencies' keys. */
  key: string;
  /** True when the base image's config was supplied through `imageConfig`. */
  baseConfigKnown: boolean;
  instructions: PlanInstruction[];
}

export interface PlatformPlan {
  platform: Platform;
  platformArgs: Record<string, string>;
  /** Reachable stages, dependencies first; the last one is the target. */
  stages: PlanStage[];
}

export interface Plan {
  file: string;
  directives: Directives;
  buildPlatform: Platform;
  platforms: PlatformPlan[];
  /** Warnings of every rule not skipped, deduplicated across platforms, in line order. */
  warnings: CheckWarning[];
  check: CheckConfig;
  /** `--build-arg`s nothing declared (buildx warns about these). */
  unusedBuildArgs: string[];
  /** The Dockerfile's lines, for rendering warnings. */
  lines: string[];
}

// ---------------------------------------------------------------------------------------------
// Constants
