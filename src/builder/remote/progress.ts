/**
 * BuildKit's StatusResponse → polyarch's SolveStatus (src/progress), so the tty, plain and
 * rawjson renderers draw a remote build like a local one. With several nodes, digests are
 * made unique per node and every vertex name says its node: `[node1] [linux/arm64 2/5] RUN ...`.
 */
import { timestampMs } from '../../buildkit/messages.js';
import type { Message } from '../../buildkit/proto.js';
import type { SolveStatus, Vertex, VertexStatus, VertexWarning } from '../../progress/index.js';

export function mapStatus(s: Message, node?: string): SolveStatus {
  const id = (d: string) => (node ? `${node}:${d}` : d);
  const label = (n: string) => (node ? `[${node}] ${n}` : n);
  const vertexes = (s.vertexes as Message[]).map((v): Vertex => {
    const started = timestampMs(v.started);
    const completed = timestampMs(v.completed);
    return {
      digest: id(v.digest),
      name: label(v.name),
      inputs: (v.inputs as string[]).map(id),
      ...(started !== undefined ? { started } : {}),
      ...(completed !== undefined ? { completed } : {}),
      ...(v.cached ? { cached: true } : {}),
      ...(v.error ? { error: String(v.error).split('\n')[0] } : {}),
    };
  });
  const statuses = (s.statuses as Message[]).map((st): VertexStatus => {
    const started = timestampMs(st.started);
    const completed = timestampMs(st.completed);
    return {
      id: st.id,
      vertex: id(st.vertex),
      ...(st.name ? { name: st.name } : {}),
      current: st.current,
      ...(st.total ? { total: st.total } : {}),
      timestamp: timestampMs(st.timestamp) ?? Date.now(),
      ...(started !== undefined ? { started } : {}),
      ...(completed !== undefined ? { completed } : {}),
    };
  });
  const logs = (s.logs as Message[]).map((l) => ({
    vertex: id(l.vertex),
    stream: (l.stream === 2 ? 2 : 1) as 1 | 2,
    data: l.msg as Buffer,
    timestamp: timestampMs(l.timestamp) ?? Date.now(),
  }));
  const warnings = (s.warnings as Message[]).map(
    (w): VertexWarning => ({
      vertex: id(w.vertex),
      level: w.level,
      short: Buffer.from(w.short).toString('utf8'),
      detail: (w.detail as Buffer[]).map((d) => Buffer.from(d).toString('utf8')),
      ...(w.url ? { url: w.url } : {}),
      ...(w.info
        ? {
            sourceInfo: {
              filename: w.info.filename,
              ...(w.info.data?.length ? { data: Buffer.from(w.info.data).toString('utf8') } : {}),
              ...(w.info.language ? { language: w.info.language } : {}),
            },
          }
        : {}),
      ...((w.ranges as Message[]).length
        ? {
            range: (w.ranges as Message[]).map((r) => ({
              start: { line: r.start?.line ?? 0, character: r.start?.character ?? 0 },
              end: { line: r.end?.line ?? 0, character: r.end?.character ?? 0 },
            })),
          }
        : {}),
    }),
  );
  return { vertexes, statuses, logs, warnings };
}
