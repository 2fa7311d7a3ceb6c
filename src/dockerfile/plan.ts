/**
 * The frontend's output: a typed, per-platform build plan — what the build engine consumes.
 *
 * Usage:
 *   const plan = planBuild(text, { platforms: [{ os: 'linux', architecture: 'arm64' }], buildArgs });
 *   for (const p of plan.platforms) for (const stage of p.stages) … stage.instructions …
 *
 * `planBuild` is pure (no I/O): it parses, validates, expands every word BuildKit expands,
 * scopes ARG/ENV, resolves the stage graph (`FROM <stage>`, `COPY --from`, `RUN --mount
 * from=`), prunes stages the target does not need, and runs the build checks. Errors are
 * `DockerfileError`s (file, range, lines) — render them with `formatDockerfileError`.
 *
 * How the engine uses it:
 * - One `PlatformPlan` per requested target platform. Its `stages` are the reachable stages,
 *   dependencies first; the last one is the target. Stage indexes (`SourceRef.index`,
 *   `dependsOn`) are Dockerfile positions, so look stages up by `index`, not array position.
 * - Each stage starts from `base` (scratch, an image ref, or an earlier stage — whose final
 *   filesystem and config it continues) on `platform`, then applies `instructions` in order.
 *   Instructions carry expanded values; RUN and COPY/ADD carry the `state` in force (image
 *   config env, the env RUN sees, ARG values, workdir, user, shell). `runCommand(run)` gives the
 *   argv for a RUN with BuildKit's heredoc rules. Instructions marked `onbuild` came from the
 *   base's ONBUILD triggers and run first.
 * - `PlanStage.key` is a digest of everything that determines the stage's result (source text,
 *   resolved ARG values, base and its config, platform, dependencies' keys). Equal keys —
 *   typically one stage in several PlatformPlans when it uses `FROM --platform=$BUILDPLATFORM`
 *   and no TARGET* arg — mean the same result: build it once. `targetIndependent` says so
 *   explicitly; `targetArgsUsed` says which TARGET* args made a stage depend on the target.
 * - Base image configs: the frontend cannot read images. Call `planBuild` once, collect the
 *   `image` bases (`collectBaseImages`), resolve their configs, then call it again with
 *   `imageConfig` so their ENV/WORKDIR/USER/SHELL/ONBUILD take part (as BuildKit does). Without
 *   it, image-based stages start empty with workdir '/', and `baseConfigKnown` is false.
 * - Not done here (the engine's job): `.dockerignore` (see dockerignore.ts), SOURCE_DATE_EPOCH,
 *   image config assembly (CMD/ENTRYPOINT/LABEL/EXPOSE/VOLUME/HEALTHCHECK/STOPSIGNAL/USER are
 *   in the instruction list, in order), history, running anything.
 */
import { createHash } from 'node:crypto';
import {
  type CheckConfig,
  type CheckWarning,
  isSkipped,
  makeWarning,
  parseCheckConfig,
  type RuleName,
} from './checks.js';
import { DockerfileError, type Range } from './errors.js';
import {
  type ArgInstruction,
  type CopyInstruction,
  type FromInstruction,
  type Instruction,
  type KeyValue,
  toInstruction,
} from './instructions.js';
import {
  chompHeredocContent,
  type Directives,
  type Heredoc,
  type Node,
  type ParsedDockerfile,
  parseDockerfile,
  parseHeredocWord,
  suggest,
} from './parser.js';
import {
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  type PlatformSpec as Platform,
  parsePlatform,
  uniquePlatforms,
} from '../platform/index.js';
import { type EnvLike, type LexOptions, processWord, ShellError } from './shell.js';

const EMPTY_ENV: ReadonlyMap<string, string> = new Map();
const RAW_LEX: LexOptions = { skipProcessQuotes: true };

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

export const DEFAULT_SHELL = ['/bin/sh', '-c'];
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
const TARGET_ARGS = new Set(['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT']);
/** Build args BuildKit accepts without an ARG (proxies reach RUN's environment). */
const BUILTIN_ARGS = new Set([
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
]);
const SECRET_KEY =
  /(?:^|_)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const SECRET_ALLOW = /(?:^|_)public(?:_|$)/i;

export function platformArgs(buildIn: Platform, targetIn: Platform): Record<string, string> {
  // BuildKit formats normalised platforms: `linux/armhf` gives TARGETPLATFORM=linux/arm/v7.
  const build = normalizePlatform(buildIn);
  const target = normalizePlatform(targetIn);
  return {
    BUILDPLATFORM: formatPlatform(build),
    BUILDOS: build.os,
    BUILDARCH: build.architecture,
    BUILDVARIANT: build.variant ?? '',
    TARGETPLATFORM: formatPlatform(target),
    TARGETOS: target.os,
    TARGETARCH: target.architecture,
    TARGETVARIANT: target.variant ?? '',
  };
}

// ---------------------------------------------------------------------------------------------
// Planning

interface StageDecl {
  index: number;
  from: FromInstruction;
  body: Instruction[];
  /** Digest of the stage's source lines (FROM to its last instruction), for its key. */
  textDigest: string;
}

interface Ctx {
  file: string;
  lines: readonly string[];
  escape: string;
  buildArgs: Readonly<Record<string, string>>;
  warn: (rule: RuleName, detail: string, range: Range) => void;
  consumed: Set<string>;
  /** Lexer options for word expansion (the escape directive). */
  lexOptions: LexOptions;
}

/** Splits the instructions into global ARGs and stages; instruction errors are thrown here. */
function structure(parsed: ParsedDockerfile): { globals: ArgInstruction[]; stages: StageDecl[] } {
  const ictx = { file: parsed.file, lines: parsed.lines, escape: parsed.directives.escape };
  const globals: ArgInstruction[] = [];
  const stages: StageDecl[] = [];
  for (const node of parsed.nodes) {
    const ins = toInstruction(node, ictx);
    if (ins.kind === 'FROM') stages.push({ index: stages.length, from: ins, body: [], textDigest: '' });
    else if (stages.length === 0) {
      if (ins.kind !== 'ARG')
        throw new DockerfileError('no build stage in current context', {
          file: parsed.file,
          range: node.range,
          lines: parsed.lines,
        });
      globals.push(ins);
    } else stages[stages.length - 1]!.body.push(ins);
  }
  for (const s of stages) {
    const last = s.body[s.body.length - 1]?.range ?? s.from.range;
    s.textDigest = createHash('sha256')
      .update(parsed.lines.slice(s.from.range.start.line - 1, last.end.line).join('\n'))
      .digest('hex');
  }
  if (stages.length === 0)
    throw new DockerfileError('the Dockerfile has no FROM instruction', {
      file: parsed.file,
      range: { start: { line: 1, character: 0 }, end: { line: 1, character: 0 } },
      lines: parsed.lines,
    });
  return { globals, stages };
}

class Expander {
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

function isValidImageRef(ref: string): boolean {
  const comp = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
  const re = new RegExp(
    `^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?/)?${comp}(?:/${comp})*(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`,
  );
  return re.test(ref);
}

function posixJoin(base: string, p: string): string {
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

function envList(env: Map<string, string>): string[] {
  return [...env].map(([k, v]) => `${k}=${v}`);
}

function parseMount(
  spec: string,
  expand: (w: string) => string,
  fail: (m: string) => never,
  resolveFrom: (v: string) => SourceRef,
  sshCount: () => number,
  workdir: string,
): RunMount {
  const kv = new Map<string, string | undefined>();
  for (const [key, raw, f] of splitMountSpec(spec)) {
    if (!MOUNT_KEYS.has(key)) fail(`unexpected key '${key}' in '${f}'`);
    kv.set(key, raw === undefined ? undefined : expand(raw));
  }
  const type = (kv.get('type') ?? 'bind') as RunMount['type'];
  if (!['bind', 'cache', 'tmpfs', 'secret', 'ssh'].includes(type)) fail(`unsupported mount type "${type}"`);
  const bool = (k: string): boolean | undefined => {
    if (!kv.has(k)) return undefined;
    const v = kv.get(k);
    if (v === undefined || /^true$/i.test(v)) return true;
    if (/^false$/i.test(v)) return false;
    return fail(`invalid value for ${k}: ${v}`);
  };
  const num = (k: string, radix: number): number | undefined => {
    const v = kv.get(k);
    if (v === undefined) return undefined;
    const n = Number.parseInt(v, radix);
    if (!Number.isFinite(n) || !(radix === 8 ? /^[0-7]+$/ : /^\d+$/).test(v))
      fail(`invalid value for ${k}: ${v}`);
    return n;
  };
  let target = kv.get('target') ?? kv.get('dst') ?? kv.get('destination') ?? '';
  const source = kv.get('source') ?? kv.get('src');
  const ro = bool('readonly') ?? bool('ro');
  const rw = bool('readwrite') ?? bool('rw');
  let readonly = type === 'bind';
  if (ro !== undefined) readonly = ro;
  if (rw !== undefined) readonly = !rw;
  let id = kv.get('id');
  if (type === 'secret') {
    if (!id && !target) fail('secret mount requires an id or a target');
    if (!id) id = target.split('/').filter(Boolean).pop() ?? '';
    if (!target) target = `/run/secrets/${id}`;
  } else if (type === 'ssh') {
    if (!id) id = 'default';
    if (!target) target = `/run/buildkit/ssh_agent.${sshCount()}`;
  } else if (!target) fail(`mount type ${type} requires a target`);
  // Secrets and SSH sockets are always read-only; a relative target is under the workdir.
  if (type === 'secret' || type === 'ssh') readonly = true;
  if (!target.startsWith('/')) target = posixJoin(workdir, target);
  const m: RunMount = { type, target, readonly };
  if (source !== undefined) m.source = source;
  const from = kv.get('from');
  if (from) m.from = resolveFrom(from);
  if (type === 'cache') {
    m.id = id ?? target;
    const sharing = kv.get('sharing') ?? 'shared';
    if (!['shared', 'private', 'locked'].includes(sharing)) fail(`unsupported sharing value "${sharing}"`);
    m.sharing = sharing as RunMount['sharing'];
    m.mode = num('mode', 8) ?? 0o755;
  } else if (id !== undefined) m.id = id;
  if (type === 'secret' || type === 'ssh') {
    m.mode = num('mode', 8) ?? (type === 'secret' ? 0o400 : 0o600);
    m.required = bool('required') ?? false;
  }
  const uid = num('uid', 10);
  const gid = num('gid', 10);
  if (uid !== undefined) m.uid = uid;
  if (gid !== undefined) m.gid = gid;
  if (type === 'tmpfs') {
    const size = kv.get('size');
    if (size !== undefined) m.size = parseSize(size, fail);
  }
  const env = kv.get('env');
  if (env !== undefined) m.env = env;
  return m;
}

type MountField = [key: string, raw: string | undefined, field: string];
const mountSpecCache = new Map<string, MountField[]>();

/** `type=cache,target=/x,"a=b,c"` → fields (CSV with double quotes); memoised per spec text. */
function splitMountSpec(spec: string): MountField[] {
  const hit = mountSpecCache.get(spec);
  if (hit) return hit;
  const fields: string[] = [];
  let cur = '';
  let q = false;
  for (const ch of spec) {
    if (ch === '"') q = !q;
    else if (ch === ',' && !q) {
      fields.push(cur);
      cur = '';
    } else cur += ch;
  }
  fields.push(cur);
  const out: MountField[] = [];
  for (const f of fields) {
    if (f.trim() === '') continue;
    const eq = f.indexOf('=');
    out.push([(eq < 0 ? f : f.slice(0, eq)).trim().toLowerCase(), eq < 0 ? undefined : f.slice(eq + 1), f]);
  }
  if (mountSpecCache.size > 10_000) mountSpecCache.clear();
  mountSpecCache.set(spec, out);
  return out;
}

const MOUNT_KEYS = new Set([
  'type',
  'target',
  'dst',
  'destination',
  'source',
  'src',
  'from',
  'readonly',
  'ro',
  'readwrite',
  'rw',
  'id',
  'sharing',
  'mode',
  'uid',
  'gid',
  'required',
  'size',
  'env',
]);

function parseSize(v: string, fail: (m: string) => never): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v);
  if (!m) return fail(`invalid size "${v}"`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.round(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
}

/** A stage's build state while dispatching (what `FROM <stage>` inherits). */
interface StageState {
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

/** Default PATH BuildKit adds when the base image has none (non-Windows). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

interface DispatchedStage {
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

function planPlatform(
  decls: { globals: ArgInstruction[]; stages: StageDecl[] },
  target: Platform,
  buildPlatform: Platform,
  opts: PlanOptions,
  ctx: Ctx,
): PlatformPlan {
  const auto = platformArgs(buildPlatform, target);
  // Meta args: automatic platform args (a --build-arg may override them), then global ARGs.
  const meta = new Map<string, string>();
  for (const [k, v] of Object.entries(auto)) meta.set(k, ctx.buildArgs[k] ?? v);
  const declaredGlobals = new Set<string>();
  const defaultsOnly = new Map<string, string>(Object.entries(auto));
  const globalTargetDeps = new Map<string, Set<string>>();
  for (const g of decls.globals) {
    for (const a of g.args) {
      declaredGlobals.add(a.key);
      ctx.consumed.add(a.key);
      const given = ctx.buildArgs[a.key];
      // As BuildKit's buildMetaArgs: a --build-arg replaces the default, which is then not
      // even expanded; an ARG with neither leaves the name as it was (platform args stay).
      if (given !== undefined) {
        meta.set(a.key, given);
        globalTargetDeps.delete(a.key);
      } else if (a.value !== undefined) {
        // Track which TARGET* args a global default depends on, so a stage consuming it
        // (in FROM, or with `ARG NAME`) is known to depend on the target.
        const deps = new Set<string>();
        for (const n of processWord(a.value, meta, { escape: ctx.escape, skipUnsetEnv: true }).matched) {
          if (TARGET_ARGS.has(n)) deps.add(n);
          for (const d of globalTargetDeps.get(n) ?? []) deps.add(d);
        }
        meta.set(a.key, new Expander(ctx, g.range, meta).word(a.value));
        if (deps.size > 0) globalTargetDeps.set(a.key, deps);
        else globalTargetDeps.delete(a.key);
      }
      if (a.value !== undefined) {
        try {
          defaultsOnly.set(a.key, processWord(a.value, defaultsOnly, { escape: ctx.escape }).result);
        } catch {
          defaultsOnly.delete(a.key);
        }
      }
    }
  }

  // The platform args in force: the injected values unless a --build-arg or a global ARG
  // default replaced them (what a stage's `ARG TARGETARCH` receives).
  const inForce: Record<string, string> = {};
  for (const k of PLATFORM_ARGS) inForce[k] = meta.get(k) ?? '';
  const proxyArgs = Object.keys(ctx.buildArgs).filter((a) => BUILTIN_ARGS.has(a));
  const stageNames = new Map<string, number>();
  const dispatched: DispatchedStage[] = [];
  const platformOf = (p: Platform) => normalizePlatform(p);

  for (const decl of decls.stages) {
    const f = decl.from;
    const targetArgsUsed = new Set<string>();
    const fromUnmatched = (n: string) => {
      if (!declaredGlobals.has(n) && !(n in auto)) {
        const hint = suggest(n, [...declaredGlobals, ...Object.keys(auto)]);
        ctx.warn(
          'UndefinedArgInFrom',
          `FROM argument '${n}' is not declared${hint ? ` (did you mean ${hint}?)` : ''}`,
          f.range,
        );
      }
    };
    const fromEnv = new Map(meta);
    const ex = new Expander(ctx, f.range, fromEnv, fromUnmatched);
    const usedInFrom = (w: string) => {
      const r = processWord(w, fromEnv, { escape: ctx.escape, skipUnsetEnv: true });
      for (const n of r.matched) {
        if (TARGET_ARGS.has(n)) targetArgsUsed.add(n);
        for (const d of globalTargetDeps.get(n) ?? []) targetArgsUsed.add(d);
      }
    };
    usedInFrom(f.image);
    const image = ex.word(f.image);
    if (image === '')
      throw new DockerfileError(`base name (${f.image}) should not be blank`, {
        file: ctx.file,
        range: f.range,
        lines: ctx.lines,
      });
    let platform: Platform = platformOf(target);
    let platformSource: PlanStage['platformSource'] = 'target';
    if (f.platform !== undefined) {
      usedInFrom(f.platform);
      const pv = ex.word(f.platform);
      try {
        platform = parsePlatform(pv);
      } catch (err) {
        throw new DockerfileError((err as Error).message, {
          file: ctx.file,
          range: f.range,
          lines: ctx.lines,
        });
      }
      platformSource = 'flag';
    }
    let base: SourceRef;
    const lower = image.toLowerCase();
    const parentIdx = stageNames.get(lower);
    let parent: DispatchedStage | undefined;
    // A stage a named context replaces starts from (and is) that context.
    const replacedBy = f.name !== undefined ? opts.namedContext?.(f.name) : undefined;
    const contextName = replacedBy ?? (parentIdx === undefined ? opts.namedContext?.(image) : undefined);
    if (contextName !== undefined) base = { type: 'context', name: contextName };
    else if (parentIdx !== undefined) {
      parent = dispatched[parentIdx];
      base = { type: 'stage', index: parentIdx, name: lower };
    } else if (lower === 'scratch') base = { type: 'scratch' };
    else {
      base = { type: 'image', ref: image };
      // InvalidDefaultArgInFrom: with no --build-arg, would the defaults give a valid name?
      if (f.image.includes('$')) {
        let withDefaults = '';
        try {
          withDefaults = processWord(f.image, defaultsOnly, { escape: ctx.escape }).result;
        } catch {
          /* reported by the real expansion */
        }
        const names = [...f.image.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!);
        if (
          (withDefaults === '' || !isValidImageRef(withDefaults)) &&
          names.some((n) => declaredGlobals.has(n))
        )
          for (const n of names.filter((x) => declaredGlobals.has(x)))
            ctx.warn(
              'InvalidDefaultArgInFrom',
              `Default value for ARG ${n} results in empty or invalid base image name`,
              f.range,
            );
      }
    }
    if (f.name !== undefined) stageNames.set(f.name, decl.index);
    // A stage built on another stage runs on that stage's platform (BuildKit's init() replaces
    // even a --platform given on this FROM).
    if (parent) {
      platform = parent.stage.platform;
      platformSource = parent.stage.platformSource;
    }

    let baseConfigKnown = base.type === 'scratch';
    let state: StageState;
    let triggers: string[] = [];
    if (parent) {
      baseConfigKnown = parent.stage.baseConfigKnown;
      const ps = parent.state;
      state = {
        env: new Map(ps.env),
        runEnv: new Map(ps.runEnv),
        args: new Map(ps.args),
        declared: new Set(ps.declared),
        workdir: ps.workdir,
        user: ps.user,
        shell: [...ps.shell],
        shellSet: ps.shellSet,
        workdirSet: ps.workdirSet,
        onbuild: [],
      };
      // The parent stage's ONBUILD triggers run first in a stage built FROM it.
      triggers = ps.onbuild;
    } else {
      state = {
        env: new Map(),
        runEnv: new Map(),
        args: new Map(),
        declared: new Set(),
        workdir: '/',
        user: '',
        shell: [...DEFAULT_SHELL],
        shellSet: false,
        workdirSet: false,
        onbuild: [],
      };
      const cfg =
        base.type === 'image'
          ? opts.imageConfig?.(base.ref, platform)
          : base.type === 'context'
            ? opts.contextConfig?.(base.name, platform)
            : undefined;
      if (cfg) {
        baseConfigKnown = true;
        for (const e of cfg.env ?? []) {
          const eq = e.indexOf('=');
          state.env.set(eq < 0 ? e : e.slice(0, eq), eq < 0 ? '' : e.slice(eq + 1));
        }
        if (cfg.workingDir) state.workdir = posixJoin('/', cfg.workingDir);
        if (cfg.user) state.user = cfg.user;
        if (cfg.shell?.length) {
          state.shell = [...cfg.shell];
          state.shellSet = true;
        }
        triggers = cfg.onBuild ?? [];
      }
      // BuildKit makes sure PATH is set when the base image does not set it.
      if (baseConfigKnown && !state.env.has('PATH') && platform.os !== 'windows')
        state.env.set('PATH', DEFAULT_PATH);
      for (const [k, v] of state.env) state.runEnv.set(k, v);
    }
    const stage: DispatchedStage['stage'] = {
      index: decl.index,
      ...(f.name !== undefined ? { name: f.name } : {}),
      range: f.range,
      base,
      platform,
      platformSource,
      platformArgs: inForce,
      targetArgsUsed: [],
      dependsOn: base.type === 'stage' ? [base.index] : [],
      baseConfigKnown,
      instructions: [],
    };
    const d: DispatchedStage = {
      decl,
      stage,
      state,
      ownTargetDependence: false,
      depRanges: new Map(),
      baseState: JSON.stringify([envList(state.env), state.workdir, state.user, state.shell, triggers]),
    };
    dispatched.push(d);
    try {
      if (replacedBy === undefined)
        dispatchBody(d, triggers, {
          ctx,
          meta,
          declaredStages: decls.stages,
          stageNames,
          targetArgsUsed,
          buildArgs: ctx.buildArgs,
          proxyArgs,
          globalTargetDeps,
          ...(opts.namedContext ? { namedContext: opts.namedContext } : {}),
        });
    } catch (err) {
      d.error = err;
    }
    stage.targetArgsUsed = [...targetArgsUsed].sort();
    d.ownTargetDependence = targetArgsUsed.size > 0 || platformSource === 'target';
  }

  // Target and reachability.
  let targetIdx = dispatched.length - 1;
  if (opts.target !== undefined) {
    const t = stageNames.get(opts.target.toLowerCase());
    if (t === undefined)
      throw new DockerfileError(`target stage "${opts.target}" could not be found`, {
        file: ctx.file,
        range: decls.stages[decls.stages.length - 1]!.from.range,
        lines: ctx.lines,
      });
    targetIdx = t;
  }
  const order: number[] = [];
  const mark = new Map<number, 'visiting' | 'done'>();
  // Depth first with an explicit stack: a chain of thousands of stages is no deeper a call.
  const stack: Array<{ i: number; next: number }> = [];
  const enter = (i: number, from?: DispatchedStage): void => {
    const st = mark.get(i);
    if (st === 'done') return;
    const d = dispatched[i]!;
    if (st === 'visiting') {
      const range = from?.depRanges.get(i) ?? d.stage.range;
      throw new DockerfileError(`circular dependency detected on stage: ${stageLabel(d.stage.name, i)}`, {
        file: ctx.file,
        range,
        lines: ctx.lines,
      });
    }
    mark.set(i, 'visiting');
    stack.push({ i, next: 0 });
  };
  enter(targetIdx);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const d = dispatched[top.i]!;
    if (top.next < d.stage.dependsOn.length) {
      enter(d.stage.dependsOn[top.next++]!, d);
      continue;
    }
    stack.pop();
    mark.set(top.i, 'done');
    order.push(top.i);
  }
  // No cycle: now the first failing stage (in Dockerfile order, as BuildKit dispatches) fails.
  for (const i of [...order].sort((x, y) => x - y)) {
    const d = dispatched[i]!;
    if (d.error) throw d.error;
    if (d.deferredError) throw d.deferredError;
  }

  const keys = new Map<number, string>();
  const independent = new Map<number, boolean>();
  const stages: PlanStage[] = [];
  for (const i of order) {
    const d = dispatched[i]!;
    const deps = d.stage.dependsOn;
    const ind = !d.ownTargetDependence && deps.every((x) => independent.get(x) === true);
    independent.set(i, ind);
    const hash = createHash('sha256');
    hash.update(
      JSON.stringify({
        base: d.stage.base.type === 'stage' ? { stage: keys.get(d.stage.base.index) } : d.stage.base,
        platform: formatPlatform(d.stage.platform),
        deps: deps.map((x) => keys.get(x)),
        // Every expanded value is a function of the stage's text, the ARG values it resolved,
        // the base (config) and the build args reaching RUN: hashing those is exact and far
        // cheaper than serialising every planned instruction.
        escape: ctx.escape,
        text: d.decl.textDigest,
        args: d.stage.instructions.filter((x) => x.kind === 'ARG').map((x) => (x as PlanArg).args),
        baseState: d.stage.base.type === 'image' || d.stage.base.type === 'context' ? d.baseState : undefined,
        proxies: Object.keys(ctx.buildArgs)
          .filter((a) => BUILTIN_ARGS.has(a))
          .map((a) => [a, ctx.buildArgs[a]]),
        baseConfigKnown: d.stage.baseConfigKnown,
        // Target-dependent stages differ per target even when their text does not.
        target: ind ? undefined : formatPlatform(target),
      }),
    );
    const key = hash.digest('hex');
    keys.set(i, key);
    stages.push({ ...d.stage, targetIndependent: ind, key });
  }
  return { platform: platformOf(target), platformArgs: inForce, stages };
}

interface BodyCtx {
  ctx: Ctx;
  meta: Map<string, string>;
  declaredStages: StageDecl[];
  stageNames: Map<string, number>;
  targetArgsUsed: Set<string>;
  buildArgs: Readonly<Record<string, string>>;
  /** Proxy build args, which reach RUN without an ARG. */
  proxyArgs: string[];
  /** TARGET* args each global ARG's value was derived from. */
  globalTargetDeps: ReadonlyMap<string, ReadonlySet<string>>;
  /** PlanOptions.namedContext: `COPY --from` / `--mount from=` names a context. */
  namedContext?: (name: string) => string | undefined;
}

function parsePortRange(ports: string): [number, number] {
  if (ports === '') throw new Error('empty string specified for ports');
  const one = (x: string): number => {
    if (!/^\d+$/.test(x) || Number(x) > 65535) throw new Error(`invalid port: ${x}`);
    return Number(x);
  };
  if (!ports.includes('-')) return [one(ports), one(ports)];
  const parts = ports.split('-');
  if (parts.length !== 2) throw new Error(`invalid port range format: ${ports}`);
  const [start, end] = [one(parts[0]!), one(parts[1]!)];
  if (end < start) throw new Error(`invalid range specified for port: ${ports}`);
  return [start, end];
}

/** `[ip:][hostPort:]port[-end][/proto]` → `port/proto` entries, as BuildKit's dispatchExpose. */
export function parsePortSpec(raw: string): string[] {
  const parts = raw.split(':');
  const containerPart = parts[parts.length - 1]!;
  const hostPort = parts.length >= 2 ? parts[parts.length - 2]! : '';
  const slash = containerPart.indexOf('/');
  const port = slash < 0 ? containerPart : containerPart.slice(0, slash);
  const proto = (slash < 0 ? '' : containerPart.slice(slash + 1)).toLowerCase() || 'tcp';
  if (port === '') throw new Error(`no port specified: ${raw}<empty>`);
  if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new Error(`invalid proto: ${proto}`);
  let start: number;
  let end: number;
  try {
    [start, end] = parsePortRange(port);
  } catch {
    throw new Error(`invalid containerPort: ${port}`);
  }
  if (hostPort !== '') {
    let hs: number;
    let he: number;
    try {
      [hs, he] = parsePortRange(hostPort);
    } catch {
      throw new Error(`invalid hostPort: ${hostPort}`);
    }
    if (end - start !== he - hs && end !== start)
      throw new Error(`invalid ranges specified for container and host Ports: ${port} and ${hostPort}`);
  }
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

const SIGNALS = new Set(
  'ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ'.split(
    ' ',
  ),
);

/** Go's signal.ParseSignal as BuildKit uses it for STOPSIGNAL: a number, or a name with or without SIG. */
function validSignal(v: string): boolean {
  if (/^\d+$/.test(v)) return Number(v) > 0;
  const name = v.toUpperCase().replace(/^SIG/, '');
  return SIGNALS.has(name) || /^RTMIN(\+\d+)?$|^RTMAX(-\d+)?$/.test(name);
}

function stageLabel(name: string | undefined, index: number): string {
  return name ?? `stage-${index}`;
}

function dispatchBody(d: DispatchedStage, triggers: readonly string[], b: BodyCtx): void {
  const { ctx } = b;
  const st = d.state;
  let sshMounts = 0;
  // State snapshots are shared between instructions until an ARG, ENV, WORKDIR, USER or
  // SHELL changes them: a long stage must not copy its env for every instruction.
  let stateCache: InstructionState | undefined;
  const changed = (): void => {
    stateCache = undefined;
  };
  /** The state in force; shared between instructions until it changes — do not mutate. */
  const snapshot = (): InstructionState => {
    stateCache ??= {
      env: envList(st.env),
      runEnv: envList(st.runEnv),
      args: Object.fromEntries(st.args),
      workdir: st.workdir,
      user: st.user,
      shell: [...st.shell],
    };
    return stateCache;
  };
  const resolveRef =
    (range: Range, what: 'copy' | 'mount') =>
    (v: string): SourceRef => {
      const fail = (m: string): never => {
        throw new DockerfileError(m, { file: ctx.file, range, lines: ctx.lines });
      };
      let idx: number | undefined;
      if (/^\d+$/.test(v)) {
        idx = Number(v);
        if (idx >= b.declaredStages.length) fail(`invalid stage index ${v}`);
      } else {
        const lower = v.toLowerCase();
        const found = b.declaredStages.find((s) => s.from.name === lower);
        if (found) idx = found.index;
      }
      if (idx === undefined) {
        const named = b.namedContext?.(v);
        return named !== undefined ? { type: 'context', name: named } : { type: 'image', ref: v };
      }
      if (!d.stage.dependsOn.includes(idx)) {
        d.stage.dependsOn.push(idx);
        d.depRanges.set(idx, range);
      }
      const name = b.declaredStages[idx]!.from.name;
      if (idx >= d.stage.index && !d.deferredError) {
        // BuildKit dispatches stages in order: a stage can only use one defined before it.
        // (Reported after cycle detection, which gives the clearer message for a cycle.)
        const here = stageLabel(d.stage.name, d.stage.index);
        d.deferredError = new DockerfileError(
          what === 'copy'
            ? `cannot copy from stage "${v}", it needs to be defined before current stage "${here}"`
            : `cannot mount from stage "${v}" to "${here}", stage needs to be defined before current command`,
          { file: ctx.file, range, lines: ctx.lines },
        );
      }
      return name !== undefined ? { type: 'stage', index: idx, name } : { type: 'stage', index: idx };
    };
  const out = d.stage.instructions;
  // ONBUILD triggers of the base (image config or parent stage) run first, located at FROM.
  const triggerIns: Instruction[] = [];
  for (const expr of triggers) {
    const fromRange = d.stage.range;
    try {
      const parsed = parseDockerfile(expr, { file: ctx.file });
      const node = parsed.nodes[0];
      if (!node || parsed.nodes.length !== 1)
        throw new Error('onbuild trigger should be a single expression');
      const ins = toInstruction(node, { file: ctx.file, lines: ctx.lines, escape: '\\' });
      ins.range = fromRange;
      triggerIns.push(ins);
    } catch (err) {
      const why = err instanceof DockerfileError ? err.reason : (err as Error).message;
      throw new DockerfileError(`ONBUILD ${expr}: ${why}`, {
        file: ctx.file,
        range: fromRange,
        lines: ctx.lines,
      });
    }
  }
  const own = d.decl.body;
  const total = triggerIns.length + own.length;
  for (let k = 0; k < total; k++) {
    const onbuild = k < triggerIns.length;
    const ins = onbuild ? triggerIns[k]! : own[k - triggerIns.length]!;
    const range = ins.range;
    const original = onbuild ? `ONBUILD ${ins.node.original}` : ins.node.original;
    const unmatched = (n: string) => {
      if (st.declared.has(n) || !d.stage.baseConfigKnown) return;
      const hint = suggest(n, [...st.runEnv.keys(), ...b.meta.keys()]);
      ctx.warn(
        'UndefinedVar',
        `Usage of undefined variable '$${n}'${hint ? ` (did you mean $${hint}?)` : ''}`,
        range,
      );
    };
    const ex = new Expander(ctx, range, st.runEnv, unmatched);
    const fail = (m: string): never => {
      throw new DockerfileError(m, { file: ctx.file, range, lines: ctx.lines });
    };
    const before = out.length;
    switch (ins.kind) {
      case 'ARG': {
        const resolved: PlanArg['args'] = [];
        for (const a of ins.args) {
          st.declared.add(a.key);
          ctx.consumed.add(a.key);
          if (TARGET_ARGS.has(a.key)) b.targetArgsUsed.add(a.key);
          let value: string | undefined;
          if (a.key in b.buildArgs) value = b.buildArgs[a.key];
          else if (a.value !== undefined) value = ex.word(a.value);
          else {
            value = b.meta.get(a.key);
            for (const dep of b.globalTargetDeps.get(a.key) ?? []) b.targetArgsUsed.add(dep);
          }
          if (value !== undefined) {
            st.args.set(a.key, value);
            // BuildKit adds ARG values to the state env: later ARG or ENV wins.
            st.runEnv.delete(a.key);
            st.runEnv.set(a.key, value);
          }
          changed();
          resolved.push(value !== undefined ? { key: a.key, value } : { key: a.key });
        }
        out.push({ kind: 'ARG', range, original, args: resolved });
        break;
      }
      case 'ENV':
      case 'LABEL': {
        // Every pair is expanded with the environment from before the instruction.
        const pairs = ins.pairs.map((p) => ({ key: ex.word(p.key), value: ex.word(p.value) }));
        if (ins.kind === 'ENV') {
          for (const p of pairs) {
            st.env.set(p.key, p.value);
            st.runEnv.delete(p.key);
            st.runEnv.set(p.key, p.value);
          }
          changed();
        }
        out.push({ kind: ins.kind, range, original, pairs });
        break;
      }
      case 'RUN': {
        const mounts = ins.mounts.map((spec) =>
          parseMount(
            spec,
            (w) => ex.word(w),
            fail,
            resolveRef(range, 'mount'),
            () => sshMounts++,
            st.workdir,
          ),
        );
        const proxy: Record<string, string> = {};
        for (const a of b.proxyArgs) {
          ctx.consumed.add(a);
          proxy[a] = b.buildArgs[a]!;
        }
        out.push({
          kind: 'RUN',
          range,
          original,
          args: ins.cmd,
          prependShell: ins.shellForm,
          heredocs: ins.heredocs,
          mounts,
          network: (ins.network ?? 'default') as PlanRun['network'],
          security: (ins.security ?? 'sandbox') as PlanRun['security'],
          proxy,
          state: snapshot(),
        });
        break;
      }
      case 'CMD':
      case 'ENTRYPOINT':
        if (ins.shellForm && !st.shellSet)
          ctx.warn(
            'JSONArgsRecommended',
            `JSON arguments recommended for ${ins.kind} to prevent unintended behavior related to OS signals`,
            range,
          );
        out.push({
          kind: ins.kind,
          range,
          original,
          args: ins.shellForm ? [...st.shell, ins.cmd[0]!] : ins.cmd,
          prependShell: ins.shellForm,
        });
        break;
      case 'COPY':
      case 'ADD': {
        const c = ins as CopyInstruction;
        const dest = ex.word(c.dest);
        const p: PlanCopy = {
          kind: c.kind,
          range,
          original,
          sources: c.sources.map((x) => ex.word(x)),
          // Heredoc bodies expand variables but keep their quotes (BuildKit's ExpandRaw).
          contents: c.contents.map((x) => ({
            path: x.path,
            data: x.expand ? ex.raw(x.data) : x.data,
          })),
          dest,
          destPath: posixJoin(st.workdir, dest) + (dest.endsWith('/') && dest !== '/' ? '/' : ''),
          link: c.link,
          parents: c.parents,
          exclude: c.exclude.map((e) => ex.word(e)),
          state: snapshot(),
        };
        if (c.from !== undefined) {
          if (processWord(c.from, EMPTY_ENV, { escape: ctx.escape }).result !== c.from)
            fail(
              'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
            );
          p.from = resolveRef(range, 'copy')(c.from);
        }
        if (c.chown !== undefined) p.chown = ex.word(c.chown);
        if (c.chmod !== undefined) {
          p.chmod = ex.word(c.chmod);
          if (
            !/^[0-7]{3,4}$/.test(p.chmod) &&
            !/^[ugoa]*[-+=][rwxXst]*(,[ugoa]*[-+=][rwxXst]*)*$/.test(p.chmod)
          )
            fail(`invalid chmod parameter: "${p.chmod}"`);
        }
        if (c.checksum !== undefined) p.checksum = ex.word(c.checksum);
        if (c.keepGitDir !== undefined) p.keepGitDir = c.keepGitDir;
        out.push(p);
        break;
      }
      case 'EXPOSE': {
        // Expanded and split into words, then normalised to `port/proto` (ranges expanded).
        const values: string[] = [];
        for (const v of ins.values)
          for (const w of ex.words(v)) {
            try {
              values.push(...parsePortSpec(w));
            } catch (err) {
              fail((err as Error).message);
            }
          }
        out.push({ kind: 'EXPOSE', range, original, values });
        break;
      }
      case 'VOLUME': {
        const values = ins.values.map((v) => ex.word(v));
        if (values.some((v) => v === '')) fail('VOLUME specified can not be an empty string');
        out.push({ kind: 'VOLUME', range, original, values });
        break;
      }
      case 'WORKDIR': {
        const value = ex.word(ins.value);
        // Only the first WORKDIR of the build (stage chain) is checked, as BuildKit does.
        if (!st.workdirSet && !value.startsWith('/'))
          ctx.warn(
            'WorkdirRelativePath',
            `Relative workdir "${value}" can have unexpected results if the base image changes`,
            range,
          );
        st.workdirSet = true;
        st.workdir = posixJoin(st.workdir, value);
        changed();
        out.push({ kind: 'WORKDIR', range, original, value, path: st.workdir });
        break;
      }
      case 'USER':
      case 'STOPSIGNAL': {
        const value = ex.word(ins.value);
        if (ins.kind === 'USER') {
          st.user = value;
          changed();
        } else if (!validSignal(value)) fail(`Invalid signal: ${value}`);
        out.push({ kind: ins.kind, range, original, value });
        break;
      }
      case 'MAINTAINER':
        out.push({ kind: 'MAINTAINER', range, original, value: ins.value });
        break;
      case 'ONBUILD':
        st.onbuild.push(ins.expression);
        out.push({ kind: 'ONBUILD', range, original, value: ins.expression });
        break;
      case 'HEALTHCHECK': {
        const { kind, test, interval, timeout, startPeriod, startInterval, retries } = ins;
        out.push({ kind, range, original, test, interval, timeout, startPeriod, startInterval, retries });
        break;
      }
      case 'SHELL':
        st.shell = [...ins.shell];
        st.shellSet = true;
        changed();
        out.push({ kind: 'SHELL', range, original, shell: ins.shell });
        break;
      case 'FROM':
        break;
    }
    if (onbuild && out.length > before) out[out.length - 1]!.onbuild = true;
  }
}

/** Checks that only need the syntax, not the expanded values. */
function syntaxChecks(
  parsed: ParsedDockerfile,
  decls: { globals: ArgInstruction[]; stages: StageDecl[] },
  ctx: Ctx,
) {
  const { nodes } = parsed;
  // ConsistentInstructionCasing: compare with the majority.
  let upper = 0;
  let lower = 0;
  for (const n of nodes) {
    if (n.rawKeyword === n.rawKeyword.toUpperCase()) upper++;
    else if (n.rawKeyword === n.rawKeyword.toLowerCase()) lower++;
  }
  const majorityUpper = upper >= lower;
  for (const n of nodes) {
    const ok = majorityUpper
      ? n.rawKeyword === n.rawKeyword.toUpperCase()
      : n.rawKeyword === n.rawKeyword.toLowerCase();
    if (!ok)
      ctx.warn(
        'ConsistentInstructionCasing',
        `Command '${n.rawKeyword}' should match the case of the command majority (${majorityUpper ? 'uppercase' : 'lowercase'})`,
        n.range,
      );
    // Reported once per instruction, over its whole range, as BuildKit's parser does.
    if (n.emptyContinuationLines.length > 0)
      ctx.warn('NoEmptyContinuation', 'Empty continuation line', n.range);
  }
  const names = new Set<string>();
  for (const s of decls.stages) {
    const f = s.from;
    if (f.rawName !== undefined) {
      if (f.rawName !== f.rawName.toLowerCase())
        ctx.warn('StageNameCasing', `Stage name '${f.rawName}' should be lowercase`, f.range);
      if (names.has(f.name!))
        ctx.warn(
          'DuplicateStageName',
          `Duplicate stage name '${f.name}', stage names should be unique`,
          f.range,
        );
      names.add(f.name!);
      if (f.name === 'scratch' || f.name === 'context')
        ctx.warn(
          'ReservedStageName',
          `Stage name should not use the same name as reserved stage '${f.name}'`,
          f.range,
        );
      const kw = f.node.rawKeyword;
      const as = f.asKeyword!;
      const kwUpper = kw === kw.toUpperCase();
      const asUpper = as === as.toUpperCase();
      const kwLower = kw === kw.toLowerCase();
      const asLower = as === as.toLowerCase();
      if ((kwUpper && !asUpper) || (kwLower && !asLower))
        ctx.warn('FromAsCasing', `'${as}' and '${kw}' keywords' casing do not match`, f.range);
    }
    if (f.platform !== undefined) {
      if (!f.platform.includes('$')) {
        const stageName = f.name ?? '';
        let p: Platform | undefined;
        try {
          p = parsePlatform(f.platform);
        } catch {
          p = undefined;
        }
        if (!p || !stageName.includes(p.architecture))
          ctx.warn(
            'FromPlatformFlagConstDisallowed',
            `FROM --platform flag should not use constant value "${f.platform}"`,
            f.range,
          );
      } else if (/^\$\{?TARGETPLATFORM\}?$/.test(f.platform))
        ctx.warn(
          'RedundantTargetPlatform',
          'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
          f.range,
        );
    }
    const seen = new Map<string, Instruction>();
    for (const ins of s.body) {
      if (ins.kind === 'CMD' || ins.kind === 'ENTRYPOINT' || ins.kind === 'HEALTHCHECK') {
        const prev = seen.get(ins.kind);
        if (prev)
          ctx.warn(
            'MultipleInstructionsDisallowed',
            `Multiple ${ins.kind} instructions should not be used in the same stage because only the last one will be used`,
            prev.range,
          );
        seen.set(ins.kind, ins);
      }
    }
    for (const ins of s.body) {
      if (ins.kind === 'MAINTAINER')
        ctx.warn(
          'MaintainerDeprecated',
          'Maintainer instruction is deprecated in favor of using label',
          ins.range,
        );
      if ((ins.kind === 'ENV' || ins.kind === 'LABEL') && ins.legacy)
        ctx.warn(
          'LegacyKeyValueFormat',
          `"${ins.kind} key=value" should be used instead of legacy "${ins.kind} key value" format`,
          ins.range,
        );
      if (ins.kind === 'ENV') for (const p of ins.pairs) secretCheck('ENV', p.key, ins.range, ctx);
      if (ins.kind === 'ARG') for (const a of ins.args) argChecks(a, ins.range, ctx);
      if (ins.kind === 'EXPOSE')
        for (const v of ins.values) {
          if (/\/[A-Za-z]+$/.test(v) && v !== v.toLowerCase())
            ctx.warn(
              'ExposeProtoCasing',
              `Defined protocol '${v}' in EXPOSE instruction should be lowercase`,
              ins.range,
            );
          if (/^[^$]*:/.test(v))
            ctx.warn(
              'ExposeInvalidFormat',
              `EXPOSE instruction should not define an IP address or host-port mapping, found '${v}'`,
              ins.range,
            );
        }
    }
  }
  for (const g of decls.globals) for (const a of g.args) argChecks(a, g.range, ctx);
}

function secretCheck(kind: string, key: string, range: Range, ctx: Ctx): void {
  if (SECRET_KEY.test(key) && !SECRET_ALLOW.test(key))
    ctx.warn(
      'SecretsUsedInArgOrEnv',
      `Do not use ARG or ENV instructions for sensitive data (${kind} "${key}")`,
      range,
    );
}

function argChecks(a: { key: string; value?: string }, range: Range, ctx: Ctx): void {
  secretCheck('ARG', a.key, range, ctx);
  if (a.value !== undefined && (PLATFORM_ARGS as readonly string[]).includes(a.key))
    ctx.warn(
      'InvalidDefinitionOfPlatformArg',
      `ARG ${a.key} has a default value: it overrides the automatic value for the platform being built; declare it as "ARG ${a.key}"`,
      range,
    );
}

/** Parses, checks and plans a Dockerfile for every requested platform. Pure; throws DockerfileError. */
export function planBuild(source: string | ParsedDockerfile, opts: PlanOptions = {}): Plan {
  const parsed =
    typeof source === 'string' ? parseDockerfile(source, { file: opts.file ?? 'Dockerfile' }) : source;
  const buildArgs = opts.buildArgs ?? {};
  const check = parseCheckConfig(buildArgs.BUILDKIT_DOCKERFILE_CHECK ?? parsed.directives.check);
  const warnings = new Map<string, CheckWarning>();
  const ctx: Ctx = {
    file: parsed.file,
    lines: parsed.lines,
    escape: parsed.directives.escape,
    lexOptions: { escape: parsed.directives.escape },
    buildArgs,
    consumed: new Set(),
    warn: (rule, detail, range) => {
      if (isSkipped(check, rule)) return;
      const key = `${rule}\0${range.start.line}\0${detail}`;
      if (!warnings.has(key)) warnings.set(key, makeWarning(rule, detail, parsed.file, range));
    },
  };
  const sortedWarnings = () => [...warnings.values()].sort((a, b) => a.range.start.line - b.range.start.line);
  let decls: ReturnType<typeof structure>;
  let platforms: PlatformPlan[];
  const buildPlatform = normalizePlatform(opts.buildPlatform ?? hostPlatform());
  try {
    decls = structure(parsed);
    syntaxChecks(parsed, decls, ctx);
    const targets = opts.platforms?.length ? uniquePlatforms(opts.platforms) : [buildPlatform];
    platforms = targets.map((t) => planPlatform(decls, t, buildPlatform, opts, ctx));
  } catch (err) {
    // `--check` shows the warnings found before the error, as buildx does.
    if (err instanceof DockerfileError) err.warnings = sortedWarnings();
    throw err;
  }
  const unusedBuildArgs = Object.keys(buildArgs)
    .filter(
      (k) =>
        !ctx.consumed.has(k) &&
        !BUILTIN_ARGS.has(k) &&
        !(PLATFORM_ARGS as readonly string[]).includes(k) &&
        !k.startsWith('BUILDKIT_') &&
        k !== 'SOURCE_DATE_EPOCH',
    )
    .sort();
  const sorted = sortedWarnings();
  return {
    file: parsed.file,
    directives: parsed.directives,
    buildPlatform,
    platforms,
    warnings: sorted,
    check,
    unusedBuildArgs,
    lines: parsed.lines,
  };
}

/** What the engine executes for a RUN, with BuildKit's heredoc rules applied. */
export interface RunCommand {
  argv: string[];
  /** A script file to create before running (a heredoc starting with `#!`): argv runs it. */
  script?: { path: string; data: string; mode: number };
}

/**
 * The process a RUN starts. Exec form: its args. Shell form: `[...shell, line]`. A RUN whose
 * whole command is one heredoc (`RUN <<EOF`) runs the body: with the shell, or as a file when it
 * starts with `#!`. Other heredocs are handed to the shell with their bodies, as written.
 */
export function runCommand(run: PlanRun, scriptDir = '/dev/pipes'): RunCommand {
  if (!run.prependShell) return { argv: [...run.args] };
  const line = run.args[0] ?? '';
  const first = run.heredocs[0];
  if (first && run.heredocs.length >= 1) {
    const marker = parseHeredocWord(line.trim());
    if (marker && marker.name === first.name) {
      const data = first.chomp ? chompHeredocContent(first.content) : first.content;
      if (data.startsWith('#!')) {
        const path = `${scriptDir}/${first.name}`;
        return { argv: [path], script: { path, data, mode: 0o755 } };
      }
      return { argv: [...run.state.shell, data] };
    }
    let full = line;
    for (const h of run.heredocs) full += `\n${h.content}${h.name}`;
    return { argv: [...run.state.shell, full] };
  }
  return { argv: [...run.state.shell, line] };
}

/** The image references every plan's stages start from or copy from (for resolving configs). */
export function collectBaseImages(plan: Plan): { ref: string; platform: Platform }[] {
  const seen = new Map<string, { ref: string; platform: Platform }>();
  for (const p of plan.platforms)
    for (const s of p.stages)
      if (s.base.type === 'image') {
        const k = `${s.base.ref}\0${formatPlatform(s.platform)}`;
        if (!seen.has(k)) seen.set(k, { ref: s.base.ref, platform: s.platform });
      }
  return [...seen.values()];
}

export type { CheckWarning, Heredoc, Node };

/** The named contexts a plan reads, each with the platforms it is read for. */
export function collectContextRefs(plan: Plan): { name: string; platform: Platform }[] {
  const seen = new Map<string, { name: string; platform: Platform }>();
  const add = (ref: SourceRef | undefined, platform: Platform) => {
    if (ref?.type !== 'context') return;
    const k = `${ref.name}\0${formatPlatform(platform)}`;
    if (!seen.has(k)) seen.set(k, { name: ref.name, platform });
  };
  for (const p of plan.platforms)
    for (const s of p.stages) {
      add(s.base, s.platform);
      for (const i of s.instructions) {
        if (i.kind === 'COPY' || i.kind === 'ADD') add(i.from, s.platform);
        else if (i.kind === 'RUN') for (const m of i.mounts) add(m.from, s.platform);
      }
    }
  return [...seen.values()];
}
