/**
 * An http(s) URL as a build context, as buildx takes it: a tar archive (plain, gzip or zstd)
 * unpacked as the context, or a single Dockerfile with an empty context.
 *
 *   const { dir, dockerfile } = await fetchHttpContext('https://h/ctx.tar.gz', { tmpRoot, signal });
 *
 * The download is streamed to a temporary file (bounded by `maxBytes`, 1 GiB by default) and
 * unpacked with polyarch's own tar codec, never as root-owned files and never outside `dir`.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { applyLayerBlob } from '../../layer/index.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import { maskURL } from './url.js';

export interface HttpFetchOptions {
  /** Where the temporary download and context directory are made. */
  tmpRoot: string;
  /** Largest download accepted. Default 1 GiB. */
  maxBytes?: number;
  /** No response headers within this long fails the fetch. Default 30 s. */
  headersTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface HttpContext {
  /** The context directory (removed by `cleanup`). */
  dir: string;
  /** Set when the URL held a Dockerfile rather than an archive: its text. */
  dockerfile?: string;
  cleanup: () => Promise<void>;
}

const DEFAULT_MAX = 1 << 30;

function fail(url: string, why: string, cause?: unknown): PolyarchError {
  return new PolyarchError('NOT_FOUND', `unable to prepare context: fetching ${maskURL(url)}: ${why}`, {
    ...(cause ? { cause } : {}),
  });
}

/** Kind of the first bytes: an archive polyarch unpacks, or text (a Dockerfile). */
function sniff(head: Buffer): 'archive' | 'text' | 'unknown' {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'archive'; // gzip
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'archive'; // zstd
  if (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'archive';
  if (!head.subarray(0, 4096).includes(0)) return 'text';
  return 'unknown';
}

export async function fetchHttpContext(url: string, opts: HttpFetchOptions): Promise<HttpContext> {
  const work = await mkdtemp(join(opts.tmpRoot, 'polyarch-url-context-'));
  const cleanup = () => rm(work, { recursive: true, force: true });
  try {
    const file = join(work, 'download');
    const max = opts.maxBytes ?? DEFAULT_MAX;
    const timeout = AbortSignal.timeout(opts.headersTimeoutMs ?? 30_000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await fetch(url, { redirect: 'follow', signal });
    } catch (err) {
      if (opts.signal?.aborted) throw new PolyarchError('ABORTED', 'build canceled');
      const cause = (err as { cause?: unknown }).cause;
      throw fail(url, timeout.aborted ? 'no response within 30s' : errorMessage(cause ?? err), err);
    }
    if (!res.ok || !res.body) throw fail(url, `HTTP ${res.status} ${res.statusText}`.trim());
    let received = 0;
    const limit = new Transform({
      transform(chunk: Buffer, _enc, done) {
        received += chunk.length;
        if (received > max) done(fail(url, `larger than ${max} bytes`));
        else done(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(res.body as never), limit, createWriteStream(file));
    } catch (err) {
      if (err instanceof PolyarchError) throw err;
      throw fail(url, errorMessage(err), err);
    }
    const fh = await open(file, 'r');
    const head = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    await fh.close();
    const kind = sniff(head.subarray(0, bytesRead));
    const dir = join(work, 'context');
    if (kind === 'text') {
      // buildx: a URL to a plain file is the Dockerfile, with an empty context.
      await mkdir(dir);
      const text = await readFile(file, 'utf8');
      await writeFile(join(dir, 'Dockerfile'), text);
      return { dir, dockerfile: text, cleanup };
    }
    if (kind === 'unknown') throw fail(url, 'not a tar archive (plain, gzip or zstd) nor a Dockerfile');
    try {
      await mkdir(dir);
      await applyLayerBlob(createReadStream(file), dir, { sameOwner: false });
    } catch (err) {
      throw fail(url, `unpacking the archive: ${errorMessage(err)}`, err);
    }
    return { dir, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
