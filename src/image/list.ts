/**
 * What `images` shows beyond the store's rows (content/images.ts): docker's sizes, creation
 * times, `--filter`, and the `--tree` view's grouping. Typed data, no printing.
 *
 *   const sizes = await LayerSizes.open(join(stateRoot(env), 'layer-sizes.json'));
 *   const views = await imageViews(store, await listImages(store, { all: true }), sizes);
 *   const shown = filterImages(views, parseImageFilters(['reference=busy*', 'dangling=false']));
 *   const tree = await imageTree(store, shown);
 *
 * Sizes: `unpacked` is what docker's SIZE shows for an image (the classic store's number,
 * and what `docker save` writes): the sum of the sizes of the entries in its layer tars,
 * read once per layer digest and kept in a small JSON cache beside the store (a 1 GiB layer
 * takes seconds to read; every later `images` takes nothing). `content` is the compressed
 * size of its config and layers (docker's CONTENT SIZE in `--tree`).
 */
import { readFile } from 'node:fs/promises';
import type { ContentStore, ImageRow } from '../content/index.js';
import { readTar } from '../layer/tar.js';
import { openLayer } from '../layer/compress.js';
import { type Descriptor, type Digest, isIndexType, parseImageConfig } from '../oci/index.js';
import { formatPlatform, parsePlatform } from '../platform/index.js';
import { errorMessage, UsageError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { descriptorPlatform, isAttestation } from './remote.js';

/** Unpacked layer sizes by layer digest, cached in a JSON file (a cache: losing it costs time only). */
export class LayerSizes {
  readonly #file: string | undefined;
  readonly #sizes: Map<string, number>;
  #dirty = false;
  /** Layers that could not be read (corrupt or not a tar), with why. */
  readonly problems: string[] = [];

  private constructor(file: string | undefined, sizes: Map<string, number>) {
    this.#file = file;
    this.#sizes = sizes;
  }

  /** Loads the cache at `file` (missing or unreadable: empty); no file keeps it in memory only. */
  static async open(file?: string): Promise<LayerSizes> {
    const sizes = new Map<string, number>();
    if (file !== undefined) {
      try {
        const parsed = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
        for (const [k, v] of Object.entries(parsed))
          if (/^sha256:[0-9a-f]{64}$/.test(k) && Number.isSafeInteger(v) && (v as number) >= 0)
            sizes.set(k, v as number);
      } catch {
        // no cache yet, or a damaged one: sizes are read again
      }
    }
    return new LayerSizes(file, sizes);
  }

  /**
   * The unpacked size of a layer: the sum of its tar entries' sizes. Undefined when the blob
   * is not in the store; a layer that cannot be read counts its compressed size and is
   * noted in `problems`.
   */
  async unpacked(store: ContentStore, layer: Descriptor): Promise<number | undefined> {
    const known = this.#sizes.get(layer.digest);
    if (known !== undefined) return known;
    if (!(await store.has(layer.digest))) return undefined;
    try {
      const { stream } = await openLayer(store.openRead(layer.digest));
      let n = 0;
      for await (const entry of readTar(stream)) n += entry.header.size;
      this.#sizes.set(layer.digest, n);
      this.#dirty = true;
      return n;
    } catch (err) {
      this.problems.push(`layer ${layer.digest}: ${errorMessage(err)}`);
      return layer.size;
    }
  }

  /** Writes the cache back if it learned something; a failure to write is not an error. */
  async save(): Promise<void> {
    if (!this.#dirty || this.#file === undefined) return;
    const obj = Object.fromEntries([...this.#sizes].sort(([a], [b]) => (a < b ? -1 : 1)));
    await writeFileAtomic(this.#file, `${JSON.stringify(obj)}\n`, { createParents: true }).catch(() => {});
    this.#dirty = false;
  }
}

export interface ImageView extends ImageRow {
  /** Unpacked size of the layers present (docker's SIZE). */
  unpacked: number;
  /** The config's `created` (RFC 3339), when it has one. */
  created: string | undefined;
}

/** Adds unpacked sizes and creation times to the store's rows. */
export async function imageViews(
  store: ContentStore,
  rows: ImageRow[],
  sizes: LayerSizes,
): Promise<ImageView[]> {
  const created = new Map<string, string | undefined>();
  const out: ImageView[] = [];
  for (const r of rows) {
    let unpacked = 0;
    for (const l of r.layers ?? []) unpacked += (await sizes.unpacked(store, l)) ?? 0;
    let when: string | undefined;
    if (r.config) {
      if (!created.has(r.config.digest)) {
        let c: string | undefined;
        try {
          if (await store.has(r.config.digest))
            c = parseImageConfig(await store.readBlob(r.config.digest), `config ${r.config.digest}`).created;
        } catch {
          c = undefined; // an unreadable config has no time; `images` still lists it
        }
        created.set(r.config.digest, c);
      }
      when = created.get(r.config.digest);
    }
    out.push({ ...r, unpacked, created: when });
  }
  return out;
}

export interface ImageFilters {
  /** `reference=PATTERN` (any may match): path.Match globs on the familiar name, with or without tag. */
  reference: string[];
  /** `dangling=true|false`: only untagged images, or none. */
  dangling: boolean | undefined;
  /** `platform=os/arch[/variant]` (any may match; polyarch's own filter). */
  platform: string[];
}

/** Parses `--filter KEY=VALUE[,KEY=VALUE]` flags; an unknown key or bad value is bad usage. */
export function parseImageFilters(flags: readonly string[]): ImageFilters {
  const f: ImageFilters = { reference: [], dangling: undefined, platform: [] };
  // `reference=a*,dangling=false` is two filters; `platform=linux/amd64,linux/arm64` two platforms.
  for (const flag of flags.flatMap((x) => x.split(/,(?=\s*[A-Za-z]+=)/))) {
    const eq = flag.indexOf('=');
    if (eq <= 0)
      throw new UsageError(`invalid --filter "${flag}": bad format of filter (expected name=value)`);
    const key = flag.slice(0, eq).trim().toLowerCase();
    const value = flag.slice(eq + 1).trim();
    if (key === 'reference') f.reference.push(value);
    else if (key === 'dangling') {
      const v = value.toLowerCase();
      if (v === 'true' || v === '1') f.dangling = true;
      else if (v === 'false' || v === '0') f.dangling = false;
      else throw new UsageError(`invalid --filter "${flag}": dangling takes true or false`);
    } else if (key === 'platform') {
      try {
        for (const p of value.split(',').filter(Boolean))
          f.platform.push(formatPlatform(parsePlatform(p.trim(), { normalize: true })));
      } catch (err) {
        throw new UsageError(`invalid --filter "${flag}": ${errorMessage(err)}`);
      }
    } else
      throw new UsageError(
        `invalid --filter "${flag}": unknown filter "${key}" (use reference, dangling or platform)`,
      );
  }
  return f;
}

/** Go's path.Match as a RegExp: `*` and `?` stay within a path element, `[…]` classes. */
export function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) re += `\\${pattern[++i]}`;
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0)
        throw new UsageError(`invalid --filter reference pattern "${pattern}": syntax error in pattern`);
      const body = pattern.slice(i + 1, end).replace(/^\^/, '!');
      re += `[${body.startsWith('!') ? `^${body.slice(1)}` : body}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export const isDangling = (r: ImageRow): boolean => r.repository === '<none>' && r.tag === '<none>';

/** Applies `filters` (docker's semantics: reference matches `repo:tag` or `repo`). */
export function filterImages<T extends ImageRow>(rows: T[], f: ImageFilters): T[] {
  const refs = f.reference.map(globRegExp);
  const platforms = f.platform.map((p) => parsePlatform(p, { normalize: true }));
  return rows.filter((r) => {
    if (f.dangling !== undefined && isDangling(r) !== f.dangling) return false;
    if (refs.length > 0) {
      if (isDangling(r)) return false;
      const full = `${r.repository}:${r.tag}`;
      if (!refs.some((re) => re.test(full) || re.test(r.repository))) return false;
    }
    if (platforms.length > 0) {
      if (r.platform === '-') return false;
      const p = parsePlatform(r.platform, { normalize: true });
      const ok = platforms.some(
        (w) => w.os === p.os && w.architecture === p.architecture && (!w.variant || w.variant === p.variant),
      );
      if (!ok) return false;
    }
    return true;
  });
}

export interface TreeChild {
  platform: string;
  /** The platform manifest's digest. */
  id: Digest;
  /** Whether its manifest is in the store (docker shows the others too, dimmed). */
  available: boolean;
  unpacked: number;
  content: number;
}

export interface TreeImage {
  /** `repo:tag` names, sorted; empty for an untagged image. */
  names: string[];
  /** The index's (or single manifest's) digest. */
  id: Digest;
  unpacked: number;
  content: number;
  children: TreeChild[];
}

/**
 * docker 28's `images --tree` grouping: one entry per image (all its names together), its
 * platforms beneath — every platform of an index, present or not — sorted by first name,
 * untagged last.
 */
export async function imageTree(store: ContentStore, views: ImageView[]): Promise<TreeImage[]> {
  const byId = new Map<Digest, ImageView[]>();
  for (const v of views) byId.set(v.digest, [...(byId.get(v.digest) ?? []), v]);
  const descriptors = new Map<Digest, Descriptor>();
  for (const r of await store.refs()) descriptors.set(r.descriptor.digest, r.descriptor);
  for (const d of await store.untagged()) descriptors.set(d.digest, d);
  const out: TreeImage[] = [];
  for (const [id, rows] of byId) {
    // RepoTags only: an image named by digest alone shows as <untagged>, as in docker.
    const names = [
      ...new Set(rows.filter((r) => r.tag !== '<none>').map((r) => `${r.repository}:${r.tag}`)),
    ].sort();
    const perManifest = new Map(rows.map((r) => [r.manifestDigest, r]));
    const desc = descriptors.get(id);
    const children: TreeChild[] = [];
    const entries =
      desc && isIndexType(desc.mediaType) && (await store.has(desc.digest))
        ? (await store.children(desc)).filter((c) => !isAttestation(c))
        : undefined;
    if (entries)
      for (const c of entries) {
        const r = perManifest.get(c.digest);
        const p = descriptorPlatform(c);
        children.push({
          platform: r?.platform ?? (p ? formatPlatform(p) : '-'),
          id: c.digest,
          available: r !== undefined,
          unpacked: r?.unpacked ?? 0,
          content: r?.size ?? 0,
        });
      }
    else
      for (const r of rows)
        if (r.manifestDigest)
          children.push({
            platform: r.platform,
            id: r.manifestDigest,
            available: true,
            unpacked: r.unpacked,
            content: r.size,
          });
    out.push({
      names,
      id,
      unpacked: children.reduce((n, c) => n + c.unpacked, 0),
      content: children.reduce((n, c) => n + c.content, 0),
      children,
    });
  }
  const first = (t: TreeImage) => t.names[0] ?? '';
  return out.sort((a, b) => {
    if ((first(a) === '') !== (first(b) === '')) return first(a) === '' ? 1 : -1;
    return first(a) < first(b) ? -1 : first(a) > first(b) ? 1 : 0;
  });
}
