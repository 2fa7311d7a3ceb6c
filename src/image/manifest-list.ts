/**
 * Local manifest lists, as `docker manifest create|annotate|inspect|push|rm` keep them: a list
 * assembled by hand from single-platform images already in a registry, edited, then pushed.
 *
 *   await createList(root, 'reg/app:1', ['reg/app@sha256:…amd64', 'reg/app:arm64'], { env });
 *   await annotateList(root, 'reg/app:1', 'reg/app:arm64', { variant: 'v8' });
 *   const r = await pushList(root, 'reg/app:1', { env, purge: true });   // imagetools' createIndex
 *
 * A list is `<root>/manifests/<escaped list name>.json` (written atomically): the list's name
 * and one entry per source image — the source pinned to its digest, its descriptor and its
 * platform (from the image's config, then as annotated). Sources must be single images, as in
 * docker; an index is refused, naming `imagetools create` which takes indexes.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Descriptor,
  type Index,
  MediaType,
  parseImageConfig,
  parseImageDocument,
} from '../oci/index.js';
import type { Digest } from '../oci/digest.js';
import { formatReference, parseReference } from '../oci/reference.js';
import type { PlatformSpec } from '../platform/index.js';
import { PolyarchError, UsageError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { type CreateResult, createIndex } from './create.js';
import { openClient } from './remote.js';

export interface ListEntry {
  /** The source as given (canonical: `domain/path:tag` or `…@digest`); annotate names it so. */
  ref: string;
  /** `domain/path@digest`. */
  source: string;
  descriptor: Descriptor & { platform: PlatformSpec };
}

export interface LocalList {
  name: string;
  entries: ListEntry[];
}

function canonical(ref: string): string {
  try {
    return formatReference(parseReference(ref, { defaultTag: true }));
  } catch (err) {
    throw new UsageError(`invalid reference "${ref}": ${(err as Error).message}`);
  }
}

function listPath(root: string, name: string): string {
  return join(root, 'manifests', `${encodeURIComponent(name)}.json`);
}

export async function readList(root: string, ref: string): Promise<LocalList | undefined> {
  try {
    return JSON.parse(await readFile(listPath(root, canonical(ref)), 'utf8')) as LocalList;
  } catch {
    return undefined;
  }
}

async function mustRead(root: string, ref: string): Promise<LocalList> {
  const list = await readList(root, ref);
  if (!list) throw new PolyarchError('NOT_FOUND', `No such manifest: ${canonical(ref)}`);
  return list;
}

async function writeList(root: string, list: LocalList): Promise<void> {
  await writeFileAtomic(listPath(root, list.name), `${JSON.stringify(list, null, 2)}\n`, {
    createParents: true,
  });
}

/** `manifest create [--amend] LIST SOURCE...`. */
export async function createList(
  root: string,
  ref: string,
  sources: string[],
  opts: { amend?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<LocalList> {
  const name = canonical(ref);
  const existing = await readList(root, name);
  if (existing && !opts.amend)
    throw new PolyarchError(
      'ALREADY_EXISTS',
      `refusing to amend an existing manifest list with no --amend flag: ${name}`,
    );
  const list: LocalList = existing ?? { name, entries: [] };
  const client = await openClient({ ...(opts.env ? { env: opts.env } : {}) });
  try {
    for (const s of sources) {
      const src = parseReference(s, { defaultTag: true });
      const m = await client.getManifest(src);
      const doc = parseImageDocument(m.bytes, `manifest ${formatReference(src)}`, m.mediaType);
      if (doc.kind === 'index')
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          `${formatReference(src)} is a manifest list: a list takes single images (polyarch imagetools create takes indexes)`,
        );
      const cfg = parseImageConfig(
        await client.fetchConfig(src, doc.manifest.config),
        `config of ${formatReference(src)}`,
      );
      const platform: PlatformSpec = {
        os: cfg.os,
        architecture: cfg.architecture,
        ...(cfg.variant ? { variant: cfg.variant } : {}),
      };
      const pinned = formatReference({ domain: src.domain, path: src.path, digest: m.digest as Digest });
      const entry: ListEntry = {
        ref: formatReference(src),
        source: pinned,
        descriptor: { mediaType: doc.mediaType, digest: m.digest as Digest, size: m.bytes.length, platform },
      };
      list.entries = [...list.entries.filter((e) => e.descriptor.digest !== m.digest), entry];
    }
  } finally {
    await client.close();
  }
  await writeList(root, list);
  return list;
}

export interface Annotation {
  os?: string;
  arch?: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
}

/** `manifest annotate LIST SOURCE [--os] [--arch] [--variant] [--os-version] [--os-features]`. */
export async function annotateList(
  root: string,
  ref: string,
  source: string,
  a: Annotation,
): Promise<LocalList> {
  const list = await mustRead(root, ref);
  const src = parseReference(source, { defaultTag: true });
  const entry = list.entries.find(
    (e) => e.ref === formatReference(src) || (src.digest !== undefined && e.descriptor.digest === src.digest),
  );
  if (!entry)
    throw new PolyarchError(
      'NOT_FOUND',
      `manifest ${formatReference(src)} is not in the list ${list.name}: add it with manifest create --amend`,
    );
  const p = entry.descriptor.platform;
  if (a.os !== undefined) p.os = a.os;
  if (a.arch !== undefined) p.architecture = a.arch;
  if (a.variant !== undefined) p.variant = a.variant;
  if (a.osVersion !== undefined) p['os.version'] = a.osVersion;
  if (a.osFeatures !== undefined) p['os.features'] = a.osFeatures;
  await writeList(root, list);
  return list;
}

/** The list as the index it will push (docker manifest inspect of a local list). */
export function listIndex(list: LocalList): Index {
  const oci = list.entries.some((e) => e.descriptor.mediaType === MediaType.OciManifest);
  return {
    schemaVersion: 2,
    mediaType: oci ? MediaType.OciIndex : MediaType.DockerManifestList,
    manifests: list.entries.map((e) => e.descriptor),
  };
}

/** `manifest push [--purge] LIST`: copy the entries into the list's repository and put the index. */
export async function pushList(
  root: string,
  ref: string,
  opts: { purge?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<CreateResult> {
  const list = await mustRead(root, ref);
  if (list.entries.length === 0)
    throw new PolyarchError('INVALID_ARGUMENT', `manifest list ${list.name} is empty`);
  const platforms = new Map(list.entries.map((e) => [e.descriptor.digest as string, e.descriptor.platform]));
  const r = await createIndex({
    sources: list.entries.map((e) => e.source),
    tags: [list.name],
    platformOf: (d) => platforms.get(d),
    ...(opts.env ? { env: opts.env } : {}),
  });
  if (opts.purge) await rm(listPath(root, list.name), { force: true });
  return r;
}

/** `manifest rm LIST...`. */
export async function removeList(root: string, ref: string): Promise<void> {
  await mustRead(root, ref);
  await rm(listPath(root, canonical(ref)), { force: true });
}
