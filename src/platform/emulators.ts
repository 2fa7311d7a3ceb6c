/**
 * What this machine can execute: natively, and through QEMU user emulators registered in
 * binfmt_misc. Every answer is proved by running a tiny program (elf.ts), never assumed.
 *
 *   await readBinfmtEntries();            // /proc/sys/fs/binfmt_misc/* parsed (not the status file)
 *   await probePlatform('linux/arm64');   // {ok: true} when an arm64 program really runs here
 *   await emulatorStatus();               // every handler with its platforms and ok / broken reason
 *   await executablePlatforms();          // [linux/amd64/v4, ..., linux/386, linux/arm64, ...]
 *
 * `executablePlatforms()` is memoised for the life of the process (binfmt registrations are
 * rare and probing costs a process per architecture); pass `{fresh: true}` to probe again.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PolyarchError } from '../util/errors.js';
import { pathExists, writeFileAtomic } from '../util/fs.js';
import { ELF_ARCHITECTURES, exitElf } from './elf.js';
import { defaultHostSpec, hostPlatformMaximum } from './host.js';
import { newMatcher, only, platformVector } from './match.js';
import type { Platform, PlatformLike } from './platform.js';
import { formatPlatform, normalizePlatform, toSpec } from './platform.js';

/** Where the kernel exposes binfmt_misc (mounted there by `polyarch binfmt --install`). */
export const BINFMT_MISC_DIR = '/proc/sys/fs/binfmt_misc';

/** One registered binfmt_misc handler, as its /proc file describes it. */
export interface BinfmtEntry {
  name: string;
  enabled: boolean;
  interpreter: string;
  /** Flag letters as the kernel prints them, e.g. `POF`. */
  flags: string;
  /** Magic-type handlers: where the magic starts, and magic/mask as lower-case hex. */
  offset?: number;
  magic?: string;
  mask?: string;
  /** Extension-type handlers (`E`): the file name extension. */
  extension?: string;
  /** The GOARCH of the ELF binaries this handler takes, when its magic says so. */
  architecture?: string;
}

/** Parses the text of /proc/sys/fs/binfmt_misc/<name>. */
export function parseBinfmtEntry(name: string, text: string): BinfmtEntry {
  const entry: BinfmtEntry = { name, enabled: false, interpreter: '', flags: '' };
  for (const line of text.split('\n')) {
    if (line === 'enabled') entry.enabled = true;
    else if (line === 'disabled') entry.enabled = false;
    else if (line.startsWith('interpreter ')) entry.interpreter = line.slice('interpreter '.length);
    else if (line.startsWith('flags:')) entry.flags = line.slice('flags:'.length).trim();
    else if (line.startsWith('offset ')) entry.offset = Number(line.slice('offset '.length));
    else if (line.startsWith('magic ')) entry.magic = line.slice('magic '.length).trim();
    else if (line.startsWith('mask ')) entry.mask = line.slice('mask '.length).trim();
    else if (line.startsWith('extension ')) entry.extension = line.slice('extension '.length).trim();
  }
  if (entry.magic !== undefined && (entry.offset ?? 0) === 0) {
    const arch = elfArchitecture(entry.magic, entry.mask);
    if (arch) entry.architecture = arch;
  }
  return entry;
}

// (ELF class, little endian, e_machine) → GOARCH.
const ELF_MACHINES: Record<string, string> = {
  '64,le,62': 'amd64',
  '32,le,3': '386',
  '64,le,183': 'arm64',
  '32,le,40': 'arm',
  '32,be,40': 'armbe',
  '64,le,21': 'ppc64le',
  '64,be,21': 'ppc64',
  '32,be,20': 'ppc',
  '64,be,22': 's390x',
  '64,le,243': 'riscv64',
  '32,le,243': 'riscv',
  '64,le,8': 'mips64le',
  '64,be,8': 'mips64',
  '32,le,8': 'mipsle',
  '32,be,8': 'mips',
  '64,le,258': 'loong64',
  '64,be,43': 'sparc64',
  '32,be,2': 'sparc',
};

/**
 * The GOARCH an ELF magic (hex, starting at file offset 0) selects, from its class, byte
 * order and e_machine; undefined when it is not ELF, too short, or an ABI Go has no name
 * for (MIPS n32, whose magic tests EF_MIPS_ABI2 in e_flags).
 */
export function elfArchitecture(magicHex: string, maskHex?: string): string | undefined {
  const magic = Buffer.from(magicHex, 'hex');
  const mask = maskHex ? Buffer.from(maskHex, 'hex') : Buffer.alloc(magic.length, 0xff);
  if (magic.length < 20 || magic.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const bits = magic[4] === 2 ? 64 : magic[4] === 1 ? 32 : 0;
  const le = magic[5] === 1;
  const machine = le ? magic.readUInt16LE(18) : magic.readUInt16BE(18);
  const arch = ELF_MACHINES[`${bits},${le ? 'le' : 'be'},${machine}`];
  // ELF32 e_flags is the word at 36; its EF_MIPS_ABI2 bit (0x20) is in the low byte, which
  // is byte 36 little-endian and 39 big-endian. n32 handlers require it set, o32 ones clear.
  if (arch === 'mipsle' || arch === 'mips') {
    const i = le ? 36 : 39;
    if (magic.length > i && ((magic[i] ?? 0) & (mask[i] ?? 0) & 0x20) !== 0) return undefined;
  }
  return arch;
}

/** A registration line `:name:type:offset:magic:mask:interpreter:flags`, decoded. */
export interface BinfmtRule {
  name: string;
  /** `M` (magic bytes) or `E` (file name extension). */
  type: 'M' | 'E';
  offset: number;
  /** Magic (or the extension, for `E`) and mask as lower-case hex. */
  magic: string;
  mask: string;
  interpreter: string;
  flags: string;
}

function unescapeBinfmt(field: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < field.length; i++) {
    if (field[i] === '\\' && field[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(field.slice(i + 2, i + 4))) {
      bytes.push(Number.parseInt(field.slice(i + 2, i + 4), 16));
      i += 3;
    } else bytes.push(field.charCodeAt(i) & 0xff);
  }
  return Buffer.from(bytes);
}

/**
 * Parses the line written to binfmt_misc's `register` (the format of systemd's binfmt.d
 * files, e.g. /usr/lib/binfmt.d/qemu-aarch64.conf). The first character is the field
 * separator; magic and mask may use `\xHH` escapes.
 */
export function parseBinfmtRule(line: string): BinfmtRule {
  const text = line.trim();
  const sep = text[0];
  const fields = sep ? text.slice(1).split(sep) : [];
  if (fields.length < 6)
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid binfmt_misc rule ${JSON.stringify(text)}: want :name:type:offset:magic:mask:interpreter:flags`,
    );
  const [name, type, offset, magic, mask, interpreter, flags] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string | undefined,
  ];
  if (!/^[^/.][^/]*$/.test(name) || name === 'register' || name === 'status')
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid binfmt_misc rule ${JSON.stringify(text)}: bad name ${JSON.stringify(name)}`,
    );
  if (type !== 'M' && type !== 'E')
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid binfmt_misc rule ${JSON.stringify(text)}: type must be M or E`,
    );
  return {
    name,
    type,
    offset: offset === '' ? 0 : Number(offset),
    magic: unescapeBinfmt(magic).toString('hex'),
    mask: unescapeBinfmt(mask).toString('hex'),
    interpreter,
    flags: flags ?? '',
  };
}

export interface BinfmtOptions {
  /** binfmt_misc mount point. Default BINFMT_MISC_DIR. */
  dir?: string;
}

/** Every registered handler; empty when binfmt_misc is not mounted. */
export async function readBinfmtEntries(opts: BinfmtOptions = {}): Promise<BinfmtEntry[]> {
  const dir = opts.dir ?? BINFMT_MISC_DIR;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const entries: BinfmtEntry[] = [];
  for (const name of names.sort()) {
    if (name === 'register' || name === 'status') continue;
    try {
      entries.push(parseBinfmtEntry(name, await readFile(join(dir, name), 'utf8')));
    } catch {
      // Unregistered between readdir and read: not there any more.
    }
  }
  return entries;
}

/** The platforms an emulator for `architecture` provides (qemu-arm runs arm v7, v6 and v5). */
export function emulatedPlatforms(architecture: string): Platform[] {
  const base = normalizePlatform({ os: 'linux', architecture });
  return platformVector(base)
    .filter((p) => p.architecture === architecture)
    .map((p) => normalizePlatform(p));
}

export interface ProbeOptions {
  /** Kill the program after this long. Default 10 s: a cold QEMU start on a busy machine. */
  timeoutMs?: number;
  /** Where to write the program; must not be mounted noexec. Default os.tmpdir(). */
  tmpDir?: string;
}

export interface ProbeResult {
  ok: boolean;
  /** Why not, in words (`exit status 1`, `spawn ... ENOENT`, `killed by SIGILL`). */
  reason?: string;
}

/** Runs `program` (bytes) as an executable file and reports whether it exited 0. */
export async function runProgram(program: Buffer, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const dir = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'polyarch-probe-'));
  const file = join(dir, 'exit0');
  try {
    await writeFile(file, program);
    await chmod(file, 0o755);
    return await new Promise<ProbeResult>((resolve) => {
      execFile(file, [], { timeout: opts.timeoutMs ?? 10_000, killSignal: 'SIGKILL' }, (err) => {
        if (!err) return resolve({ ok: true });
        const e = err as NodeJS.ErrnoException & { code?: unknown; signal?: string | null; killed?: boolean };
        if (e.killed && e.signal === 'SIGKILL') return resolve({ ok: false, reason: 'timed out' });
        if (e.signal) return resolve({ ok: false, reason: `killed by ${e.signal}` });
        if (typeof e.code === 'number') return resolve({ ok: false, reason: `exit status ${e.code}` });
        resolve({ ok: false, reason: e.code ? `cannot execute: ${String(e.code)}` : e.message });
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Whether a program of `platform`'s architecture runs here, natively or via binfmt_misc.
 * Only the architecture matters (a variant is a CPU feature level, checked elsewhere).
 */
export async function probePlatform(platform: PlatformLike, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const arch = normalizePlatform(toSpec(platform)).architecture;
  if (!ELF_ARCHITECTURES.includes(arch)) return { ok: false, reason: `no test program for ${arch}` };
  return runProgram(exitElf(arch), opts);
}

export interface EmulatorStatus {
  /** The handler name, e.g. `qemu-aarch64`. */
  name: string;
  entry: BinfmtEntry;
  /** What it provides when it works (empty when we have no test program for its machine). */
  platforms: Platform[];
  /** True when it is enabled and (where a test program exists) proved to run one. */
  ok: boolean;
  /** Why not ok: disabled, interpreter missing, or how the test program failed. */
  reason?: string;
}

/**
 * Checks one handler: disabled → not ok; without the F flag the interpreter must exist
 * (the kernel opens it at each exec); when its magic is an ELF architecture we can build
 * a program for, that program must run and exit 0 (BuildKit's archutil check).
 */
export async function probeEmulator(entry: BinfmtEntry, opts: ProbeOptions = {}): Promise<EmulatorStatus> {
  // Only architectures we can prove with a test program count as provided platforms.
  const testable = entry.architecture !== undefined && ELF_ARCHITECTURES.includes(entry.architecture);
  const platforms = testable ? emulatedPlatforms(entry.architecture!) : [];
  const status = (ok: boolean, reason?: string): EmulatorStatus =>
    reason === undefined
      ? { name: entry.name, entry, platforms, ok }
      : { name: entry.name, entry, platforms, ok, reason };
  if (!entry.enabled) return status(false, 'disabled');
  // With F the kernel opened the interpreter at registration; the path may be gone since.
  if (!entry.flags.includes('F') && !(await pathExists(entry.interpreter)))
    return status(false, `interpreter ${entry.interpreter} does not exist`);
  if (testable) {
    const r = await runProgram(exitElf(entry.architecture!), opts);
    if (!r.ok) return status(false, `test program for ${formatPlatform(platforms[0]!)} failed: ${r.reason}`);
  }
  return status(true);
}

/** Every registered handler, checked (in parallel). */
export async function emulatorStatus(opts: BinfmtOptions & ProbeOptions = {}): Promise<EmulatorStatus[]> {
  const entries = await readBinfmtEntries(opts);
  return Promise.all(entries.map((e) => probeEmulator(e, opts)));
}

export interface ExecutableOptions extends BinfmtOptions, ProbeOptions {
  /** Probe again instead of returning the answer memoised by an earlier call. */
  fresh?: boolean;
  /** Emulator checks already made (from `emulatorStatus`), to avoid probing twice. */
  emulators?: readonly EmulatorStatus[];
}

let memo: Promise<Platform[]> | undefined;

/**
 * Platforms this machine executes, best first: the host's own (with every CPU level it
 * has, e.g. amd64/v4..v1), the other architectures its CPU runs natively when a test
 * program proves it (386 on amd64, arm on arm64), then each working emulator's platforms.
 */
export function executablePlatforms(opts: ExecutableOptions = {}): Promise<Platform[]> {
  if (!memo || opts.fresh) memo = computeExecutable(opts);
  return memo;
}

async function computeExecutable(opts: ExecutableOptions): Promise<Platform[]> {
  const hostArch = defaultHostSpec().architecture;
  const vector = platformVector(hostPlatformMaximum()).map((p) => normalizePlatform(p));
  const foreign = [...new Set(vector.map((p) => p.architecture).filter((a) => a !== hostArch))];
  const [probes, emulators] = await Promise.all([
    Promise.all(
      foreign.map(
        async (a) => [a, (await probePlatform({ os: 'linux', architecture: a }, opts)).ok] as const,
      ),
    ),
    opts.emulators ?? emulatorStatus(opts),
  ]);
  const runs = new Map<string, boolean>(probes);
  const out: Platform[] = [];
  const seen = new Set<string>();
  const add = (p: Platform) => {
    const key = formatPlatform(p);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(p);
    }
  };
  for (const p of vector) if (p.architecture === hostArch || runs.get(p.architecture)) add(p);
  for (const e of emulators) if (e.ok) for (const p of e.platforms) add(p);
  return out;
}

const probedByArch = new Map<string, Promise<boolean>>();
/** binfmtFingerprint(), read once per process (like the answers memoised beside it). */
let fingerprint: string | undefined;

export interface RunsHereOptions {
  /**
   * A file keeping proofs across processes: an architecture proved to run stays proved while
   * the machine's emulation set-up is the same (same boot, same binfmt_misc registrations,
   * same interpreter files). Only successes are kept; a failure is probed again next time.
   */
  proofCache?: string;
}

/**
 * A digest of what decides whether a foreign program runs: the boot, every binfmt_misc file
 * (registrations and the global status) and each interpreter file's identity. Undefined when
 * it cannot be read (then nothing is cached).
 */
export function binfmtFingerprint(dir: string = BINFMT_MISC_DIR): string | undefined {
  try {
    const h = createHash('sha256');
    h.update(readFileSync('/proc/sys/kernel/random/boot_id'));
    for (const name of readdirSync(dir).sort()) {
      if (name === 'register') continue;
      const text = readFileSync(join(dir, name), 'utf8');
      h.update(`${name}\0${text}\0`);
      const interp = /^interpreter (.+)$/m.exec(text)?.[1];
      if (interp) {
        const st = statSync(interp, { throwIfNoEntry: false });
        h.update(st ? `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}\0` : 'missing\0');
      }
    }
    return h.digest('hex');
  } catch {
    return undefined;
  }
}

interface ProofFile {
  fingerprint: string;
  architectures: string[];
}

function readProofs(file: string, fingerprint: string): Set<string> {
  try {
    const f = JSON.parse(readFileSync(file, 'utf8')) as ProofFile;
    if (f.fingerprint === fingerprint && Array.isArray(f.architectures)) return new Set(f.architectures);
  } catch {
    // Missing or damaged: no proofs.
  }
  return new Set();
}

/** Proof-file updates of this process, one at a time. */
let proofWrites: Promise<void> = Promise.resolve();

function recordProof(file: string, fingerprint: string, arch: string): Promise<void> {
  proofWrites = proofWrites.then(async () => {
    const archs = readProofs(file, fingerprint);
    if (archs.has(arch)) return;
    archs.add(arch);
    const f: ProofFile = { fingerprint, architectures: [...archs].sort() };
    await writeFileAtomic(file, JSON.stringify(f), { createParents: true }).catch(() => undefined);
  });
  return proofWrites;
}

/**
 * Whether a program for `platform` runs here: natively, or through whatever binfmt handler
 * the kernel picks for it, proved by running one test program (memoised per architecture for
 * the process, and across processes with `proofCache`). Cheaper than `executablePlatforms()`
 * when only a few platforms matter.
 */
export function runsHere(platform: PlatformLike, opts: RunsHereOptions = {}): Promise<boolean> {
  if (isHostArchitecture(platform)) return Promise.resolve(true);
  const arch = normalizePlatform(toSpec(platform)).architecture;
  let r = probedByArch.get(arch);
  if (!r) {
    r = (async () => {
      const fp = opts.proofCache ? (fingerprint ??= binfmtFingerprint()) : undefined;
      if (fp && readProofs(opts.proofCache!, fp).has(arch)) return true;
      const ok = (await probePlatform(platform)).ok;
      if (ok && fp) await recordProof(opts.proofCache!, fp, arch);
      return ok;
    })();
    probedByArch.set(arch, r);
  }
  return r;
}

/**
 * Whether a program for `platform` can run here (natively or emulated), by the same rules
 * as `executablePlatforms` (whose memoised answer it uses): an exact normalised match.
 */
export async function canExecute(platform: PlatformLike, opts: ExecutableOptions = {}): Promise<boolean> {
  const m = newMatcher(platform);
  return (await executablePlatforms(opts)).some((p) => m.match(p));
}

/**
 * Whether `platform` is one containerd's Only() of the host counts as native. For another
 * architecture than the host's (386 on amd64) that is the CPU's claim, not the kernel's:
 * `runsHere` proves it.
 */
export function isNative(platform: PlatformLike): boolean {
  return only(hostPlatformMaximum()).match(platform);
}

/**
 * Whether `platform` is of the host's own architecture at a level its CPU runs: the only
 * platforms taken on trust. The other architectures containerd's vector counts as native (386
 * on amd64, arm on arm64) depend on the kernel (IA32 emulation, AArch32 support), so they are
 * proved by a test program like emulated ones.
 */
export function isHostArchitecture(platform: PlatformLike): boolean {
  return (
    isNative(platform) && normalizePlatform(toSpec(platform)).architecture === defaultHostSpec().architecture
  );
}
