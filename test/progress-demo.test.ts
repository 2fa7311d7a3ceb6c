/**
 * bench/progress-demo.js as a real process: `auto` picks plain on a pipe and tty on a real
 * pseudo-terminal (util-linux `script`), whose output is played into the virtual terminal;
 * the env default and exit codes are honoured.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { VTerm } from './vterm.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const demo = join(repo, 'dist', 'bench', 'progress-demo.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const env2: NodeJS.ProcessEnv = { ...process.env, ...env };
  delete env2.POLYARCH_PROGRESS;
  Object.assign(env2, env);
  return spawnSync(process.execPath, [demo, '--speed', '10', ...args], { encoding: 'utf8', env: env2 });
}

test('auto on a pipe is plain: numbered steps, DONE/CACHED lines, export last', () => {
  const r = run([]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    /^#1 \[internal\] load build definition from Dockerfile\n#1 transferring dockerfile: 214B done\n/,
  );
  assert.match(r.stderr, /^#\d+ CACHED$/m);
  assert.match(r.stderr, /\n#(\d+) exporting to image\n(?:#\1 .*\n)*#\1 DONE \d+\.\ds\n$/);
  for (const line of r.stderr.trimEnd().split('\n')) assert.match(line, /^(#\d+ .+)?$/);
});

test('--fail: error logs between rulers, exit code 1', () => {
  const r = run(['--fail', '--progress', 'plain']);
  assert.equal(r.status, 1);
  assert.match(
    r.stderr,
    /^#\d+ ERROR: process "\/bin\/sh -c make -C \/src" did not complete successfully: exit code: 2$/m,
  );
  assert.match(
    r.stderr,
    /------\n > \[linux\/arm\/v7 4\/4\] RUN make -C \/src:\n(?:\d\.\d{3} .*\n)+------\n/,
  );
});

test('POLYARCH_PROGRESS picks the mode: rawjson lines, quiet prints nothing', () => {
  const raw = run([], { POLYARCH_PROGRESS: 'rawjson' });
  assert.equal(raw.status, 0, raw.stderr);
  const lines = raw.stderr.trimEnd().split('\n');
  assert.ok(lines.length > 20);
  for (const l of lines) {
    const keys = Object.keys(JSON.parse(l) as object);
    assert.ok(
      keys.length > 0 && keys.every((k) => ['vertexes', 'statuses', 'logs', 'warnings'].includes(k)),
      l,
    );
  }
  const quiet = run([], { POLYARCH_PROGRESS: 'quiet' });
  assert.equal(quiet.status, 0);
  assert.equal(quiet.stderr, '');
  const bad = run(['--progress', 'fancy']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /invalid progress mode "fancy"/);
});

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

test('auto on a real terminal is tty: one clean final frame', { skip: !hasScript && 'no script(1)' }, () => {
  // script(1) gives the demo a pty of unknown size (0x0): the renderer must fall back to 80x24.
  const r = spawnSync('script', ['-qec', `${process.execPath} ${demo} --speed 10`, '/dev/null'], {
    encoding: 'utf8',
    env: { ...process.env, POLYARCH_PROGRESS: '', TERM: 'xterm' },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\x1b\[\d+A/, 'redraws in place');
  const term = new VTerm(80, 24);
  term.write(r.stdout);
  const lines = term.all().split('\n');
  assert.match(lines[0]!, /^\[\+\] Building \d+\.\ds \(15\/15\) FINISHED$/);
  assert.equal(lines.length, 26, term.all());
  for (const l of lines) assert.ok(l.length <= 79, l);
  // Every step once: a redraw that left stale lines behind would repeat some.
  const names = lines.slice(1).map((l) => l.replace(/\s+\d+\.\ds$/, ''));
  assert.equal(new Set(names).size, names.length, term.all());
  assert.ok(names.includes(' => CACHED [linux/amd64 1/4] FROM 127.0.0.1:5000/debian:bookworm'));
});
