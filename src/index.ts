/**
 * polyarch as a library: the same operations the CLI runs, without the CLI.
 *
 *   import { build, exportBuild, parseOutputs, parsePlatformList, ContentStore, storeDir } from 'polyarch';
 *   const dockerfile = await readFile('examples/hello/Dockerfile', 'utf8');
 *   const result = await build({ dockerfile, contextDir: 'examples/hello',
 *                                platforms: parsePlatformList('linux/amd64,linux/arm64') });
 *   // then exportBuild(result, parseOutputs({ tags: ['hello'] }), { store, snapshotter, stateRoot })
 *
 * Chosen by hand: each module's own index.ts has more (see STYLE.md's layout); what is here
 * is what a program that builds, ships, inspects and runs images needs.
 */

// Platforms: parse, normalise, match (containerd's rules), what this machine can execute.
export {
  bestMatch,
  canExecute,
  executablePlatforms,
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  only,
  type Platform,
  parsePlatform,
  parsePlatformList,
} from './platform/index.js';
// OCI vocabulary and references.
export {
  type Descriptor,
  type Digest,
  formatReference,
  type ImageConfig,
  type Index,
  type Manifest,
  MediaType,
  parseDigest,
  parseReference,
  type Reference,
} from './oci/index.js';
// The local store (an OCI image layout) and the state root.
export { ContentStore, stateRoot, storeDir } from './content/index.js';
// Registries and image tools.
export {
  createIndex,
  importImage,
  inspectImage,
  loadArchive,
  manifestInspect,
  pull,
  push,
  saveArchive,
} from './image/index.js';
// The Dockerfile frontend.
export { parseDockerfile, planBuild, type Plan } from './dockerfile/index.js';
// Builds and their outputs.
export { type BuildOptions, type BuildResult, BuildStepError, build } from './build/index.js';
export { exportBuild, type OutputSpec, parseOutputs, resolveOutputs } from './build/export/index.js';
// Running images and QEMU emulators.
export { runImage } from './exec/container.js';
export { binfmtStatus, installEmulators, uninstallEmulators } from './exec/binfmt.js';
// One build request on any builder (the local engine, BuildKit nodes, or both).
export type { BuildRequest, BuildResponse } from './builder/request.js';
export { runBuild } from './builder/run.js';
// Builder instances.
export { createBuilder, listBuilders, removeBuilder, resolveBuilder, useBuilder } from './builder/index.js';
// Builds on BuildKit nodes (the remote driver) and the BuildKit client itself.
export { type RemoteBuildRequest, type RemoteBuildResult, remoteBuild } from './builder/remote/build.js';
export { BuildkitClient, BuildSession } from './buildkit/index.js';
// Compose projects.
export { buildServices, loadProject } from './compose/index.js';
// Progress as data.
export { type ProgressSink, ProgressWriter, type SolveStatus } from './progress/index.js';
export { isPolyarchError, PolyarchError, UsageError } from './util/errors.js';
export { VERSION } from './version.js';
