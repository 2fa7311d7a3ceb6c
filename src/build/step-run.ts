/**
 * The RUN step: its cache key (command, environment, user, network, security and the keys of
 * every mounted source), then, on a miss, one container (runc, under QEMU for a foreign
 * platform) over the parent's snapshot with its bind, cache, tmpfs, secret and ssh mounts; the
 * upper directory becomes the step's layer. Secrets and agent sockets are mounted for the step
 * only and never reach the layer, the cache key or the log.
 */
import { chmod, chown, lstat, mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { type PlanRun, runCommand } from '../dockerfile/index.js';
import { type MountRequest, runContainer } from '../exec/index.js';
import { formatPlatform, type Platform } from '../platform/index.js';
import { PolyarchError } from '../util/errors.js';
import { acquireLock } from '../util/lock.js';
import { resolveInRoot } from '../util/rootpath.js';
import { BuildContext } from './context.js';
import type { VertexContext, VertexResult } from './solver.js';
import type { Engine } from './engine.js';
import { type FsState, LOG_TAIL_LINES, sha, stepKey } from './engine-util.js';

export async function runStep(
  eng: Engine,
  inputs: [FsState, ...(FsState | BuildContext)[]],
  run: PlanRun,
  platform: Platform,
  ctx: VertexContext,
): Promise<VertexResult<FsState>> {
  const [parent, ...sources] = inputs;
  const cmd = runCommand(run, '/dev/pipes');
  const netFlag = eng.d.opts.network ?? 'default';
  const network: 'host' | 'none' =
    run.network === 'none' || (run.network === 'default' && netFlag === 'none') ? 'none' : 'host';
  // Mount sources in order of the bind/cache mounts that have one.
  let si = 0;
  const mountDefs: unknown[] = [];
  for (const m of run.mounts) {
    if (m.type === 'bind' || m.type === 'cache') {
      const src = sources[si++]!;
      let srcKey: string;
      if (src instanceof BuildContext) {
        if (m.type === 'bind') {
          const paths = await src.match(m.source ?? '.');
          srcKey = `context:${await src.checksum(paths)}`;
        } else srcKey = 'context';
      } else srcKey = src.key;
      mountDefs.push({ ...m, from: srcKey });
    } else if (m.type === 'secret') mountDefs.push({ type: m.type, id: m.id, target: m.target, env: m.env });
    else mountDefs.push(m);
  }
  const definition = {
    op: 'exec',
    platform: formatPlatform(platform),
    argv: cmd.argv,
    script: cmd.script,
    env: run.state.runEnv,
    user: run.state.user,
    cwd: run.state.workdir,
    network,
    security: run.security,
    mounts: mountDefs,
  };
  const cacheKey = stepKey(parent, definition);
  const hit = await eng.cached(parent, cacheKey);
  if (hit) return { value: hit, cached: true };

  return ctx.slot(async () => {
    const releases: (() => Promise<void>)[] = [];
    const mounts: MountRequest[] = [];
    const extraEnv: string[] = Object.entries(run.proxy).map(([k, v]) => `${k}=${v}`);
    const tail: string[] = [];
    const partial: Record<1 | 2, string> = { 1: '', 2: '' };
    const onOutput = (stream: 1 | 2) => (chunk: Buffer) => {
      ctx.progress.log(chunk, stream);
      const lines = (partial[stream] + chunk.toString('utf8')).split('\n');
      partial[stream] = lines.pop() ?? '';
      tail.push(...lines);
      if (tail.length > LOG_TAIL_LINES) tail.splice(0, tail.length - LOG_TAIL_LINES);
    };
    try {
      si = 0;
      for (const m of run.mounts) {
        if (m.type === 'bind') {
          const src = sources[si++]!;
          // The source resolved inside the context or the stage's view, never on the host.
          let root: string;
          if (src instanceof BuildContext) root = src.dir;
          else {
            const v = await eng.view(src);
            releases.push(v.release);
            root = v.dir;
          }
          const at = resolveInRoot(root, m.source ?? '');
          if (at.missing !== undefined || !(await lstat(at.host).catch(() => undefined)))
            throw new PolyarchError(
              'NOT_FOUND',
              `mount source "/${posix.normalize(`/${m.source ?? ''}`).slice(1)}": not found`,
            );
          mounts.push({ type: 'bind', source: at.host, destination: m.target, readonly: true });
        } else if (m.type === 'cache') {
          si++;
          const id = m.id ?? m.target;
          const dir = join(
            eng.d.root,
            'build',
            'cache-mounts',
            sha(`${id}\0${m.id ? '' : formatPlatform(platform)}`).slice(0, 32),
          );
          const fresh = await lstat(dir).then(
            () => false,
            () => true,
          );
          await mkdir(dir, { recursive: true });
          if (fresh) {
            await chmod(dir, m.mode ?? 0o755);
            await chown(dir, m.uid ?? 0, m.gid ?? 0);
          }
          if (m.sharing === 'locked')
            releases.push(await acquireLock(`${dir}.lock`, { timeoutMs: 30 * 60_000 }));
          mounts.push({ type: 'bind', source: dir, destination: m.target, readonly: m.readonly });
        } else if (m.type === 'tmpfs') {
          mounts.push({
            type: 'tmpfs',
            destination: m.target,
            options: ['nosuid', 'nodev', 'mode=1777', ...(m.size ? [`size=${m.size}`] : [])],
          });
        } else if (m.type === 'secret') {
          const id = m.id ?? basename(m.target);
          const secret = await eng.secret(id);
          if (secret === undefined) {
            if (m.required) throw new PolyarchError('NOT_FOUND', `secret ${id} not found`);
            continue;
          }
          const dir = await eng.tmp('secret');
          await chmod(dir, 0o700);
          const f = join(dir, 'secret');
          await writeFile(f, secret, { mode: 0o600 });
          await chmod(f, m.mode ?? 0o400);
          await chown(f, m.uid ?? 0, m.gid ?? 0);
          releases.push(() => rm(dir, { recursive: true, force: true }));
          mounts.push({ type: 'bind', source: f, destination: m.target, readonly: true });
          if (m.env) extraEnv.push(`${m.env}=${secret.toString('utf8')}`);
        } else if (m.type === 'ssh') {
          const id = m.id ?? 'default';
          if (!eng.ssh.has(id)) {
            if (m.required)
              throw new PolyarchError(
                'NOT_FOUND',
                `no SSH key "${id}" forwarded from the client (use --ssh ${id})`,
              );
            eng.d.opts.warn?.(
              `RUN --mount=type=ssh: no SSH agent forwarded for id "${id}" (--ssh ${id}): the step runs without one`,
            );
            continue;
          }
          const dir = await eng.tmp('ssh');
          await chmod(dir, 0o711);
          const sock = await eng.ssh.socket(id, {
            dir,
            mode: m.mode ?? 0o600,
            uid: m.uid ?? 0,
            gid: m.gid ?? 0,
          });
          releases.push(async () => {
            await sock.close();
            await rm(dir, { recursive: true, force: true });
          });
          mounts.push({ type: 'bind', source: sock.path, destination: m.target, readonly: true });
          // BuildKit: the first ssh mount is the step's agent.
          if (!extraEnv.some((e) => e.startsWith('SSH_AUTH_SOCK=')))
            extraEnv.push(`SSH_AUTH_SOCK=${m.target}`);
        }
      }
      if (cmd.script) {
        const dir = await eng.tmp('pipes');
        const f = join(dir, posix.basename(cmd.script.path));
        await writeFile(f, cmd.script.data, { mode: cmd.script.mode });
        releases.push(() => rm(dir, { recursive: true, force: true }));
        mounts.push({
          type: 'bind',
          source: dir,
          destination: posix.dirname(cmd.script.path),
          readonly: true,
        });
      }
      const value = await eng.withActive(parent, cacheKey, async (active) => {
        const r = await runContainer({
          root: eng.d.root,
          rootfs: active,
          platform: formatPlatform(platform),
          canExecute: eng.d.canExec,
          spec: {
            config: { Env: run.state.runEnv },
            args: cmd.argv,
            entrypoint: [],
            env: extraEnv,
            workingDir: run.state.workdir,
            ...(run.state.user ? { user: run.state.user } : {}),
            network,
            mounts,
          },
          stdout: onOutput(1),
          stderr: onOutput(2),
          signal: ctx.signal,
        });
        for (const rest of [partial[1], partial[2]]) if (rest) tail.push(rest);
        if (r.exitCode !== 0) {
          const err = new PolyarchError(
            'RUN_FAILED',
            `process "${cmd.argv.join(' ')}" did not complete successfully: exit code: ${r.exitCode}`,
          );
          (err as { logTail?: string[] }).logTail = tail.slice(-LOG_TAIL_LINES);
          throw err;
        }
      });
      return { value, cached: false };
    } finally {
      for (const r of releases.reverse()) await r().catch(() => undefined);
    }
  });
}
