/**
 * .dockerignore loading (real files in a temporary context) and Docker's matching rules.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { dockerignoreMatcher, loadDockerignore, parseDockerignore } from './dockerignore.js';

const root = mkdtempSync(join(tmpdir(), 'polyarch-dockerignore-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('matching', () => {
  const m = dockerignoreMatcher(
    parseDockerignore(
      '# comment\n\nnode_modules\n*.md\n!README.md\n**/*.tmp\n/build\ndocs/**/secret*\n  spaced  \n',
    ),
  );
  const cases: [string, boolean][] = [
    ['node_modules', true],
    ['node_modules/x/y.js', true],
    ['CHANGELOG.md', true],
    ['README.md', false],
    ['sub/CHANGELOG.md', false],
    ['a/b/c.tmp', true],
    ['x.tmp', true],
    ['build', true],
    ['build/out.o', true],
    ['src/build', false],
    ['docs/a/b/secret.txt', true],
    ['docs/public.txt', false],
    ['spaced', true],
    ['src/main.ts', false],
    ['./node_modules', true],
    ['.', false],
  ];
  for (const [path, ignored] of cases)
    test(`${path} ${ignored ? 'is' : 'is not'} ignored`, () => assert.equal(m.ignores(path), ignored));
});

describe('loading', () => {
  test('<Dockerfile>.dockerignore beside the Dockerfile wins over the context one', async () => {
    const ctx = join(root, 'a');
    mkdirSync(join(ctx, 'docker'), { recursive: true });
    writeFileSync(join(ctx, '.dockerignore'), 'from-context\n');
    writeFileSync(join(ctx, 'docker', 'app.Dockerfile'), 'FROM scratch\n');
    writeFileSync(join(ctx, 'docker', 'app.Dockerfile.dockerignore'), 'from-dockerfile\n');
    const m = await loadDockerignore({
      contextDir: ctx,
      dockerfilePath: join(ctx, 'docker', 'app.Dockerfile'),
    });
    assert.equal(m.source, join(ctx, 'docker', 'app.Dockerfile.dockerignore'));
    assert.equal(m.ignores('from-dockerfile'), true);
    assert.equal(m.ignores('from-context'), false);
  });
  test('falls back to <context>/.dockerignore', async () => {
    const ctx = join(root, 'b');
    mkdirSync(ctx, { recursive: true });
    writeFileSync(join(ctx, '.dockerignore'), '*.log\n');
    const m = await loadDockerignore({ contextDir: ctx, dockerfilePath: join(ctx, 'Dockerfile') });
    assert.equal(m.source, join(ctx, '.dockerignore'));
    assert.equal(m.ignores('x.log'), true);
  });
  test('no file: nothing is ignored', async () => {
    const ctx = join(root, 'c');
    mkdirSync(ctx, { recursive: true });
    const m = await loadDockerignore({ contextDir: ctx });
    assert.equal(m.source, undefined);
    assert.deepEqual(m.patterns, []);
    assert.equal(m.ignores('anything'), false);
  });
});
