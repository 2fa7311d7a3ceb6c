/**
 * Progress is data. Producers (the build solver, pull, push) describe what they are doing as
 * `SolveStatus` batches — the same shape as BuildKit's `client.SolveStatus` — and hand them to
 * a `ProgressSink`; the CLI decides how to show them (src/cli/ui: tty, plain, rawjson, quiet).
 *
 *   sink.write({ vertexes: [{ digest, name, inputs: [], started: Date.now() }],
 *                statuses: [], logs: [], warnings: [] });
 *
 * Most producers should not build these by hand: `ProgressWriter` (writer.ts) keeps the state
 * of each vertex and sends complete records.
 *
 * Conventions (the renderers rely on them):
 * - Every time is epoch milliseconds (`Date.now()`), never a Date.
 * - A vertex update always carries the whole vertex (name, inputs, started, ...), not a diff;
 *   renderers replace what they knew. A vertex is shown once it has `started`.
 * - A vertex is finished when `completed` is set; then `error` (failed), `cached` (reused),
 *   or neither (done). An `error` ending in "context canceled" shows as CANCELED.
 * - Vertex names carry the platform and step like BuildKit's: `[linux/arm64 2/5] RUN make`,
 *   `[internal] load build definition from Dockerfile`. Composing that name is the
 *   producer's job; renderers print it as given.
 * - A status (`VertexStatus`) is byte or item progress inside a vertex, e.g. one layer of a
 *   pull. Its `id` is what people read (`sha256:4abcf2…`, `extracting sha256:4abcf2…`);
 *   `name` is informational only, like in BuildKit.
 */

/** One step of the work graph (a build step, a pull, a push). */
export interface Vertex {
  /** Stable identity of the step, e.g. the op digest; unique within one run. */
  digest: string;
  /** What people read, with the platform: `[linux/arm64 2/5] RUN make`. */
  name: string;
  /** Digests of the vertexes this one depends on. */
  inputs: string[];
  /** Epoch ms when work began. */
  started?: number;
  /** Epoch ms when work ended (successfully, from cache, or with an error). */
  completed?: number;
  /** True when the result came from the cache. */
  cached?: boolean;
  /** Why it failed, one line. */
  error?: string;
}

/** Byte or item progress inside a vertex (e.g. a layer being pulled). */
export interface VertexStatus {
  /** Shown to people: `sha256:4abcf2…` or `extracting sha256:4abcf2…`. */
  id: string;
  /** Digest of the vertex it belongs to. */
  vertex: string;
  name?: string;
  /** Expected end value (bytes or items); 0 or absent when unknown. */
  total?: number;
  current: number;
  /** Epoch ms of this update. */
  timestamp: number;
  started?: number;
  completed?: number;
}

/** A chunk of a vertex's output (e.g. a RUN step's stdout). */
export interface VertexLog {
  vertex: string;
  /** 1 = stdout, 2 = stderr. */
  stream: 1 | 2;
  /** Raw bytes; not necessarily whole lines. */
  data: Uint8Array;
  timestamp: number;
}

export interface SourcePosition {
  line: number;
  character: number;
}

export interface SourceRange {
  start: SourcePosition;
  end: SourcePosition;
}

export interface SourceInfo {
  filename: string;
  data?: string;
  language?: string;
}

/** A build-check warning (Dockerfile lint and the like). */
export interface VertexWarning {
  vertex: string;
  /** Severity; BuildKit uses 1 for warnings. */
  level: number;
  /** One line: `JSONArgsRecommended: JSON arguments recommended for CMD (line 5)`. */
  short: string;
  detail: string[];
  url?: string;
  sourceInfo?: SourceInfo;
  range?: SourceRange[];
}

/** One batch of progress, BuildKit's `SolveStatus`. */
export interface SolveStatus {
  vertexes: Vertex[];
  statuses: VertexStatus[];
  logs: VertexLog[];
  warnings: VertexWarning[];
}

/** Where progress goes: a renderer, a recorder, a multiplexer. */
export interface ProgressSink {
  /**
   * Takes one batch. Must not throw for data it does not understand (unknown vertex ids,
   * logs after completion): progress must never break the work it reports on.
   */
  write(status: SolveStatus): void;
  /** No more batches follow; renderers print their final frame and summaries. */
  close(): void | Promise<void>;
}

/** A batch with every list present, from a partial one. */
export function solveStatus(part: Partial<SolveStatus> = {}): SolveStatus {
  return {
    vertexes: part.vertexes ?? [],
    statuses: part.statuses ?? [],
    logs: part.logs ?? [],
    warnings: part.warnings ?? [],
  };
}

/** A deep copy, so a sink may keep what it was given while the producer goes on. */
export function cloneStatus(s: SolveStatus): SolveStatus {
  return {
    vertexes: s.vertexes.map((v) => ({ ...v, inputs: [...v.inputs] })),
    statuses: s.statuses.map((st) => ({ ...st })),
    logs: s.logs.map((l) => ({ ...l, data: Buffer.from(l.data) })),
    warnings: s.warnings.map((w) => ({
      ...w,
      detail: [...w.detail],
      ...(w.sourceInfo ? { sourceInfo: { ...w.sourceInfo } } : {}),
      ...(w.range ? { range: w.range.map((r) => ({ start: { ...r.start }, end: { ...r.end } })) } : {}),
    })),
  };
}

/** True when the error text means the work was canceled rather than failed (BuildKit's rule). */
export function isCanceledError(error: string | undefined): boolean {
  return error?.endsWith('context canceled') ?? false;
}

/** The error text producers use for canceled work. */
export const CANCELED_ERROR = 'context canceled';

/** A sink that drops everything. */
export const discardSink: ProgressSink = {
  write() {},
  close() {},
};
