/**
 * A Debian bookworm minbase rootfs per architecture, for the slow Debian tests and benches.
 *
 *   const tar = debianRootfs('arm64');   // $POLYARCH_TEST_CACHE/debian/bookworm-minbase-arm64-<day>.tar
 *
 * Made with mmdebstrap from the machine's own Debian mirror (read from /etc/apt/sources.list*)
 * and cached as a tarball keyed by UTC date and architecture, so re-runs on the same day skip
 * it; older days' tarballs of that architecture are removed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { testCacheDir } from './busybox.js';

/**
 * The first Debian mirror apt is configured with for bookworm: one-line `deb URI bookworm ...`
 * entries (sources.list, *.list) or deb822 stanzas (*.sources). The machine's mirror is the one
 * it can reach; deb.debian.org may not be.
 */
export function debianMirror(etc = '/etc/apt'): string {
  const files: string[] = [];
  if (existsSync(join(etc, 'sources.list'))) files.push(join(etc, 'sources.list'));
  const dir = join(etc, 'sources.list.d');
  if (existsSync(dir))
    for (const f of readdirSync(dir).sort())
      if (f.endsWith('.list') || f.endsWith('.sources')) files.push(join(dir, f));
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string) =>
          new RegExp(`^${name}:\\s*(.*)$`, 'mi').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
        if (field('Enabled')[0] === 'no') continue;
        if (field('Types').includes('deb') && field('Suites').includes('bookworm')) {
          const uri = field('URIs')[0];
          if (uri) return uri;
        }
      }
    } else {
      for (const line of text.split('\n')) {
        const words = line
          .replace(/\[[^\]]*\]/, '')
          .trim()
          .split(/\s+/);
        if (words[0] === 'deb' && words[2] === 'bookworm' && words[1]) return words[1];
      }
    }
  }
  throw new Error(`no "deb ... bookworm" source in ${files.join(', ') || etc}: cannot make a Debian rootfs`);
}

/** A minbase bookworm rootfs tarball for one Debian architecture, made at most once a day. */
export function debianRootfs(arch: string): string {
  const dir = join(testCacheDir(), 'debian');
  const day = new Date().toISOString().slice(0, 10);
  const tar = join(dir, `bookworm-minbase-${arch}-${day}.tar`);
  if (existsSync(tar)) return tar;
  mkdirSync(dir, { recursive: true });
  // mmdebstrap picks the output format from the name; say tar, and keep the .tar suffix anyway.
  const tmp = join(dir, `.tmp-${process.pid}-${arch}.tar`);
  const r = spawnSync(
    'mmdebstrap',
    ['--quiet', '--variant=minbase', '--format=tar', `--arch=${arch}`, 'bookworm', tmp, debianMirror()],
    { encoding: 'utf8', timeout: 600_000 },
  );
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`mmdebstrap ${arch} failed (${r.status ?? r.signal}): ${r.stderr}`);
  }
  renameSync(tmp, tar);
  // Older days' tarballs of this architecture are superseded.
  for (const f of readdirSync(dir))
    if (f.startsWith(`bookworm-minbase-${arch}-`) && join(dir, f) !== tar)
      rmSync(join(dir, f), { force: true });
  return tar;
}
