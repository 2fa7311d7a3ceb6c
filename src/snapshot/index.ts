/** Snapshots: layer filesystems stacked with overlayfs, keyed by chain id. See overlay.ts. */
export * from './overlay.js';
export * from './unpack.js';
