/**
 * Builder instances (buildx create/use/ls/inspect/rm): the model (`types.ts`), the store
 * under `<stateRoot>/builders` (`store.ts`), drivers (`driver.ts`: local, remote, ssh declared),
 * operations (`builders.ts`), buildx's text layouts (`format.ts`) and the remote (BuildKit)
 * driver with its builds (`remote/`).
 *
 *   import { resolveBuilder, builderPlatforms } from '../builder/index.js';
 *   const b = await resolveBuilder(flags.builder);
 *   const platforms = await builderPlatforms(b);
 */
export * from './builders.js';
export * from './driver.js';
export * from './format.js';
export * from './names.js';
export * from './store.js';
export * from './types.js';
export * from './remote/index.js';
