/**
 * Where polyarch keeps its state (SPEC.md § Configuration and state).
 *
 *   stateRoot()   // $POLYARCH_ROOT, else /var/lib/polyarch as root, else $XDG_DATA_HOME/polyarch
 *   storeDir()    // <stateRoot>/store: the local image store, an OCI image layout
 *
 * Both take the environment as a parameter so tests and the CLI can point them elsewhere.
 *
 * The state root is made with mode 0700 (STATE_ROOT_MODE; makeStateRoot, which the CLI calls at
 * start): it holds image contents and, while containers run, their environment — secrets
 * included. Not 0711 as containerd's root: polyarch uses no user namespaces (no rootless or
 * idmapped mode), so nothing but its own user (root, or the invoking user) ever has to
 * traverse it; runc resolves bundle and rootfs paths as that user before the container's
 * process drops privileges. A root that already exists keeps its mode (it may be a directory
 * the user chose); the directories under it holding secrets are 0700 themselves (exec/reap.ts).
 */
import { mkdirSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** The state root: `$POLYARCH_ROOT`, else `/var/lib/polyarch` as root, else `$XDG_DATA_HOME/polyarch` (default `~/.local/share/polyarch`). */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.POLYARCH_ROOT) return resolve(env.POLYARCH_ROOT);
  if (process.getuid?.() === 0) return '/var/lib/polyarch';
  const data = env.XDG_DATA_HOME || join(env.HOME || homedir(), '.local', 'share');
  return join(resolve(data), 'polyarch');
}

/** Mode of a state root polyarch creates (see the module comment). */
export const STATE_ROOT_MODE = 0o700;

/** Creates the state root `root` (and missing parents) with STATE_ROOT_MODE if it does not exist. */
export function makeStateRoot(root: string): void {
  mkdirSync(root, { recursive: true, mode: STATE_ROOT_MODE });
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
