import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { machine } from 'node:os';
import { describe, test } from 'node:test';
import {
  amd64Level,
  armVariant,
  cpuinfoField,
  defaultHostSpec,
  goArch,
  hostPlatform,
  hostPlatformMaximum,
} from './host.js';
import { formatPlatform } from './platform.js';

const V2 = 'fpu cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3';
const V3 = `${V2} avx avx2 bmi1 bmi2 f16c fma abm movbe xsave`;
const V4 = `${V3} avx512f avx512bw avx512cd avx512dq avx512vl`;

describe('amd64Level', () => {
  const cases: [string, string, string][] = [
    ['no flags', '', 'v1'],
    ['baseline only', 'fpu sse sse2 lm', 'v1'],
    ['v2 minus popcnt', V2.replace('popcnt', ''), 'v1'],
    ['v2', V2, 'v2'],
    ['v3 minus movbe', V3.replace('movbe', ''), 'v2'],
    ['v3', V3, 'v3'],
    ['v4 minus avx512vl', V4.replace('avx512vl', ''), 'v3'],
    ['v4', V4, 'v4'],
    ['v4 features without v3 ones', `${V2} avx512f avx512bw avx512cd avx512dq avx512vl`, 'v2'],
  ];
  for (const [name, flags, want] of cases)
    test(`${name} → ${want}`, () => assert.equal(amd64Level(flags), want));
});

describe('armVariant', () => {
  const cases: [string, string, string, string, string][] = [
    ['arm64 cpuinfo', 'processor\t: 0\nCPU architecture: 8\n', 'aarch64', 'arm64', 'v8'],
    [
      'armv7 cpuinfo',
      'CPU architecture: 7\nmodel name\t: ARMv7 Processor rev 4 (v7l)\n',
      'armv7l',
      'arm',
      'v7',
    ],
    [
      'raspberry pi 1 claims 7',
      'model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n',
      'armv6l',
      'arm',
      'v6',
    ],
    ['armv5', 'CPU architecture: 5TEJ\n', 'armv5tejl', 'arm', 'v5'],
    ['7M', 'CPU architecture: 7M\n', 'armv7l', 'arm', 'v7'],
    ['emulated: no field, uname aarch64', 'processor: 0\n', 'aarch64', 'arm64', 'v8'],
    ['emulated: no field, uname armv7l', '', 'armv7l', 'arm', 'v7'],
    ['emulated: no field, uname armv6l', '', 'armv6l', 'arm', 'v6'],
    ['unknown', 'CPU architecture: 42\n', 'aarch64', 'arm64', 'unknown'],
    ['no field, unknown machine', '', 'x86_64', 'arm', 'unknown'],
  ];
  for (const [name, cpuinfo, m, goarch, want] of cases)
    test(`${name} → ${want}`, () => assert.equal(armVariant(cpuinfo, m, goarch), want));
});

test('cpuinfoField finds the first matching key in any case', () => {
  assert.equal(cpuinfoField('a: 1\nFlags\t\t: x y\nflags: z\n', 'flags'), 'x y');
  assert.equal(cpuinfoField('a: 1\n', 'flags'), undefined);
});

test('goArch maps node names to GOARCH', () => {
  assert.equal(goArch('x64'), 'amd64');
  assert.equal(goArch('ia32'), '386');
  assert.equal(goArch('arm64'), 'arm64');
  assert.equal(goArch('ppc64', true), 'ppc64le');
  assert.equal(goArch('ppc64', false), 'ppc64');
  assert.equal(goArch('s390x'), 's390x');
});

test('this host: platform and CPU level agree with uname and /proc/cpuinfo', () => {
  const arch = { x86_64: 'amd64', aarch64: 'arm64', armv7l: 'arm', ppc64le: 'ppc64le', s390x: 's390x' }[
    machine()
  ];
  assert.equal(defaultHostSpec().architecture, arch);
  assert.equal(hostPlatform().os, 'linux');
  assert.equal(hostPlatform().architecture, arch);
  if (arch === 'amd64') {
    assert.equal(formatPlatform(hostPlatform()), 'linux/amd64');
    const flags = cpuinfoField(readFileSync('/proc/cpuinfo', 'utf8'), 'flags') ?? '';
    const level = amd64Level(flags);
    assert.equal(
      formatPlatform(hostPlatformMaximum()),
      level === 'v1' ? 'linux/amd64' : `linux/amd64/${level}`,
    );
  }
});
