/** Small file-system helpers shared by every layer. */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';

/** True if something (file, dir, dangling symlink excluded) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}
