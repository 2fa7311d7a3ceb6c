/**
 * One job of polyarch's own engine in a multi-node build: this machine (local-node.ts) or an
 * ssh node (src/builder/ssh). An ssh node whose session is lost mid-build (the host died,
 * sshd was killed, the network went) has its platforms rebuilt on another engine node that
 * can build them all — one running them natively first — with a warning naming the lost
 * node; with no such node the build fails with that node's error.
 *
 *   await runEngineJob(job, { req, candidates, localNodes, sshNodes, secrets, signal, warn });
 *   job.node, job.result, job.transfer    // who built it in the end, and what came back
 */
import { formatPlatform, type Platform } from '../../platform/index.js';
import { errorMessage } from '../../util/errors.js';
import type { SshNodeConnection, SshNodeResult } from '../ssh/index.js';
import type { BuilderNode } from '../types.js';
import type { RemoteBuildRequest } from './build.js';
import { buildOnLocalNode, type LocalNodeResult } from './local-node.js';
import { type Candidate, runsNatively } from './schedule.js';

/** Platforms given to polyarch's own engine (this machine, or an ssh node), and what it produced. */
export interface EngineJob {
  node: BuilderNode;
  platforms: Platform[];
  /** An ssh node's session (absent: this machine). */
  conn?: SshNodeConnection;
  result?: LocalNodeResult;
  /** ssh nodes: context files sent, image blobs brought back. */
  transfer?: Pick<SshNodeResult, 'sent' | 'received'>;
}

export interface EngineJobContext {
  req: RemoteBuildRequest;
  candidates: readonly Candidate[];
  /** Nodes of this machine's engine, and reachable ssh nodes (failover targets). */
  localNodes: readonly BuilderNode[];
  sshNodes: readonly BuilderNode[];
  secrets: ReadonlyMap<string, Buffer>;
  signal: AbortSignal;
  warn: (message: string) => void;
  env: NodeJS.ProcessEnv;
  /** The build's only node: it pushes with the tags itself (no index made over nodes). */
  direct: boolean;
}

async function onSsh(job: EngineJob, conn: SshNodeConnection, ctx: EngineJobContext): Promise<void> {
  const ssh = await import('../ssh/index.js');
  const r = await ssh.buildOnSshNode(conn, ctx.req, job.platforms, {
    progress: ctx.req.progress,
    signal: ctx.signal,
    secrets: ctx.secrets,
    direct: ctx.direct,
  });
  job.result = r;
  job.transfer = { sent: r.sent, received: r.received };
}

export async function runEngineJob(job: EngineJob, ctx: EngineJobContext): Promise<void> {
  if (!job.conn) {
    job.result = await buildOnLocalNode(job.node, ctx.req, job.platforms, {
      progress: ctx.req.progress,
      signal: ctx.signal,
      direct: ctx.direct,
    });
    return;
  }
  const ssh = await import('../ssh/index.js');
  try {
    await onSsh(job, job.conn, ctx);
  } catch (err) {
    if (ctx.signal.aborted || !ssh.isConnectionLost(err)) throw err;
    const engineNodes = [...ctx.localNodes, ...ctx.sshNodes];
    const able = ctx.candidates.filter(
      (c) =>
        c.name !== job.node.name &&
        engineNodes.some((n) => n.name === c.name) &&
        job.platforms.every((p) => c.platforms.some((q) => formatPlatform(q) === formatPlatform(p))),
    );
    const pick = able.find((c) => job.platforms.every((p) => runsNatively(c, p))) ?? able[0];
    if (!pick) throw err;
    ctx.warn(
      `${errorMessage(err)}; building ${job.platforms.map((p) => formatPlatform(p)).join(', ')} on node ${pick.name} instead`,
    );
    job.conn = undefined;
    const local = ctx.localNodes.find((n) => n.name === pick.name);
    if (local) {
      job.node = local;
      await runEngineJob(job, ctx);
      return;
    }
    const other = ctx.sshNodes.find((n) => n.name === pick.name)!;
    job.node = other;
    await onSsh(job, await ssh.SshNodeConnection.open(other, { env: ctx.env }), ctx);
  }
}
