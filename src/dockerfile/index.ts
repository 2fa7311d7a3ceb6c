/**
 * The Dockerfile frontend: text → AST (parser.ts) → typed instructions (instructions.ts) →
 * per-platform Plan (plan.ts) with build checks (checks.ts). Word expansion is shell.ts;
 * build-context filtering is dockerignore.ts. Start with `planBuild`.
 */
export * from './checks.js';
export * from './config.js';
export * from './dockerignore.js';
export * from './errors.js';
export * from './instructions.js';
export * from './parser.js';
export * from './plan.js';
export { type LexOptions, processWord, processWords, ShellError, type WordResult } from './shell.js';
