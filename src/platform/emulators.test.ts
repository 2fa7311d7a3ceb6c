import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  BINFMT_MISC_DIR,
  type BinfmtEntry,
  binfmtFingerprint,
  canExecute,
  elfArchitecture,
  emulatedPlatforms,
  emulatorStatus,
  executablePlatforms,
  isNative,
  parseBinfmtEntry,
  parseBinfmtRule,
  probeEmulator,
  probePlatform,
  readBinfmtEntries,
  runsHere,
} from './emulators.js';
import { hostPlatformMaximum } from './host.js';
import { formatPlatform } from './platform.js';

const AARCH64_TEXT = `enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
`;

describe('parseBinfmtEntry', () => {
  test('a magic entry', () => {
    assert.deepEqual(parseBinfmtEntry('qemu-aarch64', AARCH64_TEXT), {
      name: 'qemu-aarch64',
      enabled: true,
      interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P',
      flags: 'POF',
      offset: 0,
      magic: '7f454c460201010000000000000000000200b700',
      mask: 'ffffffffffffff00fffffffffffffffffeffffff',
      architecture: 'arm64',
    });
  });
  test('a disabled extension entry', () => {
    assert.deepEqual(
      parseBinfmtEntry('py', 'disabled\ninterpreter /usr/bin/python3\nflags: \nextension .py\n'),
      {
        name: 'py',
        enabled: false,
        interpreter: '/usr/bin/python3',
        flags: '',
        extension: '.py',
      },
    );
  });
  test('a magic at a non-zero offset is not read as ELF', () => {
    const e = parseBinfmtEntry('x', AARCH64_TEXT.replace('offset 0', 'offset 4'));
    assert.equal(e.architecture, undefined);
  });
});

describe('parseBinfmtRule', () => {
  test('Debian qemu-aarch64.conf', () => {
    const line =
      ':qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF';
    assert.deepEqual(parseBinfmtRule(line), {
      name: 'qemu-aarch64',
      type: 'M',
      offset: 0,
      magic: '7f454c460201010000000000000000000200b700',
      mask: 'ffffffffffffff00fffffffffffffffffeffffff',
      interpreter: '/usr/libexec/qemu-binfmt/aarch64-binfmt-P',
      flags: 'OPF',
    });
  });
  test('plain characters and another separator', () => {
    const r = parseBinfmtRule('|DOSWin|M||MZ||/usr/bin/wine|\n');
    assert.equal(r.magic, '4d5a');
    assert.equal(r.flags, '');
  });
  const bad: [string, RegExp][] = [
    [':too:few:', /want :name:type:offset:magic:mask:interpreter:flags/],
    [':register:M::ab::/bin/x:F', /bad name "register"/],
    [':a/b:M::ab::/bin/x:F', /bad name "a\/b"/],
    [':x:Q::ab::/bin/x:F', /type must be M or E/],
  ];
  for (const [line, message] of bad)
    test(`rejects ${line}`, () => assert.throws(() => parseBinfmtRule(line), { message }));
});

describe('elfArchitecture', () => {
  // Every Debian qemu-user-static rule, against the GOARCH its magic selects.
  const want: Record<string, string | undefined> = {
    'qemu-aarch64': 'arm64',
    'qemu-arm': 'arm',
    'qemu-armeb': 'armbe',
    'qemu-i386': '386',
    'qemu-x86_64': 'amd64',
    'qemu-loongarch64': 'loong64',
    'qemu-mips': 'mips',
    'qemu-mipsel': 'mipsle',
    'qemu-mips64': 'mips64',
    'qemu-mips64el': 'mips64le',
    'qemu-mipsn32': undefined,
    'qemu-mipsn32el': undefined,
    'qemu-ppc': 'ppc',
    'qemu-ppc64': 'ppc64',
    'qemu-ppc64le': 'ppc64le',
    'qemu-riscv32': 'riscv',
    'qemu-riscv64': 'riscv64',
    'qemu-s390x': 's390x',
    'qemu-sparc': 'sparc',
    'qemu-sparc64': 'sparc64',
    'qemu-sparc32plus': undefined,
    'qemu-alpha': undefined,
    'qemu-m68k': undefined,
    'qemu-sh4': undefined,
  };
  const dir = '/usr/lib/binfmt.d';
  const confs = existsSync(dir) ? readdirSync(dir).filter((f) => /^qemu-.*\.conf$/.test(f)) : [];
  test('qemu-user-static rules are installed', () => assert.ok(confs.length > 10, `no qemu rules in ${dir}`));
  for (const file of confs) {
    const name = file.replace(/\.conf$/, '');
    if (!(name in want)) continue;
    test(`${name} → ${want[name] ?? 'none'}`, () => {
      const rule = parseBinfmtRule(readFileSync(`${dir}/${file}`, 'utf8'));
      assert.equal(elfArchitecture(rule.magic, rule.mask), want[name]);
    });
  }
  test('not ELF, or too short', () => {
    assert.equal(elfArchitecture('4d5a'), undefined);
    assert.equal(elfArchitecture('7f454c4602010100'), undefined);
  });
});

test('emulatedPlatforms: qemu-arm gives every arm variant, others one platform', () => {
  assert.deepEqual(
    emulatedPlatforms('arm').map((p) => formatPlatform(p)),
    ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5'],
  );
  assert.deepEqual(
    emulatedPlatforms('arm64').map((p) => formatPlatform(p)),
    ['linux/arm64'],
  );
  assert.deepEqual(
    emulatedPlatforms('s390x').map((p) => formatPlatform(p)),
    ['linux/s390x'],
  );
});

describe('probeEmulator on handlers that cannot work', () => {
  const base: BinfmtEntry = {
    name: 'polyarch-test-missing',
    enabled: true,
    interpreter: '/nonexistent/polyarch-test-interpreter',
    flags: 'P',
    offset: 0,
    magic: '7f454c460201010000000000000000000200b700',
    mask: 'ffffffffffffff00fffffffffffffffffeffffff',
    architecture: 'arm64',
  };
  test('missing interpreter (no F flag) is broken', async () => {
    const s = await probeEmulator(base);
    assert.equal(s.ok, false);
    assert.equal(s.reason, 'interpreter /nonexistent/polyarch-test-interpreter does not exist');
  });
  test('disabled is not ok', async () => {
    const s = await probeEmulator({ ...base, enabled: false });
    assert.deepEqual([s.ok, s.reason], [false, 'disabled']);
  });
});

// The rest reads the machine's real binfmt_misc, with QEMU registered (scripts/setup.sh).
const mounted = existsSync(`${BINFMT_MISC_DIR}/register`);

describe('this machine', { skip: mounted ? false : 'binfmt_misc is not mounted' }, () => {
  test('readBinfmtEntries lists qemu-aarch64 with its architecture', async () => {
    const entries = await readBinfmtEntries();
    const a = entries.find((e) => e.name === 'qemu-aarch64');
    assert.ok(a, `qemu-aarch64 not registered: ${entries.map((e) => e.name).join(' ')}`);
    assert.equal(a.architecture, 'arm64');
    assert.ok(!entries.some((e) => e.name === 'register' || e.name === 'status'));
  });

  test('emulatorStatus proves the common emulators work', async () => {
    const st = await emulatorStatus();
    for (const name of ['qemu-aarch64', 'qemu-arm', 'qemu-ppc64le', 'qemu-s390x', 'qemu-riscv64']) {
      const s = st.find((e) => e.name === name);
      if (!s) continue;
      assert.equal(s.ok, true, `${name}: ${s.reason}`);
      assert.ok(s.platforms.length > 0);
    }
  });

  test('probePlatform runs arm64 and the host, and says why for an unknown one', async () => {
    assert.deepEqual(await probePlatform('linux/arm64'), { ok: true });
    assert.deepEqual(await probePlatform(hostPlatformMaximum()), { ok: true });
    assert.deepEqual(await probePlatform('linux/sparc'), { ok: false, reason: 'no test program for sparc' });
  });

  test('executablePlatforms: host levels first, then emulated ones', async () => {
    const list = (await executablePlatforms({ fresh: true })).map((p) => formatPlatform(p));
    assert.equal(list[0], formatPlatform(hostPlatformMaximum()));
    if (hostPlatformMaximum().architecture === 'amd64') {
      assert.ok(list.includes('linux/amd64'));
      // 386 is listed exactly when a 386 program runs (a kernel with IA32 emulation, or an
      // emulator): never on the CPU's claim alone.
      assert.equal(list.includes('linux/386'), (await probePlatform('linux/386')).ok, list.join(' '));
      assert.equal(await runsHere('linux/386'), (await probePlatform('linux/386')).ok);
    }
    if (existsSync(`${BINFMT_MISC_DIR}/qemu-aarch64`))
      assert.ok(list.includes('linux/arm64'), list.join(' '));
    if (existsSync(`${BINFMT_MISC_DIR}/qemu-arm`)) assert.ok(list.includes('linux/arm/v7'), list.join(' '));
    assert.equal(new Set(list).size, list.length, 'no duplicates');
    assert.equal(await canExecute('linux/aarch64'), list.includes('linux/arm64'));
    assert.equal(await canExecute('linux/sparc64'), false);
    assert.ok(isNative(hostPlatformMaximum()));
    assert.ok(!isNative('linux/s390x') || hostPlatformMaximum().architecture === 's390x');
    // Memoised: the same promise until asked to probe again.
    assert.equal(executablePlatforms(), executablePlatforms());
  });
});

describe('runsHere proof cache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'polyarch-proofs-'));
  const fp = binfmtFingerprint();

  test('the fingerprint is stable while nothing changes', { skip: !fp && 'binfmt_misc unreadable' }, () => {
    assert.match(fp!, /^[0-9a-f]{64}$/);
    assert.equal(binfmtFingerprint(), fp);
  });

  test('a proof is recorded and trusted only for the same set-up', {
    skip: !fp && 'binfmt_misc unreadable',
  }, async () => {
    // "wasm" has no test program: probing it always fails, so a true answer comes from the file.
    const same = join(dir, 'same.json');
    writeFileSync(same, JSON.stringify({ fingerprint: fp, architectures: ['wasm'] }));
    assert.equal(await runsHere('linux/wasm', { proofCache: same }), true);
    const other = join(dir, 'other.json');
    writeFileSync(other, JSON.stringify({ fingerprint: '0'.repeat(64), architectures: ['sparc64'] }));
    assert.equal(await runsHere('linux/sparc64', { proofCache: other }), false);
    // A failed probe is not recorded.
    assert.deepEqual(JSON.parse(readFileSync(other, 'utf8')).architectures, ['sparc64']);
  });

  test('a probe that succeeds is written down', {
    skip: !canProbeArm64() && 'no arm64 emulator',
  }, async () => {
    const file = join(dir, 'new.json');
    assert.equal(await runsHere('linux/arm64', { proofCache: file }), true);
    const f = JSON.parse(readFileSync(file, 'utf8')) as { fingerprint: string; architectures: string[] };
    assert.equal(f.fingerprint, fp);
    assert.ok(f.architectures.includes('arm64'));
  });
});

function canProbeArm64(): boolean {
  return !isNative('linux/arm64') && existsSync(join(BINFMT_MISC_DIR, 'qemu-aarch64'));
}
