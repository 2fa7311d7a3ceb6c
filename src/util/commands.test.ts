import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CommandError, runShort, shellQuote } from './commands.js';

test('output and exit status; stdout and stderr together', async () => {
  assert.equal(await runShort('echo', ['hello']), 'hello\n');
  assert.equal(await runShort('true', []), '');
  const err = await runShort('ls', ['/no/such/dir']).catch((e: unknown) => e);
  assert.ok(err instanceof CommandError, String(err));
  assert.equal(err.status, 2);
  assert.match(err.message, /^ls \/no\/such\/dir: .*No such file or directory/);
  const missing = await runShort('polyarch-no-such-command', []).catch((e: unknown) => e);
  assert.ok(missing instanceof CommandError);
  assert.equal(missing.status, 127);
});

test('arguments are passed as they are: quotes, spaces, $, newlines', async () => {
  const args = ["it's", 'a b', '$HOME', '`id`', 'two\nlines', '', '*'];
  const out = await runShort('printf', ['%s|', ...args]);
  assert.equal(out, `${args.join('|')}|`);
  assert.equal(shellQuote("a'b"), `'a'\\''b'`);
});

test('cwd, and many concurrent calls answered in order', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'polyarch-cmd-'));
  writeFileSync(join(dir, 'f'), 'x');
  assert.equal(await runShort('ls', [], { cwd: dir }), 'f\n');
  const outs = await Promise.all(Array.from({ length: 50 }, (_, i) => runShort('echo', [String(i)])));
  assert.deepEqual(
    outs,
    Array.from({ length: 50 }, (_, i) => `${i}\n`),
  );
});

test('a shell that dies fails what it was running, and the next call gets a new one', async () => {
  // The command kills the shell that runs it (its parent: the subshell execs the command).
  const err = await runShort('sh', ['-c', 'kill -9 $PPID']).catch((e: unknown) => e);
  assert.ok(err instanceof Error, String(err));
  assert.match(err.message, /command shell (exited|is gone)/);
  assert.equal(await runShort('echo', ['again']), 'again\n');
});

test('commands get default signal handling back', async () => {
  // SigIgn in /proc/self/status: the mask of ignored signals (INT is bit 2, TERM bit 15).
  const status = await runShort('cat', ['/proc/self/status']);
  const ignored = BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)/m.exec(status)![1]}`);
  assert.equal(ignored & ((1n << 1n) | (1n << 14n) | 1n), 0n, status);
});

test('an idle shell does not keep the process alive', () => {
  const url = new URL('./commands.js', import.meta.url).href;
  const script = `import { runShort } from ${JSON.stringify(url)}; process.stdout.write(await runShort('echo', ['done']));`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'done\n');
  assert.ok(Date.now() - t0 < 5000, 'exited promptly');
});
