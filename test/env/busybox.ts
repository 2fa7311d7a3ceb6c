/**
 * The busybox base image fixture: a multi-platform OCI image layout made from Debian's
 * busybox-static debs (downloaded and unpacked by scripts/setup.sh), since tests have no
 * Docker Hub.
 *
 *   const bb = await ensureBusyboxLayout();      // built once, then cached
 *   // bb.layoutDir is an OCI image layout; tag 'busybox' → image index with 5 platforms
 *   await pushBusybox(bb.layoutDir, '127.0.0.1:5000/library/busybox:latest');
 *
 * Platforms follow Docker Hub's busybox: linux/amd64, linux/arm64/v8, linux/arm/v7,
 * linux/ppc64le, linux/s390x. Each image is one deterministic gzip layer (GNU tar sorted by
 * name, mtime 0, uid/gid 0, `gzip -n`) holding /bin/busybox, a /bin/<applet> → busybox
 * symlink per applet, /etc/passwd and /etc/group (root, nobody), /tmp (1777), /root (0700)
 * and the usual empty dirs; config `Cmd ["sh"]`, a standard PATH. Same debs → same digests.
 *
 * Cache: $POLYARCH_TEST_CACHE (default /var/cache/polyarch-test, as in setup.sh) holds
 * busybox/<debian-arch>/bin/busybox (from setup.sh) and, keyed by a hash of the binaries and
 * this builder's version, busybox-oci-<key>/ (the layout) and busybox-rootfs-<key>/<arch>/
 * (the unpacked rootfs of each platform; tests must treat them as read-only).
 * This is test-only code; the product's own content store lives in src/content.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run, runBuffer } from './proc.js';

/** Bump when the image layout or rootfs contents change, so caches are rebuilt. */
const FIXTURE_VERSION = '1';

export const BUSYBOX_REF = 'busybox';

export interface BusyboxPlatform {
  /** Debian architecture of the busybox-static deb. */
  deb: string;
  architecture: string;
  variant?: string;
  /** What `uname -m` prints under this platform (natively or via QEMU). */
  unameM: string;
  /** Suffix of POLYARCH_TEST_BUSYBOX_ROOTFS_<suffix>. */
  envSuffix: string;
}

export const BUSYBOX_PLATFORMS: readonly BusyboxPlatform[] = [
  { deb: 'amd64', architecture: 'amd64', unameM: 'x86_64', envSuffix: 'AMD64' },
  { deb: 'arm64', architecture: 'arm64', variant: 'v8', unameM: 'aarch64', envSuffix: 'ARM64' },
  { deb: 'armhf', architecture: 'arm', variant: 'v7', unameM: 'armv7l', envSuffix: 'ARM_V7' },
  { deb: 'ppc64el', architecture: 'ppc64le', unameM: 'ppc64le', envSuffix: 'PPC64LE' },
  { deb: 's390x', architecture: 's390x', unameM: 's390x', envSuffix: 'S390X' },
];

export function platformString(p: BusyboxPlatform): string {
  return `linux/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

export const MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

export function testCacheDir(): string {
  return process.env.POLYARCH_TEST_CACHE || '/var/cache/polyarch-test';
}

/** The unpacked busybox-static binary for a Debian architecture (from setup.sh). */
export function busyboxBinary(deb: string, cacheDir = testCacheDir()): string {
  return join(cacheDir, 'busybox', deb, 'bin', 'busybox');
}

export interface BusyboxImage {
  platform: BusyboxPlatform;
  manifestDigest: string;
  /** The unpacked rootfs of this platform (read-only for tests). */
  rootfsDir: string;
}

export interface BusyboxLayout {
  layoutDir: string;
  ref: typeof BUSYBOX_REF;
  indexDigest: string;
  images: BusyboxImage[];
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
  annotations?: Record<string, string>;
}

/** Builds the busybox layout and rootfs dirs unless the cache already has them. */
export async function ensureBusyboxLayout(cacheDir = testCacheDir()): Promise<BusyboxLayout> {
  const binaries = await Promise.all(
    BUSYBOX_PLATFORMS.map(async (p) => {
      const path = busyboxBinary(p.deb, cacheDir);
      try {
        return await readFile(path);
      } catch (err) {
        throw new Error(`busybox-static for ${p.deb} is missing at ${path}: run scripts/setup.sh`, {
          cause: err,
        });
      }
    }),
  );
  const key = createHash('sha256').update(FIXTURE_VERSION);
  for (const b of binaries) key.update(createHash('sha256').update(b).digest('hex'));
  const id = key.digest('hex').slice(0, 12);
  const layoutDir = join(cacheDir, `busybox-oci-${id}`);
  const rootfsParent = join(cacheDir, `busybox-rootfs-${id}`);

  if (!(await exists(join(layoutDir, 'index.json'))) || !(await exists(rootfsParent))) {
    await build(cacheDir, layoutDir, rootfsParent, binaries);
  }
  return readLayout(layoutDir, rootfsParent);
}

async function build(cacheDir: string, layoutDir: string, rootfsParent: string, binaries: Buffer[]) {
  // Build under unique temp names and rename at the end: an interrupted build leaves no
  // half-made cache, and two concurrent builders produce identical bytes, so losing the
  // rename race is harmless.
  const tmp = join(cacheDir, `busybox-build-${process.pid}-${Date.now()}`);
  await rm(tmp, { recursive: true, force: true });
  const tmpLayout = join(tmp, 'layout');
  const tmpRootfs = join(tmp, 'rootfs');
  try {
    await mkdir(join(tmpLayout, 'blobs', 'sha256'), { recursive: true });
    const applets = (await run('/bin/busybox', ['--list']))
      .split('\n')
      .map((s) => s.trim())
      .filter((s) => s && s !== 'busybox' && !s.includes('/'));
    const writeBlob = async (data: Buffer): Promise<string> => {
      const hex = createHash('sha256').update(data).digest('hex');
      await writeFile(join(tmpLayout, 'blobs', 'sha256', hex), data);
      return `sha256:${hex}`;
    };
    const writeJson = async (mediaType: string, value: unknown): Promise<Descriptor> => {
      const data = Buffer.from(JSON.stringify(value));
      return { mediaType, digest: await writeBlob(data), size: data.length };
    };

    const manifests: Descriptor[] = [];
    for (const [i, p] of BUSYBOX_PLATFORMS.entries()) {
      const root = join(tmpRootfs, p.deb);
      await makeRootfs(root, binaries[i]!, applets);
      const tar = await runBuffer('tar', [
        '--sort=name',
        '--mtime=@0',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '--format=gnu',
        '-C',
        root,
        '-cf',
        '-',
        ...ROOT_ENTRIES,
      ]);
      const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
      const gz = await runBuffer('gzip', ['-n', '-c'], { input: tar });
      const layer: Descriptor = {
        mediaType: MEDIA_TYPES.layer,
        digest: await writeBlob(gz),
        size: gz.length,
      };
      const platform = {
        architecture: p.architecture,
        os: 'linux',
        ...(p.variant ? { variant: p.variant } : {}),
      };
      const config = await writeJson(MEDIA_TYPES.config, {
        created: '1970-01-01T00:00:00Z',
        ...platform,
        config: {
          Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
          Cmd: ['sh'],
        },
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [
          {
            created: '1970-01-01T00:00:00Z',
            created_by: `polyarch test fixture: Debian busybox-static (${p.deb})`,
          },
        ],
      });
      const manifest = await writeJson(MEDIA_TYPES.manifest, {
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.manifest,
        config,
        layers: [layer],
      });
      manifests.push({ ...manifest, platform });
    }
    const index = await writeJson(MEDIA_TYPES.index, {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.index,
      manifests,
    });
    await writeFile(join(tmpLayout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(
      join(tmpLayout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_TYPES.index,
        manifests: [{ ...index, annotations: { 'org.opencontainers.image.ref.name': BUSYBOX_REF } }],
      }),
    );
    await renameIfAbsent(tmpRootfs, rootfsParent);
    await renameIfAbsent(tmpLayout, layoutDir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Top-level entries of the rootfs, in the (sorted) order they are archived. */
const ROOT_ENTRIES = ['bin', 'dev', 'etc', 'home', 'proc', 'root', 'sys', 'tmp', 'usr', 'var'];

async function makeRootfs(root: string, busybox: Buffer, applets: string[]): Promise<void> {
  const dirs: [string, number][] = [
    ['bin', 0o755],
    ['dev', 0o755],
    ['etc', 0o755],
    ['home', 0o755],
    ['proc', 0o555],
    ['root', 0o700],
    ['sys', 0o555],
    ['tmp', 0o1777],
    ['usr', 0o755],
    ['usr/bin', 0o755],
    ['usr/sbin', 0o755],
    ['var', 0o755],
    ['var/tmp', 0o1777],
  ];
  await mkdir(root, { recursive: true });
  await chmod(root, 0o755);
  for (const [d] of dirs) await mkdir(join(root, d), { recursive: true });
  await writeFile(join(root, 'bin', 'busybox'), busybox);
  await chmod(join(root, 'bin', 'busybox'), 0o755);
  for (const a of applets) await symlink('busybox', join(root, 'bin', a));
  await writeFile(
    join(root, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n',
  );
  await writeFile(join(root, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n');
  for (const f of ['passwd', 'group']) await chmod(join(root, 'etc', f), 0o644);
  // chmod after mkdir: mkdir's mode is filtered by the umask (and 1777 would lose its bit).
  for (const [d, mode] of dirs) await chmod(join(root, d), mode);
}

async function readLayout(layoutDir: string, rootfsParent: string): Promise<BusyboxLayout> {
  const top = JSON.parse(await readFile(join(layoutDir, 'index.json'), 'utf8')) as {
    manifests: Descriptor[];
  };
  const indexDigest = top.manifests[0]!.digest;
  const index = JSON.parse(
    await readFile(join(layoutDir, 'blobs', 'sha256', indexDigest.slice('sha256:'.length)), 'utf8'),
  ) as { manifests: Descriptor[] };
  const images = BUSYBOX_PLATFORMS.map((p, i) => ({
    platform: p,
    manifestDigest: index.manifests[i]!.digest,
    rootfsDir: join(rootfsParent, p.deb),
  }));
  return { layoutDir, ref: BUSYBOX_REF, indexDigest, images };
}

export interface PushOptions {
  user?: string;
  password?: string;
}

/**
 * Copies every platform of the layout's 'busybox' tag to `dest` (host/repo:tag over plain
 * HTTP) with skopeo, keeping digests. --insecure-policy: no /etc/containers/policy.json needed.
 */
export async function pushBusybox(layoutDir: string, dest: string, opts: PushOptions = {}): Promise<void> {
  const creds = opts.user !== undefined ? ['--dest-creds', `${opts.user}:${opts.password ?? ''}`] : [];
  await run('skopeo', [
    '--insecure-policy',
    'copy',
    '--quiet',
    '--all',
    '--preserve-digests',
    '--dest-tls-verify=false',
    ...creds,
    `oci:${layoutDir}:${BUSYBOX_REF}`,
    `docker://${dest}`,
  ]);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function renameIfAbsent(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await exists(to))) return; // a twin won
    throw err;
  }
}
