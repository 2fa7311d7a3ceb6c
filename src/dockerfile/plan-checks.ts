/** BuildKit's build checks over the whole Dockerfile (casing, stage names, ARG/ENV rules) and per ARG/ENV. */
import type { Range } from './errors.js';
import type { ArgInstruction, Instruction } from './instructions.js';
import type { ParsedDockerfile } from './parser.js';
import { type PlatformSpec as Platform, parsePlatform } from '../platform/index.js';
import { type Ctx, PLATFORM_ARGS, type StageDecl } from './plan-ctx.js';

const SECRET_KEY =
  /(?:^|_)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const SECRET_ALLOW = /(?:^|_)public(?:_|$)/i;

/** Checks that only need the syntax, not the expanded values. */
export function syntaxChecks(
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

export function secretCheck(kind: string, key: string, range: Range, ctx: Ctx): void {
  if (SECRET_KEY.test(key) && !SECRET_ALLOW.test(key))
    ctx.warn(
      'SecretsUsedInArgOrEnv',
      `Do not use ARG or ENV instructions for sensitive data (${kind} "${key}")`,
      range,
    );
}

export function argChecks(a: { key: string; value?: string }, range: Range, ctx: Ctx): void {
  secretCheck('ARG', a.key, range, ctx);
  if (a.value !== undefined && (PLATFORM_ARGS as readonly string[]).includes(a.key))
    ctx.warn(
      'InvalidDefinitionOfPlatformArg',
      `ARG ${a.key} has a default value: it overrides the automatic value for the platform being built; declare it as "ARG ${a.key}"`,
      range,
    );
}
