/**
 * Registering QEMU user emulators in binfmt_misc, from Debian's qemu-user-static, the way
 * tonistiigi/binfmt does for buildx users.
 *
 *   await binfmtStatus();                          // {supported, emulators, broken, problems}
 *   await installEmulators('arm64,riscv64');       // or 'all'; idempotent
 *   await uninstallEmulators('qemu-aarch64');      // writes -1 to the entry; idempotent
 *   await registerRule(':name:M::...:/path:F');    // any rule (tests use their own names)
 *
 * Rules come from /usr/lib/binfmt.d/qemu-<name>.conf (magic, mask, interpreter
 * /usr/libexec/qemu-binfmt/<name>-binfmt-P) and are registered with the F flag, so the
 * kernel opens the interpreter once and containers need no copy of QEMU in their rootfs.
 * Needs root. The host's own architecture is never registered or unregistered.
 */
import { execFile } from 'node:child_process';
import { access, constants, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  BINFMT_MISC_DIR,
  type BinfmtRule,
  defaultHostSpec,
  type EmulatorStatus,
  emulatorStatus,
  executablePlatforms,
  exitElf,
  formatPlatform,
  hostPlatformMaximum,
  normalizeArch,
  parseBinfmtEntry,
  parseBinfmtRule,
  platformVector,
  probeEmulator,
  probePlatform,
} from '../platform/index.js';
import { errorMessage, PolyarchError, UsageError } from '../util/errors.js';

/** GOARCH → the name QEMU and Debian give that architecture. */
export const QEMU_NAMES: Readonly<Record<string, string>> = {
  arm64: 'aarch64',
  arm: 'arm',
  ppc64le: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  '386': 'i386',
  mips64le: 'mips64el',
  mips64: 'mips64',
  loong64: 'loongarch64',
  amd64: 'x86_64',
  mipsle: 'mipsel',
  mips: 'mips',
  ppc64: 'ppc64',
};

/** What `--install all` means (tonistiigi/binfmt's list), minus what the host runs natively. */
export const ALL_ARCHITECTURES: readonly string[] = [
  'arm64',
  'arm',
  'ppc64le',
  's390x',
  'riscv64',
  '386',
  'mips64le',
  'mips64',
  'loong64',
  'amd64',
];

export interface BinfmtOptions {
  /** binfmt_misc mount point. Default /proc/sys/fs/binfmt_misc. */
  dir?: string;
  /** Where the qemu-*.conf rules are. Default /usr/lib/binfmt.d (Debian's qemu-user-static). */
  rulesDir?: string;
  /** Where the static QEMU binaries are, for rules without a .conf file. Default /usr/bin. */
  binDir?: string;
  /**
   * Handler names are this prefix + the QEMU name. Default `qemu-` (Debian's names); tests
   * use their own prefix so they never touch the machine's real handlers.
   */
  handlerPrefix?: string;
  /** Reports each step (`installing: arm64 OK`). Default: silent. */
  log?: (line: string) => void;
}

const RULES_DIR = '/usr/lib/binfmt.d';
const BIN_DIR = '/usr/bin';
const APT_HINT = 'install it with `apt-get install qemu-user-static`';

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Mounts binfmt_misc at `dir` unless it already is (needs root). */
export async function ensureBinfmtMounted(opts: BinfmtOptions = {}): Promise<void> {
  const dir = opts.dir ?? BINFMT_MISC_DIR;
  if (await exists(join(dir, 'register'))) return;
  try {
    await promisify(execFile)('mount', ['-t', 'binfmt_misc', 'binfmt_misc', dir]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new PolyarchError('IO', `mounting binfmt_misc on ${dir}: ${stderr || errorMessage(err)}`, {
      cause: err,
    });
  }
}

// ---- status ---------------------------------------------------------------------------

export interface BinfmtReport {
  /** Platforms executable here (native first), as `os/arch[/variant]`. */
  supported: string[];
  /** Every registered handler name, e.g. `qemu-aarch64`. */
  emulators: string[];
  /** Handlers that are registered but do not work (disabled, interpreter missing, test failed). */
  broken: string[];
  /** Why each broken handler is broken. */
  problems: { name: string; reason: string }[];
}

/** What `polyarch binfmt` prints: proved by running a test program per architecture. */
export async function binfmtStatus(opts: BinfmtOptions = {}): Promise<BinfmtReport> {
  try {
    await ensureBinfmtMounted(opts);
  } catch {
    // Not root or no binfmt_misc: report native platforms only.
  }
  const dir = opts.dir ?? BINFMT_MISC_DIR;
  const emulators = await emulatorStatus({ dir });
  const supported = await executablePlatforms({ dir, fresh: true, emulators });
  const bad = emulators.filter((e) => !e.ok);
  return {
    supported: supported.map((p) => formatPlatform(p)),
    emulators: emulators.map((e) => e.name),
    broken: bad.map((e) => e.name),
    problems: bad.map((e) => ({ name: e.name, reason: e.reason ?? 'not working' })),
  };
}

// ---- registering ----------------------------------------------------------------------

function escapeHex(hex: string): string {
  return hex.replace(/../g, (b) => `\\x${b}`);
}

/** The line to write to `register` for a rule (magic and mask `\xHH`-escaped). */
export function formatBinfmtRule(rule: BinfmtRule): string {
  const magic = rule.type === 'E' ? Buffer.from(rule.magic, 'hex').toString('latin1') : escapeHex(rule.magic);
  const offset = rule.offset ? String(rule.offset) : '';
  return `:${rule.name}:${rule.type}:${offset}:${magic}:${escapeHex(rule.mask)}:${rule.interpreter}:${rule.flags}`;
}

/** Registers one rule (a line or a parsed rule). Fails if the name is already registered. */
export async function registerRule(rule: BinfmtRule | string, opts: BinfmtOptions = {}): Promise<void> {
  const r = typeof rule === 'string' ? parseBinfmtRule(rule) : rule;
  const dir = opts.dir ?? BINFMT_MISC_DIR;
  await ensureBinfmtMounted(opts);
  try {
    await writeFile(join(dir, 'register'), formatBinfmtRule(r));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EEXIST'
        ? 'a handler of that name is already registered'
        : code === 'ENOENT'
          ? `interpreter ${r.interpreter} does not exist`
          : errorMessage(err);
    throw new PolyarchError('IO', `registering binfmt_misc handler ${r.name}: ${why}`, { cause: err });
  }
}

/** Removes a handler by name (writes -1 to its entry); false if it was not registered. */
export async function unregister(name: string, opts: BinfmtOptions = {}): Promise<boolean> {
  if (!/^[^/.][^/]*$/.test(name) || name === 'register' || name === 'status')
    throw new UsageError(`invalid binfmt_misc handler name ${JSON.stringify(name)}`);
  const file = join(opts.dir ?? BINFMT_MISC_DIR, name);
  if (!(await exists(file))) return false;
  try {
    await writeFile(file, '-1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new PolyarchError('IO', `unregistering binfmt_misc handler ${name}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
  return true;
}

/**
 * Resolves a user's name for an emulator to its QEMU name: a GOARCH (`arm64`), a platform
 * (`linux/arm64`), a QEMU name (`aarch64`) or a handler name (`qemu-aarch64`).
 */
export function qemuName(input: string): string {
  let s = input.trim().toLowerCase();
  if (s.startsWith('qemu-')) s = s.slice('qemu-'.length);
  if (s.includes('/')) s = s.split('/')[1] ?? '';
  if (Object.values(QEMU_NAMES).includes(s)) return s;
  const arch = normalizeArch(s).architecture;
  const q = QEMU_NAMES[arch];
  if (q) return q;
  if (/^[a-z0-9_]+$/.test(s)) return s; // e.g. sparc64, alpha: only if Debian ships a rule for it
  throw new UsageError(
    `unknown emulator ${JSON.stringify(input)}: want all or one of ${ALL_ARCHITECTURES.join(', ')}, mipsle, mips, ppc64`,
  );
}

function goarchOfQemu(q: string): string | undefined {
  return Object.entries(QEMU_NAMES).find(([, v]) => v === q)?.[0];
}

/** The rule Debian's qemu-user-static ships for `q`, made to use the F flag. */
export async function qemuRule(q: string, opts: BinfmtOptions = {}): Promise<BinfmtRule> {
  const conf = join(opts.rulesDir ?? RULES_DIR, `qemu-${q}.conf`);
  const staticBin = join(opts.binDir ?? BIN_DIR, `qemu-${q}-static`);
  let rule: BinfmtRule | undefined;
  try {
    rule = parseBinfmtRule(await readFile(conf, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (rule && (await exists(rule.interpreter))) {
    return { ...rule, flags: rule.flags.includes('F') ? rule.flags : `${rule.flags}F` };
  }
  // No rule file (or its interpreter is gone): the plain static binary with a magic taken
  // from our own test program's header. No P flag: only the *-binfmt-P names expect it.
  const arch = goarchOfQemu(q);
  if (!(await exists(staticBin)) || !arch)
    throw new PolyarchError(
      'NOT_FOUND',
      `no QEMU emulator for ${q} (${conf} and ${staticBin} missing): ${APT_HINT}`,
    );
  return elfRule(`qemu-${q}`, arch, staticBin, 'F');
}

/** A rule matching ELF executables (and PIE) of `arch`, like Debian's masks. */
export function elfRule(name: string, arch: string, interpreter: string, flags: string): BinfmtRule {
  const header = exitElf(arch).subarray(0, 20);
  const mask = Buffer.from('ffffffffffffff00ffffffffffffffffffffffff', 'hex');
  header[7] = 0; // OS ABI: any
  // e_type: ET_EXEC (2) or ET_DYN (3) — mask out the low bit of its low byte.
  const le = header[5] === 1;
  mask[le ? 16 : 17] = 0xfe;
  return {
    name,
    type: 'M',
    offset: 0,
    magic: header.toString('hex'),
    mask: mask.toString('hex'),
    interpreter,
    flags,
  };
}

export type InstallAction = 'installed' | 'already installed' | 'skipped: native' | 'failed';

export interface InstallResult {
  /** What the user asked for, as a GOARCH where known (`arm64`), else the QEMU name. */
  target: string;
  /** Handler name (`qemu-aarch64`). */
  name: string;
  action: InstallAction;
  error?: string;
}

function splitList(list: string | readonly string[]): string[] {
  return (typeof list === 'string' ? [list] : list)
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * Registers emulators for `targets` (`all` or a list). Idempotent: a working handler is
 * left alone; a broken one (interpreter gone, disabled) is registered afresh. The host's own
 * architecture, and ones its CPU runs natively, are skipped. Every result is proved by
 * running a test program. Throws after trying them all if any failed.
 */
export async function installEmulators(
  targets: string | readonly string[],
  opts: BinfmtOptions = {},
): Promise<InstallResult[]> {
  const log = opts.log ?? (() => {});
  const dir = opts.dir ?? BINFMT_MISC_DIR;
  const prefix = opts.handlerPrefix ?? 'qemu-';
  const items = splitList(targets);
  if (items.length === 0) throw new UsageError('--install needs a list of architectures or "all"');
  const names = items.some((t) => t.toLowerCase() === 'all')
    ? ALL_ARCHITECTURES.map((a) => QEMU_NAMES[a]!)
    : items.map((t) => qemuName(t));
  await ensureBinfmtMounted(opts);
  const hostArch = defaultHostSpec().architecture;
  const nativeArchs = new Set(platformVector(hostPlatformMaximum()).map((p) => p.architecture));
  const results: InstallResult[] = [];
  for (const q of [...new Set(names)]) {
    const arch = goarchOfQemu(q);
    const target = arch ?? q;
    const name = `${prefix}${q}`;
    const done = (action: InstallAction, error?: string) => {
      results.push(error === undefined ? { target, name, action } : { target, name, action, error });
      log(
        `installing: ${target} ${error ? `cannot register ${JSON.stringify(name)}: ${error}` : action === 'installed' ? 'OK' : action}`,
      );
    };
    try {
      if (arch === hostArch) {
        done('skipped: native');
        continue;
      }
      const entryFile = join(dir, name);
      const existing = (await exists(entryFile))
        ? await probeEmulator(parseBinfmtEntry(name, await readFile(entryFile, 'utf8')))
        : undefined;
      if (existing?.ok) {
        done('already installed');
        continue;
      }
      // 386 on amd64, arm on (most) arm64: the CPU runs these without help.
      if (
        !existing &&
        arch &&
        nativeArchs.has(arch) &&
        (await probePlatform({ os: 'linux', architecture: arch })).ok
      ) {
        done('skipped: native');
        continue;
      }
      const rule = await qemuRule(q, opts);
      if (existing) await unregister(name, opts);
      await registerRule({ ...rule, name }, opts);
      const check = await probeEmulator(parseBinfmtEntry(name, await readFile(entryFile, 'utf8')));
      if (!check.ok) throw new PolyarchError('IO', `registered but not working: ${check.reason}`);
      done('installed');
    } catch (err) {
      done('failed', errorMessage(err));
    }
  }
  const failed = results.filter((r) => r.action === 'failed');
  if (failed.length > 0)
    throw new PolyarchError(
      'IO',
      `installing emulators: ${failed.map((r) => `${r.target}: ${r.error}`).join('; ')}`,
    );
  return results;
}

export interface UninstallResult {
  name: string;
  action: 'uninstalled' | 'not installed';
}

/**
 * Unregisters handlers by name (`qemu-aarch64`, `aarch64`, `arm64`, or any registered
 * handler's exact name; `all` = every `qemu-*` one, or every one with `handlerPrefix`). Refuses the host's own architecture.
 */
export async function uninstallEmulators(
  targets: string | readonly string[],
  opts: BinfmtOptions = {},
): Promise<UninstallResult[]> {
  const log = opts.log ?? (() => {});
  const dir = opts.dir ?? BINFMT_MISC_DIR;
  const prefix = opts.handlerPrefix ?? 'qemu-';
  const items = splitList(targets);
  if (items.length === 0) throw new UsageError('--uninstall needs a list of emulator names or "all"');
  let names: string[];
  if (items.some((t) => t.toLowerCase() === 'all')) {
    names = (await emulatorStatus({ dir })).map((e) => e.name).filter((n) => n.startsWith(prefix));
  } else {
    names = [];
    for (const t of items) {
      if (await exists(join(dir, t))) names.push(t);
      else if (t.startsWith(prefix) || /[-.]/.test(t))
        names.push(t); // a handler name not registered now
      else names.push(`${prefix}${qemuName(t)}`);
    }
  }
  const hostArch = defaultHostSpec().architecture;
  const results: UninstallResult[] = [];
  for (const name of [...new Set(names)]) {
    const file = join(dir, name);
    let st: EmulatorStatus | undefined;
    if (await exists(file)) st = await probeEmulator(parseBinfmtEntry(name, await readFile(file, 'utf8')));
    if (st?.entry.architecture === hostArch || name === `${prefix}${QEMU_NAMES[hostArch] ?? ''}`)
      throw new UsageError(
        `refusing to uninstall ${name}: it handles this host's own architecture (${hostArch})`,
      );
    const removed = await unregister(name, opts);
    const action = removed ? 'uninstalled' : 'not installed';
    results.push({ name, action });
    log(`uninstalling: ${name} ${removed ? 'OK' : 'not installed'}`);
  }
  return results;
}
