/**
 * Build checks (BuildKit's linter rules): names, descriptions, documentation URLs, the
 * `# check=skip=…;error=true` configuration, and the buildx-style `--check` report.
 *
 * The planner (plan.ts) produces `CheckWarning`s; `formatCheckReport(warnings, lines)`
 * renders the count line, then each as `WARNING: <Rule> - <url>` / detail / `Dockerfile:LINE` /
 * source context.
 */
import type { Range } from './errors.js';

export interface CheckRule {
  name: string;
  description: string;
  /** Documentation page; rules of polyarch's own have none. */
  url?: string;
}

function docker(name: string, description: string): CheckRule {
  const slug = name
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase();
  return { name, description, url: `https://docs.docker.com/go/dockerfile/rule/${slug}/` };
}

/** Every rule, keyed by its stable name. */
export const RULES = {
  StageNameCasing: docker('StageNameCasing', 'Stage names should be lowercase'),
  FromAsCasing: docker('FromAsCasing', "The 'as' keyword should match the case of the 'from' keyword"),
  NoEmptyContinuation: docker(
    'NoEmptyContinuation',
    'Empty continuation lines will become errors in a future release',
  ),
  ConsistentInstructionCasing: docker(
    'ConsistentInstructionCasing',
    'All commands within the Dockerfile should use the same casing (either upper or lower)',
  ),
  DuplicateStageName: docker('DuplicateStageName', 'Stage names should be unique'),
  ReservedStageName: docker('ReservedStageName', 'Reserved words should not be used as stage names'),
  JSONArgsRecommended: docker(
    'JSONArgsRecommended',
    'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals',
  ),
  MaintainerDeprecated: docker(
    'MaintainerDeprecated',
    'The MAINTAINER instruction is deprecated, use a label instead to define an image author',
  ),
  UndefinedArgInFrom: docker('UndefinedArgInFrom', 'FROM command must use declared ARGs'),
  WorkdirRelativePath: docker(
    'WorkdirRelativePath',
    'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes',
  ),
  UndefinedVar: docker('UndefinedVar', 'Variables should be defined before their use'),
  MultipleInstructionsDisallowed: docker(
    'MultipleInstructionsDisallowed',
    'Multiple instructions of the same type should not be used in the same stage',
  ),
  LegacyKeyValueFormat: docker(
    'LegacyKeyValueFormat',
    'Legacy key/value format with whitespace separator should not be used',
  ),
  InvalidDefaultArgInFrom: docker(
    'InvalidDefaultArgInFrom',
    'Default value for global ARG results in an empty or invalid base image name',
  ),
  FromPlatformFlagConstDisallowed: docker(
    'FromPlatformFlagConstDisallowed',
    'FROM --platform flag should not use a constant value',
  ),
  RedundantTargetPlatform: docker(
    'RedundantTargetPlatform',
    'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
  ),
  SecretsUsedInArgOrEnv: docker(
    'SecretsUsedInArgOrEnv',
    'Sensitive data should not be used in the ARG or ENV commands',
  ),
  ExposeProtoCasing: docker('ExposeProtoCasing', 'Protocol in EXPOSE instruction should be lowercase'),
  ExposeInvalidFormat: docker(
    'ExposeInvalidFormat',
    'IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release',
  ),
  // polyarch's own: BuildKit silently lets such a default win over the injected value.
  InvalidDefinitionOfPlatformArg: {
    name: 'InvalidDefinitionOfPlatformArg',
    description:
      'Automatic platform ARGs (TARGETPLATFORM, TARGETOS, TARGETARCH, …) should be declared without a default, which would override the value for the platform being built',
  },
} satisfies Record<string, CheckRule>;

export type RuleName = keyof typeof RULES;

export interface CheckWarning {
  rule: RuleName;
  url?: string;
  description: string;
  /** The specific message (buildx prints it under the WARNING line). */
  detail: string;
  file: string;
  range: Range;
}

export interface CheckConfig {
  /** Rule names to skip; `all` skips every rule. */
  skip: string[];
  /** `error=true`: any warning fails the build. */
  error: boolean;
}

/**
 * Parses a `# check=` directive value or the BUILDKIT_DOCKERFILE_CHECK build argument:
 * `skip=A,B|all;error=true`. Unknown keys are ignored, as BuildKit does.
 */
export function parseCheckConfig(value: string | undefined): CheckConfig {
  const cfg: CheckConfig = { skip: [], error: false };
  if (!value) return cfg;
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    const v = part.slice(eq + 1).trim();
    if (key === 'skip')
      cfg.skip = v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    else if (key === 'error') cfg.error = /^(true|1)$/i.test(v);
  }
  return cfg;
}

export function isSkipped(cfg: CheckConfig, rule: string): boolean {
  return cfg.skip.some((s) => s.toLowerCase() === 'all' || s === rule);
}

export function makeWarning(rule: RuleName, detail: string, file: string, range: Range): CheckWarning {
  const r: CheckRule = RULES[rule];
  return {
    rule,
    ...(r.url ? { url: r.url } : {}),
    description: r.description,
    detail,
    file,
    range,
  };
}

/** One warning as buildx prints it, with two lines of context either side. */
export function formatWarning(w: CheckWarning, lines: readonly string[]): string {
  const out = [
    `WARNING: ${w.rule}${w.url ? ` - ${w.url}` : ''}`,
    w.detail,
    `${w.file}:${w.range.start.line}`,
  ];
  out.push('--------------------');
  const from = Math.max(1, w.range.start.line - 2);
  const to = Math.min(lines.length, w.range.end.line + 2);
  const width = String(to).length;
  for (let n = from; n <= to; n++) {
    const inRange = n >= w.range.start.line && n <= w.range.end.line;
    out.push(` ${String(n).padStart(width)} | ${inRange ? '>>> ' : '    '}${lines[n - 1] ?? ''}`.trimEnd());
  }
  out.push('--------------------');
  return out.join('\n');
}

/**
 * The whole `--check` report as buildx prints it: the count line first, then each warning
 * after a blank line (buildx's lint printer starts every warning with a newline).
 */
export function formatCheckReport(warnings: readonly CheckWarning[], lines: readonly string[]): string {
  const n = warnings.length;
  if (n === 0) return 'Check complete, no warnings found.\n';
  const count = `Check complete, ${n} warning${n === 1 ? ' has' : 's have'} been found!\n`;
  return count + warnings.map((w) => `\n${formatWarning(w, lines)}\n`).join('');
}
