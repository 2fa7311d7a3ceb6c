/**
 * Platforms: parse/format/normalise (`platform.ts`), match and order (`match.ts`), this host
 * (`host.ts`), and what it can execute natively or under QEMU (`emulators.ts`). Other layers
 * import from here: `import { parsePlatform, only, bestMatch } from '../platform/index.js'`.
 */
export * from './host.js';
export * from './match.js';
export * from './platform.js';
export * from './elf.js';
export * from './emulators.js';
