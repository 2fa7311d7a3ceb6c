/**
 * `--progress=rawjson`: every batch as one JSON object per line, in the JSON form of
 * BuildKit's `client.SolveStatus`, so tools that read `buildx --progress=rawjson` read ours:
 *
 *   {"vertexes":[{"digest":"sha256:…","name":"[linux/arm64 2/3] RUN make","started":"2026-01-02T03:04:05.678Z"}]}
 *   {"logs":[{"vertex":"sha256:…","stream":1,"data":"aGVsbG8K","timestamp":"2026-01-02T03:04:05.9Z"}]}
 *
 * As in Go's encoding of it: times are RFC 3339 UTC strings (trailing zeros of the
 * fraction dropped), byte fields are base64 (log `data`, warning `short`, `detail` and
 * `sourceInfo.data`), and empty fields are left out (`omitempty`) — including the four
 * lists, so a line has only the lists that have entries.
 */
import type { SolveStatus, VertexWarning } from '../../progress/index.js';
import type { Renderer, RenderOutput } from './renderer.js';

/** Go's `time.Time` JSON (RFC 3339 with nanoseconds, trailing zeros trimmed), in UTC. */
export function goTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.?0+Z$/, 'Z');
}

const b64 = (data: Uint8Array | string) =>
  (typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data)).toString('base64');

/** The JSON value BuildKit would write for this batch. */
export function toRawJSON(ss: SolveStatus): Record<string, unknown> {
  return omitEmpty({
    vertexes: (ss.vertexes ?? []).filter(Boolean).map((v) =>
      omitEmpty({
        digest: v.digest,
        inputs: v.inputs?.length ? v.inputs : undefined,
        name: v.name,
        started: v.started !== undefined ? goTime(v.started) : undefined,
        completed: v.completed !== undefined ? goTime(v.completed) : undefined,
        cached: v.cached || undefined,
        error: v.error,
      }),
    ),
    statuses: (ss.statuses ?? []).filter(Boolean).map((s) =>
      omitEmpty(
        {
          id: s.id,
          vertex: s.vertex,
          name: s.name,
          total: s.total || undefined,
          current: s.current,
          timestamp: goTime(s.timestamp),
          started: s.started !== undefined ? goTime(s.started) : undefined,
          completed: s.completed !== undefined ? goTime(s.completed) : undefined,
        },
        ['id', 'current'],
      ),
    ),
    logs: (ss.logs ?? []).filter(Boolean).map((l) => ({
      vertex: l.vertex,
      stream: l.stream,
      data: b64(l.data),
      timestamp: goTime(l.timestamp),
    })),
    warnings: (ss.warnings ?? []).filter(Boolean).map((w) =>
      omitEmpty({
        vertex: w.vertex,
        level: w.level,
        short: b64(w.short),
        detail: (w.detail ?? []).map((d) => b64(d)),
        url: w.url,
        sourceInfo: w.sourceInfo && {
          ...w.sourceInfo,
          ...(w.sourceInfo.data !== undefined ? { data: b64(w.sourceInfo.data) } : {}),
        },
        range: w.range,
      }),
    ),
  });
}

/** Go's `omitempty`: drops undefined, '', 0, false and empty lists, except the `keep` keys. */
function omitEmpty(o: Record<string, unknown>, keep: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const empty =
      v === undefined || v === '' || v === 0 || v === false || (Array.isArray(v) && v.length === 0);
    if (keep.includes(k) || !empty) out[k] = v;
  }
  return out;
}

export class RawJSONRenderer implements Renderer {
  readonly warnings: VertexWarning[] = [];
  private readonly out: RenderOutput;
  private closed = false;

  constructor(out: RenderOutput) {
    this.out = out;
  }

  write(ss: SolveStatus): void {
    if (this.closed) return;
    this.warnings.push(...(ss.warnings ?? []));
    this.out.write(`${JSON.stringify(toRawJSON(ss))}\n`);
  }

  close(): void {
    this.closed = true;
  }
}

/** `--progress=quiet`: draws nothing (the caller prints errors); keeps the warnings. */
export class QuietRenderer implements Renderer {
  readonly warnings: VertexWarning[] = [];

  write(ss: SolveStatus): void {
    this.warnings.push(...(ss.warnings ?? []));
  }

  close(): void {}
}
