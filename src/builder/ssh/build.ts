/**
 * Building on an ssh node (the client side of serve.ts): the request, the context files the
 * node lacks, progress streamed into the local renderer under the node's name, and the
 * result — a push by digest made from the node (with its tags when `direct`: the build's only
 * node), or the image's blobs the local store lacks.
 *
 *   const r = await buildOnSshNode(conn, req, platforms, { progress, signal, secrets });
 *   r.pushed / r.stored   // as buildOnLocalNode's, merged by remoteBuild into one index
 *   r.sent                // { files, bytes } of context sent this time
 *
 * Secrets and the registry credentials of the hosts this build pulls from or pushes to go
 * in the build message over the ssh channel, for this build only.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { hostname } from 'node:os';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { OutputSpec } from '../../build/export/index.js';
import type { Descriptor } from '../../oci/index.js';
import { parseReference } from '../../oci/reference.js';
import { formatPlatform, type Platform } from '../../platform/index.js';
import type { ProgressSink, SolveStatus } from '../../progress/index.js';
import type { Credentials } from '../../registry/credentials.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import type { RemoteBuildRequest } from '../remote/build.js';
import { nodeSink } from '../remote/local-node.js';
import { SshNodeConnection } from './connect.js';
import { listContext } from './context.js';
import type { Message } from './protocol.js';
import type { NodeBuildRequest } from './serve.js';

export interface SshNodeResult {
  /** As LocalNodeResult's. */
  pushed?: string;
  pushedDescriptor?: Descriptor;
  stored?: Descriptor;
  /** Context files (and their bytes) sent to the node for this build. */
  sent: { files: number; bytes: number };
  /** Image blobs (and bytes) brought back into the local store. */
  received: { blobs: number; bytes: number };
}

/** Registry hosts of `FROM` images (literal ones; `$ARG` images are resolved by the node). */
export function baseImageHosts(dockerfile: string): string[] {
  const hosts = new Set<string>();
  for (const line of dockerfile.split('\n')) {
    const m = /^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)/i.exec(line);
    if (!m || m[1]!.includes('$') || m[1] === 'scratch') continue;
    try {
      hosts.add(parseReference(m[1]!).domain);
    } catch {
      // A stage name or a bad reference: the node's engine says so.
    }
  }
  return [...hosts];
}

async function credentialsFor(
  hosts: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<Record<string, Credentials>> {
  const { getCredentials } = await import('../../registry/credentials.js');
  const out: Record<string, Credentials> = {};
  for (const h of new Set(hosts)) {
    const c = await getCredentials(h, env).catch(() => undefined);
    if (c) out[h] = c;
  }
  return out;
}

function decodeStatus(s: SolveStatus & { logs: Array<{ data: unknown }> }): SolveStatus {
  return { ...s, logs: s.logs.map((l) => ({ ...l, data: Buffer.from(String(l.data), 'base64') })) };
}

export async function buildOnSshNode(
  conn: SshNodeConnection,
  req: RemoteBuildRequest,
  platforms: readonly Platform[],
  opts: {
    progress: ProgressSink;
    signal: AbortSignal;
    secrets: ReadonlyMap<string, Buffer>;
    direct?: boolean;
  },
): Promise<SshNodeResult> {
  const node = conn.node;
  const env = req.env ?? process.env;
  for (const o of req.outputs)
    if (!(o.type === 'image' || o.type === 'registry'))
      throw new PolyarchError(
        'UNSUPPORTED',
        `output ${o.raw}: node ${node.name} (ssh driver) supports --push and --load (type=image|registry) only`,
      );
  if (req.ssh?.length)
    throw new PolyarchError(
      'UNSUPPORTED',
      `node ${node.name} (ssh driver): --ssh is not supported on ssh nodes yet`,
    );
  if (req.namedContexts?.length)
    throw new PolyarchError(
      'UNSUPPORTED',
      `node ${node.name} (ssh driver): --build-context is not supported on ssh nodes yet`,
    );
  if ((req.cacheFrom?.length ?? 0) > 0 || (req.cacheTo?.length ?? 0) > 0)
    throw new PolyarchError(
      'UNSUPPORTED',
      `node ${node.name} (ssh driver): --cache-from/--cache-to are not supported on ssh nodes yet`,
    );
  const outputs: OutputSpec[] = req.outputs.map((o) => ({
    ...o,
    ...(o.push && !opts.direct ? { pushByDigest: true } : {}),
    ...(o.store && !o.push ? { names: [] } : {}),
  }));
  const progress = nodeSink(opts.progress, node.name);
  const dockerfile = req.dockerfileText ?? (await readFile(req.dockerfilePath!, 'utf8'));
  // Stable per machine and context (as the BuildKit driver's session key): the node keeps
  // this context's tree between builds, and this machine its files' digests.
  const contextKey = createHash('sha256')
    .update(`${hostname()}\0${req.contextDir}\0${req.dockerfilePath ?? ''}`)
    .digest('hex')
    .slice(0, 32);
  const { stateRoot } = await import('../../content/paths.js');
  const files = await listContext(
    req.contextDir,
    req.dockerfilePath,
    join(stateRoot(env), 'ssh', 'context-digests', `${contextKey}.json`),
  );
  const hosts = [
    ...baseImageHosts(dockerfile),
    ...req.outputs.flatMap((o) => (o.push ? o.names.map((n) => parseReference(n).domain) : [])),
  ];
  const secrets: Record<string, string> = {};
  for (const [id, v] of opts.secrets) secrets[id] = v.toString('base64');
  const request: NodeBuildRequest = {
    dockerfile,
    dockerfileName: req.dockerfileName,
    platforms: platforms.map((p) => formatPlatform(p)),
    buildArgs: { ...req.buildArgs },
    ...(req.target !== undefined ? { target: req.target } : {}),
    labels: { ...req.labels },
    noCache: req.noCache ?? false,
    pull: req.pull ?? false,
    network: req.network ?? 'default',
    secrets,
    credentials: await credentialsFor(hosts, env),
    outputs,
    files,
    contextKey,
  };
  const onAbort = () => conn.kill();
  if (opts.signal.aborted) throw opts.signal.reason;
  opts.signal.addEventListener('abort', onAbort, { once: true });
  const next = async (): Promise<Message> => {
    let m: Message | undefined;
    try {
      m = await conn.reader.message();
    } catch {
      m = undefined;
    }
    if (opts.signal.aborted) throw opts.signal.reason;
    if (m === undefined) throw await conn.lost();
    if (m.t === 'error')
      throw SshNodeConnection.nodeError(node, new PolyarchError(String(m.code ?? 'IO'), String(m.message)));
    return m;
  };
  const send = async (f: () => Promise<unknown>) => {
    try {
      await f();
    } catch (err) {
      if (opts.signal.aborted) throw opts.signal.reason;
      throw (await conn.lost().catch(() => undefined)) ?? SshNodeConnection.nodeError(node, err);
    }
  };
  try {
    await send(() => conn.writer.send({ t: 'build', req: request as unknown as Record<string, unknown> }));
    const need = await next();
    if (need.t !== 'need' || !Array.isArray(need.digests))
      throw SshNodeConnection.nodeError(
        node,
        new PolyarchError('IO', `protocol error: expected need, got ${need.t}`),
      );
    const byDigest = new Map(files.filter((f) => f.type === 'file').map((f) => [f.digest!, f]));
    const started = Date.now();
    let bytes = 0;
    for (const d of need.digests as string[]) {
      const f = byDigest.get(d);
      if (!f)
        throw SshNodeConnection.nodeError(
          node,
          new PolyarchError('IO', `protocol error: ${d} was not offered`),
        );
      await send(async () => {
        await conn.writer.send({ t: 'file', digest: d, size: f.size! });
        bytes += await conn.writer.data(createReadStream(join(req.contextDir, f.path)));
      });
    }
    const sent = { files: need.digests.length, bytes };
    const total = files.filter((f) => f.type === 'file').length;
    progress.write({
      vertexes: [
        {
          digest: 'ssh-context',
          name: `transferring context: ${sent.files} of ${total} files, ${sent.bytes} bytes`,
          inputs: [],
          started,
          completed: Date.now(),
        },
      ],
      statuses: [],
      logs: [],
      warnings: [],
    });
    for (;;) {
      const m = await next();
      if (m.t === 'warn') {
        req.warn?.(`node ${node.name}: ${String(m.message)}`);
        continue;
      }
      if (m.t === 'status') {
        try {
          progress.write(decodeStatus(m.s as SolveStatus & { logs: Array<{ data: unknown }> }));
        } catch {
          // Progress never breaks the build.
        }
        continue;
      }
      if (m.t !== 'result')
        throw SshNodeConnection.nodeError(node, new PolyarchError('IO', `protocol error: unexpected ${m.t}`));
      const out: SshNodeResult = { sent, received: { blobs: 0, bytes: 0 } };
      if (typeof m.pushed === 'string') out.pushed = m.pushed;
      if (m.pushedDescriptor) out.pushedDescriptor = m.pushedDescriptor as Descriptor;
      if (m.stored) {
        const stored = m.stored as Descriptor;
        const blobs = m.blobs as Array<{ digest: Descriptor['digest']; size: number }>;
        out.stored = stored;
        out.received = await receiveBlobs(conn, blobs, env, next);
      } else if ((await next()).t !== 'done')
        throw SshNodeConnection.nodeError(node, new PolyarchError('IO', 'protocol error: expected done'));
      return out;
    }
  } catch (err) {
    if (opts.signal.aborted) {
      conn.kill();
      await conn.closed();
    }
    throw err;
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    conn.close();
  }
}

/** Asks for the blobs the local store lacks and writes them, children before the root. */
async function receiveBlobs(
  conn: SshNodeConnection,
  blobs: Array<{ digest: Descriptor['digest']; size: number }>,
  env: NodeJS.ProcessEnv,
  next: () => Promise<Message>,
): Promise<{ blobs: number; bytes: number }> {
  const c = await import('../../content/index.js');
  const store = await c.ContentStore.open(c.storeDir(env));
  const want: string[] = [];
  for (const b of blobs) if ((await store.size(b.digest)) !== b.size) want.push(b.digest);
  await conn.writer.send({ t: 'want', digests: want });
  let bytes = 0;
  for (let i = 0; i < want.length; i++) {
    const m = await next();
    if (m.t !== 'blob' || m.digest !== want[i])
      throw SshNodeConnection.nodeError(
        conn.node,
        new PolyarchError('IO', `protocol error: expected blob ${want[i]}`),
      );
    try {
      const info = await store.ingest(conn.reader.data(m.size as number), {
        digest: m.digest as Descriptor['digest'],
        size: m.size as number,
      });
      bytes += info.size;
    } catch (err) {
      throw SshNodeConnection.nodeError(
        conn.node,
        new PolyarchError('IO', `receiving ${m.digest}: ${errorMessage(err)}`),
      );
    }
  }
  if ((await next()).t !== 'done')
    throw SshNodeConnection.nodeError(conn.node, new PolyarchError('IO', 'protocol error: expected done'));
  return { blobs: want.length, bytes };
}
