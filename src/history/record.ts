/**
 * Recording a build into the history: a tee in front of the build's progress sink keeps the
 * last state of every step, the tail of each step's logs, the last byte-progress line of each
 * status and the warnings; `finish` writes the record. Recording never breaks the build: the
 * tee forwards first and swallows its own failures, and a record that cannot be written is
 * skipped (the caller may warn).
 *
 *   const rec = await startRecord({ stateRoot, request, platforms, progress: renderer });
 *   await build({ ..., progress: rec.sink });
 *   await rec.finish({ outputs: { 'containerimage.digest': d } });   // or rec.finish({ error })
 */
import { hostPlatform } from '../platform/host.js';
import { formatPlatform } from '../platform/platform.js';
import type { ProgressSink, SolveStatus, VertexWarning } from '../progress/index.js';
import { errorMessage } from '../util/errors.js';
import { applyPlacement, stepPlace } from './steps.js';
import { HistoryStore, newRef } from './store.js';
import {
  type BuildRecord,
  type BuildRequestInfo,
  type LogRecord,
  type PlatformInfo,
  RECORD_VERSION,
  type StatusRecord,
  type StepRecord,
  type WarningRecord,
} from './types.js';

/** Log bytes kept per step: the last ones (where an error usually is). */
export const STEP_LOG_LIMIT = 64 * 1024;
/** Log bytes kept per build, over all steps. */
export const BUILD_LOG_LIMIT = 1024 * 1024;
/** Byte-progress lines kept per build (their last state only). */
const STATUS_LIMIT = 1000;
const WARNING_LIMIT = 200;

export interface RecordOptions {
  stateRoot: string;
  request: BuildRequestInfo;
  /** The target platforms and whether each is native here (default: computed from the host). */
  platforms: PlatformInfo[];
  /** Node names of a multi-node builder (`[node] ` name prefixes). */
  nodes?: string[];
  /** Where progress goes on to (the renderer). */
  progress: ProgressSink;
  /** `BUILDKIT_BUILD_NAME` or the like; default from the request. */
  name?: string;
  now?: () => number;
  /** Per-step and per-build log caps (tests lower them). */
  stepLogLimit?: number;
  buildLogLimit?: number;
}

export interface Outcome {
  error?: unknown;
  canceled?: boolean;
  outputs?: Record<string, string>;
  /** Which node built which platform (platform → node name), for multi-node builds. */
  placement?: Record<string, string>;
}

/** A sink that is also a renderer's stand-in: the warnings the renderer saw, when it keeps them. */
export interface RecordingSink extends ProgressSink {
  readonly warnings: VertexWarning[];
}

export interface Recording {
  readonly ref: string;
  /** The tee: give it to the build instead of the renderer (its `warnings` are the renderer's). */
  readonly sink: RecordingSink;
  /** Ends the record and writes it; returns it (also when writing failed: `saved` false). */
  finish(outcome?: Outcome): Promise<{ record: BuildRecord; saved: boolean }>;
}

/** buildx's BuildName, simplified: the context's base name (or URL), then ` (target)`. */
export function buildName(req: BuildRequestInfo, buildArgs: Record<string, string> = {}): string {
  if (buildArgs.BUILDKIT_BUILD_NAME) return buildArgs.BUILDKIT_BUILD_NAME;
  let res =
    /^[a-z][a-z0-9+.-]*:\/\//i.test(req.context) || req.context.startsWith('git@')
      ? req.context
      : req.context === '-'
        ? 'stdin'
        : req.context.replace(/\/+$/, '').split('/').pop() || '/';
  const file = req.dockerfile?.split('/').pop();
  if (file && file !== 'Dockerfile' && req.dockerfile !== '-') res = `${res}/${file}`;
  return req.target ? `${res} (${req.target})` : res;
}

/** Starts a record (written at once as `running`, so `history ls` shows builds in progress). */
export async function startRecord(opts: RecordOptions): Promise<Recording> {
  const now = opts.now ?? Date.now;
  const store = new HistoryStore(opts.stateRoot);
  const stepLimit = opts.stepLogLimit ?? STEP_LOG_LIMIT;
  const buildLimit = opts.buildLogLimit ?? BUILD_LOG_LIMIT;
  const platforms = opts.platforms.map((p) => p.platform);
  const nodes = opts.nodes ?? [];
  const record: BuildRecord = {
    version: RECORD_VERSION,
    ref: newRef(),
    name: opts.name ?? buildName(opts.request, opts.request.buildArgs),
    status: 'running',
    createdAt: now(),
    host: formatPlatform(hostPlatform()),
    pid: process.pid,
    request: opts.request,
    platforms: opts.platforms,
    steps: [],
    logs: [],
    statuses: [],
    warnings: [],
  };
  const steps = new Map<string, StepRecord>();
  const statuses = new Map<string, StatusRecord>();
  const warnings: WarningRecord[] = [];
  // Per step: runs of log text, newest last, and their byte count.
  const logs = new Map<string, { runs: LogRecord[]; bytes: number }>();
  let logBytes = 0;
  let clipped = 0;

  const addLog = (vertex: string, stream: 1 | 2, data: Uint8Array, timestamp: number) => {
    let l = logs.get(vertex);
    if (!l) logs.set(vertex, (l = { runs: [], bytes: 0 }));
    const text = Buffer.from(data).toString('utf8');
    const last = l.runs[l.runs.length - 1];
    if (last && last.stream === stream) last.text += text;
    else l.runs.push({ vertex, stream, timestamp, text });
    const n = Buffer.byteLength(text);
    l.bytes += n;
    logBytes += n;
    // Over the step's cap: drop its oldest text. Over the build's: the biggest step's oldest.
    if (l.bytes > stepLimit) trim(l, l.bytes - stepLimit);
    while (logBytes > buildLimit) {
      let big = l;
      for (const x of logs.values()) if (x.bytes > big.bytes) big = x;
      if (big.bytes <= 0) break;
      trim(big, Math.min(big.bytes, logBytes - buildLimit));
    }
  };

  /** Drops the oldest `n` bytes (about: whole UTF-8 characters) of a step's logs. */
  const trim = (l: { runs: LogRecord[]; bytes: number }, n: number) => {
    let over = n;
    while (over > 0 && l.runs.length > 0) {
      const first = l.runs[0]!;
      const buf = Buffer.from(first.text);
      const cutBytes =
        buf.length <= over ? buf.length : buf.length - Buffer.byteLength(buf.subarray(over).toString('utf8'));
      if (cutBytes >= buf.length) l.runs.shift();
      else first.text = buf.subarray(over).toString('utf8');
      const gone = Math.max(cutBytes, 1);
      l.bytes -= gone;
      logBytes -= gone;
      clipped += gone;
      over -= gone;
    }
  };

  const take = (s: SolveStatus) => {
    for (const v of s.vertexes) {
      const place = stepPlace(v.name, platforms, nodes);
      steps.set(v.digest, {
        digest: v.digest,
        name: v.name,
        inputs: [...v.inputs],
        ...(v.started !== undefined ? { started: v.started } : {}),
        ...(v.completed !== undefined ? { completed: v.completed } : {}),
        ...(v.cached ? { cached: true } : {}),
        ...(v.error !== undefined ? { error: v.error } : {}),
        ...place,
      });
    }
    for (const st of s.statuses) {
      const key = `${st.vertex}\0${st.id}`;
      if (!statuses.has(key) && statuses.size >= STATUS_LIMIT) continue;
      statuses.set(key, {
        id: st.id,
        vertex: st.vertex,
        ...(st.name !== undefined ? { name: st.name } : {}),
        ...(st.total !== undefined ? { total: st.total } : {}),
        current: st.current,
        timestamp: st.timestamp,
        ...(st.started !== undefined ? { started: st.started } : {}),
        ...(st.completed !== undefined ? { completed: st.completed } : {}),
      });
    }
    for (const l of s.logs) addLog(l.vertex, l.stream, l.data, l.timestamp);
    for (const w of s.warnings)
      if (warnings.length < WARNING_LIMIT)
        warnings.push({
          vertex: w.vertex,
          level: w.level,
          short: w.short,
          detail: [...w.detail],
          ...(w.url !== undefined ? { url: w.url } : {}),
        });
  };

  const sink: RecordingSink = {
    get warnings() {
      return (opts.progress as { warnings?: VertexWarning[] }).warnings ?? [];
    },
    write(s) {
      opts.progress.write(s);
      try {
        take(s);
      } catch {
        // The record is secondary: never let it break the build.
      }
    },
    close() {
      return opts.progress.close();
    },
  };

  await store.save(record, { bound: false }).catch(() => undefined);

  return {
    ref: record.ref,
    sink,
    async finish(outcome: Outcome = {}) {
      record.completedAt = now();
      record.steps = [...steps.values()];
      if (outcome.placement)
        record.platforms = applyPlacement(record.steps, record.platforms, outcome.placement);
      // A platform's node: the one its steps ran on (multi-node builds).
      record.platforms = record.platforms.map((p) => {
        if (p.node !== undefined) return p;
        const node = record.steps.find((s) => s.platform === p.platform && s.node !== undefined)?.node;
        return node !== undefined ? { ...p, node } : p;
      });
      record.statuses = [...statuses.values()];
      record.warnings = warnings;
      record.logs = [...logs.values()].flatMap((l) => l.runs).sort((a, b) => a.timestamp - b.timestamp);
      if (clipped > 0) record.logsClipped = clipped;
      if (outcome.outputs) record.outputs = outcome.outputs;
      if (outcome.canceled) {
        record.status = 'canceled';
        record.error = 'canceled';
      } else if (outcome.error !== undefined) {
        record.status = 'error';
        record.error = errorMessage(outcome.error).split('\n')[0]!.slice(0, 2000);
      } else record.status = 'completed';
      delete record.pid;
      let saved = true;
      await store.save(record).catch(() => {
        saved = false;
      });
      return { record, saved };
    },
  };
}
