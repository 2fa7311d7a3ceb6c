/**
 * What the build solver hands to the exporters: per target platform, the image's layers (as
 * committed snapshots or as blobs reused from a base image), its config and history.
 *
 * The engine (build.ts, on the generic solver.ts) produces `PlatformResult`s; the exporters (export/) turn
 * them into blobs, manifests, an index, and the requested outputs (local store, registry,
 * oci/docker/tar archives, local directories). Neither side knows the Dockerfile.
 */
import type { Descriptor, Digest, HistoryEntry, ImageConfig } from '../oci/index.js';
import type { Platform } from '../platform/index.js';

/** One layer of a result image, bottom-most first in `PlatformResult.layers`. */
export type ResultLayer =
  | {
      kind: 'blob';
      /** A layer blob already in the content store (from a base image): reused as is, never re-packed. */
      descriptor: Descriptor;
      diffId: Digest;
      /** The image it came from (a registry reference): a push to that registry mounts it from there. */
      source?: string;
    }
  | {
      kind: 'snapshot';
      /**
       * A committed snapshot (src/snapshot) holding exactly this layer's changes in overlay form:
       * deletions as 0/0 character devices, opaque directories marked with
       * trusted.overlay.opaque=y. The exporter packs it with layer/packOverlayDiff, memoised by key.
       */
      key: string;
    };

export interface PlatformResult {
  platform: Platform;
  layers: ResultLayer[];
  /**
   * The image config: os/architecture/variant, `config` (Env, Cmd, Entrypoint, WorkingDir, User,
   * ExposedPorts, Volumes, Labels, StopSignal, Healthcheck, Shell, OnBuild), `history` with one
   * non-empty entry per layer in `layers` (in order) and `empty_layer: true` for the others.
   * `rootfs.diff_ids` is filled in by the exporter (for snapshot layers it is only known once packed).
   */
  config: Omit<ImageConfig, 'rootfs'> & { history: HistoryEntry[] };
}

export interface BuildResult {
  /** One per requested platform, in the order requested. */
  platforms: PlatformResult[];
}
