/**
 * Small images written straight into a local content store, for unpack and run tests.
 *
 *   const layer = await tarGz({ 'bin/hello': { data: exitElf('386', 42), mode: 0o755 } });
 *   const desc = await storeImage(store, 'localhost/test/x:1', [
 *     { platform: 'linux/386', layers: [layer], config: { Entrypoint: ['/bin/hello'] } },
 *   ]);
 *
 * Layers are real gzip tarballs made by GNU tar (root-owned, fixed mtime); a file named
 * `.wh.NAME` is an OCI whiteout. Several variants make an OCI index; one makes a bare manifest
 * unless `index: true`.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { ContentStore } from '../src/content/store.js';
import { type ContainerConfig, type Descriptor, type Digest, MediaType } from '../src/oci/index.js';

export type FileSpec =
  | string
  | Buffer
  | { data: string | Buffer; mode?: number }
  | { dir: true; mode?: number };

/** A gzip layer holding `files` (paths relative to the root). */
export async function tarGz(files: Record<string, FileSpec>): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'polyarch-layer-'));
  try {
    for (const [path, spec] of Object.entries(files)) {
      const p = join(dir, path);
      if (typeof spec === 'object' && 'dir' in spec) {
        await mkdir(p, { recursive: true });
        await chmod(p, spec.mode ?? 0o755);
        continue;
      }
      await mkdir(dirname(p), { recursive: true });
      const data = typeof spec === 'string' || Buffer.isBuffer(spec) ? spec : spec.data;
      await writeFile(p, data);
      await chmod(
        p,
        typeof spec === 'object' && 'mode' in spec && spec.mode !== undefined ? spec.mode : 0o644,
      );
    }
    return execFileSync('tar', [
      '-C',
      dir,
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '-czf',
      '-',
      '.',
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function sha256(data: Buffer): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

export interface VariantSpec {
  platform: string;
  layers: Buffer[];
  config?: ContainerConfig;
  /** Diff ids to claim instead of the real ones (to test verification). */
  diffIds?: Digest[];
}

/** Writes the variants' blobs, manifests (and index) into `store` and tags `name`; returns the root. */
export async function storeImage(
  store: ContentStore,
  name: string,
  variants: VariantSpec[],
  opts: { index?: boolean } = {},
): Promise<Descriptor> {
  const manifests: Descriptor[] = [];
  for (const v of variants) {
    const [os, architecture, variant] = v.platform.split('/') as [string, string, string | undefined];
    const layers: Descriptor[] = [];
    for (const blob of v.layers) {
      const { digest, size } = await store.writeBlob(blob);
      layers.push({ mediaType: MediaType.OciLayerGzip, digest, size });
    }
    const config = {
      architecture,
      os,
      ...(variant ? { variant } : {}),
      config: v.config ?? {},
      rootfs: { type: 'layers', diff_ids: v.diffIds ?? v.layers.map((b) => sha256(gunzipSync(b))) },
    };
    const configDesc = await store.writeJson(config, MediaType.OciConfig);
    const m = await store.writeJson(
      { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers },
      MediaType.OciManifest,
    );
    manifests.push({ ...m, platform: { os, architecture, ...(variant ? { variant } : {}) } });
  }
  let root: Descriptor;
  if (manifests.length === 1 && !opts.index) {
    const { platform: _, ...m } = manifests[0]!;
    root = m;
  } else
    root = await store.writeJson(
      { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests },
      MediaType.OciIndex,
    );
  await store.tag(name, root);
  return root;
}
