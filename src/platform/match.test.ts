import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  all,
  anyOf,
  bestMatch,
  newMatcher,
  only,
  onlyStrict,
  ordered,
  platformVector,
  sortPlatforms,
} from './match.js';
import { formatPlatform, parsePlatform } from './platform.js';

describe('newMatcher (exact after normalisation)', () => {
  // [matcher, candidate, matches]
  const cases: [string, unknown, boolean][] = [
    ['linux/arm64', { os: 'linux', architecture: 'aarch64' }, true],
    ['linux/arm64', { os: 'linux', architecture: 'aarch64', variant: 'v8' }, true],
    ['linux/arm64', { os: 'linux', architecture: 'arm64', variant: 'v8' }, true],
    ['linux/arm64/v8', { os: 'linux', architecture: 'arm64' }, true],
    ['linux/arm', { os: 'linux', architecture: 'arm', variant: 'v7' }, true],
    ['linux/arm', { os: 'linux', architecture: 'armhf' }, true],
    ['linux/arm', { os: 'linux', architecture: 'arm', variant: '7' }, true],
    ['linux/arm/v6', { os: 'linux', architecture: 'armel' }, true],
    ['linux/arm/v7', { os: 'linux', architecture: 'arm' }, true],
    ['linux/amd64', { os: 'linux', architecture: 'x86_64' }, true],
    ['linux/amd64', { os: 'Linux', architecture: 'amd64', variant: 'v1' }, true],
    ['linux/arm/v7', { os: 'linux', architecture: 'arm', variant: 'v6' }, false],
    ['linux/amd64', { os: 'linux', architecture: '386' }, false],
    ['linux/amd64', { os: 'linux', architecture: 'amd64', variant: 'v2' }, false],
    ['linux/amd64', { os: 'windows', architecture: 'amd64' }, false],
    ['linux/arm64', { os: 'linux', architecture: 'arm' }, false],
  ];
  for (const [want, candidate, ok] of cases) {
    test(`${want} ${ok ? 'matches' : 'does not match'} ${JSON.stringify(candidate)}`, () => {
      assert.equal(newMatcher(want).match(candidate as never), ok);
    });
  }
});

describe('platformVector / only fallbacks', () => {
  const cases: [string, string[]][] = [
    ['linux/amd64', ['linux/amd64', 'linux/386']],
    ['linux/amd64/v2', ['linux/amd64/v2', 'linux/amd64', 'linux/386']],
    ['linux/amd64/v4', ['linux/amd64/v4', 'linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386']],
    ['linux/386', ['linux/386']],
    ['linux/arm64', ['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
    [
      'linux/arm64/v8.2',
      [
        'linux/arm64/v8.2',
        'linux/arm64/v8.1',
        'linux/arm64',
        'linux/arm/v8',
        'linux/arm/v7',
        'linux/arm/v6',
        'linux/arm/v5',
      ],
    ],
    [
      'linux/arm64/v9',
      [
        'linux/arm64/v9',
        'linux/arm64/v8.5',
        'linux/arm64/v8.4',
        'linux/arm64/v8.3',
        'linux/arm64/v8.2',
        'linux/arm64/v8.1',
        'linux/arm64',
        // containerd maps only dotted v9.x to arm/v8, so a bare v9 yields arm/v9 first.
        'linux/arm/v9',
        'linux/arm/v8',
        'linux/arm/v7',
        'linux/arm/v6',
        'linux/arm/v5',
      ],
    ],
    ['linux/arm/v8', ['linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
    ['linux/arm', ['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']],
    ['linux/arm/v6', ['linux/arm/v6', 'linux/arm/v5']],
    ['linux/arm/v5', ['linux/arm/v5']],
    ['linux/ppc64le', ['linux/ppc64le']],
    ['linux/s390x', ['linux/s390x']],
    ['linux/riscv64', ['linux/riscv64']],
  ];
  for (const [want, vector] of cases) {
    test(`${want} runs ${vector.join(' ')}`, () => {
      assert.deepEqual(
        only(want).platforms.map((p) => formatPlatform(p)),
        vector,
      );
      for (const p of vector) assert.ok(only(want).match(p), `${want} should match ${p}`);
    });
  }

  test('platformVector keeps os.version and os.features', () => {
    const v = platformVector({ os: 'linux', architecture: 'amd64', osVersion: '1', osFeatures: ['x'] });
    assert.deepEqual(v[1], { os: 'linux', architecture: '386', osVersion: '1', osFeatures: ['x'] });
  });

  const misses: [string, string][] = [
    ['linux/amd64', 'linux/amd64/v2'],
    ['linux/amd64/v2', 'linux/amd64/v3'],
    ['linux/386', 'linux/amd64'],
    ['linux/arm/v7', 'linux/arm/v8'],
    ['linux/arm/v6', 'linux/arm/v7'],
    ['linux/arm/v7', 'linux/arm64'],
    ['linux/arm64', 'linux/arm64/v8.1'],
    ['linux/arm64', 'linux/amd64'],
    ['linux/amd64', 'linux/arm64'],
    ['linux/amd64', 'windows/amd64'],
  ];
  for (const [want, p] of misses) {
    test(`${want} does not run ${p}`, () => {
      assert.equal(only(want).match(p), false);
    });
  }

  test('onlyStrict has no fallbacks', () => {
    assert.ok(onlyStrict('linux/amd64').match('linux/x86_64'));
    assert.ok(!onlyStrict('linux/amd64').match('linux/386'));
    assert.ok(!onlyStrict('linux/arm/v7').match('linux/arm/v6'));
  });
});

describe('ordering', () => {
  const cases: [string, string[], string[]][] = [
    ['linux/amd64', ['linux/386', 'linux/arm64', 'linux/amd64'], ['linux/amd64', 'linux/386']],
    [
      'linux/amd64/v3',
      ['linux/amd64', 'linux/amd64/v2', 'linux/amd64/v4', 'linux/amd64/v3', 'linux/386'],
      ['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386'],
    ],
    [
      'linux/arm64',
      ['linux/arm/v5', 'linux/arm/v7', 'linux/arm64', 'linux/arm/v6'],
      ['linux/arm64', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5'],
    ],
    ['linux/arm/v7', ['linux/arm/v5', 'linux/arm/v6', 'linux/arm64'], ['linux/arm/v6', 'linux/arm/v5']],
    ['linux/s390x', ['linux/amd64', 'linux/arm64'], []],
  ];
  for (const [want, list, sorted] of cases) {
    test(`for ${want}: ${list.join(' ')} → ${sorted.join(' ')}`, () => {
      assert.deepEqual(
        sortPlatforms(list, want).map((p) => formatPlatform(p)),
        sorted,
      );
    });
  }

  test('less is a strict order: never both ways, never reflexive', () => {
    const mc = only('linux/amd64/v4');
    const ps = [
      'linux/amd64',
      'linux/amd64/v2',
      'linux/amd64/v3',
      'linux/amd64/v4',
      'linux/386',
      'linux/arm64',
    ];
    for (const a of ps) {
      assert.equal(mc.less(a, a), false);
      for (const b of ps) assert.ok(!(mc.less(a, b) && mc.less(b, a)), `${a} vs ${b}`);
    }
  });

  test('equal platforms with more os.features sort first', () => {
    const mc = only('windows/amd64');
    const plain = { os: 'windows', architecture: 'amd64' };
    const featured = { os: 'windows', architecture: 'amd64', osFeatures: ['win32k'] };
    assert.ok(mc.less(featured, plain));
    assert.ok(!mc.less(plain, featured));
  });

  test('ordered follows the order given; anyOf prefers none; all matches everything', () => {
    const o = ordered('linux/arm64', 'linux/amd64');
    assert.ok(o.less('linux/arm64', 'linux/amd64'));
    assert.ok(!o.less('linux/amd64', 'linux/arm64'));
    const a = anyOf('linux/arm64', 'linux/amd64');
    assert.ok(!a.less('linux/arm64', 'linux/amd64') && !a.less('linux/amd64', 'linux/arm64'));
    assert.ok(a.less('linux/amd64', 'linux/s390x'));
    assert.ok(all.match('plan9/z80') && !all.less('linux/amd64', 'linux/arm64'));
  });
});

describe('bestMatch', () => {
  // A manifest list as registries serve it (OCI JSON keys).
  const index = [
    { digest: 'sha256:a', platform: { architecture: 'amd64', os: 'linux' } },
    { digest: 'sha256:b', platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
    { digest: 'sha256:c', platform: { architecture: 'arm', os: 'linux', variant: 'v7' } },
    { digest: 'sha256:d', platform: { architecture: 'arm', os: 'linux', variant: 'v6' } },
    { digest: 'sha256:e', platform: { architecture: 'unknown', os: 'unknown' } },
    { digest: 'sha256:f' },
    { digest: 'sha256:g', platform: { architecture: '386', os: 'linux' } },
    { digest: 'sha256:h', platform: { architecture: 'amd64', os: 'linux', variant: 'v3' } },
  ];
  const cases: [string, string | undefined][] = [
    ['linux/amd64', 'sha256:a'],
    ['linux/amd64/v3', 'sha256:h'],
    ['linux/amd64/v2', 'sha256:a'],
    ['linux/arm64', 'sha256:b'],
    ['linux/aarch64', 'sha256:b'],
    ['linux/arm/v7', 'sha256:c'],
    ['linux/arm', 'sha256:c'],
    ['linux/arm/v6', 'sha256:d'],
    ['linux/arm/v5', undefined],
    ['linux/386', 'sha256:g'],
    ['linux/s390x', undefined],
  ];
  for (const [want, digest] of cases) {
    test(`${want} → ${digest ?? 'none'}`, () => {
      assert.equal(bestMatch(index, want, (d) => d.platform)?.digest, digest);
    });
  }

  test('an index without arm64 gives arm/v7 to an arm64 host, never amd64', () => {
    const noArm64 = index.filter((d) => d.digest !== 'sha256:b');
    assert.equal(bestMatch(noArm64, parsePlatform('linux/arm64'), (d) => d.platform)?.digest, 'sha256:c');
    assert.equal(
      bestMatch(noArm64, onlyStrict('linux/arm64'), (d) => d.platform),
      undefined,
    );
  });

  test('equally good entries keep index order', () => {
    const dup = [
      { n: 1, p: 'linux/arm64' },
      { n: 2, p: 'linux/arm64/v8' },
    ];
    assert.equal(bestMatch(dup, 'linux/arm64', (d) => d.p)?.n, 1);
  });
});

// The cases of containerd's compare_test.go (TestOnly, TestOnlyStrict), same expectations.
describe('containerd compatibility: only / onlyStrict', () => {
  const W = ['windows/amd64', 'windows/arm'];
  const onlyCases: [string, string[], string[]][] = [
    ['linux/amd64', ['linux/amd64', 'linux/386'], ['linux/amd64/v2', 'linux/arm/v7', 'linux/arm64', ...W]],
    [
      'linux/amd64/v2',
      ['linux/amd64', 'linux/amd64/v1', 'linux/amd64/v2', 'linux/386'],
      ['linux/amd64/v3', 'linux/amd64/v4', 'linux/arm/v7', 'linux/arm64', ...W],
    ],
    ['linux/386', ['linux/386'], ['linux/amd64', 'linux/arm/v7', 'linux/arm64', ...W]],
    [
      'windows/amd64',
      ['windows/amd64', 'windows(10.0.17763)/amd64'],
      ['linux/amd64', 'linux/arm/v7', 'linux/arm64', 'windows/arm'],
    ],
    [
      'linux/arm/v8',
      ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7', 'linux/arm/v8'],
      ['linux/amd64', 'linux/arm/v4', 'linux/arm64', ...W],
    ],
    [
      'linux/arm/v7',
      ['linux/arm', 'linux/arm/v5', 'linux/arm/v6', 'linux/arm/v7'],
      ['linux/amd64', 'linux/arm/v4', 'linux/arm/v8', 'linux/arm64', ...W],
    ],
    [
      'linux/arm/v6',
      ['linux/arm/v5', 'linux/arm/v6'],
      ['linux/amd64', 'linux/arm', 'linux/arm/v4', 'linux/arm/v7', 'linux/arm/v8', 'linux/arm64', ...W],
    ],
    [
      'linux/arm/v5',
      ['linux/arm/v5'],
      [
        'linux/amd64',
        'linux/arm',
        'linux/arm/v4',
        'linux/arm/v6',
        'linux/arm/v7',
        'linux/arm/v8',
        'linux/arm64',
        ...W,
      ],
    ],
    [
      'linux/arm/v4',
      ['linux/arm/v4'],
      [
        'linux/amd64',
        'linux/arm',
        'linux/arm/v5',
        'linux/arm/v6',
        'linux/arm/v7',
        'linux/arm/v8',
        'linux/arm64',
        ...W,
      ],
    ],
    [
      'linux/arm64',
      [
        'linux/arm',
        'linux/arm/v5',
        'linux/arm/v6',
        'linux/arm/v7',
        'linux/arm/v8',
        'linux/arm64',
        'linux/arm64/v8',
      ],
      ['linux/amd64', 'linux/arm/v4', 'linux/arm/v9', 'linux/arm64/v7', 'linux/arm64/v9', ...W],
    ],
    [
      'linux/arm64/v9',
      [
        'linux/arm',
        'linux/arm/v5',
        'linux/arm/v6',
        'linux/arm/v7',
        'linux/arm/v8',
        'linux/arm64',
        'linux/arm64/v8',
        'linux/arm64/v9',
      ],
      ['linux/amd64', 'linux/arm/v4', 'linux/arm64/v7', 'linux/arm64/v10', 'windows/arm64', 'windows/arm'],
    ],
  ];
  for (const [want, yes, no] of onlyCases) {
    test(`only(${want})`, () => {
      const m = only(parsePlatform(want));
      for (const p of yes) assert.ok(m.match(parsePlatform(p)), `should match ${p}`);
      for (const p of no) assert.ok(!m.match(parsePlatform(p)), `should not match ${p}`);
    });
  }

  const strictCases: [string, string[], string[]][] = [
    ['linux/amd64', ['linux/amd64'], ['linux/386', 'linux/arm/v7', 'linux/arm64', ...W]],
    ['linux/386', ['linux/386'], ['linux/amd64', 'linux/arm/v7', 'linux/arm64', ...W]],
    [
      'windows/amd64',
      ['windows/amd64', 'windows(10.0.17763)/amd64'],
      ['linux/amd64', 'linux/arm/v7', 'linux/arm64', 'windows/arm'],
    ],
    [
      'windows(10.0.17763)/amd64',
      ['windows/amd64', 'windows(10.0.17763)/amd64'],
      ['linux/amd64', 'linux/arm/v7', 'linux/arm64', 'windows/arm'],
    ],
    [
      'linux/arm/v8',
      ['linux/arm/v8'],
      [
        'linux/arm',
        'linux/arm/v5',
        'linux/arm/v6',
        'linux/arm/v7',
        'linux/amd64',
        'linux/arm/v4',
        'linux/arm64',
        ...W,
      ],
    ],
    [
      'linux/arm/v7',
      ['linux/arm', 'linux/arm/v7'],
      ['linux/arm/v5', 'linux/arm/v6', 'linux/amd64', 'linux/arm/v4', 'linux/arm/v8', 'linux/arm64', ...W],
    ],
    [
      'linux/arm64',
      ['linux/arm64', 'linux/arm64/v8'],
      [
        'linux/arm',
        'linux/arm/v5',
        'linux/arm/v6',
        'linux/arm/v7',
        'linux/arm/v8',
        'linux/amd64',
        'linux/arm/v4',
        'linux/arm/v9',
        'linux/arm64/v7',
        'linux/arm64/v9',
        ...W,
      ],
    ],
    [
      'linux/arm64/v9',
      ['linux/arm64/v9'],
      [
        'linux/arm',
        'linux/arm/v7',
        'linux/arm/v8',
        'linux/arm/v9',
        'linux/arm64/v7',
        'linux/arm64',
        'linux/arm64/v8',
        'linux/arm/v4',
        'linux/arm64/v10',
        'linux/amd64',
        'windows/arm64',
        'windows/arm',
      ],
    ],
  ];
  for (const [want, yes, no] of strictCases) {
    test(`onlyStrict(${want})`, () => {
      const m = onlyStrict(parsePlatform(want));
      for (const p of yes) assert.ok(m.match(parsePlatform(p)), `should match ${p}`);
      for (const p of no) assert.ok(!m.match(parsePlatform(p)), `should not match ${p}`);
    });
  }
});
