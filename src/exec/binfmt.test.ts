import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  BINFMT_MISC_DIR,
  elfArchitecture,
  exitElf,
  formatPlatform,
  hostPlatformMaximum,
  parseBinfmtRule,
  probePlatform,
} from '../platform/index.js';
import {
  binfmtStatus,
  elfRule,
  formatBinfmtRule,
  installEmulators,
  qemuName,
  qemuRule,
  registerRule,
  uninstallEmulators,
  unregister,
} from './binfmt.js';

const RULES = '/usr/lib/binfmt.d';
const confs = existsSync(RULES) ? readdirSync(RULES).filter((f) => /^qemu-.*\.conf$/.test(f)) : [];

describe('rules', () => {
  test('Debian rules survive parse → format → parse', () => {
    assert.ok(confs.length > 0, 'qemu-user-static is not installed');
    for (const f of confs) {
      const rule = parseBinfmtRule(readFileSync(join(RULES, f), 'utf8'));
      assert.deepEqual(parseBinfmtRule(formatBinfmtRule(rule)), rule, f);
    }
  });

  // Our fallback rule (no .conf file) and Debian's accept each other's ELF headers
  // (Debian's masks differ per architecture in how much of e_ident they ignore).
  const matches = (header: string, magic: string, mask: string) => {
    const h = Buffer.from(header, 'hex');
    const g = Buffer.from(magic, 'hex');
    const m = Buffer.from(mask, 'hex');
    return g.every((b, i) => ((h[i] ?? 0) & (m[i] ?? 0)) === (b & (m[i] ?? 0)));
  };
  const same: [string, string][] = [
    ['arm64', 'aarch64'],
    ['arm', 'arm'],
    ['ppc64le', 'ppc64le'],
    ['s390x', 's390x'],
    ['riscv64', 'riscv64'],
    ['mips64le', 'mips64el'],
    ['mips64', 'mips64'],
    ['mipsle', 'mipsel'],
    ['mips', 'mips'],
    ['ppc64', 'ppc64'],
    ['loong64', 'loongarch64'],
  ];
  for (const [arch, q] of same) {
    test(`elfRule(${arch}) and Debian's qemu-${q} rule accept each other's headers`, () => {
      const debian = parseBinfmtRule(readFileSync(join(RULES, `qemu-${q}.conf`), 'utf8'));
      const ours = elfRule(`qemu-${q}`, arch, debian.interpreter, debian.flags);
      const header = exitElf(arch).subarray(0, 40).toString('hex');
      assert.ok(matches(header, debian.magic, debian.mask), "our program matches Debian's rule");
      assert.ok(matches(debian.magic, ours.magic, ours.mask), "Debian's magic matches our rule");
      assert.equal(elfArchitecture(ours.magic, ours.mask), arch);
    });
  }

  test('without a .conf file the static binary is used with the F flag only', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'polyarch-rules-'));
    try {
      const r = await qemuRule('aarch64', { rulesDir: empty });
      assert.equal(r.interpreter, '/usr/bin/qemu-aarch64-static');
      assert.equal(r.flags, 'F');
      await assert.rejects(qemuRule('aarch64', { rulesDir: empty, binDir: empty }), {
        message: /no QEMU emulator for aarch64 .*: install it with `apt-get install qemu-user-static`$/,
      });
    } finally {
      rmSync(empty, { recursive: true });
    }
  });

  // Debian ships no qemu-i386.conf on amd64 (it counts 386 as native), but kernels without IA32
  // emulation need the emulator: --install 386 then registers the static binary with our rule.
  // Registering it here would change what 386 programs do for the other tests running at the
  // same time, so the rule is checked, and the native case where the kernel runs 386 itself.
  test('386: the static emulator with a rule matching 386 programs, or skipped where 386 is native', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'polyarch-rules-'));
    try {
      const r = await qemuRule('i386', { rulesDir: empty });
      assert.equal(r.interpreter, '/usr/bin/qemu-i386-static');
      assert.equal(r.flags, 'F');
      assert.ok(matches(exitElf('386').subarray(0, 40).toString('hex'), r.magic, r.mask));
      assert.ok(!matches(exitElf('amd64').subarray(0, 40).toString('hex'), r.magic, r.mask));
      assert.equal(elfArchitecture(r.magic, r.mask), '386');
    } finally {
      rmSync(empty, { recursive: true });
    }
    if (process.arch === 'x64' && (await probePlatform('linux/386')).ok) {
      const [r] = await installEmulators('386', { handlerPrefix: 'polyarch-test-never-' });
      assert.equal(r?.action, 'skipped: native');
    }
  });

  test('Debian rules gain the F flag', async () => {
    assert.match((await qemuRule('aarch64')).flags, /F/);
  });

  const names: [string, string][] = [
    ['arm64', 'aarch64'],
    ['linux/arm64', 'aarch64'],
    ['aarch64', 'aarch64'],
    ['qemu-aarch64', 'aarch64'],
    ['arm', 'arm'],
    ['armhf', 'arm'],
    ['386', 'i386'],
    ['i686', 'i386'],
    ['amd64', 'x86_64'],
    ['x86_64', 'x86_64'],
    ['mips64le', 'mips64el'],
    ['loong64', 'loongarch64'],
    ['ppc64el', 'ppc64le'],
    ['sparc64', 'sparc64'],
  ];
  for (const [input, want] of names)
    test(`qemuName(${input}) = ${want}`, () => assert.equal(qemuName(input), want));
  test('qemuName rejects junk', () => {
    assert.throws(() => qemuName('foo%'), {
      message: /^unknown emulator "foo%": want all or one of arm64, arm, /,
    });
  });
});

// The rest changes the real binfmt_misc (root). Only handlers named polyarch-test-* are
// touched, and each test removes what it added, so concurrent users of QEMU are unaffected.
const mounted = existsSync(join(BINFMT_MISC_DIR, 'register'));
const PREFIX = `polyarch-test-${process.pid}-`;

describe('real binfmt_misc', { skip: mounted ? false : 'binfmt_misc is not mounted' }, () => {
  after(async () => {
    for (const name of readdirSync(BINFMT_MISC_DIR)) if (name.startsWith(PREFIX)) await unregister(name);
  });

  test('status: supported and emulators', async () => {
    const st = await binfmtStatus();
    // Native first: the host at its CPU level, then what it runs without help.
    assert.equal(st.supported[0], formatPlatform(hostPlatformMaximum()));
    assert.equal(new Set(st.supported).size, st.supported.length);
    if (existsSync(join(BINFMT_MISC_DIR, 'qemu-aarch64'))) {
      assert.ok(st.emulators.includes('qemu-aarch64'));
      assert.ok(st.supported.includes('linux/arm64'), st.supported.join(' '));
      assert.ok(!st.broken.includes('qemu-aarch64'));
    }
  });

  test('a handler whose interpreter is missing is reported broken, then uninstalled', async () => {
    const name = `${PREFIX}broken`;
    // A made-up e_machine (0x9999) so no real program is ever routed to it; no F flag, since
    // with F the kernel refuses a missing interpreter at registration.
    const magic = Buffer.from(exitElf('arm64').subarray(0, 20));
    magic.writeUInt16LE(0x9999, 18);
    const mask = 'ffffffffffffff00fffffffffffffffffeffffff';
    await registerRule({
      name,
      type: 'M',
      offset: 0,
      magic: magic.toString('hex'),
      mask,
      interpreter: '/nonexistent/polyarch-test-interpreter',
      flags: '',
    });
    await assert.rejects(
      registerRule({
        name,
        type: 'M',
        offset: 0,
        magic: magic.toString('hex'),
        mask,
        interpreter: '/bin/true',
        flags: '',
      }),
      { message: `registering binfmt_misc handler ${name}: a handler of that name is already registered` },
    );
    const st = await binfmtStatus();
    assert.ok(st.emulators.includes(name));
    assert.ok(st.broken.includes(name));
    assert.deepEqual(
      st.problems.find((p) => p.name === name),
      { name, reason: 'interpreter /nonexistent/polyarch-test-interpreter does not exist' },
    );
    assert.deepEqual(await uninstallEmulators(name), [{ name, action: 'uninstalled' }]);
    assert.deepEqual(await uninstallEmulators(name), [{ name, action: 'not installed' }]);
    assert.ok(!(await binfmtStatus()).emulators.includes(name));
  });

  test('registering with F and a missing interpreter fails naming the interpreter', async () => {
    const magic = Buffer.from(exitElf('arm64').subarray(0, 20));
    magic.writeUInt16LE(0x9998, 18);
    await assert.rejects(
      registerRule({
        name: `${PREFIX}f`,
        type: 'M',
        offset: 0,
        magic: magic.toString('hex'),
        mask: 'ffffffffffffff00fffffffffffffffffeffffff',
        interpreter: '/nonexistent/polyarch-test-interpreter',
        flags: 'F',
      }),
      {
        message: `registering binfmt_misc handler ${PREFIX}f: interpreter /nonexistent/polyarch-test-interpreter does not exist`,
      },
    );
  });

  test('install / uninstall round trip on arm64 under a test-only name', async () => {
    const opts = { handlerPrefix: PREFIX };
    const name = `${PREFIX}aarch64`;
    const lines: string[] = [];
    const r1 = await installEmulators('arm64', { ...opts, log: (l) => lines.push(l) });
    assert.deepEqual(r1, [{ target: 'arm64', name, action: 'installed' }]);
    assert.deepEqual(lines, ['installing: arm64 OK']);
    const entry = readFileSync(join(BINFMT_MISC_DIR, name), 'utf8');
    assert.match(entry, /^enabled$/m);
    assert.match(entry, /^flags: .*F/m);
    assert.match(entry, /^interpreter \/usr\/libexec\/qemu-binfmt\/aarch64-binfmt-P$/m);
    // Idempotent.
    assert.deepEqual(await installEmulators('linux/arm64', opts), [
      { target: 'arm64', name, action: 'already installed' },
    ]);
    const st = await binfmtStatus();
    assert.ok(st.emulators.includes(name) && !st.broken.includes(name));
    assert.deepEqual(await uninstallEmulators('arm64', opts), [{ name, action: 'uninstalled' }]);
    assert.ok(!existsSync(join(BINFMT_MISC_DIR, name)));
  });

  test('the host architecture is never installed or uninstalled', async () => {
    const opts = { handlerPrefix: PREFIX };
    const [r] = await installEmulators('amd64', opts);
    if (process.arch === 'x64') {
      assert.equal(r?.action, 'skipped: native');
      await assert.rejects(uninstallEmulators('amd64', opts), {
        message: `refusing to uninstall ${PREFIX}x86_64: it handles this host's own architecture (amd64)`,
      });
    }
  });
});
