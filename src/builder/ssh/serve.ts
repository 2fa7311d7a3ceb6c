/**
 * The node side of the ssh driver (`polyarch __node serve`, run by ssh on the node): one
 * process per session, which ends with it — no daemon stays behind.
 *
 *   greet, hello (platforms, runc)          → then EOF (bootstrap), or
 *   ← build (request + context file list)   → need (missing digests) ← those files
 *   → status… (SolveStatus batches)          → result (pushed digest | stored root + blobs)
 *   ← want (digests the client lacks)        → those blobs → done
 *
 * The build is this machine's engine (src/build, src/build/export) on the node's own state
 * root, so the node's snapshot cache persists between builds. Secrets and registry
 * credentials arrive in the build message and live only in this process's memory (secrets
 * as variables of the engine's environment object, credentials through
 * setSessionCredentials): nothing of them is written to the node's disk or logs. When the
 * client goes away (ssh killed, Ctrl-C) stdin ends and the build is aborted, its temporary
 * context removed.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readdirSync, rmSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { Writable } from 'node:stream';
import type { OutputSpec } from '../../build/export/index.js';
import type { Descriptor } from '../../oci/index.js';
import { executablePlatforms, formatPlatform, hostPlatform, parsePlatform } from '../../platform/index.js';
import type { ProgressSink, SolveStatus } from '../../progress/index.js';
import type { Credentials } from '../../registry/credentials.js';
import { errorMessage, PolyarchError } from '../../util/errors.js';
import { VERSION } from '../../version.js';
import { mergePlatforms } from '../driver.js';
import { type ContextEntry, gcBlobs, materialise, missingBlobs, putBlob, syncContext } from './context.js';

/** Context files no build has used for this long leave the node's cache. */
const CONTEXT_CACHE_MAX_AGE_MS = 7 * 24 * 3600 * 1000;
import { FrameReader, FrameWriter, greeting, type Message } from './protocol.js';

/** What the client asks a node to build (the `build` message). */
export interface NodeBuildRequest {
  dockerfile: string;
  dockerfileName: string;
  platforms: string[];
  buildArgs: Record<string, string>;
  target?: string;
  labels: Record<string, string>;
  noCache: boolean;
  pull: boolean;
  network: 'default' | 'host' | 'none';
  /** id → base64 value. */
  secrets: Record<string, string>;
  /** registry host → credentials for the images this build pulls and pushes. */
  credentials: Record<string, Credentials>;
  /** Pushes are by digest (unless the node is the build's only one), stores untagged. */
  outputs: OutputSpec[];
  files: ContextEntry[];
  /** Names the client's context (hex): its tree is kept on the node between builds. */
  contextKey: string;
}

/** The runc the engine would run (`$POLYARCH_RUNC`, else `runc` on PATH), if it exists. */
export function findRunc(env: NodeJS.ProcessEnv): string | undefined {
  const want = env.POLYARCH_RUNC || 'runc';
  const cands = want.includes('/')
    ? [want]
    : (env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
        .split(delimiter)
        .filter((d) => d !== '')
        .map((d) => join(d, want));
  for (const c of cands) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {}
  }
  return undefined;
}

/** Build directories of sessions whose process is gone (killed with the machine, SIGKILL). */
function removeStale(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const pid = Number(n.split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH')
        rmSync(join(dir, n), { recursive: true, force: true });
    }
  }
}

function encodeStatus(s: SolveStatus): unknown {
  return { ...s, logs: s.logs.map((l) => ({ ...l, data: Buffer.from(l.data).toString('base64') })) };
}

/** Descriptors under `root`, children before parents (the order they can be written in). */
async function postOrder(
  store: import('../../content/index.js').ContentStore,
  root: Descriptor,
): Promise<Descriptor[]> {
  const out: Descriptor[] = [];
  const seen = new Set<string>();
  const visit = async (d: Descriptor) => {
    if (seen.has(d.digest)) return;
    seen.add(d.digest);
    for (const c of await store.children(d)) await visit(c);
    out.push(d);
  };
  await visit(root);
  return out;
}

export interface ServeOptions {
  input: NodeJS.ReadableStream & import('node:stream').Readable;
  /** Where frames go (the process's real stdout). */
  output: Writable;
  env: NodeJS.ProcessEnv;
}

/** Serves one session; resolves with the exit code. */
export async function serveNode(opts: ServeOptions): Promise<number> {
  const env = opts.env;
  const reader = new FrameReader(opts.input);
  const writer = new FrameWriter(opts.output);
  opts.output.write(greeting(VERSION));
  const detected = mergePlatforms([hostPlatform()], await executablePlatforms());
  const runc = findRunc(env);
  await writer.send({
    t: 'hello',
    version: `polyarch/v${VERSION}`,
    native: formatPlatform(hostPlatform()),
    platforms: detected.map((p) => formatPlatform(p)),
    ...(runc ? { runc } : {}),
  });
  let msg: Message | undefined;
  try {
    msg = await reader.message();
  } catch {
    return 1;
  }
  if (msg === undefined) return 0;
  if (msg.t !== 'build') {
    await writer
      .send({ t: 'error', code: 'IO', message: `protocol error: unexpected ${msg.t}` })
      .catch(() => {});
    return 1;
  }
  const abort = new AbortController();
  const gone = () => abort.abort(new PolyarchError('ABORTED', 'the client went away'));
  opts.input.once('end', gone);
  opts.input.once('close', gone);
  try {
    await runBuild(msg.req as NodeBuildRequest, reader, writer, env, abort.signal);
    return 0;
  } catch (err) {
    if (!abort.signal.aborted)
      await writer
        .send({ t: 'error', code: (err as PolyarchError).code ?? 'INTERNAL', message: errorMessage(err) })
        .catch(() => {});
    return 1;
  }
}

async function runBuild(
  req: NodeBuildRequest,
  reader: FrameReader,
  writer: FrameWriter,
  baseEnv: NodeJS.ProcessEnv,
  signal: AbortSignal,
): Promise<void> {
  const [engine, exp, content, snap, creds] = await Promise.all([
    import('../../build/index.js'),
    import('../../build/export/index.js'),
    import('../../content/index.js'),
    import('../../snapshot/index.js'),
    import('../../registry/credentials.js'),
  ]);
  const root = content.stateRoot(baseEnv);
  content.makeStateRoot(root);
  const cacheDir = join(root, 'node', 'context');
  const buildsDir = join(root, 'node', 'builds');
  removeStale(buildsDir);
  // Context: say what is missing, take those files.
  const missing = await missingBlobs(cacheDir, req.files);
  await writer.send({ t: 'need', digests: missing });
  for (let i = 0; i < missing.length; i++) {
    const m = await reader.message();
    if (m === undefined) throw new PolyarchError('ABORTED', 'the client went away');
    if (m.t !== 'file' || typeof m.digest !== 'string' || typeof m.size !== 'number')
      throw new PolyarchError('IO', `protocol error: expected a context file, got ${m.t}`);
    await putBlob(cacheDir, m.digest, reader.data(m.size));
  }
  const buildDir = join(buildsDir, `${process.pid}-${randomBytes(6).toString('hex')}`);
  await mkdir(buildDir, { recursive: true, mode: 0o700 });
  // Progress goes out in order; a failed send (client gone) stops nothing here: the abort does.
  let chain: Promise<void> = Promise.resolve();
  const progress: ProgressSink = {
    write(s) {
      chain = chain.then(() => writer.send({ t: 'status', s: encodeStatus(s) as Message }).catch(() => {}));
    },
    close() {},
  };
  const env: NodeJS.ProcessEnv = { ...baseEnv };
  const secrets = Object.entries(req.secrets).map(([id, v], i) => {
    env[`POLYARCH_NODE_SECRET_${i}`] = Buffer.from(v, 'base64').toString('utf8');
    return { id, env: `POLYARCH_NODE_SECRET_${i}` };
  });
  // Warnings go back to the client's terminal, in order with the progress.
  const warn = (m: string) => {
    chain = chain.then(() => writer.send({ t: 'warn', message: m }).catch(() => {}));
  };
  creds.setSessionCredentials(req.credentials);
  const release = await engine.holdBuildLease(root);
  let unlockTree: (() => Promise<void>) | undefined;
  try {
    // The client's context tree from its last build, brought up to date; a concurrent build
    // of the same context gets a copy of its own.
    let ctxDir = join(buildDir, 'context');
    if (/^[0-9a-f]{32}$/.test(req.contextKey)) {
      const treeDir = join(root, 'node', 'contexts', req.contextKey);
      await mkdir(treeDir, { recursive: true, mode: 0o700 });
      const { acquireLock } = await import('../../util/lock.js');
      unlockTree = await acquireLock(`${treeDir}.lock`, { timeoutMs: 0 }).catch(() => undefined);
      if (unlockTree) {
        ctxDir = join(treeDir, 'tree');
        await syncContext(cacheDir, req.files, ctxDir, join(treeDir, 'index.json'));
      }
    }
    if (!unlockTree) await materialise(cacheDir, req.files, ctxDir);
    const result = await engine.build({
      dockerfile: req.dockerfile,
      dockerfileName: req.dockerfileName,
      contextDir: ctxDir,
      platforms: req.platforms.map((p) => parsePlatform(p, { normalize: true })),
      buildArgs: req.buildArgs,
      ...(req.target !== undefined ? { target: req.target } : {}),
      noCache: req.noCache,
      pull: req.pull,
      secrets,
      labels: req.labels,
      network: req.network,
      progress,
      signal,
      env,
      root,
      warn,
    });
    exp.checkOutputs(result, req.outputs);
    const store = await content.ContentStore.open(content.storeDir(env));
    const resp = await exp.exportBuild(result, req.outputs, {
      store,
      snapshotter: await snap.Snapshotter.open({ root }),
      stateRoot: root,
      progress,
      signal,
      env,
      warn,
    });
    await chain;
    const stored = req.outputs.some((o) => o.type === 'image' && o.store) ? resp.descriptor : undefined;
    const blobs = stored ? await postOrder(store, stored) : [];
    await writer.send({
      t: 'result',
      ...(resp.pushed[0] ? { pushed: resp.pushed[0].digest } : {}),
      ...(resp.pushed[0] && resp.descriptor ? { pushedDescriptor: resp.descriptor } : {}),
      ...(stored ? { stored } : {}),
      blobs: blobs.map((b) => ({ digest: b.digest, size: b.size })),
    });
    if (stored) {
      const want = await reader.message();
      if (want?.t !== 'want' || !Array.isArray(want.digests))
        throw new PolyarchError('ABORTED', 'the client went away');
      const sizes = new Map(blobs.map((b) => [b.digest as string, b.size]));
      for (const d of want.digests as string[]) {
        const size = sizes.get(d);
        if (size === undefined)
          throw new PolyarchError('IO', `protocol error: ${d} is not part of the result`);
        await writer.send({ t: 'blob', digest: d, size });
        await writer.data(store.openRead(d as Descriptor['digest']));
      }
    }
    await writer.send({ t: 'done' });
    await gcBlobs(cacheDir, CONTEXT_CACHE_MAX_AGE_MS).catch(() => 0);
    await gcTrees(join(root, 'node', 'contexts'), CONTEXT_CACHE_MAX_AGE_MS).catch(() => 0);
  } finally {
    creds.setSessionCredentials(undefined);
    await chain;
    await unlockTree?.();
    await release();
    await rm(buildDir, { recursive: true, force: true });
  }
}

/** Removes kept context trees no build synced for `maxAgeMs` (skipping one in use). */
async function gcTrees(dir: string, maxAgeMs: number): Promise<number> {
  const { readdir, stat } = await import('node:fs/promises');
  const { acquireLock } = await import('../../util/lock.js');
  const limit = Date.now() - maxAgeMs;
  let removed = 0;
  for (const n of await readdir(dir)) {
    if (!/^[0-9a-f]{32}$/.test(n)) continue;
    const tree = join(dir, n);
    const st = (await stat(join(tree, 'index.json')).catch(() => undefined)) ?? (await stat(tree));
    if (st.mtimeMs >= limit) continue;
    const unlock = await acquireLock(`${tree}.lock`, { timeoutMs: 0 }).catch(() => undefined);
    if (!unlock) continue;
    try {
      await rm(tree, { recursive: true, force: true });
      removed++;
    } finally {
      await unlock();
    }
  }
  return removed;
}

/** The process's stdout for frames only; anything else printing to stdout goes to stderr. */
export function claimStdout(): Writable {
  const real = process.stdout.write.bind(process.stdout) as (
    chunk: Uint8Array | string,
    cb: (err?: Error | null) => void,
  ) => boolean;
  const out = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      real(chunk, cb);
    },
  });
  process.stdout.on('error', (err) => out.destroy(err));
  process.stdout.write = ((chunk: Uint8Array | string, ...rest: unknown[]) =>
    (process.stderr.write as (...a: unknown[]) => boolean)(chunk, ...rest)) as typeof process.stdout.write;
  return out;
}
