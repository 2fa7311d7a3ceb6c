/**
 * Pulls an image from a registry into the local content store.
 *
 *   const r = await pull('127.0.0.1:5000/app:1', { store, platforms: ['linux/arm64'] });
 *   r.name        // 'docker.io/…' normalised reference the store now names
 *   r.descriptor  // the root (index or manifest) as tagged
 *
 * An index is stored whole, byte for byte (so its digest is the registry's), but only the
 * selected platforms' manifests, configs and layers are fetched (plus attestation manifests
 * that refer to them). Default platform: the host's, with containerd's fall-backs (amd64
 * also takes 386). The root is tagged only after everything it needs is stored, and the
 * registry is asked for the root manifest before anything is written. The pull holds a lease
 * on the store (content/leases.ts) from its first look at the store until the root is tagged,
 * so a concurrent `rmi` or `prune` keeps the blobs it found or wrote.
 */
import {
  type Descriptor,
  type Digest,
  parseImageConfig,
  parseImageDocument,
  walkIndex,
} from '../oci/index.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryError } from '../registry/errors.js';
import { mapLimit } from '../util/concurrency.js';
import type { ProgressWriter } from '../progress/index.js';
import { Step } from './progress.js';
import { parseReference, type Reference, withDigest } from '../oci/reference.js';
import { PolyarchError } from '../util/errors.js';
import { type ContentStore, normalizeName } from '../content/index.js';
import {
  bestMatch,
  formatPlatform,
  hostPlatform,
  newMatcher,
  normalizePlatform,
  only,
  type PlatformSpec,
  parsePlatform,
} from '../platform/index.js';
import {
  DEFAULT_CONCURRENCY,
  descriptorPlatform,
  isAttestation,
  openClient,
  platformList,
  withContext,
} from './remote.js';

export interface PullOptions {
  /** The store, or a function opening it: called only once the registry has answered, so a
   * failed pull (bad credentials, unknown tag) leaves no trace on disk. */
  store: ContentStore | (() => Promise<ContentStore>);
  /** Platforms to fetch (`linux/arm64`); default: the host's. */
  platforms?: string[];
  /** Fetch every entry of an index. */
  all?: boolean;
  /** A client to reuse; default: one from the user's registries.toml and credentials (closed after). */
  client?: RegistryClient;
  /** Where to report: a `resolve <ref>` vertex, then `pulling <ref>` with a byte status per
   * blob (`exists sha256:…` for blobs the store has). Default: no progress. */
  progress?: ProgressWriter;
  /** Blobs moved at once; default 4. */
  concurrency?: number;
  env?: NodeJS.ProcessEnv;
  warn?: (message: string) => void;
}

export interface PullResult {
  /** The normalised reference the image is stored under. */
  name: string;
  descriptor: Descriptor;
  /** Platforms fetched, normalised (`linux/arm64`, not `linux/arm64/v8`). */
  platforms: string[];
}

export async function pull(refInput: string, opts: PullOptions): Promise<PullResult> {
  const ref = parseReference(refInput);
  // The store's name for it: a digest reference keeps no tag (content/refname.ts).
  const name = normalizeName(refInput);
  for (const p of opts.platforms ?? []) parsePlatform(p, { normalize: true });
  const client =
    opts.client ?? (await openClient({ env: opts.env, ...(opts.warn ? { warn: opts.warn } : {}) }));
  try {
    return await pullWith(ref, name, client, opts);
  } catch (err) {
    throw withContext(`pulling ${name}`, err);
  } finally {
    if (!opts.client) await client.close();
  }
}

async function pullWith(
  ref: Reference,
  name: string,
  client: RegistryClient,
  opts: PullOptions,
): Promise<PullResult> {
  const limit = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const wanted = (opts.platforms ?? []).map((p) => parsePlatform(p, { normalize: true }));
  const pw = opts.progress;
  const { root, doc, blobs, childDocs, fetched } = await new Step(
    pw,
    `resolve:${name}`,
    `resolve ${name}`,
  ).run((step) => resolveImage(ref, name, client, opts, limit, wanted, step));
  const rootDesc: Descriptor = { mediaType: doc.mediaType, digest: root.digest, size: root.bytes.length };
  return new Step(pw, `pull:${name}`, `pulling ${name}`).run(async (step) => {
    const store = typeof opts.store === 'function' ? await opts.store() : opts.store;
    const lease = await store.lease('pull');
    try {
      return await fetchAndTag(store, step);
    } finally {
      await lease.release();
    }
  });

  async function fetchAndTag(store: ContentStore, step: Step): Promise<PullResult> {
    // Everything the pull will look at or write, leased at once (one lease write).
    await store.protect([...blobs.keys(), ...childDocs.map((c) => c.desc.digest), root.digest]);
    await mapLimit([...blobs.values()], limit, async (desc) => {
      if ((await store.size(desc.digest)) === desc.size) {
        step.done(`exists ${desc.digest}`, desc.size);
        return;
      }
      const w = await store.writer({ digest: desc.digest, size: desc.size });
      await client.fetchBlob(ref, desc, w, step.blob(desc.digest, desc.size));
    });

    if (doc.kind === 'manifest') {
      const cfg = parseImageConfig(await store.readBlob(doc.manifest.config.digest), `config of ${name}`);
      const has: PlatformSpec = {
        os: cfg.os,
        architecture: cfg.architecture,
        ...(cfg.variant ? { variant: cfg.variant } : {}),
      };
      if (wanted.length && !wanted.some((p) => newMatcher(p).match(has)))
        throw new PolyarchError(
          'NOT_FOUND',
          `the image is ${formatPlatform(has)} only, not ${wanted.map((p) => formatPlatform(p)).join(', ')}`,
        );
      fetched.push(formatPlatform(normalizePlatform(has)));
    }

    for (const c of childDocs) {
      await store.writeBlob(c.bytes, { digest: c.desc.digest, size: c.desc.size });
    }
    await store.writeBlob(root.bytes, { digest: root.digest, size: root.bytes.length });
    await store.tag(name, rootDesc);
    return { name, descriptor: rootDesc, platforms: fetched };
  }
}

/** The manifest walk: the root, the chosen children and the blobs they need; writes nothing.
 * The `resolve` vertex begins after the root manifest arrived and the platforms are chosen. */
async function resolveImage(
  ref: Reference,
  name: string,
  client: RegistryClient,
  opts: PullOptions,
  limit: number,
  wanted: PlatformSpec[],
  step: Step,
) {
  const root = await client.getManifest(ref).catch((err: unknown) => {
    if (err instanceof RegistryError && err.status === 404)
      throw new PolyarchError(
        'NOT_FOUND',
        `not found (${err.errors.map((e) => e.code).join(', ') || 'HTTP 404'})`,
      );
    throw err;
  });
  const doc = parseImageDocument(root.bytes, `manifest ${name}`, root.mediaType);

  // Manifests to fetch (digest → descriptor), then blobs, deduplicated. Nested indexes are
  // fetched while choosing (bounded depth: oci/nested.ts); those above a chosen manifest are stored.
  let manifests: Descriptor[] = [];
  const fetched: string[] = [];
  const nestedDocs = new Map<Digest, { desc: Descriptor; bytes: Buffer }>();
  if (doc.kind === 'index') {
    const walk = await walkIndex(
      doc.index.manifests,
      async (d) => {
        const m = await client.getManifest(withDigest({ domain: ref.domain, path: ref.path }, d.digest));
        const child = parseImageDocument(
          m.bytes,
          `manifest ${ref.domain}/${ref.path}@${d.digest}`,
          m.mediaType,
        );
        if (child.kind !== 'index')
          throw new PolyarchError(
            'INVALID_MANIFEST',
            `${ref.domain}/${ref.path}@${d.digest} is not an index`,
          );
        nestedDocs.set(d.digest, { desc: d, bytes: m.bytes });
        return child.index.manifests;
      },
      name,
      { rootDigest: root.digest },
    );
    const entries = walk.leaves.map((l) => l.descriptor);
    if (opts.all) manifests = entries;
    else {
      const chosen = new Set<Descriptor>();
      if (wanted.length) {
        for (const p of wanted) {
          const m = entries.find(
            (d) =>
              !isAttestation(d) && d.platform !== undefined && newMatcher(p).match(descriptorPlatform(d)!),
          );
          if (!m)
            throw new PolyarchError(
              'NOT_FOUND',
              `no image for platform ${formatPlatform(p)} in the index (it has ${platformList(entries)})`,
            );
          chosen.add(m);
        }
      } else {
        const m = pickHost(entries);
        if (!m)
          throw new PolyarchError(
            'NOT_FOUND',
            `no image for the host platform ${formatPlatform(hostPlatform())} in the index (it has ${platformList(entries)}); use --platform`,
          );
        chosen.add(m);
      }
      // Keep attestations that describe a chosen manifest.
      for (const d of entries) {
        const target = d.annotations?.['vnd.docker.reference.digest'];
        if (isAttestation(d) && target && [...chosen].some((c) => c.digest === target)) chosen.add(d);
      }
      manifests = entries.filter((d) => chosen.has(d));
    }
    // The nested indexes above what is fetched (all of them with `all`).
    if (!opts.all) {
      const keep = new Set(manifests);
      const above = new Set(walk.leaves.filter((l) => keep.has(l.descriptor)).flatMap((l) => l.parents));
      for (const [digest, n] of nestedDocs) if (!above.has(n.desc)) nestedDocs.delete(digest);
    }
    for (const d of manifests)
      if (!isAttestation(d) && d.platform)
        fetched.push(formatPlatform(normalizePlatform(descriptorPlatform(d)!)));
  }

  // Fetch child manifests (small), collecting their blobs. Only now is there something to
  // show: everything above is one request, and its failures are the CLI's one ERROR line.
  step.begin();
  const blobs = new Map<Digest, Descriptor>();
  const childDocs: Array<{ desc: Descriptor; bytes: Buffer }> = [];
  const collect = async (desc: Descriptor): Promise<void> => {
    const m = await client.getManifest(withDigest({ domain: ref.domain, path: ref.path }, desc.digest));
    const child = parseImageDocument(
      m.bytes,
      `manifest ${ref.domain}/${ref.path}@${desc.digest}`,
      m.mediaType,
    );
    if (child.kind === 'index')
      throw new PolyarchError(
        'INVALID_MANIFEST',
        `${ref.domain}/${ref.path}@${desc.digest} is an index, but its descriptor says ${desc.mediaType}`,
      );
    blobs.set(child.manifest.config.digest, child.manifest.config);
    for (const l of child.manifest.layers) if (!l.urls?.length) blobs.set(l.digest, l);
    childDocs.push({ desc, bytes: m.bytes });
  };
  if (doc.kind === 'index') {
    await mapLimit(manifests, limit, collect);
    // Visited outermost first: reversed, each nested index is written after what it lists.
    for (const n of [...nestedDocs.values()].reverse()) childDocs.push(n);
  } else {
    blobs.set(doc.manifest.config.digest, doc.manifest.config);
    for (const l of doc.manifest.layers) if (!l.urls?.length) blobs.set(l.digest, l);
  }
  return { root, doc, blobs, childDocs, fetched };
}

/** The index entry for the host: its own platform first, then what it also runs natively (containerd's Only). */
function pickHost(entries: Descriptor[]): Descriptor | undefined {
  return bestMatch(
    entries.filter((d) => !isAttestation(d)),
    only(hostPlatform()),
    (d) => d.platform,
  );
}
