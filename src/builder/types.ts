/**
 * The builder instance model (docker buildx's NodeGroup/Node, store/nodegroup.go).
 *
 * A builder is a named group of nodes sharing one driver; a node is one place builds run
 * (this machine for the `local` driver, a remote machine reached with system `ssh` for the
 * `ssh` driver). Each node may pin platforms (`create --platform`): those are preferred for
 * that node and listed first, marked `*`, by `ls` and `inspect`. What a node can actually
 * build is only known once its driver answers (`NodeInfo`).
 */
import type { Platform } from '../platform/index.js';

/**
 * Drivers polyarch knows. `local` runs here; `remote` is a buildkitd reached at
 * unix://, tcp:// (mutual TLS) or ssh:// (src/builder/remote); `ssh` is polyarch's own engine
 * on a remote host reached with system ssh (src/builder/ssh).
 */
export const DRIVER_NAMES = ['local', 'remote', 'ssh'] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

export function isDriverName(s: string): s is DriverName {
  return (DRIVER_NAMES as readonly string[]).includes(s);
}

/** The builder that always exists and cannot be removed (buildx's `default`). */
export const DEFAULT_BUILDER = 'default';

export interface BuilderNode {
  /** Unique within its builder; defaults to `<builder><index>` like buildx. */
  readonly name: string;
  /** `local` for the local driver; `unix://`, `tcp://` or `ssh://` for remote and ssh. */
  readonly endpoint: string;
  /** Platforms pinned with `--platform`, normalised, in the order given. */
  readonly platforms: readonly Platform[];
  /** Extra daemon flags (buildx `--buildkitd-flags`); kept for drivers that start a daemon. */
  readonly flags?: readonly string[];
  /** Driver options (buildx `--driver-opt`). */
  readonly driverOpts?: Readonly<Record<string, string>>;
  /**
   * This node's driver when it differs from its builder's: a builder may mix this machine's
   * engine (`local`), BuildKit nodes (`remote`) and ssh nodes. Absent: the builder's driver.
   */
  readonly driver?: DriverName;
}

/** The driver that reaches `node` of `b`. */
export function nodeDriver(b: Pick<Builder, 'driver'>, node: BuilderNode): DriverName {
  return node.driver ?? b.driver;
}

/** Whether any node of `b` is not this machine's engine (its builds go to src/builder/remote). */
export function hasRemoteNodes(b: Builder): boolean {
  return b.nodes.some((n) => nodeDriver(b, n) !== 'local');
}

export interface Builder {
  readonly name: string;
  readonly driver: DriverName;
  readonly nodes: readonly BuilderNode[];
  /** buildx's Dynamic (nodes created on demand, kubernetes); always false in polyarch. */
  readonly dynamic?: false;
  /** When the builder was last created, changed or bootstrapped (ISO 8601); absent for `default`. */
  readonly lastActivity?: string;
}

/** buildx's driver statuses. */
export type NodeStatus = 'inactive' | 'starting' | 'running' | 'stopping' | 'stopped';

/** What a driver reports about a node. */
export interface NodeInfo {
  readonly status: NodeStatus;
  /** Pinned platforms first, then what the node detected; empty until it was reached. */
  readonly platforms: readonly Platform[];
  /** The node's build engine version, e.g. `polyarch/v0.1.0`; empty until it was reached. */
  readonly version: string;
  /** The worker's labels (BuildKit nodes), shown by inspect. */
  readonly labels?: Readonly<Record<string, string>>;
  /** The worker's garbage-collection rules (BuildKit nodes), shown by inspect. */
  readonly gcPolicy?: readonly GcRule[];
}

/** One BuildKit GC policy rule (WorkerRecord.GCPolicy). */
export interface GcRule {
  readonly all: boolean;
  readonly filters: readonly string[];
  /** Nanoseconds. */
  readonly keepDuration: number;
  /** Bytes; 0 = unset. */
  readonly reservedSpace: number;
  readonly maxUsedSpace: number;
  readonly minFreeSpace: number;
}

/** A node with its driver's answer, or the error the driver gave instead. */
export interface NodeState {
  readonly node: BuilderNode;
  readonly info?: NodeInfo;
  readonly error?: Error;
}
