/**
 * The build engine. `build(opts)` turns a Dockerfile and a context into a `BuildResult` (one
 * `PlatformResult` per target platform: layers, config, history) for the exporters.
 * See build.ts for the graph and cache, solver.ts for the generic solver, result.ts for the
 * contract with the exporters.
 */
export { BuildStepError, type BuildOptions, type BuildOutput, build, type SecretSource } from './build.js';
export {
  type CacheRecord,
  type CacheRecordType,
  holdBuildLease,
  listCacheRecords,
  markUsed,
  type PruneOptions,
  type PruneResult,
  parseDuration,
  parseSize,
  pruneCache,
  selectPrunable,
} from './cache.js';
export { BuildContext } from './context.js';
export { type ResolvedImage, resolveImage, unpackImage } from './image.js';
export {
  contextName,
  type NamedContextSource,
  type NamedContextSpec,
  parseBuildContext,
} from './named-context.js';
export type { BuildResult, PlatformResult, ResultLayer } from './result.js';
export { Solver, type SolverVertex, type VertexContext } from './solver.js';
