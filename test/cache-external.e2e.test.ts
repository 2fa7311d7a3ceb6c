/**
 * External build cache through bin/polyarch (`--cache-to` / `--cache-from`), with real
 * registries, fresh state roots (a CI runner each) and FROM busybox from the test registry:
 * - type=registry, mode=max, 3 platforms: a fresh root runs no RUN, fetches from the cache
 *   ref only the layers the output holds (blob GETs counted by a proxy in front of the
 *   registry) and makes the same image; a changed COPY source runs exactly the steps after it;
 * - two single-platform builds exporting into one ref: both platforms cached afterwards;
 * - type=local round trip (an OCI layout skopeo reads), type=inline through a pushed image;
 * - a tampered cache (malformed config JSON, a missing layer blob, a blob of other content):
 *   a warning, and the same image as a build without cache.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env/index.js';
import { type FaultProxy, startFaultProxy } from './fault-proxy.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const work = mkdtempSync(join(tmpdir(), 'polyarch-extcache-'));
after(() => rmSync(work, { recursive: true, force: true }));
const uniq = `${process.pid}-${Date.now().toString(36)}`;
const PLATFORMS = 'linux/amd64,linux/arm64,linux/arm/v7';

let roots = 0;
/** A fresh state root: a new CI runner. */
const freshRoot = (): string => {
  const r = join(work, `root-${roots++}`);
  mkdirSync(r);
  return r;
};

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Async, so the counting proxy in this process keeps serving while polyarch runs. */
function polyarch(
  root: string,
  args: string[],
  extraEnv: Record<string, string> = {},
  cwd?: string,
): Promise<Run> {
  const env = {
    ...process.env,
    POLYARCH_ROOT: root,
    POLYARCH_CONFIG: tenv.config,
    POLYARCH_PROGRESS: 'plain',
    ...extraEnv,
  };
  return new Promise((res, rej) => {
    const p = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => {
      stdout += c;
    });
    p.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), 300_000);
    p.on('error', rej);
    p.on('close', (status) => {
      clearTimeout(timer);
      res({ status, stdout, stderr });
    });
  });
}

async function buildOk(root: string, args: string[], extraEnv?: Record<string, string>): Promise<Run> {
  const r = await polyarch(root, ['build', ...args], extraEnv);
  assert.equal(r.status, 0, r.stderr);
  return r;
}

/** Per RUN step of a plain-progress build (by name): 'CACHED' or 'DONE'. */
function runSteps(stderr: string): Map<string, string> {
  const names = new Map<string, string>();
  const status = new Map<string, string>();
  for (const line of stderr.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const [, id, rest] = m as unknown as [string, string, string];
    if (!names.has(id)) names.set(id, rest);
    else if (rest === 'CACHED' || rest.startsWith('DONE'))
      status.set(id, rest === 'CACHED' ? 'CACHED' : 'DONE');
  }
  const out = new Map<string, string>();
  for (const [id, n] of names)
    if (/ RUN /.test(n)) out.set(n.replace(/^\[/, '').replace(/\]/, ''), status.get(id) ?? 'NONE');
  return out;
}

function context(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, data] of Object.entries(files)) writeFileSync(join(dir, f), data);
  return dir;
}

const DOCKERFILE = [
  'FROM busybox AS gen',
  // /gen-only keeps gen's layer apart from the COPY --from=gen layer (the same lone file would be the same blob).
  'RUN echo gen > /g && echo only-in-gen > /gen-only',
  'FROM busybox',
  'RUN echo one > /one',
  'COPY a.txt /a.txt',
  'RUN cat /a.txt > /b',
  'COPY --from=gen /g /g',
  'RUN cat /g /b > /c',
  '',
].join('\n');

const accept = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

async function getJson(
  host: string,
  path: string,
): Promise<{ json: Record<string, unknown>; digest: string }> {
  const r = await fetch(`http://${host}${path}`, { headers: { accept } });
  assert.equal(r.status, 200, `GET ${path}`);
  const buf = Buffer.from(await r.arrayBuffer());
  return {
    json: JSON.parse(buf.toString('utf8')),
    digest: `sha256:${createHash('sha256').update(buf).digest('hex')}`,
  };
}

/** Layer digests of every platform of a pushed image (index). */
async function imageLayers(
  host: string,
  repoPath: string,
  tag: string,
): Promise<{ root: string; layers: Set<string>; own: Set<string> }> {
  const top = await getJson(host, `/v2/${repoPath}/manifests/${tag}`);
  const layers = new Set<string>();
  const own = new Set<string>();
  for (const m of (top.json.manifests as { digest: string }[] | undefined) ?? []) {
    const man = await getJson(host, `/v2/${repoPath}/manifests/${m.digest}`);
    for (const [i, l] of (man.json.layers as { digest: string }[]).entries()) {
      layers.add(l.digest);
      if (i > 0) own.add(l.digest);
    }
  }
  return { root: top.digest, layers, own };
}

const allCached = (steps: Map<string, string>): boolean =>
  steps.size > 0 && [...steps.values()].every((s) => s === 'CACHED');

describe('type=registry, mode=max, 3 platforms', () => {
  let proxy: FaultProxy;
  before(async () => {
    proxy = await startFaultProxy(tenv.registry, []);
  });
  after(() => proxy.close());
  const ctx = context('reg', { Dockerfile: DOCKERFILE, 'a.txt': 'a\n' });
  const cacheRepo = `extcache/reg-${uniq}`;

  test('a fresh root runs no RUN, pulls only the output layers, makes the same image; a COPY change reruns what follows', async () => {
    const ref = `${proxy.host}/${cacheRepo}:cache`;
    const imgA = `${tenv.registry}/extcache/img-${uniq}:a`;
    const a = await buildOk(freshRoot(), [
      '--platform',
      PLATFORMS,
      '--cache-to',
      `type=registry,ref=${ref},mode=max`,
      '-t',
      imgA,
      '--push',
      ctx,
    ]);
    assert.ok(
      [...runSteps(a.stderr).values()].every((s) => s === 'DONE'),
      a.stderr,
    );
    // The cache is readable by skopeo: an index with one artifact manifest.
    const raw = spawnSync(
      'skopeo',
      ['inspect', '--tls-verify=false', '--raw', `docker://${tenv.registry}/${cacheRepo}:cache`],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(raw.status, 0, raw.stderr);
    assert.equal(JSON.parse(raw.stdout).manifests[0].artifactType, 'application/vnd.polyarch.cache.v1');

    const before = proxy.requests().length;
    const imgB = `${tenv.registry}/extcache/img-${uniq}:b`;
    const b = await buildOk(freshRoot(), [
      '--platform',
      PLATFORMS,
      '--cache-from',
      `type=registry,ref=${ref}`,
      '-t',
      imgB,
      '--push',
      ctx,
    ]);
    const steps = runSteps(b.stderr);
    assert.equal(steps.size, 12, b.stderr); // 4 RUNs × 3 platforms
    assert.ok(allCached(steps), b.stderr);
    assert.doesNotMatch(b.stderr, /WARNING/);
    const A = await imageLayers(tenv.registry, `extcache/img-${uniq}`, 'a');
    const B = await imageLayers(tenv.registry, `extcache/img-${uniq}`, 'b');
    assert.equal(B.root, A.root, 'the same image as the build that ran everything');
    const gets = proxy
      .requests()
      .slice(before)
      .filter((r) => r.startsWith(`GET /v2/${cacheRepo}/blobs/`))
      .map((r) => r.slice(r.lastIndexOf('/') + 1));
    const blobGets = gets.filter((d) => !A.layers.has(d));
    // Only the cache config besides the image's own layers; nothing twice; no layer of `gen`.
    assert.equal(blobGets.length, 1, `blob GETs outside the image: ${blobGets.join(' ')}`);
    assert.equal(new Set(gets).size, gets.length, 'no blob fetched twice');
    // Exactly this build's layers of the image (busybox's, the first, comes from elsewhere).
    assert.deepEqual(new Set(gets.filter((d) => A.layers.has(d))), A.own);
    // …while the cache (mode=max) holds more: the `gen` stage's layers.
    const cacheIndex = await getJson(tenv.registry, `/v2/${cacheRepo}/manifests/cache`);
    const entry = (cacheIndex.json.manifests as { digest: string }[])[0]!;
    const cacheMan = await getJson(tenv.registry, `/v2/${cacheRepo}/manifests/${entry.digest}`);
    const cached = (cacheMan.json.layers as { digest: string }[]).map((l) => l.digest);
    assert.ok(
      cached.some((d) => !A.layers.has(d)),
      'the cache holds layers the image does not',
    );

    // Change the COPY source: the RUNs after it run, the ones before (and gen) do not.
    const ctx2 = context('reg2', { Dockerfile: DOCKERFILE, 'a.txt': 'changed\n' });
    const c = await buildOk(freshRoot(), [
      '--platform',
      PLATFORMS,
      '--cache-from',
      `type=registry,ref=${ref}`,
      ctx2,
    ]);
    const cs = runSteps(c.stderr);
    for (const [name, s] of cs) {
      const after = /RUN cat/.test(name);
      assert.equal(s, after ? 'DONE' : 'CACHED', `${name}\n${c.stderr}`);
    }
  });
});

test('two builds of different platforms exporting into one ref: both cached afterwards', async () => {
  const ctx = context('two', { Dockerfile: DOCKERFILE, 'a.txt': 'two\n' });
  const ref = `${tenv.registry}/extcache/two-${uniq}:cache`;
  await buildOk(freshRoot(), [
    '--platform',
    'linux/amd64',
    '--cache-to',
    `type=registry,ref=${ref},mode=max`,
    ctx,
  ]);
  await buildOk(freshRoot(), [
    '--platform',
    'linux/arm64',
    '--cache-to',
    `type=registry,ref=${ref},mode=max`,
    ctx,
  ]);
  const r = await buildOk(freshRoot(), ['--platform', 'linux/amd64,linux/arm64', '--cache-from', ref, ctx]);
  const steps = runSteps(r.stderr);
  assert.equal(steps.size, 8, r.stderr);
  assert.ok(allCached(steps), r.stderr);
});

test('three single-platform builds exporting into one ref at the same time: every platform cached', async () => {
  const ctx = context('par', {
    Dockerfile: 'FROM busybox\nRUN echo p > /p\nCOPY Dockerfile /d\nRUN cat /d > /e\n',
  });
  const ref = `${tenv.registry}/extcache/par-${uniq}:cache`;
  await Promise.all(
    ['linux/amd64', 'linux/arm64', 'linux/arm/v7'].map((p) =>
      buildOk(freshRoot(), ['--platform', p, '--cache-to', `type=registry,ref=${ref},mode=max`, ctx]),
    ),
  );
  const r = await buildOk(freshRoot(), ['--platform', PLATFORMS, '--cache-from', ref, ctx]);
  const steps = runSteps(r.stderr);
  assert.equal(steps.size, 6, r.stderr);
  assert.ok(allCached(steps), r.stderr);
});

test('type=local round trip across two state roots (an OCI layout, written atomically)', async () => {
  const ctx = context('local', { Dockerfile: DOCKERFILE, 'a.txt': 'local\n' });
  const dir = join(work, 'local-cache');
  await buildOk(freshRoot(), [
    '--platform',
    'linux/amd64,linux/arm64',
    '--cache-to',
    `type=local,dest=${dir},mode=max`,
    ctx,
  ]);
  assert.deepEqual(readdirSync(dir).sort(), ['blobs', 'index.json', 'oci-layout']);
  assert.deepEqual(
    readdirSync(work).filter((n) => n.startsWith('.tmp-')),
    [],
    'no temp dir left',
  );
  const sk = spawnSync('skopeo', ['inspect', '--raw', `oci:${dir}:latest`], { encoding: 'utf8' });
  assert.equal(sk.status, 0, sk.stderr);
  const r = await buildOk(freshRoot(), [
    '--platform',
    'linux/amd64,linux/arm64',
    '--cache-from',
    `type=local,src=${dir}`,
    ctx,
  ]);
  const steps = runSteps(r.stderr);
  assert.equal(steps.size, 8, r.stderr);
  assert.ok(allCached(steps), r.stderr);
});

test('type=inline round trip through a pushed image', async () => {
  const ctx = context('inline', { Dockerfile: DOCKERFILE, 'a.txt': 'inline\n' });
  const img = `${tenv.registry}/extcache/inline-${uniq}:1`;
  await buildOk(freshRoot(), [
    '--platform',
    'linux/amd64,linux/arm64',
    '--cache-to',
    'type=inline',
    '-t',
    img,
    '--push',
    ctx,
  ]);
  const r = await buildOk(freshRoot(), [
    '--platform',
    'linux/amd64,linux/arm64',
    '--cache-from',
    `type=registry,ref=${img}`,
    ctx,
  ]);
  const steps = runSteps(r.stderr);
  // The image's own steps are cached (inline is mode=min): the `gen` stage's RUN is not in it.
  for (const [name, s] of steps)
    assert.equal(s, /echo gen/.test(name) ? 'DONE' : 'CACHED', `${name}\n${r.stderr}`);
});

test('compose: build.cache_to and build.cache_from', async () => {
  const dir = context('compose', {
    Dockerfile: DOCKERFILE,
    'a.txt': 'compose\n',
    'compose.yaml': [
      'services:',
      '  web:',
      '    build:',
      '      context: .',
      '      platforms: [linux/amd64, linux/arm64]',
      '      cache_to: ["type=local,dest=./cc,mode=max"]',
      '      cache_from: ["type=local,src=./cc"]',
      '',
    ].join('\n'),
  });
  const first = await polyarch(freshRoot(), ['compose', 'build'], {}, dir);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stderr, /WARNING: .*cache .*cc: not found/);
  const r = await polyarch(freshRoot(), ['compose', 'build'], {}, dir);
  assert.equal(r.status, 0, r.stderr);
  const steps = runSteps(r.stderr);
  assert.equal(steps.size, 8, r.stderr);
  assert.ok(allCached(steps), r.stderr);
});

test('an unreachable cache: export fails (or warns with ignore-error=true), import warns and builds', async () => {
  const ctx = context('unreach', { Dockerfile: 'FROM busybox\nRUN echo u > /u\n' });
  const root = freshRoot();
  const bad = 'type=registry,ref=127.0.0.1:1/x/cache:c';
  const e = await polyarch(root, ['build', '--cache-to', bad, ctx]);
  assert.equal(e.status, 1, e.stderr);
  assert.match(
    e.stderr,
    /^ERROR: exporting cache to type=registry,ref=127\.0\.0\.1:1\/x\/cache:c: .*unreachable/m,
  );
  const w = await polyarch(root, ['build', '--cache-to', `${bad},ignore-error=true`, ctx]);
  assert.equal(w.status, 0, w.stderr);
  assert.match(w.stderr, /^WARNING: exporting cache to .*unreachable/m);
  const i = await polyarch(freshRoot(), ['build', '--cache-from', bad, ctx]);
  assert.equal(i.status, 0, i.stderr);
  assert.match(i.stderr, /^WARNING: cache 127\.0\.0\.1:1\/x\/cache:c ignored: .*unreachable/m);
  assert.deepEqual([...runSteps(i.stderr).values()], ['DONE']);
  // A directory that is not a cache is never replaced.
  const r = await polyarch(root, ['build', '--cache-to', `type=local,dest=${ctx}`, ctx]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /is not a polyarch cache layout: refusing to replace it/);
  assert.deepEqual(readdirSync(ctx), ['Dockerfile']);
  const d = await polyarch(root, ['build', '--cache-to', 'type=local,dest=/proc/nope', ctx]);
  assert.equal(d.status, 1, d.stderr);
  assert.match(d.stderr, /^ERROR: exporting cache to type=local,dest=\/proc\/nope: /m);
});

test('no secret value and no host path reaches the cache', async () => {
  const secret = `s3cr3t-${uniq}`;
  const ctx = context('secret', {
    Dockerfile:
      'FROM busybox\nCOPY a.txt /a\nRUN --mount=type=secret,id=tok,env=TOK test -n "$TOK" && echo ok > /ok\n',
    'a.txt': 'x\n',
  });
  const dir = join(work, 'secret-cache');
  await buildOk(
    freshRoot(),
    ['--secret', 'id=tok,env=TOK', '--cache-to', `type=local,dest=${dir},mode=max`, ctx],
    { TOK: secret },
  );
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)],
    );
  for (const f of walk(dir)) {
    const text = readFileSync(f).toString('latin1');
    assert.ok(!text.includes(secret), `${f} holds the secret`);
    assert.ok(!text.includes(work), `${f} holds a host path`);
  }
});

describe('a tampered cache: a warning and a correct image', () => {
  const ctx = context('tamper', { Dockerfile: DOCKERFILE, 'a.txt': 'tamper\n' });
  const epoch = { SOURCE_DATE_EPOCH: '1700000000' };
  const good = join(work, 'tamper-cache');
  let reference = '';
  const digestOf = async (extra: string[]): Promise<{ id: string; run: Run }> => {
    const iid = join(work, `iid-${roots}`);
    const run = await buildOk(
      freshRoot(),
      ['--platform', 'linux/amd64', ...extra, '-t', 'tamper:1', '--load', '--iidfile', iid, ctx],
      epoch,
    );
    return { id: readFileSync(iid, 'utf8'), run };
  };
  before(async () => {
    reference = (await digestOf(['--cache-to', `type=local,dest=${good},mode=max`])).id;
  });

  const blobsOf = (dir: string) => join(dir, 'blobs', 'sha256');
  const docOf = (dir: string, digest: string) =>
    JSON.parse(readFileSync(join(blobsOf(dir), digest.slice(7)), 'utf8'));
  const writeDoc = (dir: string, data: Buffer | string): { digest: string; size: number } => {
    const b = Buffer.from(data);
    const digest = `sha256:${createHash('sha256').update(b).digest('hex')}`;
    writeFileSync(join(blobsOf(dir), digest.slice(7)), b);
    return { digest, size: b.length };
  };
  /** The layout's chain: index.json → index → manifest. */
  const chainOf = (dir: string) => {
    const top = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
    const index = docOf(dir, top.manifests[0].digest);
    const manifest = docOf(dir, index.manifests[0].digest);
    return { top, index, manifest };
  };
  const copy = (name: string): string => {
    const d = join(work, name);
    cpSync(good, d, { recursive: true });
    return d;
  };

  test('malformed config JSON', async () => {
    const d = copy('tamper-json');
    const { top, index, manifest } = chainOf(d);
    manifest.config = { ...manifest.config, ...writeDoc(d, '{"version": 1, "records": [') };
    index.manifests[0] = { ...index.manifests[0], ...writeDoc(d, JSON.stringify(manifest)) };
    top.manifests[0] = { ...top.manifests[0], ...writeDoc(d, JSON.stringify(index)) };
    writeFileSync(join(d, 'index.json'), JSON.stringify(top));
    const { id, run } = await digestOf(['--cache-from', `type=local,src=${d}`]);
    assert.match(run.stderr, /WARNING: cache .* ignored: the cache config is not JSON/);
    assert.ok(
      [...runSteps(run.stderr).values()].every((s) => s === 'DONE'),
      run.stderr,
    );
    assert.equal(id, reference);
  });

  test('a missing layer blob', async () => {
    const d = copy('tamper-missing');
    const { manifest } = chainOf(d);
    // The biggest layer is a RUN's or COPY's; remove every layer: each step must run.
    for (const l of manifest.layers as { digest: string }[]) unlinkSync(join(blobsOf(d), l.digest.slice(7)));
    const { id, run } = await digestOf(['--cache-from', `type=local,src=${d}`]);
    assert.match(run.stderr, /WARNING: cache .*: layer sha256:[0-9a-f]{64} is missing/);
    assert.equal(id, reference);
  });

  test('a record with a wrong diff id', async () => {
    const d = copy('tamper-diffid');
    const { top, index, manifest } = chainOf(d);
    const cfg = docOf(d, manifest.config.digest);
    for (const r of cfg.records) if (r.layer) r.layer.diffId = `sha256:${'0'.repeat(64)}`;
    manifest.config = { ...manifest.config, ...writeDoc(d, JSON.stringify(cfg)) };
    index.manifests[0] = { ...index.manifests[0], ...writeDoc(d, JSON.stringify(manifest)) };
    top.manifests[0] = { ...top.manifests[0], ...writeDoc(d, JSON.stringify(index)) };
    writeFileSync(join(d, 'index.json'), JSON.stringify(top));
    const { id, run } = await digestOf(['--cache-from', `type=local,src=${d}`]);
    assert.match(
      run.stderr,
      /WARNING: cache .*: layer sha256:[0-9a-f]{64} uncompresses to sha256:[0-9a-f]{64}, not sha256:0{64}/,
    );
    assert.equal(id, reference);
  });

  test('a layer blob of other content (wrong digest)', async () => {
    const d = copy('tamper-digest');
    const { manifest } = chainOf(d);
    for (const l of manifest.layers as { digest: string }[]) {
      const p = join(blobsOf(d), l.digest.slice(7));
      const size = statSync(p).size;
      writeFileSync(p, Buffer.alloc(size, 0x41));
    }
    const { id, run } = await digestOf(['--cache-from', `type=local,src=${d}`]);
    assert.match(run.stderr, /WARNING: cache .*: layer sha256:[0-9a-f]{64} has other content/);
    assert.ok(
      [...runSteps(run.stderr).values()].every((s) => s === 'DONE'),
      run.stderr,
    );
    assert.equal(id, reference);
  });
});
