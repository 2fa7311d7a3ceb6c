/**
 * An SPDX 2.3 JSON document for one platform's image, from the packages scan.ts found, wrapped
 * in an in-toto statement (predicate type https://spdx.dev/Document) as BuildKit's SBOMs are.
 *
 *   const doc = spdxDocument(scan, { name: 'docker.io/library/app:1', platform, manifestDigest, created });
 *   const stmt = inTotoStatement(SPDX_PREDICATE, subjects, doc);
 *
 * Package SPDX ids are derived from their content, and the namespace from the image's
 * manifest digest, so the same image gives the same document (but for `created`).
 */
import { createHash } from 'node:crypto';
import type { Digest } from '../oci/index.js';
import { formatPlatform, type Platform } from '../platform/index.js';
import { VERSION } from '../version.js';
import type { FoundPackage, ScanResult } from './scan.js';

export const SPDX_PREDICATE = 'https://spdx.dev/Document';
export const IN_TOTO_STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';

export interface InTotoSubject {
  name: string;
  digest: Record<string, string>;
}

export interface InTotoStatement<P = unknown> {
  _type: string;
  predicateType: string;
  subject: InTotoSubject[];
  predicate: P;
}

export function inTotoStatement<P>(
  predicateType: string,
  subject: InTotoSubject[],
  predicate: P,
  type = IN_TOTO_STATEMENT_V01,
): InTotoStatement<P> {
  return { _type: type, predicateType, subject, predicate };
}

/** The subjects of a platform image: `pkg:docker/<name>@<tag>?platform=…` per name, by manifest digest. */
export function imageSubjects(
  names: readonly string[],
  platform: Platform,
  manifestDigest: Digest,
): InTotoSubject[] {
  const digest = { sha256: manifestDigest.slice('sha256:'.length) };
  const q = `platform=${encodeURIComponent(formatPlatform(platform))}`;
  if (names.length === 0) return [{ name: `pkg:docker/sha256:${digest.sha256}?${q}`, digest }];
  return names.map((n) => {
    const at = n.lastIndexOf(':');
    const slash = n.lastIndexOf('/');
    const [repo, tag] = at > slash ? [n.slice(0, at), n.slice(at + 1)] : [n, 'latest'];
    return { name: `pkg:docker/${repo}@${tag}?${q}`, digest };
  });
}

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function purl(p: FoundPackage, distro: ScanResult['distro']): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%3A/g, ':');
  const q: string[] = [];
  if (p.arch) q.push(`arch=${enc(p.arch)}`);
  if ((p.type === 'deb' || p.type === 'apk') && distro)
    q.push(`distro=${enc(distro.versionId ? `${distro.id}-${distro.versionId}` : distro.id)}`);
  if (p.source && (p.type === 'deb' || p.type === 'apk')) q.push(`upstream=${enc(p.source)}`);
  const qs = q.length > 0 ? `?${q.join('&')}` : '';
  switch (p.type) {
    case 'deb':
      return `pkg:deb/${enc(distro?.id ?? 'debian')}/${enc(p.name)}@${enc(p.version)}${qs}`;
    case 'apk':
      return `pkg:apk/${enc(distro?.id ?? 'alpine')}/${enc(p.name)}@${enc(p.version)}${qs}`;
    case 'python':
      return `pkg:pypi/${enc(p.name.toLowerCase().replace(/[-_.]+/g, '-'))}@${enc(p.version)}`;
    case 'npm': {
      const [scope, name] = p.name.startsWith('@') ? p.name.split('/') : [undefined, p.name];
      return `pkg:npm/${scope ? `${enc(scope)}/` : ''}${enc(name!)}@${enc(p.version)}`;
    }
  }
}

export interface SpdxOptions {
  /** The image's names (may be empty: an untagged image). */
  names: readonly string[];
  platform: Platform;
  manifestDigest: Digest;
  /** RFC 3339 time the document says it was made. */
  created: string;
}

export interface SpdxPackage {
  name: string;
  SPDXID: string;
  versionInfo?: string;
  supplier?: string;
  downloadLocation: string;
  filesAnalyzed: boolean;
  licenseConcluded: string;
  licenseDeclared: string;
  copyrightText: string;
  sourceInfo?: string;
  primaryPackagePurpose?: string;
  externalRefs?: { referenceCategory: string; referenceType: string; referenceLocator: string }[];
}

export interface SpdxDocument {
  spdxVersion: 'SPDX-2.3';
  dataLicense: 'CC0-1.0';
  SPDXID: 'SPDXRef-DOCUMENT';
  name: string;
  documentNamespace: string;
  creationInfo: { created: string; creators: string[] };
  packages: SpdxPackage[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
}

/** SPDX ids: letters, digits, `.` and `-` only. */
function spdxId(kind: string, name: string, key: string): string {
  return `SPDXRef-${kind}-${name.replace(/[^A-Za-z0-9.-]+/g, '-')}-${sha(key).slice(0, 16)}`;
}

/** SPDX's supplier field: a team or project maintaining a package is an Organization. */
function supplierOf(maintainer: string): string {
  const m = maintainer.replace(/\s+/g, ' ').trim();
  return /\b(team|maintainers|project|group|developers|community)\b/i.test(m)
    ? `Organization: ${m}`
    : `Person: ${m}`;
}

export function spdxDocument(scan: ScanResult, opts: SpdxOptions): SpdxDocument {
  const hex = opts.manifestDigest.slice('sha256:'.length);
  const imageName = opts.names[0] ?? `sha256:${hex}`;
  const imageId = 'SPDXRef-Image';
  const image: SpdxPackage = {
    name: imageName,
    SPDXID: imageId,
    versionInfo: opts.manifestDigest,
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    licenseConcluded: 'NOASSERTION',
    licenseDeclared: 'NOASSERTION',
    copyrightText: 'NOASSERTION',
    primaryPackagePurpose: 'CONTAINER',
    externalRefs: [
      {
        referenceCategory: 'PACKAGE-MANAGER',
        referenceType: 'purl',
        referenceLocator: imageSubjects(opts.names.slice(0, 1), opts.platform, opts.manifestDigest)[0]!.name,
      },
    ],
  };
  const seen = new Set<string>();
  const packages: SpdxPackage[] = [];
  for (const p of scan.packages) {
    const locator = purl(p, scan.distro);
    const id = spdxId(p.type, p.name, `${locator}\0${p.location}`);
    if (seen.has(id)) continue;
    seen.add(id);
    packages.push({
      name: p.name,
      SPDXID: id,
      versionInfo: p.version,
      ...(p.supplier ? { supplier: supplierOf(p.supplier) } : {}),
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      licenseConcluded: 'NOASSERTION',
      licenseDeclared: p.license ?? 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      sourceInfo: `${p.type} package database ${p.location}`,
      externalRefs: [
        { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: locator },
      ],
    });
  }
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${imageName} (${formatPlatform(opts.platform)})`,
    documentNamespace: `https://polyarch.invalid/spdx/${hex}/${encodeURIComponent(formatPlatform(opts.platform))}`,
    creationInfo: { created: opts.created, creators: [`Tool: polyarch-${VERSION}`] },
    packages: [image, ...packages],
    relationships: [
      { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: imageId },
      ...packages.map((p) => ({
        spdxElementId: imageId,
        relationshipType: 'CONTAINS',
        relatedSpdxElement: p.SPDXID,
      })),
    ],
  };
}
