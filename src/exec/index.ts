/** Running commands in image root filesystems with runc (natively or under QEMU): spec + runner. */
export * from './runc.js';
export * from './spec.js';
