/**
 * Where polyarch keeps its state (SPEC.md § Configuration and state).
 *
 *   stateRoot()   // $POLYARCH_ROOT, else /var/lib/polyarch as root, else $XDG_DATA_HOME/polyarch
 *   storeDir()    // <stateRoot>/store: the local image store, an OCI image layout
 *
 * Both take the environment as a parameter so tests and the CLI can point them elsewhere.
 */
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The state root: `$POLYARCH_ROOT`, else `/var/lib/polyarch` as root, else `$XDG_DATA_HOME/polyarch` (default `~/.local/share/polyarch`). */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.POLYARCH_ROOT) return resolve(env.POLYARCH_ROOT);
  if (process.getuid?.() === 0) return '/var/lib/polyarch';
  const data = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share');
  return join(resolve(data), 'polyarch');
}

/** The local image store: `<stateRoot>/store`. */
export function storeDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(stateRoot(env), 'store');
}

/**
 * Where `runsHere` keeps its proofs that foreign platforms run here (platform/emulators.ts).
 * They hold for one boot and one binfmt_misc set-up, not for one state root, so they live in
 * the per-boot runtime directory: `/run/polyarch/emulators.json` as root, else
 * `$XDG_RUNTIME_DIR/polyarch/emulators.json`, else under the temp dir per user.
 */
export function emulatorProofFile(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.();
  if (uid === 0) return '/run/polyarch/emulators.json';
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'polyarch', 'emulators.json');
  return join(tmpdir(), `polyarch-${uid ?? 'user'}`, 'emulators.json');
}
