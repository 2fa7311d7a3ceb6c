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
import { type CheckWarning, isSkipped, makeWarning, parseCheckConfig } from './checks.js';
import { DockerfileError } from './errors.js';
import { type ArgInstruction, toInstruction } from './instructions.js';
import {
  chompHeredocContent,
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
import { processWord } from './shell.js';

export * from './plan-types.js';
export { PLATFORM_ARGS } from './plan-ctx.js';
import {
  type Ctx,
  type DispatchedStage,
  envList,
  Expander,
  PLATFORM_ARGS,
  posixJoin,
  type StageDecl,
  type StageState,
  TARGET_ARGS,
} from './plan-ctx.js';
import { dispatchBody, stageLabel } from './dispatch.js';

export { parsePortSpec } from './dispatch.js';
import { syntaxChecks } from './plan-checks.js';
import type {
  Plan,
  PlanArg,
  PlanOptions,
  PlanRun,
  PlanStage,
  PlatformPlan,
  SourceRef,
} from './plan-types.js';

export const DEFAULT_SHELL = ['/bin/sh', '-c'];
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

function isValidImageRef(ref: string): boolean {
  const comp = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
  const re = new RegExp(
    `^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?/)?${comp}(?:/${comp})*(?::[\\w][\\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$`,
  );
  return re.test(ref);
}

/** Default PATH BuildKit adds when the base image has none (non-Windows). */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

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
