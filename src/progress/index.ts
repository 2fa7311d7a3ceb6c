/**
 * Progress as data (no drawing here; renderers live in src/cli/ui): BuildKit-shaped event
 * types (`events.ts`), the producer helper `ProgressWriter` (`writer.ts`), fan-in/fan-out
 * (`mux.ts`) and a recorder for tests (`recorder.ts`).
 *
 *   import { ProgressWriter, type ProgressSink } from '../progress/index.js';
 */
export * from './events.js';
export * from './lazy.js';
export * from './mux.js';
export * from './recorder.js';
export * from './writer.js';
