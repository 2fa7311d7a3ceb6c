/**
 * Golden files: every src/dockerfile/testdata/<case>/ holds a Dockerfile, an optional
 * options.json (PlanOptions: platforms as "os/arch[/variant]" strings, buildArgs, target,
 * buildPlatform) and result.json — the expected plan summary, or `{ "error": { message, line } }`.
 * `UPDATE_GOLDEN=1 node --test dist/src/dockerfile/golden.test.js` rewrites result.json; then
 * run `npx biome check --write src` (biome formats the JSON) and review the diff before committing.
 * A new case needs only its Dockerfile (and options.json): the first run writes result.json and
 * fails once, so nothing lands unreviewed.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isDockerfileError } from './errors.js';
import { parsePlatform } from '../platform/index.js';
import { type Plan, type PlanOptions, planBuild } from './plan.js';

// Compiled to dist/src/dockerfile/; the sources are three levels up.
const testdata = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
  'src',
  'dockerfile',
  'testdata',
);
const update = process.env.UPDATE_GOLDEN === '1';

interface CaseOptions {
  platforms?: string[];
  buildPlatform?: string;
  buildArgs?: Record<string, string>;
  target?: string;
}

const lineOf = (r: { start: { line: number }; end: { line: number } }) =>
  r.start.line === r.end.line ? `${r.start.line}` : `${r.start.line}-${r.end.line}`;

/** A reviewable projection of the plan: ranges as line spans, keys shortened. */
export function summarize(plan: Plan): unknown {
  return {
    directives: plan.directives,
    warnings: plan.warnings.map((w) => `${w.rule} ${lineOf(w.range)}: ${w.detail}`),
    unusedBuildArgs: plan.unusedBuildArgs,
    platforms: plan.platforms.map((p) => ({
      platform: [p.platform.os, p.platform.architecture, p.platform.variant].filter(Boolean).join('/'),
      stages: p.stages.map((s) => ({
        index: s.index,
        ...(s.name !== undefined ? { name: s.name } : {}),
        line: lineOf(s.range),
        base: s.base,
        platform: [s.platform.os, s.platform.architecture, s.platform.variant].filter(Boolean).join('/'),
        platformSource: s.platformSource,
        targetArgsUsed: s.targetArgsUsed,
        targetIndependent: s.targetIndependent,
        dependsOn: s.dependsOn,
        key: s.key.slice(0, 12),
        instructions: s.instructions.map((ins) => {
          const { range, original: _o, ...rest } = ins as typeof ins & { state?: unknown };
          const out: Record<string, unknown> = { line: lineOf(range), ...rest };
          if (out.kind === 'RUN' && Object.keys(out.proxy as object).length === 0) delete out.proxy;
          if ('state' in out && out.state) {
            const st = out.state as { shell: string[]; workdir: string; user: string };
            const compact: Record<string, unknown> = { ...st };
            if (st.shell.join(' ') === '/bin/sh -c') delete compact.shell;
            if (st.workdir === '/') delete compact.workdir;
            if (st.user === '') delete compact.user;
            const rs = st as unknown as { env: string[]; runEnv: string[] };
            if (rs.runEnv.join('\n') === rs.env.join('\n')) delete compact.runEnv;
            out.state = compact;
          }
          return out;
        }),
      })),
    })),
  };
}

const cases = existsSync(testdata) ? readdirSync(testdata).sort() : [];

test('the golden corpus has at least 40 cases, 10 of them errors', () => {
  assert.ok(cases.length >= 40, `${cases.length} cases`);
  const errors = cases.filter((c) => {
    const f = join(testdata, c, 'result.json');
    return existsSync(f) && 'error' in JSON.parse(readFileSync(f, 'utf8'));
  });
  assert.ok(errors.length >= 10, `${errors.length} error cases`);
});

for (const name of cases) {
  test(`golden ${name}`, () => {
    const dir = join(testdata, name);
    const text = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    const optFile = join(dir, 'options.json');
    const o: CaseOptions = existsSync(optFile) ? JSON.parse(readFileSync(optFile, 'utf8')) : {};
    const opts: PlanOptions = {
      buildPlatform: parsePlatform(o.buildPlatform ?? 'linux/amd64'),
      platforms: (o.platforms ?? ['linux/amd64']).map((p) => parsePlatform(p)),
      buildArgs: o.buildArgs ?? {},
      ...(o.target !== undefined ? { target: o.target } : {}),
    };
    let actual: unknown;
    try {
      actual = summarize(planBuild(text, opts));
    } catch (err) {
      if (!isDockerfileError(err)) throw err;
      actual = { error: { message: err.message, line: err.range.start.line } };
    }
    const resultFile = join(dir, 'result.json');
    if (update || !existsSync(resultFile)) {
      writeFileSync(resultFile, `${JSON.stringify(actual, null, 2)}\n`);
      if (!update) assert.fail(`${name}: result.json was missing and has been written; review it`);
      return;
    }
    assert.deepEqual(actual, JSON.parse(readFileSync(resultFile, 'utf8')));
  });
}
