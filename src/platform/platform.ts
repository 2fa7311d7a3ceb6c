/**
 * Platform values: parse, format and normalise `os[(osVersion)]/arch[/variant]` exactly as
 * containerd/platforms does, with stricter validation (unknown OS or architecture is an error).
 *
 *   const p = parsePlatform('linux/aarch64');        // {os:'linux', architecture:'arm64'}
 *   formatPlatform(p);                                // 'linux/arm64'
 *   normalizePlatform(parsePlatform('linux/arm'));    // {os:'linux', architecture:'arm', variant:'v7'}
 *   parsePlatformList('linux/amd64,linux/arm');       // normalised + deduplicated, order kept (buildx)
 *   toOciPlatform(p);                                 // {architecture, os, variant?, 'os.version'?, ...}
 *
 * `Platform` is branded and frozen: only values made here carry the brand. `parsePlatform`
 * and `platform()` validate (known OS and architecture); `normalizePlatform` only makes the
 * canonical form, since image JSON may name platforms polyarch does not know. Matching
 * (`match.ts`) accepts any `PlatformLike`. `JSON.stringify(p)` gives the OCI JSON form.
 */
import { PolyarchError } from '../util/errors.js';
import { defaultHostSpec } from './host.js';

declare const brand: unique symbol;

/** The fields of a platform, in the camelCase form polyarch uses in memory. */
export interface PlatformSpec {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
  readonly osVersion?: string;
  readonly osFeatures?: readonly string[];
}

/** A validated platform (see the module header). */
export type Platform = PlatformSpec & { readonly [brand]: 'Platform' };

/** A platform as it appears in an OCI descriptor or image config (`platform` JSON object). */
export interface OciPlatform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
}

/**
 * Anything a matcher can compare: a `PlatformSpec`, the OCI JSON form, or a specifier string
 * (parsed with `parsePlatform`, so it may throw).
 */
export type PlatformLike = PlatformSpec | OciPlatform | string;

/** Operating systems Go knows (go/build/syslist.go), as containerd's database.go lists them. */
export const KNOWN_OS: readonly string[] = [
  'linux',
  'windows',
  'darwin',
  'freebsd',
  'netbsd',
  'openbsd',
  'dragonfly',
  'solaris',
  'illumos',
  'aix',
  'android',
  'hurd',
  'ios',
  'js',
  'nacl',
  'plan9',
  'wasip1',
  'zos',
];

/** Architectures Go knows, most used first (that order is how error messages list them). */
export const KNOWN_ARCHITECTURES: readonly string[] = [
  'amd64',
  '386',
  'arm',
  'arm64',
  'ppc64le',
  'ppc64',
  's390x',
  'riscv64',
  'mips64le',
  'mips64',
  'mipsle',
  'mips',
  'loong64',
  'wasm',
  'amd64p32',
  'armbe',
  'arm64be',
  'mips64p32',
  'mips64p32le',
  'ppc',
  'riscv',
  's390',
  'sparc',
  'sparc64',
];

const knownOS = new Set(KNOWN_OS);
const knownArch = new Set(KNOWN_ARCHITECTURES);

export function isKnownOS(os: string): boolean {
  return knownOS.has(os);
}

export function isKnownArchitecture(arch: string): boolean {
  return knownArch.has(arch);
}

// containerd's specifierRe and osAndVersionRe. Variants may also hold dots (arm64 `v8.2`),
// which containerd's Compare understands even though its Parse rejects them.
const COMPONENT = /^[A-Za-z0-9_-]+$/;
const VARIANT = /^[A-Za-z0-9_.-]+$/;
const OS_AND_VERSION = /^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?$/;

function invalid(input: string, rule: string): PolyarchError {
  return new PolyarchError('INVALID_PLATFORM', `invalid platform ${JSON.stringify(input)}: ${rule}`);
}

/** Operating system aliases (containerd maps only `macos`). */
export function normalizeOS(os: string): string {
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

/**
 * Architecture and variant aliases: containerd's normalizeArch, plus the names `uname -m`,
 * Debian and QEMU use for the same machines (i686, armv7l, ppc64el, loongarch64, ...), so a
 * user may paste any of them.
 */
export function normalizeArch(arch: string, variant = ''): { architecture: string; variant: string } {
  let a = arch.toLowerCase();
  let v = variant.toLowerCase();
  switch (a) {
    case 'i386':
    case 'i486':
    case 'i586':
    case 'i686':
    case 'x86':
      a = '386';
      v = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      a = 'amd64';
      if (v === 'v1') v = '';
      break;
    case 'aarch64':
    case 'arm64':
      a = 'arm64';
      if (v === '8' || v === 'v8' || v === 'v8.0') v = '';
      else if (v === '9' || v === '9.0' || v === 'v9.0') v = 'v9';
      break;
    case 'armhf':
      a = 'arm';
      v = 'v7';
      break;
    case 'armel':
      a = 'arm';
      v = 'v6';
      break;
    case 'armv5l':
    case 'armv6l':
    case 'armv7l':
    case 'armv8l':
      v = `v${a[4]}`;
      a = 'arm';
      break;
    case 'arm':
      if (v === '' || v === '7') v = 'v7';
      else if (v === '5' || v === '6' || v === '8') v = `v${v}`;
      break;
    case 'ppc64el':
    case 'powerpc64le':
      a = 'ppc64le';
      break;
    case 'powerpc64':
      a = 'ppc64';
      break;
    case 'mips64el':
      a = 'mips64le';
      break;
    case 'mipsel':
      a = 'mipsle';
      break;
    case 'loongarch64':
      a = 'loong64';
      break;
  }
  return { architecture: a, variant: v };
}

/** Builds a branded value from fields, dropping empty optional ones. */
function make(
  os: string,
  architecture: string,
  variant?: string,
  osVersion?: string,
  osFeatures?: readonly string[],
): Platform {
  const p: {
    os: string;
    architecture: string;
    variant?: string;
    osVersion?: string;
    osFeatures?: readonly string[];
  } = { os, architecture };
  if (variant) p.variant = variant;
  if (osVersion) p.osVersion = osVersion;
  if (osFeatures && osFeatures.length > 0) p.osFeatures = [...osFeatures];
  // JSON.stringify gives the OCI form (`os.version`, image-spec's key order), so a Platform
  // can sit inside a descriptor that is serialised as is.
  Object.defineProperty(p, 'toJSON', { value: () => toOciPlatform(p), enumerable: false });
  return Object.freeze(p) as Platform;
}

/** Reads either form (camelCase or OCI JSON keys) into a plain spec. */
export function toSpec(p: PlatformLike): PlatformSpec {
  if (typeof p === 'string') return parsePlatform(p);
  const oci = p as Partial<OciPlatform> & Partial<PlatformSpec>;
  const spec: {
    os: string;
    architecture: string;
    variant?: string;
    osVersion?: string;
    osFeatures?: readonly string[];
  } = { os: oci.os ?? '', architecture: oci.architecture ?? '' };
  if (oci.variant) spec.variant = oci.variant;
  const osVersion = oci.osVersion ?? oci['os.version'];
  if (osVersion) spec.osVersion = osVersion;
  const osFeatures = oci.osFeatures ?? oci['os.features'];
  if (osFeatures && osFeatures.length > 0) spec.osFeatures = osFeatures;
  return spec;
}

export interface ParsePlatformOptions {
  /**
   * Fills the missing half of `linux` or `arm64`. Default: linux on this machine's
   * architecture (containerd uses runtime.GOOS/GOARCH the same way).
   */
  defaults?: PlatformSpec;
  /** Also apply `normalizePlatform` (what buildx does to `--platform`). Default false. */
  normalize?: boolean;
}

/**
 * Parses a specifier `os[(osVersion)]|arch|os[(osVersion)]/arch[/variant]` like containerd's
 * Parse: lower-cases, maps aliases, drops `v7` from `arm` when no variant part was given,
 * and keeps an explicit `arm64/v8`.
 */
export function parsePlatform(specifier: string, opts: ParsePlatformOptions = {}): Platform {
  const p = parseRaw(specifier, opts.defaults);
  return opts.normalize ? normalizePlatform(p) : p;
}

function parseRaw(input: string, defaults?: PlatformSpec): Platform {
  if (input === '') throw invalid(input, 'platform is empty');
  if (input.includes('*')) throw invalid(input, 'wildcards are not allowed');
  const parts = input.split('/');
  if (parts.length > 3) throw invalid(input, `too many parts (${parts.length}), want os/arch[/variant]`);
  const [first, archPart, variantPart] = parts as [string, string | undefined, string | undefined];
  if (first === '') throw invalid(input, parts.length === 1 ? 'platform is empty' : 'os is empty');
  const osVer = OS_AND_VERSION.exec(first);
  if (!osVer)
    throw invalid(
      input,
      `${JSON.stringify(first)} has invalid characters (want os or os(version) of A-Z a-z 0-9 _ -)`,
    );
  const os = normalizeOS(osVer[1]!);
  const osVersion = osVer[2] ?? '';
  if (archPart !== undefined) {
    if (archPart === '') throw invalid(input, 'architecture is empty');
    if (!COMPONENT.test(archPart))
      throw invalid(
        input,
        `architecture ${JSON.stringify(archPart)} has invalid characters (want A-Z a-z 0-9 _ -)`,
      );
  }
  if (variantPart !== undefined) {
    if (variantPart === '') throw invalid(input, 'variant is empty');
    if (!VARIANT.test(variantPart))
      throw invalid(
        input,
        `variant ${JSON.stringify(variantPart)} has invalid characters (want A-Z a-z 0-9 _ . -)`,
      );
  }

  if (archPart === undefined) {
    // One word: an OS (the architecture comes from the defaults), else an architecture
    // (the OS comes from the defaults), else neither.
    const d = defaults ?? defaultHostSpec();
    if (isKnownOS(os)) {
      // containerd leaves out arm's v7 here as it does for `linux/arm`.
      const dv = d.architecture === 'arm' && d.variant === 'v7' ? '' : d.variant;
      return make(os, d.architecture, dv, osVersion);
    }
    if (osVersion !== '') throw invalid(input, `unknown operating system ${JSON.stringify(os)}`);
    const n = normalizeArch(first);
    if (!isKnownArchitecture(n.architecture))
      throw invalid(input, `unknown operating system or architecture ${JSON.stringify(first)}`);
    return make(d.os, n.architecture, n.architecture === 'arm' && n.variant === 'v7' ? '' : n.variant);
  }

  if (!isKnownOS(os))
    throw invalid(input, `unknown operating system ${JSON.stringify(os)} (known: ${KNOWN_OS.join(', ')})`);
  const n = normalizeArch(archPart, variantPart ?? '');
  if (!isKnownArchitecture(n.architecture))
    throw invalid(
      input,
      `unknown architecture ${JSON.stringify(archPart)} (known: ${KNOWN_ARCHITECTURES.join(', ')})`,
    );
  if (variantPart === undefined) {
    return make(
      os,
      n.architecture,
      n.architecture === 'arm' && n.variant === 'v7' ? '' : n.variant,
      osVersion,
    );
  }
  // A fully specified variant is kept as written (after aliasing); containerd keeps arm64/v8.
  const variant = n.architecture === 'arm64' && n.variant === '' ? 'v8' : n.variant;
  return make(os, n.architecture, variant, osVersion);
}

/**
 * Canonical form (containerd's Normalize): lower case, aliases mapped, `arm` gets its implied
 * `v7`, `arm64/v8` and `amd64/v1` lose theirs. Accepts unvalidated input (e.g. image JSON)
 * and does not reject unknown names, so it never throws.
 */
export function normalizePlatform(p: PlatformLike): Platform {
  const s = toSpec(p);
  const n = normalizeArch(s.architecture, s.variant ?? '');
  return make(
    normalizeOS(s.os || defaultHostSpec().os),
    n.architecture,
    n.variant,
    s.osVersion,
    s.osFeatures,
  );
}

/** Checks fields (e.g. from JSON) the way `parsePlatform` would, returning the branded value. */
export function platform(p: PlatformLike): Platform {
  const s = toSpec(p);
  const text = formatPlatformAll(s);
  if (!s.os) throw invalid(text, 'os is empty');
  if (!s.architecture) throw invalid(text, 'architecture is empty');
  const parsed = parseRaw(formatPlatformAll({ ...s, osFeatures: [] }), undefined);
  return make(parsed.os, parsed.architecture, parsed.variant, parsed.osVersion, s.osFeatures);
}

/** `os/arch[/variant]` (containerd's Format); `unknown` when the OS is empty. */
export function formatPlatform(p: PlatformLike): string {
  const s = toSpec(p);
  if (!s.os) return 'unknown';
  return [s.os, s.architecture, s.variant].filter((x) => x).join('/');
}

/** Like `formatPlatform`, with `(osVersion)` after the OS when set (containerd's FormatAll). */
export function formatPlatformAll(p: PlatformLike): string {
  const s = toSpec(p);
  if (!s.os) return 'unknown';
  const os = s.osVersion ? `${s.os}(${s.osVersion})` : s.os;
  return [os, s.architecture, s.variant].filter((x) => x).join('/');
}

/**
 * Parses a comma-separated list (`--platform a,b`; `local` = this host), each normalised like buildx does, with
 * duplicates (by normalised form) removed and first-seen order kept. Whitespace around
 * items is ignored; empty items are an error.
 */
export function parsePlatformList(
  list: string | readonly string[],
  opts: ParsePlatformOptions = {},
): Platform[] {
  const items = (typeof list === 'string' ? [list] : list).flatMap((s) => s.split(','));
  const out: Platform[] = [];
  const seen = new Set<string>();
  for (const raw of items) {
    const item = raw.trim();
    if (item === '') throw invalid(typeof list === 'string' ? list : list.join(','), 'empty item in list');
    // `local` is this machine, as in buildx.
    const p =
      item === 'local'
        ? normalizePlatform(opts.defaults ?? defaultHostSpec())
        : parsePlatform(item, { ...opts, normalize: opts.normalize ?? true });
    const key = formatPlatformAll(p);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(p);
  }
  return out;
}

/**
 * `list` without the platforms that normalise to one seen earlier (`linux/arm64`,
 * `linux/arm64/v8` and `linux/aarch64` are one), first-seen order kept: what buildx does to
 * `--platform` before it builds.
 */
export function uniquePlatforms<T extends PlatformLike>(list: readonly T[]): T[] {
  const seen = new Set<string>();
  return list.filter((p) => {
    const key = formatPlatformAll(normalizePlatform(p));
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** The OCI JSON form (`os.version`, `os.features` keys), with empty fields left out. */
export function toOciPlatform(p: PlatformLike): OciPlatform {
  const s = toSpec(p);
  const o: OciPlatform = { architecture: s.architecture, os: s.os };
  if (s.osVersion) o['os.version'] = s.osVersion;
  if (s.osFeatures && s.osFeatures.length > 0) o['os.features'] = [...s.osFeatures];
  if (s.variant) o.variant = s.variant;
  return o;
}

/** True when both normalise to the same os, architecture, variant and os version. */
export function samePlatform(a: PlatformLike, b: PlatformLike): boolean {
  return formatPlatformAll(normalizePlatform(a)) === formatPlatformAll(normalizePlatform(b));
}
