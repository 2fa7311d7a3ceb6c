/**
 * INTERNAL, TEMPORARY: a tiny `os/arch[/variant]` parser and formatter for the Dockerfile
 * frontend, normalised like containerd (x86_64→amd64, aarch64→arm64, armhf→arm/v7, …).
 * src/platform is being written in parallel; when it lands, replace these three functions
 * with its exports. Nothing outside src/dockerfile should import this file.
 */
import { PolyarchError } from '../util/errors.js';

/** A platform as the frontend sees it (OCI image-spec field names). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Parses and normalises `os/arch[/variant]`; throws INVALID_PLATFORM naming the input. */
export function parsePlatformInternal(spec: string): Platform {
  const parts = spec.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === ''))
    throw new PolyarchError('INVALID_PLATFORM', `invalid platform "${spec}": expected os/arch[/variant]`);
  return normalizePlatformInternal({
    os: parts[0]!,
    architecture: parts[1]!,
    ...(parts[2] ? { variant: parts[2] } : {}),
  });
}

export function normalizePlatformInternal(p: Platform): Platform {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? '';
  switch (arch) {
    case 'i386':
    case 'i686':
    case '386':
      arch = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === '8' || variant === 'v8') variant = '';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
  }
  return variant ? { os, architecture: arch, variant } : { os, architecture: arch };
}

export function formatPlatformInternal(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** The platform of this process (what BUILDPLATFORM defaults to). */
export function hostPlatformInternal(): Platform {
  const map: Record<string, string> = { x64: 'amd64', ia32: '386', ppc64: 'ppc64le' };
  const arch = map[process.arch] ?? process.arch;
  if (arch === 'arm') {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    return { os: process.platform, architecture: 'arm', variant: `v${v ?? 7}` };
  }
  return { os: process.platform, architecture: arch };
}
