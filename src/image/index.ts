/**
 * Moving images between registries and the local store, and looking at them remotely.
 *
 *   await pull('127.0.0.1:5000/app:1', { store, platforms: ['linux/arm64'] });
 *   await push('app:1', { store, target: '127.0.0.1:5000/app:1' });
 *   await inspectImage('127.0.0.1:5000/app:1');                       // buildx's text
 *   await createIndex({ sources: [...], tags: ['127.0.0.1:5000/app:multi'] });
 */
export * from './archive.js';
export * from './changes.js';
export * from './create.js';
export * from './import.js';
export * from './inspect.js';
export * from './list.js';
export * from './pull.js';
export * from './push.js';
export { DEFAULT_CONCURRENCY, isAttestation, openClient } from './remote.js';
