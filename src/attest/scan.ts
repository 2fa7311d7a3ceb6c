/**
 * What software an image holds, read from its layer blobs: the package databases of dpkg
 * (`/var/lib/dpkg/status`, distroless `status.d/`), apk (`/lib/apk/db/installed`), Python
 * (`*-packages/*.dist-info/METADATA`) and npm (`node_modules/<name>/package.json`), with
 * Debian licences from `/usr/share/doc/<pkg>/copyright` and the distro from os-release.
 *
 *   const found = await scanLayers(store, manifest.layers);   // bottom layer first
 *   found.packages   // [{ type: 'deb', name: 'curl', version: '7.88.1-10+deb12u8', … }]
 *
 * Each layer is streamed once (decompressed, tar entries read in order); only the few
 * interesting files are read, each parsed at once into small records kept per path, so memory
 * is bounded by what the image declares, not by its size. Layers apply as an overlay would:
 * a later file replaces an earlier one, whiteouts and opaque directories remove what is below.
 */
import type { ContentStore } from '../content/index.js';
import { openLayer, readTar } from '../layer/index.js';
import type { Descriptor } from '../oci/index.js';

export interface FoundPackage {
  type: 'deb' | 'apk' | 'python' | 'npm';
  name: string;
  version: string;
  /** An SPDX licence expression, when the package database or its copyright file names one. */
  license?: string;
  arch?: string;
  /** The Debian/Alpine source package, when it differs from `name`. */
  source?: string;
  supplier?: string;
  /** Where in the image the record was found. */
  location: string;
}

export interface ScanResult {
  packages: FoundPackage[];
  /** From os-release: `debian`, `12`, `Debian GNU/Linux 12 (bookworm)`. */
  distro?: { id: string; versionId?: string; prettyName?: string };
}

/** Files larger than this are not read (no package database record is that large). */
const MAX_FILE = 32 << 20;
/** Copyright and metadata files above this are skipped: they name no licence we could parse cheaply. */
const MAX_SMALL_FILE = 1 << 20;

type Rec =
  | { kind: 'packages'; packages: FoundPackage[] }
  | { kind: 'copyright'; pkg: string; license: string }
  | { kind: 'os-release'; distro: NonNullable<ScanResult['distro']> };

type Interest = { kind: 'dpkg' | 'apk' | 'python' | 'npm' | 'copyright' | 'os-release'; max: number };

/** Which parser a file at `path` (components joined by `/`, no leading `/`) needs, if any. */
export function interest(path: string): Interest | undefined {
  if (path === 'var/lib/dpkg/status') return { kind: 'dpkg', max: MAX_FILE };
  if (path.startsWith('var/lib/dpkg/status.d/') && !path.endsWith('.md5sums') && path.split('/').length === 5)
    return { kind: 'dpkg', max: MAX_SMALL_FILE };
  if (path === 'lib/apk/db/installed') return { kind: 'apk', max: MAX_FILE };
  if (path === 'etc/os-release' || path === 'usr/lib/os-release')
    return { kind: 'os-release', max: 64 << 10 };
  if (/^usr\/share\/doc\/[^/]+\/copyright$/.test(path)) return { kind: 'copyright', max: MAX_SMALL_FILE };
  if (/(^|\/)(site|dist)-packages\/[^/]+\.dist-info\/METADATA$/.test(path))
    return { kind: 'python', max: MAX_SMALL_FILE };
  if (/(^|\/)node_modules\/(@[^/]+\/)?[^/@][^/]*\/package\.json$/.test(path))
    return { kind: 'npm', max: MAX_SMALL_FILE };
  return undefined;
}

function cleanPath(p: string): string {
  return p
    .split('/')
    .filter((c) => c !== '' && c !== '.')
    .join('/');
}

/** Stanzas of an RFC 822-like file (dpkg status, apk installed): fields with continuation lines. */
function stanzas(text: string, sep: ':' = ':'): Array<Map<string, string>> {
  const out: Array<Map<string, string>> = [];
  let cur = new Map<string, string>();
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (cur.size > 0) out.push(cur);
      cur = new Map();
      last = undefined;
      continue;
    }
    if ((line[0] === ' ' || line[0] === '\t') && last !== undefined) {
      cur.set(last, `${cur.get(last)}\n${line.trim()}`);
      continue;
    }
    const i = line.indexOf(sep);
    if (i <= 0) continue;
    last = line.slice(0, i);
    // apk's keys are one letter and case-sensitive; dpkg's field names are not.
    cur.set(last, line.slice(i + 1).trim());
  }
  if (cur.size > 0) out.push(cur);
  return out;
}

function fieldCI(m: Map<string, string>, name: string): string | undefined {
  for (const [k, v] of m) if (k.toLowerCase() === name.toLowerCase()) return v;
  return undefined;
}

export function parseDpkgStatus(text: string, location: string): FoundPackage[] {
  const out: FoundPackage[] = [];
  for (const s of stanzas(text)) {
    const name = fieldCI(s, 'Package');
    const version = fieldCI(s, 'Version');
    const status = fieldCI(s, 'Status');
    // Only what is installed: removed packages keep a config-files stanza.
    if (!name || !version || (status !== undefined && !/\binstalled$/.test(status))) continue;
    const arch = fieldCI(s, 'Architecture');
    const source = fieldCI(s, 'Source')?.split(' ')[0];
    const supplier = fieldCI(s, 'Maintainer');
    out.push({
      type: 'deb',
      name,
      version,
      ...(arch ? { arch } : {}),
      ...(source && source !== name ? { source } : {}),
      ...(supplier ? { supplier } : {}),
      location,
    });
  }
  return out;
}

export function parseApkInstalled(text: string, location: string): FoundPackage[] {
  const out: FoundPackage[] = [];
  for (const s of stanzas(text)) {
    const name = s.get('P');
    const version = s.get('V');
    if (!name || !version) continue;
    const license = s.get('L');
    const arch = s.get('A');
    const origin = s.get('o');
    const supplier = s.get('m');
    out.push({
      type: 'apk',
      name,
      version,
      ...(license ? { license: spdxExpression(license) } : {}),
      ...(arch ? { arch } : {}),
      ...(origin && origin !== name ? { source: origin } : {}),
      ...(supplier ? { supplier } : {}),
      location,
    });
  }
  return out;
}

const CLASSIFIER_LICENSES: Record<string, string> = {
  'MIT License': 'MIT',
  'Apache Software License': 'Apache-2.0',
  'BSD License': 'LicenseRef-BSD',
  'Python Software Foundation License': 'PSF-2.0',
  'Mozilla Public License 2.0 (MPL 2.0)': 'MPL-2.0',
  'ISC License (ISCL)': 'ISC',
  'GNU General Public License v2 (GPLv2)': 'GPL-2.0-only',
  'GNU General Public License v3 (GPLv3)': 'GPL-3.0-only',
  'GNU Lesser General Public License v3 (LGPLv3)': 'LGPL-3.0-only',
};

export function parsePythonMetadata(text: string, location: string): FoundPackage[] {
  // The headers end at the first blank line; the long description follows.
  const head = text.split(/\r?\n\r?\n/, 1)[0] ?? '';
  const [s] = stanzas(head);
  if (!s) return [];
  const name = fieldCI(s, 'Name');
  const version = fieldCI(s, 'Version');
  if (!name || !version) return [];
  let license = fieldCI(s, 'License-Expression');
  if (!license) {
    const classifiers = head
      .split(/\r?\n/)
      .filter((l) => /^Classifier:\s*License ::/i.test(l))
      .map((l) => l.split('::').pop()!.trim());
    const mapped = classifiers.map((c) => CLASSIFIER_LICENSES[c]).filter((x): x is string => x !== undefined);
    const declared = fieldCI(s, 'License');
    if (mapped.length > 0) license = [...new Set(mapped)].join(' AND ');
    else if (declared && declared !== 'UNKNOWN' && !declared.includes('\n')) license = declared;
  }
  return [
    { type: 'python', name, version, ...(license ? { license: spdxExpression(license) } : {}), location },
  ];
}

export function parsePackageJson(text: string, location: string): FoundPackage[] {
  let j: { name?: unknown; version?: unknown; license?: unknown; licenses?: unknown; author?: unknown };
  try {
    j = JSON.parse(text);
  } catch {
    return [];
  }
  if (typeof j !== 'object' || j === null) return [];
  if (typeof j.name !== 'string' || typeof j.version !== 'string' || !j.name || !j.version) return [];
  let license: string | undefined;
  if (typeof j.license === 'string') license = j.license;
  else if (
    typeof j.license === 'object' &&
    j.license &&
    typeof (j.license as { type?: unknown }).type === 'string'
  )
    license = (j.license as { type: string }).type;
  else if (Array.isArray(j.licenses))
    license = j.licenses
      .map((l: unknown) => (typeof l === 'string' ? l : (l as { type?: unknown })?.type))
      .filter((t): t is string => typeof t === 'string')
      .join(' OR ');
  return [
    {
      type: 'npm',
      name: j.name,
      version: j.version,
      ...(license ? { license: spdxExpression(license) } : {}),
      location,
    },
  ];
}

/** Debian's short licence names (DEP-5) → SPDX identifiers. */
const DEBIAN_LICENSES: Record<string, string> = {
  'gpl-1': 'GPL-1.0-only',
  'gpl-1+': 'GPL-1.0-or-later',
  'gpl-2': 'GPL-2.0-only',
  'gpl-2+': 'GPL-2.0-or-later',
  'gpl-3': 'GPL-3.0-only',
  'gpl-3+': 'GPL-3.0-or-later',
  'lgpl-2': 'LGPL-2.0-only',
  'lgpl-2+': 'LGPL-2.0-or-later',
  'lgpl-2.1': 'LGPL-2.1-only',
  'lgpl-2.1+': 'LGPL-2.1-or-later',
  'lgpl-3': 'LGPL-3.0-only',
  'lgpl-3+': 'LGPL-3.0-or-later',
  'agpl-3': 'AGPL-3.0-only',
  'agpl-3+': 'AGPL-3.0-or-later',
  'gfdl-1.2+': 'GFDL-1.2-or-later',
  'gfdl-1.3+': 'GFDL-1.3-or-later',
  'bsd-2-clause': 'BSD-2-Clause',
  'bsd-3-clause': 'BSD-3-Clause',
  'bsd-4-clause': 'BSD-4-Clause',
  expat: 'MIT',
  mit: 'MIT',
  isc: 'ISC',
  zlib: 'Zlib',
  curl: 'curl',
  'apache-2.0': 'Apache-2.0',
  'artistic-2.0': 'Artistic-2.0',
  'mpl-1.1': 'MPL-1.1',
  'mpl-2.0': 'MPL-2.0',
  openssl: 'OpenSSL',
  'psf-2': 'PSF-2.0',
  'cc0-1.0': 'CC0-1.0',
  x11: 'X11',
};

const SPDX_ID = /^[A-Za-z0-9][A-Za-z0-9.+-]*$/;

/** One licence name (words as written) → an SPDX id; several words or odd characters make a `LicenseRef-`. */
function licenseId(words: string[]): string {
  const word = words.join(' ');
  const mapped = DEBIAN_LICENSES[word.toLowerCase()];
  if (mapped) return mapped;
  if (words.length === 1 && SPDX_ID.test(word)) return word;
  return `LicenseRef-${word.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/^-+|-+$/g, '') || 'unknown'}`;
}

/**
 * A licence string as an SPDX expression: identifiers mapped (Debian names) or kept, anything
 * else made a `LicenseRef-`; `and`/`or`/`with` and parentheses kept as operators.
 */
export function spdxExpression(s: string): string {
  const tokens = s.replace(/[()]/g, ' $& ').replace(/,/g, ' and ').split(/\s+/).filter(Boolean);
  const out: string[] = [];
  let pendingWord: string[] = [];
  const flush = () => {
    if (pendingWord.length > 0) out.push(licenseId(pendingWord));
    pendingWord = [];
  };
  for (const t of tokens) {
    if (/^(and|or|with)$/i.test(t)) {
      flush();
      if (out.length > 0 && !/^(AND|OR|WITH|\()$/.test(out.at(-1)!)) out.push(t.toUpperCase());
    } else if (t === '(' || t === ')') {
      flush();
      out.push(t);
    } else pendingWord.push(t);
  }
  flush();
  while (out.length > 0 && /^(AND|OR|WITH)$/.test(out.at(-1)!)) out.pop();
  const expr = out.join(' ').replace(/\( /g, '(').replace(/ \)/g, ')');
  // Unbalanced parentheses: keep only the identifiers.
  const depth = [...expr].reduce((d, c) => d + (c === '(' ? 1 : c === ')' ? -1 : 0), 0);
  if (depth !== 0) return out.filter((t) => t !== '(' && t !== ')').join(' ') || 'NOASSERTION';
  return expr || 'NOASSERTION';
}

/** The licences a Debian copyright file declares (machine-readable DEP-5 `License:` fields). */
export function parseDebianCopyright(text: string): string | undefined {
  if (!/^Format:/m.test(text)) return undefined;
  const seen = new Set<string>();
  for (const m of text.matchAll(/^License:[ \t]*(\S[^\n]*)$/gm)) seen.add(spdxExpression(m[1]!.trim()));
  seen.delete('NOASSERTION');
  if (seen.size === 0) return undefined;
  const all = [...seen];
  return all.length === 1 ? all[0] : all.map((e) => (/ (OR|AND) /.test(e) ? `(${e})` : e)).join(' AND ');
}

export function parseOsRelease(text: string): NonNullable<ScanResult['distro']> | undefined {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) kv.set(m[1]!, m[2]!.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1'));
  }
  const id = kv.get('ID');
  if (!id) return undefined;
  const versionId = kv.get('VERSION_ID');
  const prettyName = kv.get('PRETTY_NAME');
  return { id, ...(versionId ? { versionId } : {}), ...(prettyName ? { prettyName } : {}) };
}

function parse(kind: Interest['kind'], text: string, path: string): Rec | undefined {
  const location = `/${path}`;
  switch (kind) {
    case 'dpkg':
      return { kind: 'packages', packages: parseDpkgStatus(text, location) };
    case 'apk':
      return { kind: 'packages', packages: parseApkInstalled(text, location) };
    case 'python':
      return { kind: 'packages', packages: parsePythonMetadata(text, location) };
    case 'npm':
      return { kind: 'packages', packages: parsePackageJson(text, location) };
    case 'copyright': {
      const license = parseDebianCopyright(text);
      return license ? { kind: 'copyright', pkg: path.split('/')[3]!, license } : undefined;
    }
    case 'os-release': {
      const distro = parseOsRelease(text);
      return distro ? { kind: 'os-release', distro } : undefined;
    }
  }
}

async function readBody(body: AsyncIterable<Buffer>): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts).toString('utf8');
}

/** Scans one layer blob, changing `state` (records by path) as applying the layer would. */
async function scanLayer(store: ContentStore, layer: Descriptor, state: Map<string, Rec>): Promise<void> {
  const { stream } = await openLayer(store.openRead(layer.digest));
  const added = new Map<string, Rec | undefined>();
  const removed: string[] = [];
  const opaque: string[] = [];
  try {
    for await (const entry of readTar(stream)) {
      const path = cleanPath(entry.header.path);
      const slash = path.lastIndexOf('/');
      const base = path.slice(slash + 1);
      const dir = slash < 0 ? '' : path.slice(0, slash);
      if (base === '.wh..wh..opq') {
        opaque.push(dir);
        continue;
      }
      if (base.startsWith('.wh.')) {
        removed.push(dir ? `${dir}/${base.slice(4)}` : base.slice(4));
        continue;
      }
      const want = entry.header.type === 'file' ? interest(path) : undefined;
      if (want && entry.header.size <= want.max)
        added.set(path, parse(want.kind, await readBody(entry.body), path));
      // Anything else at a path that held a record (a symlink, a directory, a huge file) replaces it.
      else if (state.has(path)) added.set(path, undefined);
    }
  } finally {
    stream.destroy();
  }
  const under = (p: string, d: string) => d === '' || p === d || p.startsWith(`${d}/`);
  for (const d of opaque) for (const k of [...state.keys()]) if (k !== d && under(k, d)) state.delete(k);
  for (const r of removed) for (const k of [...state.keys()]) if (under(k, r)) state.delete(k);
  for (const [k, v] of added) {
    if (v) state.set(k, v);
    else state.delete(k);
  }
}

/** The packages in the image made of `layers` (bottom first), each layer streamed once. */
export async function scanLayers(store: ContentStore, layers: readonly Descriptor[]): Promise<ScanResult> {
  const state = new Map<string, Rec>();
  for (const l of layers) await scanLayer(store, l, state);
  const licenses = new Map<string, string>();
  let distro: ScanResult['distro'];
  const packages: FoundPackage[] = [];
  for (const [path, r] of state) {
    if (r.kind === 'copyright') licenses.set(r.pkg, r.license);
    else if (r.kind === 'os-release') {
      if (!distro || path === 'etc/os-release') distro = r.distro;
    } else packages.push(...r.packages);
  }
  for (const p of packages) {
    if (p.type !== 'deb' || p.license) continue;
    const l = licenses.get(p.name) ?? (p.source ? licenses.get(p.source) : undefined);
    if (l) p.license = l;
  }
  packages.sort((a, b) =>
    a.type !== b.type
      ? a.type.localeCompare(b.type)
      : a.name !== b.name
        ? a.name.localeCompare(b.name)
        : a.location.localeCompare(b.location),
  );
  return { packages, ...(distro ? { distro } : {}) };
}
