/**
 * What the engine and its step modules share: a filesystem state (a step's cache identity and
 * layers), cache keys of steps, and small helpers.
 */
import { createHash } from 'node:crypto';
import { normalizePlatform, type Platform } from '../platform/index.js';
import { formatReference, parseReference } from '../oci/reference.js';
import type { ResultLayer } from './result.js';
import type { SshForwarder } from './ssh.js';

/** How many output lines a failed RUN shows. */
export const LOG_TAIL_LINES = 10;

/** A filesystem state: its cache identity and its layers (non-empty ones), bottom-most first. */
export interface FsState {
  key: string;
  /** Snapshot keys of the layers, bottom-most first. */
  chain: string[];
  layers: ResultLayer[];
  /** The vertex that made this state added no layer. */
  emptyLayer: boolean;
  /**
   * When this state was first made: its snapshot's creation time (kept by the cache, so a
   * rebuild that only hits the cache gets the same history times and the same digests, as
   * with BuildKit), or the base image's `created`. Undefined for scratch.
   */
  created?: string;
}

export const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** The cache key of a filesystem step: its parent state's key and its own definition. */
export const stepKey = (parent: FsState, definition: unknown) =>
  sha(JSON.stringify({ parent: parent.key, def: definition }));

export function toPlatform(p: { os: string; architecture: string; variant?: string }): Platform {
  return normalizePlatform({
    os: p.os,
    architecture: p.architecture,
    ...(p.variant ? { variant: p.variant } : {}),
  });
}

/** The environment git runs in: the `--ssh default` agent, when there is one, for ssh URLs. */
export async function gitEnv(ssh: SshForwarder, env: NodeJS.ProcessEnv): Promise<NodeJS.ProcessEnv> {
  return ssh.has('default') ? { ...env, SSH_AUTH_SOCK: await ssh.agentSocket('default') } : env;
}

/** The normalised name progress shows (`docker.io/library/busybox:latest`). */
export function displayRef(ref: string): string {
  try {
    return formatReference(parseReference(ref));
  } catch {
    return ref;
  }
}
