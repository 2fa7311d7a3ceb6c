/**
 * External build cache: `--cache-from` / `--cache-to` (format.ts has the format, remote.ts
 * where it is kept, spec.ts the flags).
 *
 *   const imported = await ImportedCache.load(specs, { env, warn });  // manifests + configs only
 *   const out = await build({ ..., cacheImport: imported });          // hits run nothing
 *   await exportCache(out.cache, toSpecs, { store, snapshotter, stateRoot, env, warn });
 *   await imported.close();
 *
 * Import: a step whose cache key is in an imported cache is not run. Its layer blob is only
 * checked to be there (HEAD, or hashed in a local layout); it is fetched when the build needs
 * it — because it is in an exported image, or because a later step that is not cached runs
 * on it (then it is unpacked into the snapshot `build:<key>`, diff id verified). A malformed
 * cache, a missing blob or a blob of other content is a warning, and the step runs.
 *
 * Export: `mode=min` the records of the exported images' layers, `mode=max` of every step of
 * every stage. An existing cache at the destination is read first and merged with (union by
 * key, this build's records winning), so exports from several runs, nodes or platforms into
 * one ref add to it; the registry is read back after the write and the merge retried when a
 * concurrent writer replaced it meanwhile.
 */
import { createHash } from 'node:crypto';
import type { ContentStore } from '../../content/index.js';
import type { Compression, Descriptor } from '../../oci/index.js';
import type { RegistryClient } from '../../registry/client.js';
import { RegistryError } from '../../registry/errors.js';
import type { Snapshotter } from '../../snapshot/index.js';
import { Semaphore } from '../../util/concurrency.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import { LayerMemo, packSnapshotLayer } from '../export/layers.js';
import type { CacheLayer, CacheRecordV1 } from './format.js';
import {
  type CacheLocation,
  describe,
  fetchLayer,
  layerPresent,
  locationOf,
  readCache,
  writeLocal,
  writeRegistry,
} from './remote.js';
import type { CacheSpec } from './spec.js';

export * from './format.js';
export * from './spec.js';
export * from './inline.js';
import { type BuildCacheInfo, finalChain, type StepRecord } from './inline.js';

export interface ImportedRecord extends CacheRecordV1 {
  from: CacheLocation;
}

async function openClient(env: NodeJS.ProcessEnv, warn?: (m: string) => void): Promise<RegistryClient> {
  const { openClient: open } = await import('../../image/remote.js');
  return open({ env, ...(warn ? { warn } : {}) });
}

/** Layer checks started as soon as a registry cache is read (the rest when a step asks). */
const PRECHECK = 64;

/** The records of every `--cache-from`, by key; see the module header. */
export class ImportedCache {
  readonly #records = new Map<string, ImportedRecord>();
  readonly #checked = new Map<string, Promise<boolean>>();
  readonly #fetched = new Map<string, Promise<void>>();
  readonly #verified = new Map<string, Promise<void>>();
  readonly #checks = new Semaphore(8);
  readonly #warn: (m: string) => void;
  #client: RegistryClient | undefined;
  readonly #ready: Promise<void>;

  private constructor(specs: readonly CacheSpec[], env: NodeJS.ProcessEnv, warn: (m: string) => void) {
    this.#warn = warn;
    this.#ready = this.#load(specs, env);
  }

  /**
   * Starts reading the caches and returns at once: lookups wait for the reading, so it
   * overlaps the build's start. An unreadable cache is a warning, never an error.
   */
  static open(
    specs: readonly CacheSpec[],
    opts: { env?: NodeJS.ProcessEnv; warn?: (m: string) => void } = {},
  ): ImportedCache {
    return new ImportedCache(specs, opts.env ?? process.env, opts.warn ?? (() => undefined));
  }

  /** open(), then waits until every cache is read. */
  static async load(
    specs: readonly CacheSpec[],
    opts: { env?: NodeJS.ProcessEnv; warn?: (m: string) => void } = {},
  ): Promise<ImportedCache> {
    const ic = ImportedCache.open(specs, opts);
    await ic.#ready;
    return ic;
  }

  async #load(specs: readonly CacheSpec[], env: NodeJS.ProcessEnv): Promise<void> {
    const warn = this.#warn;
    if (specs.some((s) => s.type === 'registry'))
      this.#client = await openClient(env, warn).catch((err) => {
        warn(`cache import: ${errorMessage(err)}`);
        return undefined;
      });
    const client = this.#client;
    for (const s of specs) {
      if (s.type === 'inline' || (s.type === 'registry' && !client)) continue;
      const loc = locationOf(s, () => client!);
      try {
        const got = await readCache(loc);
        if (!got) {
          warn(`cache ${describe(loc)}: not found, nothing imported`);
          continue;
        }
        for (const r of got.records)
          if (!this.#records.has(r.key)) this.#records.set(r.key, { ...r, from: loc });
        // A registry's blobs are checked (HEAD) in the background while the build starts, the
        // first PRECHECK of them: the steps then find the answers ready.
        if (loc.kind === 'registry') {
          let n = 0;
          for (const r of this.#records.values())
            if (r.from === loc && r.layer && !this.#checked.has(r.layer.digest) && n++ < PRECHECK)
              void this.#check(r);
        }
      } catch (err) {
        warn(`cache ${describe(loc)} ignored: ${errorMessage(err).split('\n')[0]}`);
      }
    }
  }

  /** How many records were read (once every cache is read). */
  async count(): Promise<number> {
    await this.#ready;
    return this.#records.size;
  }

  get size(): number {
    return this.#records.size;
  }

  /** The record of `key` whose layer is there, or undefined (a warning says why not). */
  async lookup(key: string): Promise<ImportedRecord | undefined> {
    await this.#ready;
    const r = this.#records.get(key);
    if (!r) return undefined;
    if (!r.layer) return r;
    return (await this.#check(r)) ? r : undefined;
  }

  /** Whether the record's layer is there (checked once per blob; a warning when not). */
  #check(r: ImportedRecord): Promise<boolean> {
    const layer = r.layer!;
    let ok = this.#checked.get(layer.digest);
    if (!ok) {
      ok = this.#checks
        .run(() => layerPresent(r.from, layer))
        .then(
          (why) => {
            if (why) this.#warn(`cache ${describe(r.from)}: ${why}; the steps that need it run`);
            return why === undefined;
          },
          (err) => {
            this.#warn(
              `cache ${describe(r.from)}: layer ${layer.digest}: ${errorMessage(err)}; the steps that need it run`,
            );
            return false;
          },
        );
      this.#checked.set(layer.digest, ok);
    }
    return ok;
  }

  /** Puts the layer blob of an imported record into the store (once). */
  fetch(r: ImportedRecord, store: ContentStore): Promise<void> {
    const l = r.layer;
    if (!l) return Promise.resolve();
    let p = this.#fetched.get(l.digest);
    if (!p) {
      p = fetchLayer(r.from, l, store).catch((err) => {
        this.#fetched.delete(l.digest);
        throw new PolyarchError(
          'CACHE_IMPORT',
          `cache ${describe(r.from)}: fetching ${l.digest}: ${errorMessage(err)}`,
          {
            cause: err,
          },
        );
      });
      this.#fetched.set(l.digest, p);
    }
    return p;
  }

  /** Checks (once) that the fetched layer uncompresses to its record's diff id. */
  verifyDiffId(r: ImportedRecord, store: ContentStore): Promise<void> {
    const l = r.layer;
    if (!l) return Promise.resolve();
    let p = this.#verified.get(l.digest);
    if (!p) {
      p = (async () => {
        const { openLayer } = await import('../../layer/index.js');
        const { stream } = await openLayer(store.openRead(l.digest));
        const h = createHash('sha256');
        for await (const c of stream) h.update(c as Buffer);
        const got = `sha256:${h.digest('hex')}`;
        if (got !== l.diffId)
          throw new PolyarchError(
            'DIGEST_MISMATCH',
            `cache ${describe(r.from)}: layer ${l.digest} uncompresses to ${got}, not ${l.diffId} as its record says`,
          );
      })();
      this.#verified.set(l.digest, p);
    }
    return p;
  }

  /** The import record whose layer is this blob, to fetch it from there. */
  byLayer(digest: string): ImportedRecord | undefined {
    for (const r of this.#records.values()) if (r.layer?.digest === digest) return r;
    return undefined;
  }

  async close(): Promise<void> {
    await this.#ready;
    await this.#client?.close();
  }
}

export interface ExportCacheContext {
  store: ContentStore;
  snapshotter: Snapshotter;
  stateRoot: string;
  env?: NodeJS.ProcessEnv;
  warn?: (m: string) => void;
  sourceDateEpoch?: number;
  /** To fetch layers that came from another cache and the destination lacks. */
  imported?: ImportedCache;
}

function selectRecords(info: BuildCacheInfo, mode: 'min' | 'max'): StepRecord[] {
  if (mode === 'max') return info.records;
  const out = new Map<string, StepRecord>();
  for (const f of info.finals) for (const r of finalChain(info, f)) out.set(r.key, r);
  return [...out.values()];
}

/** Exports the build's cache to one `--cache-to` destination; see the module header. */
export async function exportCacheTo(
  info: BuildCacheInfo,
  spec: CacheSpec,
  ctx: ExportCacheContext,
): Promise<void> {
  if (spec.type === 'inline') return;
  const memo = await LayerMemo.open(ctx.stateRoot);
  const chosen = selectRecords(info, spec.mode);
  const records: CacheRecordV1[] = [];
  const blobs: Descriptor[] = [];
  for (const r of chosen) {
    let layer: CacheLayer | null = null;
    if (r.layer?.kind === 'snapshot') {
      const p = await packSnapshotLayer({
        store: ctx.store,
        snapshotter: ctx.snapshotter,
        memo,
        key: r.layer.key,
        compression: spec.compression as Compression,
        ...(spec.compressionLevel !== undefined ? { level: spec.compressionLevel } : {}),
        ...(ctx.sourceDateEpoch !== undefined ? { sourceDateEpoch: ctx.sourceDateEpoch } : {}),
        oci: spec.ociMediaTypes,
      });
      layer = { ...p.descriptor, diffId: p.diffId } as CacheLayer;
      blobs.push(p.descriptor);
    } else if (r.layer?.kind === 'blob') {
      const d = r.layer.descriptor;
      layer = { digest: d.digest, size: d.size, mediaType: d.mediaType, diffId: r.layer.diffId };
      blobs.push({ mediaType: d.mediaType, digest: d.digest, size: d.size });
    }
    records.push({
      key: r.key,
      parent: r.parent,
      ...(r.platform ? { platform: r.platform } : {}),
      ...(r.created ? { created: r.created } : {}),
      layer,
    });
  }
  let client: RegistryClient | undefined;
  try {
    if (spec.type === 'registry') client = await openClient(ctx.env ?? process.env, ctx.warn);
    const loc = locationOf(spec, () => client!);
    for (let attempt = 0; ; attempt++) {
      // What the ref names now: compared again right before the write (below).
      const seen = loc.kind === 'registry' ? (await loc.client.headManifest(loc.ref))?.digest : undefined;
      const existing = await readCache(loc).catch((err) => {
        // The registry not answering, or refusing us, is an export failure; a cache there that
        // does not parse is replaced.
        if (err instanceof RegistryError) throw err;
        ctx.warn?.(
          `cache ${describe(loc)}: the existing cache is not readable, replacing it: ${errorMessage(err).split('\n')[0]}`,
        );
        return undefined;
      });
      const merged = new Map<string, CacheRecordV1>();
      for (const r of existing?.records ?? []) merged.set(r.key, r);
      for (const r of records) merged.set(r.key, r);
      const present = new Set((existing?.layers ?? []).map((l) => l.digest));
      // Blobs this build has from elsewhere (another cache) and the destination lacks.
      for (const b of blobs)
        if (!present.has(b.digest) && !(await ctx.store.has(b.digest))) {
          const from = ctx.imported?.byLayer(b.digest);
          if (
            from &&
            !(
              loc.kind === 'registry' &&
              from.from.kind === 'registry' &&
              describe(from.from) === describe(loc)
            )
          )
            await ctx.imported!.fetch(from, ctx.store);
          else if (from) present.add(b.digest);
        }
      const write = {
        records: [...merged.values()],
        blobs,
        present,
        imageManifest: spec.imageManifest,
        oci: spec.ociMediaTypes,
        store: ctx.store,
      };
      if (loc.kind === 'local') {
        await writeLocal(loc.dir, write);
        return;
      }
      // Another writer (a CI job of another platform) may have written the ref since it was
      // read: then merge again with what it wrote. Checked once every blob is up, right before
      // the tag moves (registries have no compare-and-swap: a window of one request is left).
      const unchanged = async () =>
        (await loc.client.headManifest(loc.ref))?.digest === seen || attempt >= MAX_EXPORT_ATTEMPTS;
      if (!(await writeRegistry(loc, write, unchanged))) continue;
      // …and read it back, in case one wrote between that check and this write; then once more
      // after the other writers' windows have passed (a writer that read before this write may
      // still replace it), merging again while this build's records are missing.
      if (attempt >= MAX_EXPORT_ATTEMPTS) return;
      if (!(await holdsRecords(loc, records))) continue;
      await new Promise((r) => setTimeout(r, SETTLE_MS + Math.floor(Math.random() * SETTLE_MS)));
      if (await holdsRecords(loc, records)) return;
    }
  } finally {
    await client?.close();
  }
}

/** Writes of one export into a registry ref before it gives up merging with other writers. */
const MAX_EXPORT_ATTEMPTS = 8;
/** How long another writer's read-merge-write may take: a written cache is checked again after 1–2×. */
const SETTLE_MS = 750;

/** Whether the cache at `loc` holds every one of `records` (by key). */
async function holdsRecords(
  loc: Parameters<typeof readCache>[0],
  records: readonly CacheRecordV1[],
): Promise<boolean> {
  const back = await readCache(loc).catch(() => undefined);
  const have = new Set(back?.records.map((r) => r.key));
  return records.every((r) => have.has(r.key));
}

/** Exports to every destination; ignore-error=true ones only warn. */
export async function exportCache(
  info: BuildCacheInfo,
  specs: readonly CacheSpec[],
  ctx: ExportCacheContext,
): Promise<void> {
  for (const s of specs) {
    try {
      await exportCacheTo(info, s, ctx);
    } catch (err) {
      const msg = `exporting cache to ${s.raw}: ${errorMessage(err).split('\n')[0]}`;
      if (s.ignoreError) ctx.warn?.(msg);
      else throw new PolyarchError('CACHE_EXPORT', msg, { cause: err });
    }
  }
}
