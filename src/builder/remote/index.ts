/**
 * The `remote` driver: buildkitd nodes (driver.ts), which node builds which platform
 * (schedule.ts), BuildKit progress as polyarch's (progress.ts) and the build itself (build.ts).
 */
// build.ts is imported on its own (it loads the image and content modules).
export type { RemoteBuildRequest, RemoteBuildResult } from './build.js';
export * from './driver.js';
export * from './progress.js';
export * from './schedule.js';
