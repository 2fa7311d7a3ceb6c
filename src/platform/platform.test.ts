import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PolyarchError } from '../util/errors.js';
import {
  formatPlatform,
  formatPlatformAll,
  normalizePlatform,
  parsePlatform,
  parsePlatformList,
  platform,
  samePlatform,
  toOciPlatform,
  toSpec,
} from './platform.js';

// One-word specifiers take the missing half from here, so results do not depend on the host.
const amd64Host = { os: 'linux', architecture: 'amd64' };
const armHost = { os: 'linux', architecture: 'arm', variant: 'v6' };
const arm7Host = { os: 'linux', architecture: 'arm', variant: 'v7' };

describe('parsePlatform', () => {
  // [input, expected parse (containerd Parse), expected normalised format]
  const cases: [string, Record<string, unknown>, string][] = [
    ['linux/amd64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/arm64', { os: 'linux', architecture: 'arm64' }, 'linux/arm64'],
    ['linux/arm64/v8', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64'],
    ['linux/arm64/8', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64'],
    ['linux/arm64/v8.0', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64'],
    ['linux/arm64/v8.2', { os: 'linux', architecture: 'arm64', variant: 'v8.2' }, 'linux/arm64/v8.2'],
    ['linux/arm64/9', { os: 'linux', architecture: 'arm64', variant: 'v9' }, 'linux/arm64/v9'],
    ['linux/aarch64', { os: 'linux', architecture: 'arm64' }, 'linux/arm64'],
    ['linux/AArch64/V8', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64'],
    ['linux/arm', { os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    ['linux/arm/v7', { os: 'linux', architecture: 'arm', variant: 'v7' }, 'linux/arm/v7'],
    ['linux/arm/7', { os: 'linux', architecture: 'arm', variant: 'v7' }, 'linux/arm/v7'],
    ['linux/arm/v6', { os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    ['linux/arm/6', { os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    ['linux/arm/5', { os: 'linux', architecture: 'arm', variant: 'v5' }, 'linux/arm/v5'],
    ['linux/arm/8', { os: 'linux', architecture: 'arm', variant: 'v8' }, 'linux/arm/v8'],
    ['linux/armhf', { os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    ['linux/armel', { os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    ['linux/armv7l', { os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    ['linux/armv6l', { os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    ['linux/x86_64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/x86-64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['Linux/X86_64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/amd64/v1', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/amd64/v2', { os: 'linux', architecture: 'amd64', variant: 'v2' }, 'linux/amd64/v2'],
    ['linux/amd64/v3', { os: 'linux', architecture: 'amd64', variant: 'v3' }, 'linux/amd64/v3'],
    ['linux/amd64/v4', { os: 'linux', architecture: 'amd64', variant: 'v4' }, 'linux/amd64/v4'],
    ['linux/i386', { os: 'linux', architecture: '386' }, 'linux/386'],
    ['linux/i686', { os: 'linux', architecture: '386' }, 'linux/386'],
    ['linux/i586', { os: 'linux', architecture: '386' }, 'linux/386'],
    ['linux/386', { os: 'linux', architecture: '386' }, 'linux/386'],
    ['linux/ppc64le', { os: 'linux', architecture: 'ppc64le' }, 'linux/ppc64le'],
    ['linux/ppc64el', { os: 'linux', architecture: 'ppc64le' }, 'linux/ppc64le'],
    [
      'linux/ppc64le/power9',
      { os: 'linux', architecture: 'ppc64le', variant: 'power9' },
      'linux/ppc64le/power9',
    ],
    ['linux/ppc64', { os: 'linux', architecture: 'ppc64' }, 'linux/ppc64'],
    ['linux/s390x', { os: 'linux', architecture: 's390x' }, 'linux/s390x'],
    ['linux/riscv64', { os: 'linux', architecture: 'riscv64' }, 'linux/riscv64'],
    [
      'linux/riscv64/rva23u64',
      { os: 'linux', architecture: 'riscv64', variant: 'rva23u64' },
      'linux/riscv64/rva23u64',
    ],
    ['linux/mips64le', { os: 'linux', architecture: 'mips64le' }, 'linux/mips64le'],
    ['linux/mips64el', { os: 'linux', architecture: 'mips64le' }, 'linux/mips64le'],
    ['linux/mips64', { os: 'linux', architecture: 'mips64' }, 'linux/mips64'],
    ['linux/mipsel', { os: 'linux', architecture: 'mipsle' }, 'linux/mipsle'],
    ['linux/loong64', { os: 'linux', architecture: 'loong64' }, 'linux/loong64'],
    ['linux/loongarch64', { os: 'linux', architecture: 'loong64' }, 'linux/loong64'],
    ['js/wasm', { os: 'js', architecture: 'wasm' }, 'js/wasm'],
    ['windows/amd64', { os: 'windows', architecture: 'amd64' }, 'windows/amd64'],
    ['darwin/arm64', { os: 'darwin', architecture: 'arm64' }, 'darwin/arm64'],
    ['macos/arm64', { os: 'darwin', architecture: 'arm64' }, 'darwin/arm64'],
    ['freebsd/amd64', { os: 'freebsd', architecture: 'amd64' }, 'freebsd/amd64'],
    [
      'windows(10.0.17763)/amd64',
      { os: 'windows', architecture: 'amd64', osVersion: '10.0.17763' },
      'windows/amd64',
    ],
    ['windows()/amd64', { os: 'windows', architecture: 'amd64' }, 'windows/amd64'],
    // One word: an OS takes the default architecture, an architecture the default OS.
    ['linux', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['windows', { os: 'windows', architecture: 'amd64' }, 'windows/amd64'],
    ['macOS', { os: 'darwin', architecture: 'amd64' }, 'darwin/amd64'],
    ['arm64', { os: 'linux', architecture: 'arm64' }, 'linux/arm64'],
    ['aarch64', { os: 'linux', architecture: 'arm64' }, 'linux/arm64'],
    ['Aarch64', { os: 'linux', architecture: 'arm64' }, 'linux/arm64'],
    ['arm', { os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    ['armhf', { os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    ['armel', { os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    ['x86_64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['i386', { os: 'linux', architecture: '386' }, 'linux/386'],
    ['s390x', { os: 'linux', architecture: 's390x' }, 'linux/s390x'],
    ['riscv64', { os: 'linux', architecture: 'riscv64' }, 'linux/riscv64'],
  ];
  for (const [input, want, normalized] of cases) {
    test(`${input} → ${normalized}`, () => {
      const p = parsePlatform(input, { defaults: amd64Host });
      assert.deepEqual({ ...p }, want);
      assert.equal(formatPlatform(normalizePlatform(p)), normalized);
      // Round trip: formatting then parsing again is stable.
      const text = formatPlatformAll(p);
      assert.equal(formatPlatformAll(parsePlatform(text, { defaults: amd64Host })), text);
      assert.deepEqual(
        { ...parsePlatform(input, { defaults: amd64Host, normalize: true }) },
        {
          ...normalizePlatform(p),
        },
      );
    });
  }

  test('an OS alone on an arm host takes its variant, but not the implied v7', () => {
    assert.equal(formatPlatform(parsePlatform('linux', { defaults: armHost })), 'linux/arm/v6');
    assert.equal(formatPlatform(parsePlatform('linux', { defaults: arm7Host })), 'linux/arm');
  });

  test('an architecture alone takes the default OS', () => {
    assert.equal(
      formatPlatform(parsePlatform('arm64', { defaults: { os: 'freebsd', architecture: 'amd64' } })),
      'freebsd/arm64',
    );
  });

  test('parsed values are frozen', () => {
    assert.ok(Object.isFrozen(parsePlatform('linux/arm64')));
  });
});

describe('parsePlatform rejects', () => {
  const bad: [string, string][] = [
    ['', 'invalid platform "": platform is empty'],
    ['linux/', 'invalid platform "linux/": architecture is empty'],
    ['/linux/arm', 'invalid platform "/linux/arm": os is empty'],
    ['linux/arm/', 'invalid platform "linux/arm/": variant is empty'],
    ['linux//v7', 'invalid platform "linux//v7": architecture is empty'],
    ['linux/arm64/v8/x', 'invalid platform "linux/arm64/v8/x": too many parts (4), want os/arch[/variant]'],
    ['linux/arm/foo/bar', 'invalid platform "linux/arm/foo/bar": too many parts (4), want os/arch[/variant]'],
    ['*', 'invalid platform "*": wildcards are not allowed'],
    ['linux/*', 'invalid platform "linux/*": wildcards are not allowed'],
    ['*/arm64', 'invalid platform "*/arm64": wildcards are not allowed'],
    [
      'linux /arm',
      'invalid platform "linux /arm": "linux " has invalid characters (want os or os(version) of A-Z a-z 0-9 _ -)',
    ],
    [
      'linux/&arm',
      'invalid platform "linux/&arm": architecture "&arm" has invalid characters (want A-Z a-z 0-9 _ -)',
    ],
    [
      'linux/arm/v7!',
      'invalid platform "linux/arm/v7!": variant "v7!" has invalid characters (want A-Z a-z 0-9 _ . -)',
    ],
    [
      'amd64/windows(10.0.17763)/foo',
      'invalid platform "amd64/windows(10.0.17763)/foo": architecture "windows(10.0.17763)" has invalid characters (want A-Z a-z 0-9 _ -)',
    ],
    [
      'linux)()---()..../arm/foo',
      'invalid platform "linux)()---()..../arm/foo": "linux)()---()...." has invalid characters (want os or os(version) of A-Z a-z 0-9 _ -)',
    ],
    [
      '../arm/foo',
      'invalid platform "../arm/foo": ".." has invalid characters (want os or os(version) of A-Z a-z 0-9 _ -)',
    ],
    ['foo', 'invalid platform "foo": unknown operating system or architecture "foo"'],
    ['foo(1.0)', 'invalid platform "foo(1.0)": unknown operating system "foo"'],
    [
      'linux/foo',
      'invalid platform "linux/foo": unknown architecture "foo" (known: amd64, 386, arm, arm64, ppc64le, ppc64, s390x, riscv64, mips64le, mips64, mipsle, mips, loong64, wasm, amd64p32, armbe, arm64be, mips64p32, mips64p32le, ppc, riscv, s390, sparc, sparc64)',
    ],
  ];
  for (const [input, message] of bad) {
    test(JSON.stringify(input), () => {
      assert.throws(
        () => parsePlatform(input),
        (err: unknown) =>
          err instanceof PolyarchError && err.code === 'INVALID_PLATFORM' && err.message === message,
      );
    });
  }

  test('unknown OS lists the known ones', () => {
    assert.throws(() => parsePlatform('plan10/amd64'), {
      message:
        /^invalid platform "plan10\/amd64": unknown operating system "plan10" \(known: linux, windows, darwin, /,
    });
  });
});

describe('formatPlatform', () => {
  const cases: [Record<string, unknown>, string, string][] = [
    [{ os: 'linux', architecture: 'amd64' }, 'linux/amd64', 'linux/amd64'],
    [{ os: 'linux', architecture: 'arm', variant: 'v7' }, 'linux/arm/v7', 'linux/arm/v7'],
    [
      { os: 'windows', architecture: 'amd64', osVersion: '10.0.20348' },
      'windows/amd64',
      'windows(10.0.20348)/amd64',
    ],
    [
      { os: 'windows', architecture: 'amd64', 'os.version': '10.0.20348' },
      'windows/amd64',
      'windows(10.0.20348)/amd64',
    ],
    [{ os: '', architecture: 'amd64' }, 'unknown', 'unknown'],
    [{ os: 'linux', architecture: 'arm64', variant: '' }, 'linux/arm64', 'linux/arm64'],
  ];
  for (const [p, short, long] of cases) {
    test(`${JSON.stringify(p)} → ${long}`, () => {
      assert.equal(formatPlatform(p as never), short);
      assert.equal(formatPlatformAll(p as never), long);
    });
  }
});

describe('normalizePlatform', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ os: 'Linux', architecture: 'AARCH64' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm64', variant: '9.0' }, 'linux/arm64/v9'],
    [{ os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'arm', variant: '6' }, 'linux/arm/v6'],
    [{ os: 'linux', architecture: 'armhf', variant: 'v6' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'i386', variant: 'x' }, 'linux/386'],
    [{ os: 'linux', architecture: 'amd64', variant: 'v1' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'amd64', variant: 'V3' }, 'linux/amd64/v3'],
    [{ os: 'linux', architecture: 'sparc64' }, 'linux/sparc64'],
    // Unknown names pass through: image JSON is normalised, not validated.
    [{ os: 'plan10', architecture: 'z80' }, 'plan10/z80'],
    [{ os: 'macos', architecture: 'x86_64' }, 'darwin/amd64'],
  ];
  for (const [p, want] of cases) {
    test(`${JSON.stringify(p)} → ${want}`, () => {
      const n = normalizePlatform(p as never);
      assert.equal(formatPlatform(n), want);
      // Idempotent.
      assert.deepEqual({ ...normalizePlatform(n) }, { ...n });
    });
  }

  test('keeps os.version and os.features', () => {
    const n = normalizePlatform({
      os: 'windows',
      architecture: 'x86_64',
      'os.version': '10.0.17763.1',
      'os.features': ['win32k'],
    });
    assert.deepEqual(
      { ...n },
      { os: 'windows', architecture: 'amd64', osVersion: '10.0.17763.1', osFeatures: ['win32k'] },
    );
  });
});

describe('parsePlatformList', () => {
  const cases: [string, string[]][] = [
    ['linux/amd64', ['linux/amd64']],
    ['linux/amd64,linux/arm64', ['linux/amd64', 'linux/arm64']],
    ['linux/arm64,linux/amd64', ['linux/arm64', 'linux/amd64']],
    ['linux/amd64, linux/arm64 ', ['linux/amd64', 'linux/arm64']],
    ['linux/arm,linux/arm/v7,linux/armhf', ['linux/arm/v7']],
    ['linux/arm64/v8,linux/aarch64,linux/arm64', ['linux/arm64']],
    ['linux/amd64,linux/x86_64,linux/386,linux/i686', ['linux/amd64', 'linux/386']],
    ['linux/arm/v6,linux/arm/v7', ['linux/arm/v6', 'linux/arm/v7']],
  ];
  for (const [input, want] of cases) {
    test(`${input} → ${want.join(',')}`, () => {
      assert.deepEqual(
        parsePlatformList(input).map((p) => formatPlatform(p)),
        want,
      );
    });
  }

  test('local is this host', () => {
    assert.deepEqual(
      parsePlatformList('local,linux/s390x', {
        defaults: { os: 'linux', architecture: 'arm64', variant: 'v8' },
      }).map((p) => formatPlatform(p)),
      ['linux/arm64', 'linux/s390x'],
    );
  });

  test('accepts an array of lists (repeated --platform flags)', () => {
    assert.deepEqual(
      parsePlatformList(['linux/amd64,linux/arm64', 'linux/arm64,linux/s390x']).map((p) => formatPlatform(p)),
      ['linux/amd64', 'linux/arm64', 'linux/s390x'],
    );
  });

  test('an empty item is an error naming the list', () => {
    assert.throws(() => parsePlatformList('linux/amd64,,linux/arm64'), {
      message: 'invalid platform "linux/amd64,,linux/arm64": empty item in list',
    });
  });

  test('a bad item names the item', () => {
    assert.throws(() => parsePlatformList('linux/amd64,linux/'), {
      message: 'invalid platform "linux/": architecture is empty',
    });
  });
});

describe('OCI JSON form', () => {
  test('toOciPlatform round-trips through toSpec', () => {
    const p = parsePlatform('windows(10.0.17763)/amd64');
    const oci = toOciPlatform(p);
    assert.deepEqual(oci, { architecture: 'amd64', os: 'windows', 'os.version': '10.0.17763' });
    assert.deepEqual(toSpec(oci), { ...p });
    assert.equal(
      JSON.stringify(toOciPlatform(parsePlatform('linux/arm/v7'))),
      '{"architecture":"arm","os":"linux","variant":"v7"}',
    );
  });

  test('JSON.stringify gives the OCI form in image-spec key order', () => {
    assert.equal(
      JSON.stringify({ platform: parsePlatform('windows(10.0.17763)/amd64') }),
      '{"platform":{"architecture":"amd64","os":"windows","os.version":"10.0.17763"}}',
    );
    assert.equal(
      JSON.stringify(normalizePlatform('linux/arm')),
      '{"architecture":"arm","os":"linux","variant":"v7"}',
    );
  });

  test('platform() validates JSON fields', () => {
    assert.equal(formatPlatform(platform({ architecture: 'aarch64', os: 'linux' })), 'linux/arm64');
    assert.throws(() => platform({ architecture: '', os: 'linux' }), {
      message: 'invalid platform "linux": architecture is empty',
    });
    assert.throws(() => platform({ architecture: 'z80', os: 'linux' }), {
      message: /unknown architecture "z80"/,
    });
    assert.deepEqual(
      platform({ architecture: 'amd64', os: 'windows', 'os.features': ['win32k'] }).osFeatures,
      ['win32k'],
    );
  });

  test('samePlatform compares normalised forms', () => {
    assert.ok(samePlatform('linux/arm64', { os: 'linux', architecture: 'arm64', variant: 'v8' }));
    assert.ok(samePlatform('linux/arm', 'linux/arm/v7'));
    assert.ok(!samePlatform('linux/arm/v6', 'linux/arm/v7'));
    assert.ok(!samePlatform('linux/amd64', 'linux/amd64/v2'));
  });
});
