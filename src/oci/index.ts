/** OCI vocabulary: digests, media types, document types and their validation. */
export * from './digest.js';
export * from './mediatypes.js';
export * from './types.js';
export * from './validate.js';
export * from './reference.js';
export * from './nested.js';
