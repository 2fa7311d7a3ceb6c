/**
 * The local content store: an OCI image layout on disk holding every blob polyarch keeps,
 * plus named references in its index.json. See store.ts for the guarantees, images.ts for
 * the views `images`, `du` and `rmi` print.
 */
export * from './images.js';
export * from './paths.js';
export * from './refname.js';
export * from './store.js';
export * from './leases.js';
