/** Small file-system helpers shared by every layer. */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errorMessage, PolyarchError } from './errors.js';

/** True if something (file, dir, dangling symlink excluded) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Makes a rename or create in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A temp name beside `dest` (same file system, so rename is atomic): `.tmp-<name>-<pid>-<random>`. */
export function tempPath(dest: string): string {
  return join(dirname(dest), `.tmp-${basename(dest)}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Replaces `dest` with `data` atomically: a temp file beside it, fsync, rename, fsync of the
 * directory. A failure (or a kill) never leaves a partial file under `dest`. Returns the size.
 */
export async function writeFileAtomic(
  dest: string,
  data: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: { mode?: number; createParents?: boolean } = {},
): Promise<number> {
  if (opts.createParents) await mkdir(dirname(dest), { recursive: true });
  const tmp = tempPath(dest);
  let size = 0;
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      if (typeof data === 'string' || data instanceof Uint8Array) {
        const buf = typeof data === 'string' ? Buffer.from(data) : data;
        await fh.writeFile(buf);
        size = buf.length;
      } else {
        for await (const chunk of data) {
          await fh.write(chunk);
          size += chunk.length;
        }
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, dest);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new PolyarchError('IO', `writing ${dest}: ${errorMessage(err)}`, { cause: err });
  }
  await fsyncDir(dirname(dest));
  return size;
}
