/**
 * What every polyarch command does first (bin/polyarch calls it before any command, the
 * `version` fast path included):
 *
 *   await startup(process.env);
 *
 * 1. Makes the state root with mode 0700 if it does not exist (content/paths.ts says why 0700).
 * 2. Lists `<root>/pids/` — one readdir, normally empty or absent — for markers of processes
 *    that held volatile state and are gone (exec/reap.ts). For those, it reconciles before the
 *    command runs: containers deleted, rootfs mounts unmounted, bundles (config.json holds the
 *    process environment, secrets included) and build temp dirs (staged secret files) removed,
 *    active snapshots of dead processes removed, export temp files removed.
 *
 * It never fails the command: a state root that cannot be made or read is the command's own
 * business to report. Nothing beyond the one readdir is loaded or done unless a marker is stale.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeStateRoot, stateRoot } from '../content/paths.js';

export async function startup(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  let root: string;
  let names: string[];
  try {
    root = stateRoot(env);
    makeStateRoot(root);
    names = readdirSync(join(root, 'pids'));
  } catch {
    return;
  }
  if (names.length === 0) return;
  const { ownerAlive, parseOwner } = await import('../util/lock.js');
  const dead = names.filter((n) => {
    const o = parseOwner(n);
    return o !== undefined && ownerAlive(o) === false;
  });
  if (dead.length > 0) await reconcile(root, dead).catch(() => undefined);
}

/** Cleans up after the dead processes whose markers are `dead` (names in `<root>/pids`). */
export async function reconcile(root: string, dead: string[]): Promise<void> {
  const [{ cleanupStale }, { sweepBuildTemp, pidsDir }, { Snapshotter }, { sweepDeadTemps }, fsp] =
    await Promise.all([
      import('../exec/runc.js'),
      import('../exec/reap.js'),
      import('../snapshot/overlay.js'),
      import('../build/export/layers.js'),
      import('node:fs/promises'),
    ]);
  // Containers and their mounts first (then their networks: pasta and the netns), then temp
  // dirs and mounts under them, then snapshots.
  await cleanupStale(root).catch(() => undefined);
  await import('../exec/network.js').then((n) => n.sweepDeadNetworks(root)).catch(() => undefined);
  await sweepBuildTemp(root).catch(() => undefined);
  await Snapshotter.open({ root })
    .then((s) => s.removeOrphans())
    .catch(() => undefined);
  await sweepDeadTemps(join(root, 'export')).catch(() => undefined);
  await sweepDeadTemps(join(root, 'export', 'tmp')).catch(() => undefined);
  for (const n of dead) await fsp.unlink(join(pidsDir(root), n)).catch(() => undefined);
}
