/**
 * Helpers for tests against the real registries the test environment starts: reading the
 * POLYARCH_TEST_REGISTRY* variables (a missing one fails the test with a clear message),
 * building small multi-platform OCI layouts on disk, and running skopeo and the CLI.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bin = join(repoRoot, 'bin', 'polyarch');

export function requireEnv(name: string): string {
  const v = process.env[name];
  assert.ok(
    v,
    `${name} is not set: these tests need the real registries that the test environment starts (scripts/test.sh exports POLYARCH_TEST_REGISTRY*)`,
  );
  return v;
}

/** A repository name no other run uses. */
export function uniqueRepo(prefix: string): string {
  return `polyarch-test/${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

const temps: string[] = [];
process.on('exit', () => {
  // POLYARCH_KEEP_TEMP=1 keeps them for a look after a failure.
  if (!process.env.POLYARCH_KEEP_TEMP) for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `polyarch-${prefix}-`));
  temps.push(d);
  return d;
}

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A one-file tar archive (ustar), enough for a test layer. */
export function tarOneFile(name: string, content: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([h, content, pad, Buffer.alloc(1024)]);
}

export interface LayoutImage {
  dir: string;
  tag: string;
  indexDigest: string;
  /** platform → { manifest digest, layer digest } */
  platforms: Map<string, { manifest: string; layer: string; config: string }>;
}

/** Writes an OCI image layout holding one index with an image per platform (`linux/arm/v7`). */
export function makeLayout(dir: string, tag: string, platforms: string[], layerBytes = 64): LayoutImage {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const put = (b: Buffer | string) => {
    const d = sha(b);
    writeFileSync(join(dir, 'blobs', 'sha256', d.slice(7)), b);
    return { digest: d, size: Buffer.byteLength(b) };
  };
  const out = new Map<string, { manifest: string; layer: string; config: string }>();
  const entries = platforms.map((p) => {
    const [os, architecture, variant] = p.split('/') as [string, string, string?];
    const tar = tarOneFile('platform', Buffer.concat([Buffer.from(`${p}\n`), randomBytes(layerBytes)]));
    const layer = put(gzipSync(tar));
    const config = put(
      JSON.stringify({
        architecture,
        os,
        ...(variant ? { variant } : {}),
        config: { Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: [sha(tar)] },
      }),
    );
    const manifest = put(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    );
    out.set(p, { manifest: manifest.digest, layer: layer.digest, config: config.digest });
    return {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...manifest,
      platform: { architecture, os, ...(variant ? { variant } : {}) },
    };
  });
  const index = put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: entries,
    }),
  );
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.index.v1+json',
          ...index,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return { dir, tag, indexDigest: index.digest, platforms: out };
}

/** Runs skopeo against plain-HTTP loopback registries. */
export function skopeo(args: string[], opts: { creds?: string } = {}): Buffer {
  const tls =
    args[0] === 'copy' ? ['--src-tls-verify=false', '--dest-tls-verify=false'] : ['--tls-verify=false'];
  const creds = opts.creds
    ? args[0] === 'copy'
      ? ['--dest-creds', opts.creds]
      : ['--creds', opts.creds]
    : [];
  return execFileSync('skopeo', [args[0]!, ...tls, ...creds, ...args.slice(1)], { maxBuffer: 64 << 20 });
}

export function sha256(b: Buffer | string): string {
  return sha(b);
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the polyarch CLI with its state, credentials and registry config in `home`. */
export function cli(
  args: string[],
  home: string,
  opts: { input?: string; env?: NodeJS.ProcessEnv } = {},
): CliResult {
  const start = Date.now();
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    input: opts.input ?? '',
    timeout: 120_000,
    env: {
      ...process.env,
      POLYARCH_ROOT: join(home, 'root'),
      DOCKER_CONFIG: join(home, 'docker'),
      POLYARCH_CONFIG: join(home, 'registries.toml'),
      ...opts.env,
    },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - start };
}

/** Asserts a failed CLI run: exit 1 and exactly one `ERROR:` line on stderr matching `want`. */
export function assertOneLineError(r: CliResult, want: RegExp): void {
  assert.equal(r.status, 1, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^ERROR: /);
  assert.match(lines[0]!, want);
}

/** A ustar header for one regular file of `size` bytes (the body and padding follow it). */
function tarHeader(name: string, size: number): Buffer {
  const h = tarOneFile(name, Buffer.alloc(0)).subarray(0, 512);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('        ', 148);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}

/** A tar layer of one file of `size` random (incompressible) bytes, made 1 MiB at a time. */
async function* randomTar(size: number): AsyncGenerator<Buffer> {
  yield tarHeader('random.bin', size);
  for (let left = size; left > 0; ) {
    const n = Math.min(left, 1 << 20);
    yield randomBytes(n);
    left -= n;
  }
  yield Buffer.alloc(((512 - (size % 512)) % 512) + 1024);
}

export interface StoredImage {
  name: string;
  /** The index (several platforms) or manifest (one). */
  root: { mediaType: string; digest: string; size: number };
  /** platform → manifest digest and layer digests */
  platforms: Map<string, { manifest: string; layers: string[] }>;
}

/**
 * Writes an image of random uncompressed tar layers (`layerSizes` bytes of file data each,
 * per platform) straight into a content store and tags it `name`; memory use is 1 MiB.
 * One platform gives a plain manifest, several an index.
 */
export async function storeRandomImage(
  store: {
    ingest(src: AsyncIterable<Uint8Array>): Promise<{ digest: string; size: number }>;
    writeBlob(b: Uint8Array): Promise<{ digest: string; size: number }>;
    tag(name: string, desc: never): Promise<void>;
  },
  name: string,
  platforms: string[],
  layerSizes: number[],
): Promise<StoredImage> {
  const out = new Map<string, { manifest: string; layers: string[] }>();
  const entries = [];
  for (const p of platforms) {
    const [os, architecture, variant] = p.split('/') as [string, string, string?];
    const layers = [];
    for (const size of layerSizes) layers.push(await store.ingest(randomTar(size)));
    const config = await store.writeBlob(
      Buffer.from(
        JSON.stringify({
          architecture,
          os,
          ...(variant ? { variant } : {}),
          config: { Cmd: ['/bin/sh'] },
          // Uncompressed layers: the diff ids are the layer digests.
          rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
        }),
      ),
    );
    const manifest = await store.writeBlob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
          layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l })),
        }),
      ),
    );
    out.set(p, { manifest: manifest.digest, layers: layers.map((l) => l.digest) });
    entries.push({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...manifest,
      platform: { architecture, os, ...(variant ? { variant } : {}) },
    });
  }
  let root: StoredImage['root'];
  if (entries.length === 1) {
    const { platform: _, ...m } = entries[0]!;
    root = m;
  } else {
    const index = await store.writeBlob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.index.v1+json',
          manifests: entries,
        }),
      ),
    );
    root = { mediaType: 'application/vnd.oci.image.index.v1+json', ...index };
  }
  await store.tag(name, root as never);
  return { name, root, platforms: out };
}
