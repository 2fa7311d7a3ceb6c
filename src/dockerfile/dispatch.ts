/**
 * The instructions of one stage, dispatched in order (BuildKit's dispatch): each expanded with
 * the ARG/ENV in scope, checked, and turned into the plan's instruction with the state in force
 * (env, workdir, user, shell); ONBUILD triggers of the base first. planPlatform (plan.ts) calls
 * it per stage.
 */
import { DockerfileError, type Range } from './errors.js';
import { type CopyInstruction, type Instruction, toInstruction } from './instructions.js';
import { parseDockerfile, suggest } from './parser.js';
import type { SourceRef, InstructionState, PlanRun, PlanCopy, PlanArg } from './plan-types.js';
import { processWord } from './shell.js';
import {
  type Ctx,
  type DispatchedStage,
  EMPTY_ENV,
  envList,
  Expander,
  posixJoin,
  type StageDecl,
  TARGET_ARGS,
} from './plan-ctx.js';
import { parseMount } from './mounts.js';

export interface BodyCtx {
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

export function parsePortRange(ports: string): [number, number] {
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

export const SIGNALS = new Set(
  'ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ'.split(
    ' ',
  ),
);

/** Go's signal.ParseSignal as BuildKit uses it for STOPSIGNAL: a number, or a name with or without SIG. */
export function validSignal(v: string): boolean {
  if (/^\d+$/.test(v)) return Number(v) > 0;
  const name = v.toUpperCase().replace(/^SIG/, '');
  return SIGNALS.has(name) || /^RTMIN(\+\d+)?$|^RTMAX(-\d+)?$/.test(name);
}

export function stageLabel(name: string | undefined, index: number): string {
  return name ?? `stage-${index}`;
}

export function dispatchBody(d: DispatchedStage, triggers: readonly string[], b: BodyCtx): void {
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
