/**
 * `imagetools create`: a new index from images already in registries, pushed to one or more
 * targets, without pulling anything into the local store.
 *
 *   await createIndex({ sources: ['reg/app@sha256:…', 'reg/app:arm64'], tags: ['reg/app:1'] });
 *
 * Sources that are indexes contribute their entries (filtered by `platforms`); a source that is
 * a single manifest contributes one entry whose platform comes from its config. Entries and
 * their blobs are copied into each target repository first (mounted on the same registry,
 * streamed across registries), then the index is put under each tag.
 */
import {
  type Descriptor,
  encodeJson,
  type Index,
  MediaType,
  parseImageConfig,
  parseImageDocument,
  sha256Digest,
} from '../oci/index.js';
import type { RegistryClient } from '../registry/client.js';
import { mapLimit } from '../util/concurrency.js';
import { formatReference, parseReference, type Reference, withDigest } from '../oci/reference.js';
import { PolyarchError, UsageError } from '../util/errors.js';
import { formatPlatform, newMatcher, type PlatformSpec, parsePlatform } from '../platform/index.js';
import { DEFAULT_CONCURRENCY, descriptorPlatform, isAttestation, openClient, withContext } from './remote.js';

export interface CreateOptions {
  sources: string[];
  /** Targets (`-t`); required unless `dryRun`. */
  tags: string[];
  /** Add the first target's existing entries. */
  append?: boolean;
  dryRun?: boolean;
  /** `key=value` or `index:key=value` (index annotations), `manifest-descriptor:key=value`. */
  annotations?: string[];
  /** Keep only these platforms from index sources. */
  platforms?: string[];
  client?: RegistryClient;
  env?: NodeJS.ProcessEnv;
  /** The platform of a single-manifest source by digest (`manifest annotate`), over its config's. */
  platformOf?: (digest: string) => PlatformSpec | undefined;
}

export interface CreateResult {
  index: Index;
  bytes: Buffer;
  digest: string;
  pushed: string[];
}

interface Entry {
  desc: Descriptor;
  from: Reference;
}

function parseAnnotations(list: string[]): {
  index: Record<string, string>;
  descriptor: Record<string, string>;
} {
  const index: Record<string, string> = {};
  const descriptor: Record<string, string> = {};
  for (const a of list) {
    const eq = a.indexOf('=');
    if (eq <= 0)
      throw new UsageError(`invalid annotation "${a}": expected [index:|manifest-descriptor:]key=value`);
    let key = a.slice(0, eq);
    const value = a.slice(eq + 1);
    let target = index;
    const colon = key.indexOf(':');
    if (colon > 0 && /^(index|manifest-descriptor)(\[.*\])?$/.test(key.slice(0, colon))) {
      if (key.startsWith('manifest-descriptor')) target = descriptor;
      key = key.slice(colon + 1);
    } else if (colon > 0 && /^(manifest|manifest-descriptor|index-descriptor)/.test(key.slice(0, colon)))
      throw new UsageError(
        `invalid annotation "${a}": imagetools create supports index: and manifest-descriptor: only`,
      );
    target[key] = value;
  }
  return { index, descriptor };
}

export async function createIndex(opts: CreateOptions): Promise<CreateResult> {
  if (!opts.sources.length && !opts.append)
    throw new UsageError('imagetools create needs at least one source');
  if (!opts.tags.length && !opts.dryRun)
    throw new UsageError('imagetools create needs -t/--tag (or --dry-run)');
  const sources = opts.sources.map((s) => parseReference(s));
  const targets = opts.tags.map((t) => parseReference(t));
  const wanted = (opts.platforms ?? []).map((p) => parsePlatform(p, { normalize: true }));
  const ann = parseAnnotations(opts.annotations ?? []);
  const client = opts.client ?? (await openClient({ env: opts.env }));
  try {
    const entries: Entry[] = [];
    let oci = false;
    const add = (e: Entry) => {
      if (!entries.some((x) => x.desc.digest === e.desc.digest)) entries.push(e);
    };
    const gather = async (ref: Reference, filter: boolean) => {
      const m = await client.getManifest(ref);
      const doc = parseImageDocument(m.bytes, `manifest ${formatReference(ref)}`, m.mediaType);
      if (doc.mediaType.includes('.oci.')) oci = true;
      const from = { domain: ref.domain, path: ref.path };
      if (doc.kind === 'index') {
        for (const d of doc.index.manifests) {
          if (filter && wanted.length && !isAttestation(d)) {
            const p = descriptorPlatform(d);
            if (!p || !wanted.some((w) => newMatcher(w).match(p))) continue;
          }
          if (filter && wanted.length && isAttestation(d)) continue;
          add({ desc: d, from });
        }
        return;
      }
      const cfg = parseImageConfig(
        await client.fetchConfig(ref, doc.manifest.config),
        `config of ${formatReference(ref)}`,
      );
      const platform = opts.platformOf?.(m.digest) ?? {
        os: cfg.os,
        architecture: cfg.architecture,
        ...(cfg.variant ? { variant: cfg.variant } : {}),
      };
      if (filter && wanted.length && !wanted.some((w) => newMatcher(w).match(platform))) return;
      add({ desc: { mediaType: doc.mediaType, digest: m.digest, size: m.bytes.length, platform }, from });
    };
    if (opts.append && targets[0]) await gather(targets[0], false);
    for (const s of sources) await gather(s, true);
    if (!entries.length)
      throw new PolyarchError('NOT_FOUND', 'no manifests to put in the index (check --platform)');
    const manifests = entries.map((e) =>
      Object.keys(ann.descriptor).length
        ? { ...e.desc, annotations: { ...e.desc.annotations, ...ann.descriptor } }
        : e.desc,
    );
    const mediaType =
      oci || Object.keys(ann.index).length ? MediaType.OciIndex : MediaType.DockerManifestList;
    const index: Index = {
      schemaVersion: 2,
      mediaType,
      manifests,
      ...(Object.keys(ann.index).length ? { annotations: ann.index } : {}),
    };
    const bytes = encodeJson(index);
    const digest = sha256Digest(bytes);
    const pushed: string[] = [];
    if (!opts.dryRun) {
      for (const t of targets) {
        await mapLimit(entries, 2, (e) => copyManifest(client, e, t));
        await client.putManifest(t, t.tag ?? digest, bytes, mediaType);
        pushed.push(formatReference(withDigest(t, digest)));
      }
    }
    return { index, bytes, digest, pushed };
  } catch (err) {
    throw withContext('creating an index', err);
  } finally {
    if (!opts.client) await client.close();
  }
}

/** Makes `e` (and all it refers to) present in the target repository. */
async function copyManifest(client: RegistryClient, e: Entry, target: Reference): Promise<void> {
  const dest = { domain: target.domain, path: target.path };
  if (e.from.domain === dest.domain && e.from.path === dest.path) return;
  if (await client.headManifest(withDigest(dest, e.desc.digest))) return;
  const src = withDigest(e.from, e.desc.digest);
  const m = await client.getManifest(src);
  const doc = parseImageDocument(m.bytes, `manifest ${formatReference(src)}`, m.mediaType);
  if (doc.kind === 'index') {
    for (const d of doc.index.manifests) await copyManifest(client, { desc: d, from: e.from }, target);
  } else {
    const blobs = [doc.manifest.config, ...doc.manifest.layers.filter((l) => !l.urls?.length)];
    await mapLimit(blobs, DEFAULT_CONCURRENCY, (b) =>
      client.pushBlob(dest, b, (s, end) => client.blobStream(e.from, b.digest, s, end), {
        ...(e.from.domain === dest.domain ? { mountFrom: e.from.path } : {}),
      }),
    );
  }
  await client.putManifest(dest, e.desc.digest, m.bytes, doc.mediaType);
}

export function describeIndex(r: CreateResult): string {
  return `${JSON.stringify(r.index, null, 2)}\n`;
}

export function entryPlatforms(r: CreateResult): string[] {
  return r.index.manifests.filter((d) => d.platform).map((d) => formatPlatform(descriptorPlatform(d)!));
}
