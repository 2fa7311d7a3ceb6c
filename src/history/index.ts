/**
 * Build history (issue 18): every build recorded in `<stateRoot>/history/` — its request,
 * platforms, steps (start/end/cached/error per platform and node), capped logs and outputs —
 * for `history ls|inspect|logs|rm|export|open` and `build --report`.
 *
 *   import { startRecord, HistoryStore, renderReport } from '../history/index.js';
 */
export * from './bundle.js';
export * from './record.js';
export * from './replay.js';
export * from './report.js';
export * from './steps.js';
export * from './store.js';
export * from './types.js';
