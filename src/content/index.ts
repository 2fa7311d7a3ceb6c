// STAND-IN: replaced by the content branch
/**
 * A minimal stand-in for src/content (see /work/wt/CONTENT_API.md), implementing only what
 * src/image uses, so pull/push can be tested before the real store lands. Dropped at merge.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { type Descriptor, type Digest, encodeJson, REF_NAME_ANNOTATION } from '../oci/index.js';
import { PolyarchError } from '../util/errors.js';

export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.POLYARCH_ROOT) return env.POLYARCH_ROOT;
  if (process.getuid?.() === 0) return '/var/lib/polyarch';
  return join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'polyarch');
}
export function storeDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(stateRoot(env), 'store');
}

export interface IngestExpect {
  digest?: Digest;
  size?: number;
}

export interface BlobWriter {
  readonly offset: number;
  write(chunk: Uint8Array): Promise<void>;
  commit(): Promise<{ digest: Digest; size: number }>;
  abort(): Promise<void>;
}

export class ContentStore {
  private constructor(readonly dir: string) {}
  static async open(dir: string): Promise<ContentStore> {
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await mkdir(join(dir, 'ingest'), { recursive: true });
    await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}', { flag: 'a' });
    try {
      await stat(join(dir, 'index.json'));
    } catch {
      await writeFile(join(dir, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
    }
    return new ContentStore(dir);
  }
  blobPath(d: Digest): string {
    const [alg, hex] = d.split(':');
    return join(this.dir, 'blobs', alg!, hex!);
  }
  async has(d: Digest): Promise<boolean> {
    return (await this.size(d)) !== undefined;
  }
  async size(d: Digest): Promise<number | undefined> {
    try {
      return (await stat(this.blobPath(d))).size;
    } catch {
      return undefined;
    }
  }
  async readBlob(d: Digest): Promise<Buffer> {
    try {
      return await readFile(this.blobPath(d));
    } catch {
      throw new PolyarchError('NOT_FOUND', `blob ${d} not found in the store`);
    }
  }
  openRead(d: Digest, start = 0): Readable {
    return createReadStream(this.blobPath(d), { start });
  }
  async writer(expect: IngestExpect = {}): Promise<BlobWriter> {
    const tmp = join(this.dir, 'ingest', randomBytes(8).toString('hex'));
    const fh = await open(tmp, 'w');
    const hash = createHash('sha256');
    let offset = 0;
    const store = this;
    return {
      get offset() {
        return offset;
      },
      async write(chunk) {
        await fh.write(chunk);
        hash.update(chunk);
        offset += chunk.length;
      },
      async commit() {
        await fh.sync();
        await fh.close();
        const digest = `sha256:${hash.digest('hex')}` as Digest;
        if (expect.digest && expect.digest !== digest) {
          await unlink(tmp);
          throw new PolyarchError(
            'DIGEST_MISMATCH',
            `content digest ${digest} does not match the expected ${expect.digest}`,
          );
        }
        if (expect.size !== undefined && expect.size !== offset) {
          await unlink(tmp);
          throw new PolyarchError(
            'SIZE_MISMATCH',
            `content size ${offset} does not match the expected ${expect.size}`,
          );
        }
        await rename(tmp, store.blobPath(digest));
        return { digest, size: offset };
      },
      async abort() {
        await fh.close().catch(() => {});
        await rm(tmp, { force: true });
      },
    };
  }
  async writeBlob(data: Uint8Array, expect?: IngestExpect): Promise<{ digest: Digest; size: number }> {
    const w = await this.writer(expect);
    await w.write(data);
    return w.commit();
  }
  async writeJson(value: unknown, mediaType: string): Promise<Descriptor> {
    const r = await this.writeBlob(encodeJson(value));
    return { mediaType, ...r };
  }
  async #index(): Promise<{ schemaVersion: 2; manifests: Descriptor[] }> {
    return JSON.parse(await readFile(join(this.dir, 'index.json'), 'utf8'));
  }
  async resolve(name: string): Promise<Descriptor | undefined> {
    return (await this.#index()).manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === name);
  }
  async tag(name: string, desc: Descriptor): Promise<void> {
    const idx = await this.#index();
    idx.manifests = idx.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== name);
    idx.manifests.push({
      ...desc,
      annotations: { ...desc.annotations, [REF_NAME_ANNOTATION]: name, 'io.containerd.image.name': name },
    });
    await writeFile(join(this.dir, 'index.json'), JSON.stringify(idx));
  }
  async refs(): Promise<Array<{ name: string; descriptor: Descriptor }>> {
    return (await this.#index()).manifests.map((m) => ({
      name: m.annotations?.[REF_NAME_ANNOTATION] ?? '',
      descriptor: m,
    }));
  }
}
