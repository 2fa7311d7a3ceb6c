/**
 * SLOW (minutes: apt under QEMU): `polyarch build` of a real Debian image for linux/amd64 and
 * linux/arm64. A bookworm minbase rootfs per architecture comes from env/debian.ts (mmdebstrap,
 * cached per day). The tarballs are `polyarch import`ed as debian:bookworm into a private state root, a
 * Dockerfile that runs apt-get is built for both platforms, and the result is run with
 * `polyarch run --platform linux/arm64`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { debianMirror, debianRootfs } from './env/debian.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const root = mkdtempSync(join(tmpdir(), 'polyarch-build-debian-'));
after(() => rmSync(root, { recursive: true, force: true }));
const env: NodeJS.ProcessEnv = {
  ...process.env,
  POLYARCH_ROOT: join(root, 'state'),
  POLYARCH_PROGRESS: 'plain',
};
delete env.POLYARCH_CONFIG; // debian:bookworm comes from the local store only

const arches = [
  { debian: 'amd64', platform: 'linux/amd64', machine: 'x86_64', triple: 'x86_64-pc-linux-gnu' },
  { debian: 'arm64', platform: 'linux/arm64', machine: 'aarch64', triple: 'aarch64-unknown-linux-gnu' },
] as const;

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

function polyarch(args: string[], timeout = 600_000): Ran {
  const r = spawnSync(bin, args, { env, encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Plain progress: the log lines of the first vertex whose name starts with `prefix`, and its status. */
function vertex(output: string, prefix: string): { logs: string[]; done: boolean; cached: boolean } {
  let id: string | undefined;
  const logs: string[] = [];
  let done = false;
  let cached = false;
  for (const line of output.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (!m) continue;
    if (id === undefined && m[2]!.startsWith(prefix)) {
      id = m[1];
      continue;
    }
    if (m[1] !== id) continue;
    const log = /^\d+\.\d+ (.*)$/.exec(m[2]!);
    if (log) logs.push(log[1]!);
    else if (m[2] === 'CACHED') cached = true;
    else if (m[2]!.startsWith('DONE')) done = true;
  }
  return { logs, done, cached };
}

test('debianMirror reads one-line and deb822 sources', () => {
  const etc = join(root, 'etc-apt');
  mkdirSync(join(etc, 'sources.list.d'), { recursive: true });
  writeFileSync(
    join(etc, 'sources.list.d', 'a.sources'),
    'Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n' +
      'Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\n' +
      'Types: deb-src deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n',
  );
  assert.equal(debianMirror(etc), 'http://mirror.example/debian');
  writeFileSync(
    join(etc, 'sources.list'),
    '# x\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/d bookworm main\n',
  );
  assert.equal(debianMirror(etc), 'http://one.example/d');
  rmSync(join(etc, 'sources.list'));
  rmSync(join(etc, 'sources.list.d', 'a.sources'));
  assert.throws(() => debianMirror(etc), /no "deb \.\.\. bookworm" source/);
});

test('SLOW: Debian bookworm for amd64 and arm64 — import, build with apt-get, run', {
  timeout: 1_200_000,
}, () => {
  for (const a of arches) {
    const tar = debianRootfs(a.debian);
    const r = polyarch(['import', '--platform', a.platform, tar, 'debian:bookworm']);
    assert.equal(r.status, 0, `import ${a.platform}: ${r.stderr}`);
    assert.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
  }

  const ctx = join(root, 'ctx');
  mkdirSync(ctx);
  writeFileSync(
    join(ctx, 'Dockerfile'),
    [
      'FROM debian:bookworm',
      'RUN uname -m',
      // No translations, no recommends, no docs: the least apt work that still installs curl.
      'RUN apt-get -o Acquire::Languages=none update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/* && curl --version',
      '',
    ].join('\n'),
  );
  const meta = join(root, 'meta.json');
  const r = polyarch([
    'build',
    '--platform',
    arches.map((a) => a.platform).join(','),
    '-t',
    'debian-curl:1',
    '--metadata-file',
    meta,
    ctx,
  ]);
  assert.equal(r.status, 0, r.stderr);
  for (const a of arches) {
    const uname = vertex(r.stderr, `[${a.platform} 2/3] RUN uname -m`);
    assert.ok(uname.done, `${a.platform} RUN uname -m not DONE:\n${r.stderr}`);
    assert.deepEqual(uname.logs, [a.machine]);
    const apt = vertex(r.stderr, `[${a.platform} 3/3] RUN apt-get `);
    assert.ok(apt.done, `${a.platform} apt RUN not DONE`);
    assert.ok(
      apt.logs.some((l) => l.startsWith(`curl 7.`) && l.includes(`(${a.triple})`)),
      `${a.platform} curl --version missing:\n${apt.logs.slice(-5).join('\n')}`,
    );
  }

  // The stored index lists exactly the two platforms, and it is what --metadata-file reports.
  const digest = JSON.parse(readFileSync(meta, 'utf8'))['containerimage.digest'] as string;
  const store = join(root, 'state', 'store');
  const top = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const named = top.manifests.find(
    (m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'docker.io/library/debian-curl:1',
  );
  assert.equal(named?.digest, digest);
  const index = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as {
    manifests: { platform: { os: string; architecture: string; variant?: string } }[];
  };
  assert.deepEqual(
    index.manifests
      .map((m) => [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/'))
      .sort(),
    ['linux/amd64', 'linux/arm64'],
  );

  const run = polyarch(
    ['run', '--rm', '--platform', 'linux/arm64', 'debian-curl:1', 'curl', '--version'],
    120_000,
  );
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /^curl 7\.\S+ \(aarch64-unknown-linux-gnu\)/);
});
