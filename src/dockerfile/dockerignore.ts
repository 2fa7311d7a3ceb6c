/**
 * `.dockerignore` for the build context, through @balena/dockerignore (Docker's matching rules:
 * `**`, `!` exceptions, last match wins, leading `/` ignored).
 *
 *   const ig = await loadDockerignore({ contextDir, dockerfilePath });
 *   if (ig.ignores('node_modules/x')) …
 *
 * Lookup order, as BuildKit: `<Dockerfile path>.dockerignore` beside the Dockerfile (e.g.
 * `app.Dockerfile.dockerignore`), else `<context>/.dockerignore`, else nothing is ignored.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Ignore } from '@balena/dockerignore';

// Loaded on the first non-empty pattern list (most contexts have no .dockerignore, and the
// module costs several ms at start-up). A CommonJS module whose export is the factory itself;
// its typings describe an ES default.
let factory: (() => Ignore) | undefined;
function ignore(): Ignore {
  if (!factory) {
    const mod = createRequire(import.meta.url)('@balena/dockerignore') as { default?: unknown };
    factory = (typeof mod.default === 'function' ? mod.default : mod) as () => Ignore;
  }
  return factory();
}

export interface DockerignoreMatcher {
  /** The file the patterns came from, or undefined when there was none. */
  source?: string;
  patterns: string[];
  /** Whether a context-relative path (forward slashes) is excluded. */
  ignores(path: string): boolean;
}

/** Patterns of a .dockerignore text: comments and blank lines dropped, whitespace trimmed. */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    out.push(line);
  }
  return out;
}

export function dockerignoreMatcher(patterns: readonly string[], source?: string): DockerignoreMatcher {
  // No patterns ignore nothing: the matcher library is not needed for that.
  const ig = patterns.length > 0 ? ignore().add([...patterns]) : undefined;
  return {
    ...(source !== undefined ? { source } : {}),
    patterns: [...patterns],
    ignores: (path: string) => {
      if (!ig) return false;
      const p = path.replace(/^\.?\/+/, '');
      return p !== '' && p !== '.' && ig.ignores(p);
    },
  };
}

export interface LoadDockerignoreOptions {
  contextDir: string;
  /** Path of the Dockerfile on disk, when it has one (not for `-f -`). */
  dockerfilePath?: string;
}

export async function loadDockerignore(opts: LoadDockerignoreOptions): Promise<DockerignoreMatcher> {
  const candidates: string[] = [];
  if (opts.dockerfilePath) candidates.push(`${opts.dockerfilePath}.dockerignore`);
  candidates.push(join(opts.contextDir, '.dockerignore'));
  for (const file of candidates) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    return dockerignoreMatcher(parseDockerignore(text), file);
  }
  return dockerignoreMatcher([]);
}
