import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { VERSION } from '../src/version.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');

test('version matches package.json', () => {
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
  assert.equal(VERSION, pkg.version);
  assert.equal(execFileSync(bin, ['version'], { encoding: 'utf8' }), `polyarch v${VERSION}\n`);
  assert.equal(execFileSync(bin, ['--version'], { encoding: 'utf8' }), `polyarch v${VERSION}\n`);
});

test('an unknown command is bad usage: exit 2 and one ERROR line', () => {
  const r = spawnSync(bin, ['no-such-command'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^ERROR: unknown command 'no-such-command'/);
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
});

test('every command answers --help with exit 0', () => {
  const help = execFileSync(bin, ['--help'], { encoding: 'utf8' });
  const names = [...help.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
  assert.ok(names.includes('version'));
  for (const name of names) {
    const r = spawnSync(bin, [name, '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${name} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`Usage: polyarch ${name}`));
  }
});

test('a reader that stops early ends the CLI quietly (no EPIPE stack trace)', async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn(bin, ['--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy(); // the reader is gone before polyarch writes
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(stderr, '');
  assert.equal(code, 0);
});
