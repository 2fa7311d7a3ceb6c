/**
 * This machine's engine as one node of a builder that also has BuildKit nodes: the
 * platforms the scheduler gives it are built by src/build and exported by
 * src/build/export, their progress named by the node like a remote node's.
 *
 *   const r = await buildOnLocalNode(node, req, platforms, outputs, { progress, signal });
 *   r.pushed    // the root pushed by digest (several nodes), or
 *   r.stored    // the root written to the local store (--load), to merge with the others
 */
import { readFile } from 'node:fs/promises';
import type { OutputSpec } from '../../build/export/index.js';
import type { Descriptor } from '../../oci/index.js';
import type { Platform } from '../../platform/index.js';
import type { ProgressSink, SolveStatus } from '../../progress/index.js';
import { PolyarchError } from '../../util/errors.js';
import type { BuilderNode } from '../types.js';
import type { RemoteBuildRequest } from './build.js';

/** A sink that names every vertex by its node, with digests kept apart from other nodes'. */
export function nodeSink(sink: ProgressSink, node: string): ProgressSink {
  const id = (d: string) => `${node}:${d}`;
  return {
    write(s: SolveStatus) {
      sink.write({
        vertexes: s.vertexes.map((v) => ({
          ...v,
          digest: id(v.digest),
          name: `[${node}] ${v.name}`,
          inputs: v.inputs.map(id),
        })),
        statuses: s.statuses.map((st) => ({ ...st, vertex: id(st.vertex) })),
        logs: s.logs.map((l) => ({ ...l, vertex: id(l.vertex) })),
        warnings: s.warnings.map((w) => ({ ...w, vertex: id(w.vertex) })),
      });
    },
    close() {},
  };
}

export interface LocalNodeResult {
  /** Root pushed by digest (its repository is the output's first name's), or with its tags (`direct`). */
  pushed?: string;
  /** The pushed root's descriptor, when known. */
  pushedDescriptor?: Descriptor;
  /** Root written to the local store, untagged (the caller tags the merged image). */
  stored?: Descriptor;
}

/**
 * Builds `platforms` here. `outputs` are the build's; a push becomes a push by digest and a
 * store keeps the image untagged, so the caller makes the one index over all nodes — unless
 * `direct` (this is the build's only node): then the push writes the tags itself.
 */
export async function buildOnLocalNode(
  node: BuilderNode,
  req: RemoteBuildRequest,
  platforms: readonly Platform[],
  opts: { progress: ProgressSink; signal: AbortSignal; direct?: boolean },
): Promise<LocalNodeResult> {
  const env = req.env ?? process.env;
  for (const o of req.outputs)
    if (!(o.type === 'image' || o.type === 'registry'))
      throw new PolyarchError(
        'UNSUPPORTED',
        `output ${o.raw}: a builder mixing this machine (node ${node.name}) with BuildKit nodes supports --push and --load only`,
      );
  const outputs: OutputSpec[] = req.outputs.map((o) => ({
    ...o,
    ...(o.push && !opts.direct ? { pushByDigest: true } : {}),
    ...(o.store && !o.push ? { names: [] } : {}),
  }));
  const [engine, exp, content, snap] = await Promise.all([
    import('../../build/index.js'),
    import('../../build/export/index.js'),
    import('../../content/index.js'),
    import('../../snapshot/index.js'),
  ]);
  const text = req.dockerfileText ?? (await readFile(req.dockerfilePath!, 'utf8'));
  const root = content.stateRoot(env);
  const release = await engine.holdBuildLease(root);
  try {
    const progress = nodeSink(opts.progress, node.name);
    const result = await engine.build({
      dockerfile: text,
      dockerfileName: req.dockerfileName,
      ...(req.dockerfilePath ? { dockerfilePath: req.dockerfilePath } : {}),
      contextDir: req.contextDir,
      platforms: [...platforms],
      buildArgs: { ...req.buildArgs },
      ...(req.target !== undefined ? { target: req.target } : {}),
      noCache: req.noCache ?? false,
      pull: req.pull ?? false,
      secrets: [...req.secrets],
      ...(req.ssh ? { ssh: [...req.ssh] } : {}),
      labels: { ...req.labels },
      ...(req.namedContexts?.length ? { namedContexts: [...req.namedContexts] } : {}),
      network: req.network ?? 'default',
      progress,
      signal: opts.signal,
      env,
      ...(req.warn ? { warn: req.warn } : {}),
    });
    exp.checkOutputs(result, outputs);
    const resp = await exp.exportBuild(result, outputs, {
      store: await content.ContentStore.open(content.storeDir(env)),
      snapshotter: await snap.Snapshotter.open({ root }),
      stateRoot: root,
      progress,
      signal: opts.signal,
      env,
      ...(req.warn ? { warn: req.warn } : {}),
    });
    const out: LocalNodeResult = {};
    if (resp.pushed[0]) {
      out.pushed = resp.pushed[0].digest;
      if (resp.descriptor) out.pushedDescriptor = resp.descriptor;
    }
    if (outputs.some((o) => o.type === 'image' && o.store) && resp.descriptor) out.stored = resp.descriptor;
    return out;
  } finally {
    await release();
  }
}
