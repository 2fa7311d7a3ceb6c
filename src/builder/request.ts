/**
 * One build request, whatever builds it (buildx's shape: command → one request → driver(s) →
 * exporters). `build`, `compose build` and library users fill a `BuildRequest`; `runBuild`
 * (run.ts) gives it to the builder's driver(s) and returns a `BuildResponse`.
 *
 *   const { outputs } = resolveOutputs({ push: true, tags: ['r.example/app:1'] });
 *   const r = await runBuild({ context: '.', platforms, outputs, progress }, { builder: 'ci' });
 *   r.digest     // the image root (index or manifest) the outputs wrote
 *   r.metadata   // buildx's --metadata-file JSON
 */
import type { Readable } from 'node:stream';
import type { CacheSpec } from '../build/extcache/spec.js';
import type { OutputSpec } from '../build/export/outputs.js';
import type { NamedContextSpec } from '../build/named-context.js';
import type { SshSource } from '../build/ssh.js';
import type { Platform } from '../platform/index.js';
import type { ProgressSink } from '../progress/index.js';

export interface BuildSecret {
  id: string;
  /** A file on this machine. */
  src?: string;
  /** An environment variable of `env`. */
  env?: string;
}

export interface BuildRequest {
  /** A directory, `-` (a tar in `contextTar`), a git URL (`#ref:subdir`) or an https URL. */
  context: string;
  /** The context as a tar stream, when `context` is `-`. */
  contextTar?: Readable;
  /**
   * The Dockerfile: a path (relative to the working directory; in a remote context, inside
   * it unless a local file of that name exists). Default `CONTEXT/Dockerfile`.
   */
  file?: string;
  /** The Dockerfile's text instead of a file (stdin, compose's `dockerfile_inline`). */
  dockerfileText?: string;
  /** Default: the builder's first node's own platform. */
  platforms?: readonly Platform[];
  buildArgs?: Readonly<Record<string, string>>;
  target?: string;
  /** `--label`s, over the Dockerfile's LABELs. */
  labels?: Readonly<Record<string, string>>;
  noCache?: boolean;
  pull?: boolean;
  network?: 'default' | 'host' | 'none';
  secrets?: readonly BuildSecret[];
  ssh?: readonly SshSource[];
  /** `--build-context NAME=VALUE`s (build/named-context.ts parseBuildContext). */
  namedContexts?: readonly NamedContextSpec[];
  /** `--cache-from` / `--cache-to`, parsed (build/extcache/spec.ts). */
  cacheFrom?: readonly CacheSpec[];
  cacheTo?: readonly CacheSpec[];
  /** `--annotation [type:][\[platform\]]key=value` (BuildKit nodes only, yet). */
  annotations?: readonly string[];
  /** Resolved outputs (build/export resolveOutputs); none = build only (cache). */
  outputs: readonly OutputSpec[];
  /** Write buildx's metadata JSON here once the outputs are written. */
  metadataFile?: string;
  /** Write the image root's digest here. */
  iidFile?: string;
  /** Heavy steps at once on the local engine. */
  maxParallelism?: number;
  progress?: ProgressSink;
  signal?: AbortSignal;
  /** Default process.env: state root, credentials, SOURCE_DATE_EPOCH. */
  env?: NodeJS.ProcessEnv;
  warn?: (message: string) => void;
}

export interface BuildResponse {
  /** The root (index or manifest) the image outputs wrote; undefined for local/tar only. */
  digest?: string;
  /** Image names the outputs wrote or pushed. */
  names: string[];
  /** Platforms built (`linux/arm64`…). */
  platforms: string[];
  /** Platform → node that built it, on builders with several nodes. */
  nodes?: Record<string, string>;
  /** buildx's --metadata-file JSON. */
  metadata: Record<string, unknown>;
}

/** The outputs that make an image ID (`build -q` prints it): not local or tar. */
export function hasImageOutput(outputs: readonly OutputSpec[]): boolean {
  return outputs.some((o) => ['image', 'registry', 'oci', 'docker'].includes(o.type));
}
