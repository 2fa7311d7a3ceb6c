// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile text, not templates
/**
 * `polyarch build --check` through the real CLI binary: stdin and file Dockerfiles, a located
 * parse error (exit 1), warnings, `# check=error=true`, skips, and the engine placeholder.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const work = mkdtempSync(join(tmpdir(), 'polyarch-check-'));
after(() => rmSync(work, { recursive: true, force: true }));

function run(args: string[], input?: string) {
  const r = spawnSync(bin, args, { encoding: 'utf8', input: input ?? '', cwd: work });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a clean Dockerfile from stdin: no warnings, exit 0', () => {
  const r = run(['build', '--check', '-f', '-', '.'], 'FROM alpine\nRUN echo hi\nCMD ["sh"]\n');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'Check complete, no warnings found.\n');
});

test('warnings are printed like buildx: the count first, then each with file:line and context; exit 1', () => {
  const r = run(['build', '--check', '-f', '-'], 'FROM alpine AS Build\nMAINTAINER me\nCMD echo hi\n');
  // buildx exits 1 when the check finds anything, so `build --check` gates a CI job.
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stderr, '');
  assert.match(
    r.stdout,
    /^Check complete, 3 warnings have been found!\n\nWARNING: StageNameCasing - https:\/\/docs\.docker\.com\/go\/dockerfile\/rule\/stage-name-casing\/\nStage name 'Build' should be lowercase\nDockerfile:1\n/,
  );
  assert.match(
    r.stdout,
    /WARNING: JSONArgsRecommended - \S+json-args-recommended\/\nJSON arguments recommended for CMD/,
  );
  assert.match(r.stdout, / 3 \| >>> CMD echo hi\n/);
  assert.match(r.stdout, /WARNING: MaintainerDeprecated/);
  assert.match(r.stdout, /\n--------------------\n\nWARNING: /);
  assert.match(r.stdout, /\n--------------------\n$/);
});

test('a bad Dockerfile: exit 1 with the error located and the line shown', () => {
  const r = run(['build', '--check', '-f', '-'], 'FROM alpine\nRUN true\nFORM alpine\n');
  assert.equal(r.status, 1);
  assert.equal(
    r.stderr,
    'ERROR: Dockerfile:3: unknown instruction: FORM (did you mean FROM?)\n--> Dockerfile:3\n 3 | >>> FORM alpine\n',
  );
  assert.equal(r.stdout, '');
});

test('warnings found before an error are printed, then the located error', () => {
  const r = run(['build', '--check', '-f', '-'], 'FROM alpine AS Build\nENV A=${X:?unset}\n');
  assert.equal(r.status, 1);
  assert.match(r.stdout, /^Check complete, 1 warning has been found!\n\nWARNING: StageNameCasing/);
  assert.equal(
    r.stderr,
    'ERROR: Dockerfile:2: failed to process "${X:?unset}": X: unset\n--> Dockerfile:2\n 2 | >>> ENV A=${X:?unset}\n',
  );
});

test('a Dockerfile in the context directory, and -f with another name', () => {
  const ctx = join(work, 'ctx');
  spawnSync('mkdir', ['-p', ctx]);
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM alpine\nENTRYPOINT run me\n');
  writeFileSync(join(ctx, 'app.Dockerfile'), 'FROM alpine\nCOPY onlyone\n');
  const ok = run(['build', '--check', ctx]);
  assert.equal(ok.status, 1, ok.stderr);
  assert.match(ok.stdout, /JSON arguments recommended for ENTRYPOINT/);
  assert.match(ok.stdout, /Dockerfile:2\n/);
  const bad = run(['build', '--check', '-f', join(ctx, 'app.Dockerfile'), ctx]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^ERROR: app\.Dockerfile:2: COPY requires at least two arguments/);
  assert.match(bad.stderr, /--> app\.Dockerfile:2\n 2 \| >>> COPY onlyone\n/);
});

test('a missing Dockerfile is one ERROR line, exit 1', () => {
  const r = run(['build', '--check', join(work, 'nowhere')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^ERROR: reading Dockerfile .*nowhere\/Dockerfile: /);
});

test('# check=error=true turns warnings into a failure; skip removes rules', () => {
  const r = run(['build', '--check', '-f', '-'], '# check=error=true\nFROM alpine\nCMD echo hi\n');
  assert.equal(r.status, 1);
  assert.match(r.stdout, /WARNING: JSONArgsRecommended/);
  assert.match(r.stderr, /ERROR: lint violation found for rules: JSONArgsRecommended\n/);
  const skipped = run(
    ['build', '--check', '-f', '-'],
    '# check=error=true;skip=JSONArgsRecommended\nFROM alpine\nCMD echo hi\n',
  );
  assert.equal(skipped.status, 0, skipped.stderr);
  assert.equal(skipped.stdout, 'Check complete, no warnings found.\n');
});

test('--build-arg, --platform and --target take part in the check', () => {
  const df = 'ARG TAG\nFROM alpine:$TAG\nFROM alpine AS other\n';
  const r = run(
    [
      'build',
      '--check',
      '-f',
      '-',
      '--build-arg',
      'TAG=3',
      '--build-arg',
      'NOPE=1',
      '--platform',
      'linux/arm64,linux/arm/v7',
    ],
    df,
  );
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /InvalidDefaultArgInFrom/);
  assert.match(r.stderr, /WARNING: One or more build-args \[NOPE\] were not consumed/);
  const t = run(['build', '--check', '-f', '-', '--target', 'missing'], df);
  assert.equal(t.status, 1);
  assert.match(t.stderr, /target stage "missing" could not be found/);
  const p = run(['build', '--check', '-f', '-', '--platform', 'linux/'], df);
  assert.equal(p.status, 2);
});

test('a foreign # syntax= frontend is reported as ignored; docker/dockerfile is not', () => {
  const other = run(['build', '--check', '-f', '-'], '# syntax=example.com/my/frontend:2\nFROM alpine\n');
  assert.equal(other.status, 0);
  assert.match(other.stderr, /WARNING: # syntax=example\.com\/my\/frontend:2 is ignored/);
  const std = run(['build', '--check', '-f', '-'], '# syntax=docker/dockerfile:1.7\nFROM alpine\n');
  assert.equal(std.stderr, '');
});

test('without --check a context with no Dockerfile fails like buildx', () => {
  const r = run(['build', '.']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'ERROR: failed to read dockerfile: open Dockerfile: no such file or directory\n');
});

test('build --help lists every buildx flag of the spec', () => {
  const r = run(['build', '--help']);
  assert.equal(r.status, 0);
  for (const flag of [
    '--platform',
    '--tag',
    '--file',
    '--build-arg',
    '--target',
    '--push',
    '--load',
    '--output',
    '--cache-from',
    '--cache-to',
    '--no-cache',
    '--pull',
    '--progress',
    '--secret',
    '--label',
    '--annotation',
    '--metadata-file',
    '--iidfile',
    '--builder',
    '--max-parallelism',
    '--network',
    '--check',
  ])
    assert.match(r.stdout, new RegExp(`${flag}\\b`), flag);
});
