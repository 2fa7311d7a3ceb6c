/**
 * Busybox root filesystems for exec tests, one per architecture.
 *
 * `busyboxRootfs('arm64')` returns a directory holding /bin/busybox for that architecture, its
 * applet symlinks, /etc/passwd and /etc/group (root, nobody, tester in group extra), /tmp, /root.
 * `$POLYARCH_TEST_BUSYBOX_ROOTFS_<ARCH>` (ARCH = AMD64, ARM64, ARMHF (or ARM_V7), PPC64EL, S390X) names a
 * ready-made one (set by the test environment setup). Otherwise it is built once into
 * `$TMPDIR/polyarch-test-cache/` from the host's /bin/busybox (amd64) or Debian's
 * busybox-static package (`apt-get download`, then `dpkg -x`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** OCI architecture (plus variant for arm) → Debian architecture. */
const DEB_ARCH: Record<string, string> = {
  amd64: 'amd64',
  arm64: 'arm64',
  arm: 'armhf',
  'arm/v7': 'armhf',
  ppc64le: 'ppc64el',
  s390x: 's390x',
};

const CACHE = join(tmpdir(), 'polyarch-test-cache');

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'tester:x:1000:1000:tester:/home/tester:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'tester:x:1000:', 'extra:x:2000:tester', 'nogroup:x:65534:', ''].join('\n');

function hostApplets(): string[] {
  return execFileSync('/bin/busybox', ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

async function debBusybox(debArch: string): Promise<string> {
  const debs = join(CACHE, 'debs');
  await mkdir(debs, { recursive: true });
  const find = () =>
    readdirSync(debs).find((f) => f.startsWith('busybox-static_') && f.endsWith(`_${debArch}.deb`));
  // apt may be busy (another setup running apt-get update): retry a few times.
  for (let attempt = 0; find() === undefined; attempt++) {
    try {
      execFileSync('apt-get', ['download', `busybox-static:${debArch}`], { cwd: debs, stdio: 'ignore' });
    } catch (err) {
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
  const x = await mkdtemp(join(CACHE, 'deb-'));
  execFileSync('dpkg', ['-x', join(debs, find()!), x]);
  return x;
}

async function build(arch: string, dest: string): Promise<void> {
  const debArch = DEB_ARCH[arch];
  if (debArch === undefined) throw new Error(`no busybox fixture for architecture ${arch}`);
  const tmp = await mkdtemp(join(CACHE, `build-${debArch}-`));
  try {
    await mkdir(join(tmp, 'bin'), { recursive: true });
    if (debArch === 'amd64') await cp('/bin/busybox', join(tmp, 'bin/busybox'));
    else {
      const x = await debBusybox(debArch);
      await cp(join(x, 'bin/busybox'), join(tmp, 'bin/busybox'));
      await rm(x, { recursive: true, force: true });
    }
    // Same Debian version for every arch, so the host's applet list fits.
    for (const full of hostApplets()) {
      if (full === '/bin/busybox' || full.endsWith('/busybox')) continue;
      const p = join(tmp, full);
      await mkdir(join(p, '..'), { recursive: true });
      if (!existsSync(p)) await symlink('/bin/busybox', p);
    }
    for (const d of ['etc', 'proc', 'sys', 'dev', 'root', 'home/tester', 'tmp'])
      await mkdir(join(tmp, d), { recursive: true });
    await chmod(join(tmp, 'tmp'), 0o1777);
    await writeFile(join(tmp, 'etc/passwd'), PASSWD);
    await writeFile(join(tmp, 'etc/group'), GROUP);
    await rename(tmp, dest).catch(async (err) => {
      // Another test process built it meanwhile.
      await rm(tmp, { recursive: true, force: true });
      if (!existsSync(dest)) throw err;
    });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** A busybox rootfs directory for `arch` (`amd64`, `arm64`, `arm` or `arm/v7`, …). Do not modify it. */
export async function busyboxRootfs(arch: string): Promise<string> {
  const debArch = DEB_ARCH[arch] ?? arch;
  const names = [debArch, arch.replace('/', '_'), arch.replace('/', '')].map((n) => n.toUpperCase());
  for (const n of names) {
    const fromEnv = process.env[`POLYARCH_TEST_BUSYBOX_ROOTFS_${n}`];
    if (fromEnv && existsSync(join(fromEnv, 'bin/busybox'))) return fromEnv;
  }
  const dest = join(CACHE, `busybox-${debArch}`);
  if (!existsSync(join(dest, 'bin/busybox'))) {
    await mkdir(CACHE, { recursive: true });
    await build(arch, dest);
  }
  return dest;
}

const BINFMT = '/proc/sys/fs/binfmt_misc';

/** qemu binfmt handler name per platform this test suite emulates. */
export const QEMU_HANDLER: Record<string, string> = {
  'linux/arm64': 'qemu-aarch64',
  'linux/arm/v7': 'qemu-arm',
  'linux/ppc64le': 'qemu-ppc64le',
  'linux/s390x': 'qemu-s390x',
  'linux/riscv64': 'qemu-riscv64',
};

/**
 * Make sure the qemu handler for `platform` is registered (mounting binfmt_misc and registering
 * from /usr/lib/binfmt.d/<handler>.conf if needed, as scripts/setup.sh does).
 */
export async function ensureBinfmt(platform: string): Promise<void> {
  const h = QEMU_HANDLER[platform];
  if (h === undefined || existsSync(join(BINFMT, h))) return;
  if (!existsSync(join(BINFMT, 'register')))
    execFileSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT], { stdio: 'ignore' });
  if (existsSync(join(BINFMT, h))) return;
  const line = readFileSync(`/usr/lib/binfmt.d/${h}.conf`, 'utf8').trim();
  await writeFile(join(BINFMT, 'register'), line);
}

/** The test suite's `canExecute`: the host's platform, or an enabled qemu handler. */
export function canExecute(platform: string): boolean {
  if (platform === 'linux/amd64') return process.arch === 'x64';
  const h = QEMU_HANDLER[platform];
  if (h === undefined) return false;
  try {
    return readFileSync(join(BINFMT, h), 'utf8').startsWith('enabled');
  } catch {
    return false;
  }
}
