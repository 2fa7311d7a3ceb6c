/**
 * Process-owned state under the state root, and finding what killed processes left.
 *
 *   const release = await holdProcessState(root);   // before making bundles, mounts, temp dirs
 *   try { …runContainer / build… } finally { …own cleanup…; release(); }
 *   await sweepBuildTemp(root);                      // build temp dirs of dead processes
 *
 * Volatile state — container bundles (`exec/<id>`, whose config.json holds the process's
 * environment, secrets given with `RUN --mount=type=secret,env=` included), runc state
 * (`runc/`) and build temp dirs (`build/tmp/<pid>-*`, where secret files are staged) — lives in
 * directories of mode 0700 (made so, or tightened, on the first hold of a process), so no other
 * user can read it whatever the state root's own mode.
 *
 * The first hold also writes a marker `pids/<pid>-<start>-<host>` (util/lock.ts owner names).
 * It is removed when the process exits with every hold released — its holders had cleaned up
 * after themselves — and stays when the process was killed (SIGKILL, power loss) or exited
 * with containers still running. The CLI lists `pids/` at start (cli/startup.ts): one readdir,
 * empty in the common case; a marker of a dead process makes it reconcile what that process
 * left (containers, mounts, bundles, temp dirs, active snapshots) before the command runs.
 */
import { unlinkSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { makeStateRoot } from '../content/paths.js';
import { unmountPath } from '../snapshot/overlay.js';
import { formatOwner, pidAlive, selfOwner } from '../util/lock.js';

/** Mode of the directories holding volatile state (bundles, runc state, build temp, markers). */
export const VOLATILE_DIR_MODE = 0o700;

/** `<root>/pids`: markers of processes that hold volatile state. */
export function pidsDir(root: string): string {
  return join(resolve(root), 'pids');
}

interface Hold {
  count: number;
  marker: string;
  ready: Promise<void>;
}

const holds = new Map<string, Hold>();
let exitHooked = false;

function onExit(): void {
  for (const h of holds.values())
    if (h.count === 0)
      try {
        unlinkSync(h.marker);
      } catch {}
}

async function prepare(root: string, marker: string): Promise<void> {
  makeStateRoot(root);
  await Promise.all(
    ['pids', 'exec', 'runc', join('build', 'tmp')].map(async (d) => {
      const p = join(root, d);
      await mkdir(p, { recursive: true, mode: VOLATILE_DIR_MODE });
      // Made 0755 by an earlier version: tighten.
      await chmod(p, VOLATILE_DIR_MODE);
    }),
  );
  await writeFile(marker, '', { mode: 0o600 });
}

/**
 * Declares that this process is about to make volatile state under `root`; resolves to a
 * release function to call once that state is cleaned up. See the module comment.
 */
export async function holdProcessState(root: string): Promise<() => void> {
  const r = resolve(root);
  let h = holds.get(r);
  if (!h) {
    const marker = join(r, 'pids', formatOwner(selfOwner()));
    const hold: Hold = { count: 0, marker, ready: prepare(r, marker) };
    h = hold;
    holds.set(r, hold);
    hold.ready.catch(() => holds.delete(r));
    if (!exitHooked) {
      exitHooked = true;
      process.on('exit', onExit);
    }
  }
  const held = h;
  await held.ready;
  held.count++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    held.count--;
  };
}

/** Unmounts and removes `<root>/build/tmp/<pid>-*` dirs of builds whose process is gone. */
export async function sweepBuildTemp(root: string): Promise<string[]> {
  const base = join(root, 'build', 'tmp');
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return [];
  }
  const stale = names.filter((name) => {
    const pid = Number(name.split('-')[0]);
    return Number.isInteger(pid) && pid !== process.pid && !pidAlive(pid);
  });
  if (stale.length === 0) return [];
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '');
  for (const name of stale) {
    const dir = join(base, name);
    // Deepest first, so nested mounts come off before their parents.
    for (const m of mounts.filter((m) => m.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length))
      await unmountPath(m).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
  return stale;
}
