/** Small file-system helpers shared by every layer. */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
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

/** Replaces `path` with `data` atomically: temp file in the same directory, fsync, rename, fsync dir. */
export async function writeFileAtomic(dir: string, name: string, data: string): Promise<void> {
  const tmp = join(dir, `.tmp-${name}-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(dir, name));
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new PolyarchError('IO', `writing ${join(dir, name)}: ${errorMessage(err)}`, { cause: err });
  }
  await fsyncDir(dir);
}
