/**
 * `--metadata-file` and `--iidfile`: written atomically once a build's outputs are, on any
 * driver (the local exporters' response or a BuildKit build's).
 */
import { resolve } from 'node:path';
import { PolyarchError } from '../../util/errors.js';
import { writeFileAtomic } from '../../util/fs.js';

/** Writes `--metadata-file` (buildx JSON) and `--iidfile` (root digest) when asked. */
export async function writeBuildFiles(
  resp: { digest?: string; metadata: Record<string, unknown> },
  files: { metadataFile?: string; iidFile?: string },
): Promise<void> {
  if (files.metadataFile)
    await writeFileAtomic(resolve(files.metadataFile), `${JSON.stringify(resp.metadata, null, 2)}\n`, {
      createParents: true,
    });
  if (files.iidFile) {
    if (!resp.digest)
      throw new PolyarchError('INVALID_ARGUMENT', `--iidfile ${files.iidFile}: the build exported no image`);
    await writeFileAtomic(resolve(files.iidFile), resp.digest, { createParents: true });
  }
}
