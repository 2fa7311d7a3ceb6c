/**
 * The platform of this machine, with its CPU variant read from /proc/cpuinfo.
 *
 *   hostPlatform();          // linux/amd64, linux/arm64, linux/arm/v7 ... (containerd DefaultSpec, normalised)
 *   hostPlatformMaximum();   // linux/amd64/v3 ... (containerd MaximumSpec: amd64 micro-architecture level)
 *   amd64Level(flags);       // 'v1'..'v4' from a cpuinfo `flags` line
 *   armVariant(cpuinfo, m);  // 'v5'..'v8' from cpuinfo text and `uname -m`
 *
 * The pure functions take text so tests can feed them any CPU; the host functions read the
 * real files once and cache the answer (the CPU does not change under a running process).
 */
import { readFileSync } from 'node:fs';
import { endianness, machine } from 'node:os';
import type { Platform, PlatformSpec } from './platform.js';
import { normalizePlatform } from './platform.js';

/** Node's `process.arch` → Go's GOARCH, which OCI platforms use. */
export function goArch(nodeArch: string = process.arch, littleEndian = endianness() === 'LE'): string {
  switch (nodeArch) {
    case 'x64':
      return 'amd64';
    case 'ia32':
      return '386';
    case 'ppc64':
      return littleEndian ? 'ppc64le' : 'ppc64';
    case 'mipsel':
      return 'mipsle';
    default:
      return nodeArch;
  }
}

// x86-64 psABI micro-architecture levels, as /proc/cpuinfo names the features
// (pni = SSE3, abm = LZCNT). The same sets go-archvariant checks with CPUID.
const AMD64_LEVELS: readonly (readonly [string, readonly string[]])[] = [
  ['v2', ['cx16', 'lahf_lm', 'popcnt', 'pni', 'sse4_1', 'sse4_2', 'ssse3']],
  ['v3', ['avx', 'avx2', 'bmi1', 'bmi2', 'f16c', 'fma', 'abm', 'movbe', 'xsave']],
  ['v4', ['avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl']],
];

/** The highest amd64 level (`v1`..`v4`) whose features, and all lower levels', are present. */
export function amd64Level(flags: string | readonly string[]): string {
  const have = new Set(typeof flags === 'string' ? flags.split(/\s+/) : flags);
  let level = 'v1';
  for (const [name, needs] of AMD64_LEVELS) {
    if (!needs.every((f) => have.has(f))) break;
    level = name;
  }
  return level;
}

/** The value of the first `key : value` line of cpuinfo text whose key matches (any case). */
export function cpuinfoField(cpuinfo: string, key: string): string | undefined {
  for (const line of cpuinfo.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    if (line.slice(0, i).trim().toLowerCase() === key.toLowerCase()) return line.slice(i + 1).trim();
  }
  return undefined;
}

/**
 * The ARM variant as containerd's getArmCPUVariant computes it: the `CPU architecture`
 * field, else `uname -m` (armv7l → 7, aarch64 → 8, which is what an emulated CPU shows),
 * with the Raspberry Pi quirk (ARMv6 cores that claim 7) and `unknown` for anything else.
 */
export function armVariant(cpuinfo: string, unameMachine: string, goarch = 'arm'): string {
  let v = cpuinfoField(cpuinfo, 'CPU architecture');
  if (v === undefined) {
    const m = unameMachine.toLowerCase();
    if (m === 'aarch64' || m === 'arm64') v = '8';
    else if (m.startsWith('armv') && m.length >= 5) v = m[4]!;
    else return 'unknown';
  }
  if (goarch === 'arm' && v === '7') {
    const model = cpuinfoField(cpuinfo, 'model name') ?? '';
    if (model.toLowerCase().startsWith('armv6-compatible')) v = '6';
  }
  switch (v.toLowerCase()) {
    case '8':
    case 'aarch64':
      return 'v8';
    case '7':
    case '7m':
    case '?(12)':
    case '?(13)':
    case '?(14)':
    case '?(15)':
    case '?(16)':
    case '?(17)':
      return 'v7';
    case '6':
    case '6tej':
      return 'v6';
    case '5':
    case '5t':
    case '5te':
    case '5tej':
      return 'v5';
    case '4':
    case '4t':
      return 'v4';
    case '3':
      return 'v3';
    default:
      return 'unknown';
  }
}

let cpuinfoCache: string | undefined;
function cpuinfo(): string {
  if (cpuinfoCache === undefined) {
    try {
      cpuinfoCache = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      cpuinfoCache = '';
    }
  }
  return cpuinfoCache;
}

let defaultCache: PlatformSpec | undefined;

/**
 * containerd's DefaultSpec: the OS and GOARCH of this process, with a variant only on ARM.
 * Unnormalised (arm64 carries `v8`), as containerd uses it to fill one-word specifiers.
 */
export function defaultHostSpec(): PlatformSpec {
  if (!defaultCache) {
    const os = process.platform === 'win32' ? 'windows' : process.platform;
    const architecture = goArch();
    defaultCache =
      architecture === 'arm' || architecture === 'arm64'
        ? { os, architecture, variant: armVariant(cpuinfo(), machine(), architecture) }
        : { os, architecture };
  }
  return defaultCache;
}

/** This machine's platform in canonical form: what `--platform` defaults to (buildx does the same). */
export function hostPlatform(): Platform {
  return normalizePlatform(defaultHostSpec());
}

/**
 * The most capable platform this CPU runs natively: on amd64 the micro-architecture level
 * (`linux/amd64/v3`), elsewhere the same as `hostPlatform()`. `only(hostPlatformMaximum())`
 * is the set of images this machine runs without emulation.
 */
export function hostPlatformMaximum(): Platform {
  const d = defaultHostSpec();
  if (d.architecture === 'amd64') {
    const flags = cpuinfoField(cpuinfo(), 'flags') ?? '';
    return normalizePlatform({ ...d, variant: amd64Level(flags) });
  }
  return hostPlatform();
}
