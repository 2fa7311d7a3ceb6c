// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile text, not templates
/**
 * Build input at its extremes, through bin/polyarch with a private state root: one platform
 * given many times (or under several names) is built once, by `build` and `compose build`
 * alike; a chain of thousands of stages builds; `${…}` nested past the limit is one clear
 * error naming the line, never a stack overflow.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'polyarch-limits-'));
const work = mkdtempSync(join(tmpdir(), 'polyarch-limits-ctx-'));
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});
const env: NodeJS.ProcessEnv = {
  ...process.env,
  POLYARCH_ROOT: root,
  POLYARCH_CONFIG: tenv.config,
  POLYARCH_PROGRESS: 'plain',
};
delete env.COMPOSE_PROJECT_NAME;
delete env.COMPOSE_FILE;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function polyarch(args: string[], opts: { input?: string; cwd?: string } = {}): Run {
  const r = spawnSync(bin, args, {
    env,
    cwd: opts.cwd ?? work,
    input: opts.input ?? '',
    encoding: 'utf8',
    timeout: 240_000,
    maxBuffer: 64 << 20,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run): Run {
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr.slice(-2000)}`);
  return r;
}

function dir(name: string, files: Record<string, string>): string {
  const d = join(work, name);
  mkdirSync(d, { recursive: true });
  for (const [f, data] of Object.entries(files)) {
    mkdirSync(dirname(join(d, f)), { recursive: true });
    writeFileSync(join(d, f), data);
  }
  return d;
}

interface Desc {
  mediaType: string;
  digest: string;
  platform?: { os: string; architecture: string; variant?: string };
}

function blob(digest: string): Buffer {
  return readFileSync(join(root, 'store', 'blobs', 'sha256', digest.slice('sha256:'.length)));
}

/** The root descriptor a build wrote (--metadata-file) and, for an index, its entries. */
function built(metadataFile: string): { root: Desc; entries: Desc[] } {
  const md = JSON.parse(readFileSync(metadataFile, 'utf8')) as Record<string, Desc>;
  const rootDesc = md['containerimage.descriptor']!;
  const entries = rootDesc.mediaType.includes('index')
    ? (JSON.parse(blob(rootDesc.digest).toString('utf8')) as { manifests: Desc[] }).manifests
    : [];
  return { root: rootDesc, entries };
}

const platformsOf = (entries: Desc[]) =>
  entries.map((d) =>
    [d.platform?.os, d.platform?.architecture, d.platform?.variant].filter(Boolean).join('/'),
  );

// No RUN: nothing to emulate, so any host builds every platform quickly.
const PLATFORM_DF = 'FROM busybox\nARG TARGETPLATFORM\nENV BUILT_FOR=$TARGETPLATFORM\n';

describe('one platform named many times', () => {
  test('100 × --platform linux/amd64 builds one image, a manifest, not an index of 100', () => {
    const ctx = dir('dup100', { Dockerfile: PLATFORM_DF });
    const md = join(work, 'dup100.json');
    const flags = Array.from({ length: 100 }, () => ['--platform', 'linux/amd64']).flat();
    const r = ok(polyarch(['build', ...flags, '-t', 'limits/dup100', '--metadata-file', md, ctx]));
    const { root: d } = built(md);
    assert.equal(d.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    // One step per instruction, not one per repetition.
    assert.equal(r.stderr.match(/\bFROM docker\.io\/library\/busybox/g)?.length, 1, r.stderr);
  });

  test('linux/arm64, linux/arm64/v8 and linux/aarch64 are one entry; first-seen order is kept', () => {
    const ctx = dir('alias', { Dockerfile: PLATFORM_DF });
    const md = join(work, 'alias.json');
    ok(
      polyarch([
        'build',
        '--platform',
        'linux/arm64,linux/arm64/v8,linux/aarch64',
        '--platform',
        'linux/amd64,linux/x86_64',
        '--platform',
        'linux/arm64',
        '-t',
        'limits/alias',
        '--metadata-file',
        md,
        ctx,
      ]),
    );
    const { root: d, entries } = built(md);
    assert.equal(d.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(platformsOf(entries), ['linux/arm64', 'linux/amd64']);
    const images = ok(polyarch(['images'])).stdout;
    assert.equal(images.split('\n').filter((l) => l.startsWith('limits/alias ')).length, 2, images);
  });

  test('compose build: build.platforms with aliases of one platform gives one entry each', () => {
    const proj = dir('compose-dup', {
      Dockerfile: PLATFORM_DF,
      'compose.yaml':
        'services:\n  app:\n    image: limits/compose-dup\n    build:\n      context: .\n      platforms: ["linux/arm64", "linux/aarch64", "linux/amd64", "linux/arm64/v8"]\n',
    });
    ok(polyarch(['compose', 'build'], { cwd: proj }));
    const rows = ok(polyarch(['images']))
      .stdout.split('\n')
      .filter((l) => l.startsWith('limits/compose-dup '));
    assert.deepEqual(rows.map((l) => l.split(/\s+/)[2]).sort(), ['linux/amd64', 'linux/arm64']);
  });
});

describe('long chains and deep nesting', () => {
  const chain = (n: number, body = '') => {
    const lines = ['FROM busybox AS s0'];
    for (let i = 1; i < n; i++) lines.push(`FROM s${i - 1} AS s${i}${body}`);
    return `${lines.join('\n')}\n`;
  };

  test('build --check: 30,000 chained stages check clean', () => {
    const r = ok(polyarch(['build', '--check', '-f', '-', '.'], { input: chain(30_000) }));
    assert.match(r.stdout, /Check complete, no warnings found/);
  });

  test('a chain of 4,000 stages builds (each with an ENV), the last stage the image', () => {
    const md = join(work, 'chain.json');
    const ctx = dir('chain', {});
    ok(
      polyarch(['build', '-f', '-', '-t', 'limits/chain', '--metadata-file', md, ctx], {
        input: chain(4000, '\nENV LEVEL=$LEVEL.'),
      }),
    );
    const { root: d } = built(md);
    const manifest = JSON.parse(blob(d.digest).toString('utf8')) as { config: { digest: string } };
    const config = JSON.parse(blob(manifest.config.digest).toString('utf8')) as {
      config: { Env: string[] };
      history: unknown[];
    };
    assert.ok(config.config.Env.includes(`LEVEL=${'.'.repeat(3999)}`), 'every stage applied on its parent');
    // The base image's entry, then one per ENV of the 3,999 stages built FROM the one before.
    assert.equal(config.history.length, 1 + 3999);
  });

  test('${…} nested 10,000 deep: one ERROR naming the line and the limit, no stack overflow', () => {
    const n = 10_000;
    const df = `FROM busybox\nARG x=${'${a:-'.repeat(n)}end${'}'.repeat(n)}\n`;
    for (const args of [
      ['build', '--check', '-f', '-', '.'],
      ['build', '-f', '-', '.'],
    ]) {
      const r = polyarch(args, { input: df });
      assert.equal(r.status, 1, r.stderr.slice(0, 500));
      const error = r.stderr.split('\n').find((l) => l.startsWith('ERROR: '));
      assert.ok(error, r.stderr.slice(0, 500));
      assert.match(
        error,
        /^ERROR: Dockerfile:2: failed to process "\$\{a:-.*…": \$\{…\} nested more than 1000 levels deep$/,
      );
      assert.ok(error.length < 400, `a short line: ${error.length} characters`);
      assert.doesNotMatch(r.stderr, /call stack|RangeError|\n\s+at /);
    }
  });

  test('${…} nested 1,000 deep expands', () => {
    const n = 1000;
    const df = `FROM busybox\nARG x=${'${a:-'.repeat(n)}end${'}'.repeat(n)}\nENV X=$x\n`;
    ok(polyarch(['build', '--check', '-f', '-', '.'], { input: df }));
  });
});
