/**
 * Build attestations end to end (src/attest): SBOM and SLSA provenance per platform, pushed as
 * OCI 1.1 referrers to a real CNCF distribution registry — which has no referrers API, so the
 * `sha256-<hex>` referrers tag fallback is what is tested — and read back by skopeo, plain
 * registry requests and `polyarch imagetools inspect`. The Debian test (SLOW: apt under QEMU)
 * installs curl for linux/amd64 and linux/arm64 and finds it, with the version dpkg reports, in
 * each platform's SBOM. Also: the default min provenance vs --provenance=false (same image
 * digests), bad flags, a registry refusing the artifacts, and BuildKit's own attestations.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { debianRootfs } from './env/debian.js';
import { type Buildkitd, buildkitSkipReason, startBuildkitd } from './env/buildkit.js';
import { type Registry, startRegistry, testEnv } from './env/index.js';
import { startFaultProxy } from './fault-proxy.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const root = mkdtempSync(join(tmpdir(), 'polyarch-attest-e2e-'));
after(() => rmSync(root, { recursive: true, force: true }));

// biome-ignore lint/suspicious/noExplicitAny: registry JSON, checked field by field below
type Json = any;

const SPDX = 'https://spdx.dev/Document';
const SLSA1 = 'https://slsa.dev/provenance/v1';

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

function polyarch(args: string[], env: NodeJS.ProcessEnv, timeout = 600_000): Ran {
  const r = spawnSync(bin, args, { env, encoding: 'utf8', timeout, maxBuffer: 256 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** As polyarch(), without blocking this process's event loop (for servers running in it). */
function polyarchAsync(args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
  return new Promise((done, fail) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', fail);
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}

function envFor(name: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const t = testEnv();
  mkdirSync(join(root, name, 'docker'), { recursive: true });
  writeFileSync(join(root, name, 'docker', 'config.json'), '{}');
  return {
    ...process.env,
    POLYARCH_ROOT: join(root, name, 'state'),
    POLYARCH_CONFIG: t.config,
    DOCKER_CONFIG: join(root, name, 'docker'),
    POLYARCH_PROGRESS: 'plain',
    POLYARCH_BUILDER: '',
    BUILDX_BUILDER: '',
    BUILDX_NO_DEFAULT_ATTESTATIONS: '',
    ...extra,
  };
}

function context(name: string, dockerfile: string[]): string {
  const dir = join(root, name, 'ctx');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'Dockerfile'), `${dockerfile.join('\n')}\n`);
  return dir;
}

async function getJson(
  url: string,
  accept = 'application/vnd.oci.image.index.v1+json',
): Promise<{ status: number; body: Json }> {
  const res = await fetch(url, { headers: { accept } });
  const text = await res.text();
  return { status: res.status, body: res.ok ? JSON.parse(text) : text };
}

interface Referrer {
  mediaType: string;
  digest: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** The referrers tag index of `subject` in `repo` (CNCF distribution has no referrers API). */
async function referrersTag(
  host: string,
  repoName: string,
  subject: string,
): Promise<Referrer[] | undefined> {
  const r = await getJson(`http://${host}/v2/${repoName}/manifests/${subject.replace(':', '-')}`);
  if (r.status === 404) return undefined;
  assert.equal(r.status, 200, `GET referrers tag of ${subject}: ${r.status} ${r.body}`);
  return r.body.manifests as Referrer[];
}

/** The in-toto statement of an attestation artifact, checked to be one for `subject`. */
async function statement(host: string, repoName: string, ref: Referrer, subject: string): Promise<Json> {
  const m = await getJson(
    `http://${host}/v2/${repoName}/manifests/${ref.digest}`,
    'application/vnd.oci.image.manifest.v1+json',
  );
  assert.equal(m.status, 200);
  assert.equal(m.body.artifactType, 'application/vnd.in-toto+json');
  assert.equal(m.body.subject.digest, subject);
  assert.equal(m.body.config.mediaType, 'application/vnd.oci.empty.v1+json');
  const layer = m.body.layers[0];
  const blob = await fetch(`http://${host}/v2/${repoName}/blobs/${layer.digest}`);
  assert.equal(blob.status, 200);
  const stmt = JSON.parse(await blob.text());
  assert.equal(stmt.predicateType, layer.annotations['in-toto.io/predicate-type']);
  assert.equal(stmt.subject[0].digest.sha256, subject.slice('sha256:'.length));
  return stmt;
}

function skopeoRaw(ref: string): Json {
  const r = spawnSync('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const platformOf = (m: { platform?: { os: string; architecture: string; variant?: string } }) =>
  [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join('/');

describe('attestations', { concurrency: false }, () => {
  let reg: Registry;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  test('SLOW: Debian with curl for amd64 and arm64: --sbom=true --provenance=mode=max --push', {
    timeout: 1_200_000,
  }, async () => {
    const env = envFor('debian', { TOK_SECRET: `tok-${process.pid}-value` });
    delete env.POLYARCH_CONFIG; // debian:bookworm comes from the local store only
    const statusOf: Record<string, string> = {};
    for (const [debian, platform] of [
      ['amd64', 'linux/amd64'],
      ['arm64', 'linux/arm64'],
    ] as const) {
      const tar = debianRootfs(debian);
      const r = polyarch(['import', '--platform', platform, tar, 'debian:bookworm'], env);
      assert.equal(r.status, 0, `import ${platform}: ${r.stderr}`);
      statusOf[platform] = spawnSync('tar', ['-xOf', tar, './var/lib/dpkg/status'], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      }).stdout;
    }
    const ctx = context('debian', [
      'FROM debian:bookworm',
      'ARG API_TOKEN',
      'RUN --mount=type=secret,id=tok test -s /run/secrets/tok && apt-get -o Acquire::Languages=none update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/* && echo "installed: $(dpkg-query -W curl | cut -f2)"',
    ]);
    const ref = `${reg.host}/debian-attest:1`;
    const apiToken = `api-${process.pid}-token`;
    const b = polyarch(
      [
        'build',
        '--platform',
        'linux/amd64,linux/arm64',
        '--sbom=true',
        '--provenance=mode=max',
        '--secret',
        'id=tok,env=TOK_SECRET',
        '--build-arg',
        `API_TOKEN=${apiToken}`,
        '--build-arg',
        'VISIBLE=yes',
        '-t',
        ref,
        '--push',
        ctx,
      ],
      env,
    );
    assert.equal(b.status, 0, b.stderr);
    assert.doesNotMatch(b.stderr, /refused the attestations/, b.stderr.slice(-2000));
    const curlVersion: Record<string, string> = {};
    for (const p of ['linux/amd64', 'linux/arm64']) {
      const m = /^#\d+ \d+\.\d+ installed: (\S+)$/m;
      const lines = b.stderr.split('\n').filter((l) => m.test(l));
      assert.equal(lines.length, 2, b.stderr.slice(-2000));
      const id = new RegExp(`^#(\\d+) \\[${p} 2/2\\] RUN`, 'm').exec(b.stderr)?.[1];
      const line = lines.find((l) => l.startsWith(`#${id} `));
      curlVersion[p] = m.exec(line ?? '')![1]!;
    }

    // skopeo sees exactly the two image platforms: the attestations are not index entries.
    const index = skopeoRaw(ref);
    assert.deepEqual(index.manifests.map(platformOf).sort(), ['linux/amd64', 'linux/arm64']);

    // The registry has no referrers API: the fallback tag lists an SBOM and a provenance per platform.
    for (const m of index.manifests) {
      const api = await fetch(`http://${reg.host}/v2/debian-attest/referrers/${m.digest}`);
      await api.text();
      assert.equal(api.status, 404, 'this registry was expected to have no referrers API');
      const refs = (await referrersTag(reg.host, 'debian-attest', m.digest))!;
      assert.ok(refs, `no referrers tag for ${platformOf(m)}`);
      assert.deepEqual(
        refs.map((r) => r.annotations?.['in-toto.io/predicate-type']).sort(),
        [SLSA1, SPDX].sort(),
      );
      assert.ok(refs.every((r) => r.artifactType === 'application/vnd.in-toto+json'));
      const sbom = await statement(
        reg.host,
        'debian-attest',
        refs.find((r) => r.annotations?.['in-toto.io/predicate-type'] === SPDX)!,
        m.digest,
      );
      assert.equal(sbom.predicate.spdxVersion, 'SPDX-2.3');
      const pkgs = new Map<string, string>(sbom.predicate.packages.map((p: Json) => [p.name, p.versionInfo]));
      assert.equal(pkgs.get('curl'), curlVersion[platformOf(m)], `${platformOf(m)} curl`);
      // The base's real packages, with the versions its dpkg status holds.
      for (const name of ['libc6', 'base-files', 'dpkg']) {
        const want = new RegExp(`^Package: ${name}\\n(?:[^\\n]+\\n)*?Version: (\\S+)`, 'm').exec(
          statusOf[platformOf(m)]!,
        )?.[1];
        assert.ok(want, `${name} in the tarball's status`);
        assert.equal(pkgs.get(name), want, `${platformOf(m)} ${name}`);
      }
      const prov = await statement(
        reg.host,
        'debian-attest',
        refs.find((r) => r.annotations?.['in-toto.io/predicate-type'] === SLSA1)!,
        m.digest,
      );
      const text = JSON.stringify(prov);
      assert.ok(!text.includes(env.TOK_SECRET!), 'the secret value is in the provenance');
      assert.ok(!text.includes(apiToken), 'a secret-named build arg is in the provenance');
      assert.equal(
        prov.predicate.buildDefinition.externalParameters.request.args['build-arg:VISIBLE'],
        'yes',
      );
      assert.ok(
        prov.predicate.buildDefinition.internalParameters.buildConfig.steps.length >= 2,
        'mode=max steps',
      );
      assert.match(text, /"instruction":"RUN --mount=type=secret,id=tok /);
    }

    // The base image by digest: the platform manifests debian:bookworm has in the store.
    const store = join(env.POLYARCH_ROOT!, 'store');
    const top = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8'));
    const base = top.manifests.find(
      (m: Json) =>
        m.annotations?.['org.opencontainers.image.ref.name'] === 'docker.io/library/debian:bookworm',
    );
    const baseIndex = JSON.parse(readFileSync(join(store, 'blobs', 'sha256', base.digest.slice(7)), 'utf8'));
    const prov = polyarch(['imagetools', 'inspect', '--format', '{{json .Provenance}}', ref], env);
    assert.equal(prov.status, 0, prov.stderr);
    const byPlatform = JSON.parse(prov.stdout);
    assert.deepEqual(Object.keys(byPlatform), ['linux/amd64', 'linux/arm64']);
    for (const m of baseIndex.manifests) {
      const deps = byPlatform[platformOf(m)].SLSA.buildDefinition.resolvedDependencies;
      assert.ok(
        deps.some(
          (d: Json) =>
            d.uri.startsWith('pkg:docker/docker.io/library/debian@bookworm') &&
            `sha256:${d.digest.sha256}` === m.digest,
        ),
        `${platformOf(m)}: base ${m.digest} not among ${JSON.stringify(deps)}`,
      );
    }
    const sb = polyarch(['imagetools', 'inspect', '--format', '{{json .SBOM}}', ref], env);
    assert.equal(sb.status, 0, sb.stderr);
    const sboms = JSON.parse(sb.stdout);
    assert.deepEqual(Object.keys(sboms), ['linux/amd64', 'linux/arm64']);
    assert.ok(
      sboms['linux/arm64'].SPDX.packages.some(
        (p: Json) => p.name === 'curl' && p.versionInfo === curlVersion['linux/arm64'],
      ),
    );
    const curl = sboms['linux/amd64'].SPDX.packages.find((p: Json) => p.name === 'curl');
    assert.equal(curl.licenseDeclared.split(' AND ')[0], 'curl', 'curl licence from its copyright file');
  });

  test('default min provenance and --provenance=false: same image digests, attestation or none', async () => {
    const ctx = context('default', ['FROM busybox', 'RUN echo attest > /a']);
    const env = envFor('default', { SOURCE_DATE_EPOCH: '1700000000' });
    const run = (tag: string, extra: string[], e = env) => {
      const iid = join(root, 'default', `${tag}.iid`);
      const r = polyarch(
        ['build', ...extra, '--iidfile', iid, '-t', `${reg.host}/defaults:${tag}`, '--push', ctx],
        e,
      );
      assert.equal(r.status, 0, r.stderr);
      return readFileSync(iid, 'utf8');
    };
    const withDefault = run('default', []);
    const without = run('none', ['--provenance=false']);
    const noDefaults = run('nodefaults', [], { ...env, BUILDX_NO_DEFAULT_ATTESTATIONS: '1' });
    // Attestations are referrers: the image itself is the same with or without them.
    assert.equal(without, withDefault);
    assert.equal(noDefaults, withDefault);
    const man = skopeoRaw(`${reg.host}/defaults:default`);
    assert.equal(man.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    const refs = (await referrersTag(reg.host, 'defaults', withDefault))!;
    assert.equal(refs.length, 1);
    const stmt = await statement(reg.host, 'defaults', refs[0]!, withDefault);
    assert.equal(stmt.predicateType, SLSA1);
    assert.equal(stmt.predicate.runDetails.metadata.polyarch.mode, 'min');
    assert.equal(stmt.predicate.buildDefinition.internalParameters.buildConfig, undefined);
    // Single platform: buildx prints the stub itself, and {} for an absent SBOM.
    const p = polyarch(
      ['imagetools', 'inspect', '--format', '{{json .Provenance}}', `${reg.host}/defaults:default`],
      env,
    );
    assert.equal(p.status, 0, p.stderr);
    assert.equal(
      JSON.parse(p.stdout).SLSA.buildDefinition.buildType,
      stmt.predicate.buildDefinition.buildType,
    );
    const s = polyarch(
      ['imagetools', 'inspect', '--format', '{{json .SBOM}}', `${reg.host}/defaults:default`],
      env,
    );
    assert.equal(s.stdout, '{}\n');
    // The same subject: the --provenance=false pushes did not add any, the default one stays;
    // a rebuild's provenance replaces it in the list rather than adding another.
    assert.equal((await referrersTag(reg.host, 'defaults', withDefault))!.length, 1);
    assert.equal(run('again', []), withDefault);
    const again = (await referrersTag(reg.host, 'defaults', withDefault))!;
    assert.equal(again.length, 1);
    assert.notEqual(again[0]!.digest, refs[0]!.digest);
    // The local store keeps it (hidden from `images`) and `push` carries it to another repository.
    const images = polyarch(['images'], env);
    assert.doesNotMatch(images.stdout, /polyarch\.referrers/);
    const e2 = envFor('default-load', { SOURCE_DATE_EPOCH: '1700000000' });
    const l = polyarch(['build', '--sbom=true', '-t', 'attest-local:1', ctx], e2);
    assert.equal(l.status, 0, l.stderr);
    const pushed = polyarch(['push', 'attest-local:1', `${reg.host}/pushed:1`], e2);
    assert.equal(pushed.status, 0, pushed.stderr);
    const pr = (await referrersTag(reg.host, 'pushed', withDefault))!;
    assert.deepEqual(
      pr.map((r) => r.annotations?.['in-toto.io/predicate-type']).sort(),
      [SLSA1, SPDX].sort(),
    );
    // An OCI archive carries the attestations asked for, as untagged index.json entries.
    const oci = join(root, 'default', 'img.tar');
    const o = polyarch(['build', '--sbom=true', '--provenance=false', '-o', `type=oci,dest=${oci}`, ctx], e2);
    assert.equal(o.status, 0, o.stderr);
    const idx = JSON.parse(spawnSync('tar', ['-xOf', oci, 'index.json'], { encoding: 'utf8' }).stdout);
    assert.deepEqual(
      idx.manifests.map((m: Json) => m.artifactType ?? 'image'),
      ['image', 'application/vnd.in-toto+json'],
    );
    // save carries the SBOM asked for (not the default provenance); load makes it a referrer
    // again, so a push from the loading store carries it.
    const saved = join(root, 'default', 'saved.tar');
    const sv = polyarch(['save', '-o', saved, 'attest-local:1'], e2);
    assert.equal(sv.status, 0, sv.stderr);
    const sidx = JSON.parse(spawnSync('tar', ['-xOf', saved, 'index.json'], { encoding: 'utf8' }).stdout);
    assert.deepEqual(
      sidx.manifests.map((m: Json) => m.artifactType ?? m.annotations['org.opencontainers.image.ref.name']),
      ['docker.io/library/attest-local:1', 'application/vnd.in-toto+json'],
    );
    const e3 = envFor('default-loaded');
    const ld = polyarch(['load', '-i', saved], e3);
    assert.equal(ld.status, 0, ld.stderr);
    assert.doesNotMatch(polyarch(['images', '-a'], e3).stdout, /<none>/);
    const lp = polyarch(['push', 'attest-local:1', `${reg.host}/loaded:1`], e3);
    assert.equal(lp.status, 0, lp.stderr);
    assert.deepEqual(
      (await referrersTag(reg.host, 'loaded', withDefault))!.map(
        (r) => r.annotations?.['in-toto.io/predicate-type'],
      ),
      [SPDX],
    );
    // rmi takes the attestations with the image.
    const storeIndex = (e: NodeJS.ProcessEnv) =>
      readFileSync(join(e.POLYARCH_ROOT!, 'store', 'index.json'), 'utf8');
    assert.match(storeIndex(e2), /polyarch\.referrers\//);
    const rm = polyarch(['rmi', 'attest-local:1'], e2);
    assert.equal(rm.status, 0, rm.stderr);
    assert.doesNotMatch(storeIndex(e2), /polyarch\.referrers\//);
  });

  test('bad attestation flags: one clear line, exit 2, nothing built', () => {
    const ctx = context('bad', ['FROM busybox']);
    const env = envFor('bad');
    for (const [args, want] of [
      [
        ['--attest', 'type=unknown'],
        /^ERROR: invalid --attest "type=unknown": unknown attestation type "unknown" \(expected sbom or provenance\)$/,
      ],
      [
        ['--provenance=mode=full'],
        /^ERROR: invalid --provenance "type=provenance,mode=full": mode must be min or max, not "full"$/,
      ],
      [['--sbom=maybe'], /^ERROR: invalid --sbom "type=sbom,maybe": expected key=value pairs, got "maybe"$/],
    ] as const) {
      const r = polyarch(['build', ...args, ctx], env);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr.trim(), want);
    }
  });

  test('a registry refusing the artifacts: a warning, the image pushed without them', async () => {
    const ctx = context('refuse', ['FROM busybox', 'RUN echo refused > /r']);
    // A one-platform image goes up by tag; every manifest PUT by digest is an attestation.
    const proxy = await startFaultProxy(reg.host, [
      { method: 'PUT', path: /\/v2\/refused\/manifests\/sha256:/, fault: { status: 400 }, times: 10 },
    ]);
    const config = join(root, 'refuse', 'registries.toml');
    mkdirSync(dirname(config), { recursive: true });
    writeFileSync(
      config,
      `${readFileSync(testEnv().config, 'utf8')}\n[registry."${proxy.host}"]\nhttp = true\n`,
    );
    const env = envFor('refuse', { POLYARCH_CONFIG: config });
    try {
      const iid = join(root, 'refuse', 'iid');
      const r = await polyarchAsync(
        ['build', '--sbom=true', '--iidfile', iid, '-t', `${proxy.host}/refused:1`, '--push', ctx],
        env,
      );
      assert.equal(r.status, 0, r.stderr);
      assert.match(
        r.stderr,
        /WARNING: 127\.0\.0\.1:\d+\/refused: the registry refused the attestations of [0-9a-f]{12} \(PUT manifest .*MANIFEST_INVALID.*\): the image is pushed without them/,
      );
      assert.ok(proxy.fired().length >= 1);
      const digest = readFileSync(iid, 'utf8');
      assert.equal(
        skopeoRaw(`${reg.host}/refused:1`).mediaType,
        'application/vnd.oci.image.manifest.v1+json',
      );
      const head = await fetch(`http://${reg.host}/v2/refused/manifests/${digest}`, {
        method: 'HEAD',
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(head.status, 200);
      assert.equal(await referrersTag(reg.host, 'refused', digest), undefined);
    } finally {
      await proxy.close();
    }
  });
});

const bkSkip = await buildkitSkipReason();
if (bkSkip) console.log(`# skipping the BuildKit attestation test: ${bkSkip}`);

describe('BuildKit attestations (remote driver)', { skip: bkSkip ?? false }, () => {
  let bk: Buildkitd;
  before(async () => {
    const t = testEnv();
    bk = await startBuildkitd({ dir: join(root, 'bk'), registries: [t.registry], mirror: t.registry });
  });
  after(async () => {
    await bk?.stop();
  });

  test('attest:provenance goes to BuildKit; imagetools reads its attestation manifests', () => {
    const t = testEnv();
    const env = envFor('bk');
    const ctx = context('bk', ['FROM busybox', 'RUN echo bk > /bk']);
    const c = polyarch(
      [
        'create',
        '--name',
        'attestbk',
        '--driver',
        'remote',
        '--node',
        'n1',
        '--platform',
        'linux/amd64',
        bk.endpoint,
      ],
      env,
    );
    assert.equal(c.status, 0, c.stderr);
    const ref = `${t.registry}/attest-bk-${process.pid}:1`;
    const b = polyarch(
      ['build', '--builder', 'attestbk', '--provenance=mode=max', '-t', ref, '--push', ctx],
      env,
    );
    assert.equal(b.status, 0, b.stderr);
    // BuildKit's style: the attestation is an unknown/unknown entry of the index.
    const index = skopeoRaw(ref);
    const att = index.manifests.find(
      (m: Json) => m.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest',
    );
    assert.ok(att, JSON.stringify(index));
    const p = polyarch(['imagetools', 'inspect', '--format', '{{json .Provenance}}', ref], env);
    assert.equal(p.status, 0, p.stderr);
    const slsa = JSON.parse(p.stdout).SLSA;
    assert.ok(slsa, p.stdout);
    assert.match(JSON.stringify(slsa), /RUN echo bk|buildConfig|llbDefinition/);
  });
});
