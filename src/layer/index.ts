/** Layers: tar codec, deterministic packing, overlay diffs, safe apply, parallel gzip. */
export * from './apply.js';
export * from './compress.js';
export * from './diff.js';
export * from './pack.js';
export * from './tar.js';
export * from './xattr.js';
