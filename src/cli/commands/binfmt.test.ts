import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { registerRule, unregister } from '../../exec/binfmt.js';
import { BINFMT_MISC_DIR, exitElf } from '../../platform/index.js';

// dist/src/cli/commands/ → repository root.
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const run = (...args: string[]) => spawnSync(bin, ['binfmt', ...args], { encoding: 'utf8' });

const mounted = existsSync(join(BINFMT_MISC_DIR, 'register'));
const NAME = `polyarch-test-cli-${process.pid}`;

describe('polyarch binfmt', { skip: mounted ? false : 'binfmt_misc is not mounted' }, () => {
  after(async () => {
    for (const n of readdirSync(BINFMT_MISC_DIR)) if (n === NAME) await unregister(n);
  });

  test('prints the status as JSON', () => {
    const r = run();
    assert.equal(r.status, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(json), ['supported', 'emulators', 'broken']);
    assert.ok(json.supported.length > 0);
    if (process.arch === 'x64') assert.ok(json.supported.includes('linux/amd64'));
    if (existsSync(join(BINFMT_MISC_DIR, 'qemu-aarch64'))) {
      assert.ok(json.emulators.includes('qemu-aarch64'));
      assert.ok(json.supported.includes('linux/arm64'));
    }
  });

  test('flags a broken emulator, and --uninstall removes it', async () => {
    const magic = Buffer.from(exitElf('arm64').subarray(0, 20));
    magic.writeUInt16LE(0x9997, 18); // no real machine: nothing else is routed to it
    await registerRule({
      name: NAME,
      type: 'M',
      offset: 0,
      magic: magic.toString('hex'),
      mask: 'ffffffffffffff00fffffffffffffffffeffffff',
      interpreter: '/nonexistent/polyarch-test-interpreter',
      flags: '',
    });
    const r = run();
    assert.equal(r.status, 0, r.stderr);
    assert.ok(JSON.parse(r.stdout).broken.includes(NAME));
    assert.match(
      r.stderr,
      new RegExp(
        `^WARNING: emulator ${NAME} is broken: interpreter /nonexistent/polyarch-test-interpreter does not exist$`,
        'm',
      ),
    );
    const u = run('--uninstall', NAME);
    assert.equal(u.status, 0, u.stderr);
    assert.match(u.stderr, new RegExp(`^uninstalling: ${NAME} OK$`, 'm'));
    assert.ok(!JSON.parse(u.stdout).emulators.includes(NAME));
  });

  test('already installed emulators are left alone', () => {
    if (!existsSync(join(BINFMT_MISC_DIR, 'qemu-aarch64'))) return;
    const r = run('--install', 'arm64');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^installing: arm64 already installed$/m);
  });

  test('bad usage exits 2 with one ERROR line', () => {
    const r = run('--install', 'z80%');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^ERROR: unknown emulator "z80%": want all or one of arm64, /);
    const h = run('--uninstall', 'qemu-x86_64');
    if (process.arch === 'x64') {
      assert.equal(h.status, 2);
      assert.equal(
        h.stderr,
        "ERROR: refusing to uninstall qemu-x86_64: it handles this host's own architecture (amd64)\n",
      );
    }
  });
});
