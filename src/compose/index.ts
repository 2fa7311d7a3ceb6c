/**
 * `compose build`: docker compose files → multi-platform images.
 *
 *   const project = await loadProject({ cwd, files, env, warn });
 *   const builds = planBuilds(project, { services, buildArgs, noCache, pull, warn });
 *   const results = await buildServices(builds, { push, progress, env, signal, warn });
 *
 * interpolate.ts: `${VAR:-x}` and `.env`; schema.ts: what is validated; project.ts: loading
 * and merging; plan.ts: service → build options; run.ts: building and exporting.
 */
export * from './interpolate.js';
export * from './plan.js';
export * from './project.js';
export * from './run.js';
export * from './up.js';
export { BUILD_KEYS, composeSchema } from './schema.js';
