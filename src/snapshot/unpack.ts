/**
 * Unpacks an image's layers from the content store into committed snapshots keyed by chain id,
 * so each layer is extracted once per chain and shared by every build and run that uses it.
 *
 *   const snaps = await Snapshotter.open({ root: stateRoot() });
 *   const store = await ContentStore.open(storeDir());
 *   const { chain, config } = await unpackImage({ store, snapshotter: snaps, manifest: desc });
 *   const active = await snaps.prepare(`run-${id}`, chain);   // chain: keys, bottom-most first
 *
 * Chain ids follow the OCI image spec: chainID(L0) = diffID(L0), chainID(Ln) =
 * sha256(chainID(Ln-1) + " " + diffID(Ln)); the chain id of the top layer names the whole stack
 * below it, so two images sharing their first layers share those snapshots.
 *
 * Each layer blob is decompressed and applied as an overlayfs upper dir (whiteouts become 0/0
 * character devices, opaque dirs the `trusted.overlay.opaque` xattr); the uncompressed stream's
 * digest must equal the config's `rootfs.diff_ids[i]`, else the snapshot is not created
 * (`DIGEST_MISMATCH`). Concurrent unpacks of the same image, in one process or several, are safe:
 * the snapshotter's per-key lock makes the second wait and reuse the first's result.
 */
import { createHash } from 'node:crypto';
import type { ContentStore } from '../content/store.js';
import type { Descriptor, Digest, ImageConfig, Manifest } from '../oci/index.js';
import { isManifestType, parseImageConfig, parseImageDocument } from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';
import type { Snapshotter } from './overlay.js';

export interface UnpackOptions {
  store: ContentStore;
  snapshotter: Snapshotter;
  /** The image manifest, or its descriptor in the store (an index is refused: pick a platform first). */
  manifest: Manifest | Descriptor;
  /** Names the image in errors, e.g. `docker.io/library/busybox:latest (linux/arm64)`. */
  what?: string;
  /** Called before a layer is extracted (not for layers already unpacked). */
  onExtract?: (layer: { index: number; digest: Digest; chainId: string }) => void;
}

export interface UnpackResult {
  /** Snapshot keys (= chain ids), bottom-most first: the `parents` of `prepare`. */
  chain: string[];
  config: ImageConfig;
  /** The manifest's config descriptor (its digest is the image id). */
  configDescriptor: Descriptor;
  /** How many layers this call extracted (0 when all were unpacked already). */
  extracted: number;
}

/** OCI chain ids of a list of diff ids (bottom-most first). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out.at(-1);
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

function isDescriptor(m: Manifest | Descriptor): m is Descriptor {
  return typeof (m as Descriptor).digest === 'string' && (m as Manifest).layers === undefined;
}

async function readManifest(store: ContentStore, m: Manifest | Descriptor, what: string): Promise<Manifest> {
  if (!isDescriptor(m)) return m;
  if (!isManifestType(m.mediaType))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `${what}: ${m.mediaType} is not an image manifest (choose a platform of an index first)`,
    );
  const doc = parseImageDocument(await store.readBlob(m.digest), `manifest ${m.digest}`, m.mediaType);
  if (doc.kind !== 'manifest')
    throw new PolyarchError('INVALID_ARGUMENT', `${what}: ${m.digest} is an index, not an image manifest`);
  return doc.manifest;
}

/** Extract every layer of the image not unpacked yet; see the module header. */
export async function unpackImage(opts: UnpackOptions): Promise<UnpackResult> {
  const { store, snapshotter } = opts;
  const what = opts.what ?? (isDescriptor(opts.manifest) ? `image ${opts.manifest.digest}` : 'image');
  const manifest = await readManifest(store, opts.manifest, what);
  const config = parseImageConfig(await store.readBlob(manifest.config.digest), `config of ${what}`);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== manifest.layers.length)
    throw new PolyarchError(
      'INVALID_MANIFEST',
      `${what}: the manifest has ${manifest.layers.length} layers but the config lists ${diffIds.length} diff_ids`,
    );
  const chain = chainIds(diffIds);
  let extracted = 0;
  for (const [i, layer] of manifest.layers.entries()) {
    const chainId = chain[i]!;
    const parents = chain.slice(0, i);
    await snapshotter.create(chainId, parents, async (fsDir) => {
      if (!(await store.has(layer.digest)))
        throw new PolyarchError(
          'NOT_FOUND',
          `${what}: layer ${i + 1} (${layer.digest}) is not in the local store (pull the image again)`,
        );
      opts.onExtract?.({ index: i, digest: layer.digest, chainId });
      // Loaded only to extract: a warm `run` (every layer unpacked) never needs the tar reader
      // and decompressors, a fifth of its start-up.
      const { applyLayerBlob } = await import('../layer/apply.js');
      const r = await applyLayerBlob(store.openRead(layer.digest), fsDir, { target: 'overlay' });
      if (r.diffId !== diffIds[i])
        throw new PolyarchError(
          'DIGEST_MISMATCH',
          `${what}: layer ${i + 1} (${layer.digest}) uncompresses to ${r.diffId}, but the config says ${diffIds[i]}`,
        );
      extracted++;
    });
  }
  return { chain, config, configDescriptor: manifest.config, extracted };
}
