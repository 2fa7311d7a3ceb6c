// TEMPORARY: stand-in platform matching until src/platform lands; swap callers to it then.
/**
 * Just enough platform handling for pull: parse `os/arch[/variant]`, normalise like
 * containerd (x86_64→amd64, aarch64→arm64 with v8 implied, armhf→arm/v7, armel→arm/v6,
 * i386→386), exact matching, and the host's platform with its fall-backs.
 */
import { UsageError } from '../util/errors.js';

export interface SimplePlatform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH: Record<string, [string, string?]> = {
  x86_64: ['amd64'],
  'x86-64': ['amd64'],
  amd64: ['amd64'],
  aarch64: ['arm64'],
  arm64: ['arm64'],
  armhf: ['arm', 'v7'],
  armel: ['arm', 'v6'],
  i386: ['386'],
  i686: ['386'],
  '386': ['386'],
};

export function normalizePlatform(p: SimplePlatform): SimplePlatform {
  const os = p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  const mapped = ARCH[arch];
  if (mapped) {
    arch = mapped[0];
    if (mapped[1] && !variant) variant = mapped[1];
  }
  if (arch === 'arm64' && (variant === 'v8' || variant === '8')) variant = undefined;
  if (arch === 'arm') {
    if (!variant) variant = 'v7';
    else if (/^\d$/.test(variant)) variant = `v${variant}`;
  }
  if (arch === 'amd64' && variant === 'v1') variant = undefined;
  return variant ? { os, architecture: arch, variant } : { os, architecture: arch };
}

export function parsePlatform(s: string): SimplePlatform {
  const parts = s.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => x === ''))
    throw new UsageError(`invalid platform "${s}": expected os/arch[/variant]`);
  const [os, architecture, variant] = parts as [string, string, string?];
  return normalizePlatform(variant ? { os, architecture, variant } : { os, architecture });
}

export function formatPlatform(p: SimplePlatform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

export function platformEquals(a: SimplePlatform, b: SimplePlatform): boolean {
  const x = normalizePlatform(a);
  const y = normalizePlatform(b);
  return x.os === y.os && x.architecture === y.architecture && (x.variant ?? '') === (y.variant ?? '');
}

/** The host platform (Node's process.arch), as an OCI platform. */
export function hostPlatform(): SimplePlatform {
  const arch: Record<string, SimplePlatform> = {
    x64: { os: 'linux', architecture: 'amd64' },
    arm64: { os: 'linux', architecture: 'arm64' },
    arm: { os: 'linux', architecture: 'arm', variant: 'v7' },
    ia32: { os: 'linux', architecture: '386' },
    ppc64: { os: 'linux', architecture: 'ppc64le' },
    s390x: { os: 'linux', architecture: 's390x' },
    riscv64: { os: 'linux', architecture: 'riscv64' },
  };
  return arch[process.arch] ?? { os: 'linux', architecture: process.arch };
}

/** What a host also runs, best first (containerd's Only()): amd64 → 386; arm64 → arm/v8..v5; arm/vN → lower. */
export function fallbacks(p: SimplePlatform): SimplePlatform[] {
  const n = normalizePlatform(p);
  const out = [n];
  const arm = (from: number) => {
    for (let v = from; v >= 5; v--) out.push({ os: n.os, architecture: 'arm', variant: `v${v}` });
  };
  if (n.architecture === 'amd64') out.push({ os: n.os, architecture: '386' });
  if (n.architecture === 'arm64') arm(8);
  if (n.architecture === 'arm') arm(Number(n.variant?.slice(1) ?? 7) - 1);
  return out;
}
