/**
 * What a build record holds (one JSON file per build under `<stateRoot>/history/`): the
 * request, the platforms (native or emulated here), every step's start/end/cached/error with
 * its platform and node, the tail of each step's logs (capped), warnings and the outputs.
 * `version` names this layout; readers refuse other versions instead of guessing.
 */
import type { VertexStatus } from '../progress/index.js';

/** The layout version of a record file (and of an export bundle's records). */
export const RECORD_VERSION = 1;

/** Media type of `history export` bundles (a JSON object holding whole records). */
export const BUNDLE_MEDIA_TYPE = 'application/vnd.polyarch.build-history.v1+json';

export type RecordStatus = 'running' | 'completed' | 'error' | 'canceled';

/** What was asked for: the parts of the build's flags worth seeing again later. */
export interface BuildRequestInfo {
  /** The context as given (a directory, `-`, a git or https URL), directories made absolute. */
  context: string;
  /** The Dockerfile's path or name (`-` for stdin). */
  dockerfile?: string;
  target?: string;
  /** Target platforms, normalised (`linux/arm/v7`); empty means the host's. */
  platforms: string[];
  /** `--build-arg` values as given (docker's history shows them too; secrets go in --secret). */
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  /** `--secret` ids only, never their sources or values. */
  secrets?: string[];
  noCache?: boolean;
  pull?: boolean;
  network?: string;
  /** Output types and names (`image`, `registry name=…`), without credentials. */
  outputs?: string[];
  tags?: string[];
  builder?: string;
  /** `local`, `remote`, … */
  driver?: string;
  /** compose build: the services built (their steps are named `[service …]`). */
  services?: string[];
}

/** One target platform of the build and how it ran. */
export interface PlatformInfo {
  platform: string;
  /** True: the host's own architecture; false: emulated (QEMU); absent: unknown (a remote node). */
  native?: boolean;
  /** The builder node that built it, for multi-node builds. */
  node?: string;
}

/** One step as it ended (or as it was when the build stopped). */
export interface StepRecord {
  digest: string;
  name: string;
  inputs: string[];
  started?: number;
  completed?: number;
  cached?: boolean;
  error?: string;
  /** The target platform the step belongs to (from its name), absent for shared steps. */
  platform?: string;
  /** The builder node (`[node] …` prefix of multi-node builds). */
  node?: string;
}

/** A run of log bytes of one step and stream, as UTF-8 text. */
export interface LogRecord {
  vertex: string;
  stream: 1 | 2;
  /** Epoch ms of the first chunk of the run. */
  timestamp: number;
  text: string;
}

/** The last state of a byte/item progress line inside a step: the progress event as it last was. */
export type StatusRecord = VertexStatus;

export interface WarningRecord {
  vertex: string;
  level: number;
  short: string;
  detail: string[];
  url?: string;
}

export interface BuildRecord {
  version: typeof RECORD_VERSION;
  /** 25 characters [a-z0-9], like BuildKit's build refs. */
  ref: string;
  /** What `history ls` shows: BUILDKIT_BUILD_NAME, else the context's name (+ ` (target)`). */
  name: string;
  status: RecordStatus;
  /** Epoch ms. */
  createdAt: number;
  completedAt?: number;
  /** One line, for failed or canceled builds. */
  error?: string;
  /** The host this record was made on (`linux/amd64`). */
  host: string;
  /** The process that runs the build, so a record left `running` by a killed build is told apart. */
  pid?: number;
  request: BuildRequestInfo;
  platforms: PlatformInfo[];
  steps: StepRecord[];
  logs: LogRecord[];
  statuses: StatusRecord[];
  warnings: WarningRecord[];
  /** Log bytes dropped by the caps (per step, per build). */
  logsClipped?: number;
  /** What the exporters returned: the image digest, names, … */
  outputs?: Record<string, string>;
}

/** The file `history export` writes. */
export interface HistoryBundle {
  mediaType: typeof BUNDLE_MEDIA_TYPE;
  /** Epoch ms. */
  exportedAt: number;
  records: BuildRecord[];
}
