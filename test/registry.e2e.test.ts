/**
 * polyarch against real registries (CNCF distribution started by the test environment):
 * push/pull round trips, agreement with skopeo, chunked uploads and mounts, basic auth,
 * inspect formats, and one-line errors.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { ContentStore } from '../src/content/index.js';
import { inspectImage } from '../src/image/inspect.js';
import { pull } from '../src/image/pull.js';
import { push } from '../src/image/push.js';
import { type Digest, MediaType } from '../src/oci/index.js';
import { RegistryClient } from '../src/registry/client.js';
import { ProgressRecorder, ProgressWriter } from '../src/progress/index.js';
import { parseReference } from '../src/oci/reference.js';
import {
  assertOneLineError,
  cli,
  makeLayout,
  requireEnv,
  sha256,
  skopeo,
  tempDir,
  uniqueRepo,
} from './registry-helpers.js';

const PLATFORMS = ['linux/amd64', 'linux/arm64', 'linux/arm/v7'];

function blobCount(storeDir: string): number {
  const d = join(storeDir, 'blobs', 'sha256');
  return existsSync(d) ? readdirSync(d).length : 0;
}

/** An index pushed by skopeo to the anonymous registry. */
function seed(reg: string, name: string) {
  const img = makeLayout(join(tempDir('layout'), 'l'), 'v1', PLATFORMS);
  const ref = `${reg}/${uniqueRepo(name)}:v1`;
  skopeo(['copy', '--all', `oci:${img.dir}:v1`, `docker://${ref}`]);
  return { img, ref };
}

describe('registry round trips', () => {
  test('skopeo push → polyarch pull → polyarch push → polyarch pull keeps every digest', async () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const { img, ref } = seed(reg, 'rt');
    const raw = skopeo(['inspect', '--raw', `docker://${ref}`]);
    assert.equal(sha256(raw), img.indexDigest, 'skopeo pushed the layout index unchanged');

    const a = await ContentStore.open(join(tempDir('store'), 'a'));
    const pulled = await pull(ref, { store: a, all: true });
    assert.equal(pulled.descriptor.digest, img.indexDigest);
    assert.deepEqual(pulled.platforms, PLATFORMS);
    assert.deepEqual(await a.readBlob(img.indexDigest as Digest), raw, 'the index is stored byte for byte');
    for (const p of img.platforms.values()) {
      for (const d of [p.manifest, p.layer, p.config]) assert.ok(await a.has(d as Digest), `${d} stored`);
    }
    assert.equal((await a.resolve(ref))?.digest, img.indexDigest);

    const target = `${reg}/${uniqueRepo('rt-target')}:v2`;
    const rec = new ProgressRecorder();
    const pushed = await push(ref, { store: a, target, progress: new ProgressWriter(rec) });
    assert.equal(pushed.digest, img.indexDigest);
    assert.equal(sha256(skopeo(['inspect', '--raw', `docker://${target}`])), pushed.digest, 'skopeo agrees');
    // Same registry, another repository: blobs are mounted, not uploaded again.
    const ids = rec.statuses.flatMap((st) => st.statuses.filter((x) => x.completed).map((x) => x.id));
    assert.ok(
      ids.some((id) => id.startsWith('mounted sha256:')),
      `cross-repository mount used (${ids.join(', ')})`,
    );
    const manifestIdx = ids.indexOf(`manifest ${img.platforms.get('linux/arm64')!.manifest}`);
    const indexIdx = ids.indexOf(`manifest ${img.indexDigest}`);
    assert.ok(manifestIdx >= 0 && indexIdx > manifestIdx, 'children are pushed before the index');
    assert.deepEqual(
      rec.vertexes().map((v) => [v.name, v.completed !== undefined, v.error]),
      [[`pushing ${target}`, true, undefined]],
    );

    const b = await ContentStore.open(join(tempDir('store'), 'b'));
    const again = await pull(target, { store: b, all: true });
    assert.equal(again.descriptor.digest, img.indexDigest);

    // skopeo reads what polyarch pushed, down to each platform's manifest.
    const out = join(tempDir('copy'), 'o');
    skopeo(['copy', '--all', `docker://${target}`, `oci:${out}:x`]);
    const idx = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
    assert.equal(idx.manifests[0].digest, img.indexDigest);
  });

  test('polyarch push of an image it pulled, then skopeo pull, for a single-platform manifest', async () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const { img, ref } = seed(reg, 'single');
    const arm = img.platforms.get('linux/arm64')!;
    const byDigest = `${ref.split(':v1')[0]}@${arm.manifest}`;
    const s = await ContentStore.open(join(tempDir('store'), 's'));
    const r = await pull(byDigest, { store: s });
    assert.equal(r.descriptor.digest, arm.manifest);
    assert.equal(r.descriptor.mediaType, MediaType.OciManifest);
    const target = `${reg}/${uniqueRepo('single-target')}:arm`;
    const p = await push(byDigest, { store: s, target });
    assert.equal(p.digest, arm.manifest);
    assert.equal(sha256(skopeo(['inspect', '--raw', `docker://${target}`])), arm.manifest);
    const cfg = JSON.parse(skopeo(['inspect', `docker://${target}`]).toString());
    assert.equal(cfg.Architecture, 'arm64');
  });

  test('default pull takes only the host platform; --platform picks others; a missing one is named', async () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const { img, ref } = seed(reg, 'plat');
    const s = await ContentStore.open(join(tempDir('store'), 'p'));
    const r = await pull(ref, { store: s });
    assert.deepEqual(r.platforms, ['linux/amd64']);
    assert.ok(await s.has(img.platforms.get('linux/amd64')!.layer as Digest));
    assert.ok(!(await s.has(img.platforms.get('linux/arm64')!.layer as Digest)), 'arm64 layer not fetched');
    assert.ok(await s.has(img.indexDigest as Digest), 'the index is stored whole');
    const r2 = await pull(ref, { store: s, platforms: ['linux/arm/v7'] });
    assert.deepEqual(r2.platforms, ['linux/arm/v7']);
    assert.ok(await s.has(img.platforms.get('linux/arm/v7')!.layer as Digest));
    await assert.rejects(
      pull(ref, { store: s, platforms: ['linux/s390x'] }),
      /pulling .*: no image for platform linux\/s390x in the index \(it has linux\/amd64, linux\/arm64, linux\/arm\/v7\)/,
    );
  });

  test('a partially pulled index pushes back to its repository, but not to a new one', async () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const { img, ref } = seed(reg, 'partial');
    const s = await ContentStore.open(join(tempDir('store'), 'q'));
    await pull(ref, { store: s, platforms: ['linux/arm64'] });
    // The source repository already holds the absent children.
    const back = await push(ref, { store: s, target: ref.replace(/:v1$/, ':again') });
    assert.equal(back.digest, img.indexDigest);
    await assert.rejects(
      push(ref, { store: s, target: `${reg}/${uniqueRepo('partial-new')}:1` }),
      /neither in the local store nor in .* \(linux\/amd64, linux\/arm\/v7\); pull it with --all-platforms first/,
    );
  });

  test('chunked upload, download into the store, HEAD, and cross-repository mount', async () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) % 251;
    const desc = { mediaType: MediaType.OciLayer, digest: sha256(data) as Digest, size: data.length };
    const client = new RegistryClient({ chunkThreshold: 100_000, chunkSize: 64_000 });
    try {
      const from = parseReference(`${reg}/${uniqueRepo('chunk')}`);
      const seen: string[] = [];
      const r = await client.pushBlob(from, desc, (s, e) => Readable.from([data.subarray(s, e)]), {
        progress: (p) => seen.push(`${p.status}:${p.done}`),
      });
      assert.equal(r, 'uploaded');
      assert.deepEqual(
        [...new Set(seen.filter((x) => x.startsWith('progress')))],
        ['progress:64000', 'progress:128000', 'progress:192000', 'progress:256000', 'progress:300000'],
      );
      assert.equal(await client.blobSize(from, desc.digest), data.length);
      assert.equal(await client.pushBlob(from, desc, () => Readable.from([])), 'exists');
      const to = parseReference(`${reg}/${uniqueRepo('mount')}`);
      assert.equal(
        await client.pushBlob(to, desc, () => Readable.from([]), { mountFrom: from.path }),
        'mounted',
      );
      const s = await ContentStore.open(join(tempDir('store'), 'c'));
      const w = await s.writer({ digest: desc.digest, size: desc.size });
      await client.fetchBlob(to, desc, w);
      assert.deepEqual(await s.readBlob(desc.digest), data);
      // A wrong expected digest is caught by the store, and nothing is kept.
      const bad = { ...desc, digest: sha256('other') as Digest };
      const w2 = await s.writer({ digest: bad.digest, size: bad.size });
      await assert.rejects(client.fetchBlob(to, bad, w2), /BLOB_UNKNOWN|not found|unknown/i);
    } finally {
      await client.close();
    }
  });
});

describe('registry CLI', () => {
  test('imagetools inspect: human, --raw, --format', () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const { img, ref } = seed(reg, 'inspect');
    const home = tempDir('home');
    const h = cli(['imagetools', 'inspect', ref], home);
    assert.equal(h.status, 0, h.stderr);
    const e = (p: string) => img.platforms.get(p)!.manifest;
    const expected = [
      `Name:      ${ref}`,
      `MediaType: ${MediaType.OciIndex}`,
      `Digest:    ${img.indexDigest}`,
      '           ',
      'Manifests: ',
      `  Name:      ${ref}@${e('linux/amd64')}`,
      `  MediaType: ${MediaType.OciManifest}`,
      '  Platform:  linux/amd64',
      '             ',
      `  Name:      ${ref}@${e('linux/arm64')}`,
      `  MediaType: ${MediaType.OciManifest}`,
      '  Platform:  linux/arm64',
      '             ',
      `  Name:      ${ref}@${e('linux/arm/v7')}`,
      `  MediaType: ${MediaType.OciManifest}`,
      '  Platform:  linux/arm/v7',
      '',
    ].join('\n');
    assert.equal(h.stdout, expected);

    const raw = cli(['imagetools', 'inspect', '--raw', ref], home);
    assert.equal(sha256(raw.stdout), img.indexDigest, '--raw prints the registry bytes unchanged');

    const m = JSON.parse(cli(['imagetools', 'inspect', '--format', '{{json .Manifest}}', ref], home).stdout);
    assert.equal(m.digest, img.indexDigest);
    assert.equal(m.manifests.length, 3);
    const images = JSON.parse(
      cli(['imagetools', 'inspect', '--format', '{{json .Image}}', ref], home).stdout,
    );
    // A Go map: keys sorted, as buildx prints them.
    assert.deepEqual(Object.keys(images), [...PLATFORMS].sort());
    assert.equal(images['linux/arm/v7'].variant, 'v7');
    const all = JSON.parse(cli(['imagetools', 'inspect', '--format', 'json', ref], home).stdout);
    assert.equal(all.name, ref);
    assert.equal(all.manifest.digest, img.indexDigest);
    const name = cli(['imagetools', 'inspect', '--format', '{{.Name}} {{.Manifest.Digest}}', ref], home);
    assert.equal(name.stdout, `${ref} ${img.indexDigest}\n`);
    const badTemplate = cli(['imagetools', 'inspect', '--format', '{{range .X}}', ref], home);
    assert.equal(badTemplate.status, 1, 'a template error exits 1, as buildx');
    assert.equal(badTemplate.stderr, 'ERROR: template: :1:12: unexpected EOF\n');
    const unknown = cli(['imagetools', 'inspect', '--format', '{{.Name}} {{.Nope}}', ref], home);
    assert.equal(unknown.status, 1);
    assert.equal(
      unknown.stderr,
      `ERROR: inspecting ${ref}: template: :1:12: executing "" at <.Nope>: can't evaluate field Nope in type imagetools.tplInputs\n`,
    );
    const platforms = cli(
      ['imagetools', 'inspect', '--format', '{{range .Manifest.Manifests}}{{.Platform}} {{end}}', ref],
      home,
    );
    assert.equal(platforms.stdout, '{amd64 linux  [] } {arm64 linux  [] } {arm linux  [] v7} \n');
    const archs = cli(
      [
        'imagetools',
        'inspect',
        '--format',
        '{{range .Manifest.Manifests}}{{.Platform.Architecture}}{{with .Platform.Variant}}/{{.}}{{end}},{{end}}',
        ref,
      ],
      home,
    );
    assert.equal(archs.stdout, 'amd64,arm64,arm/v7,\n');
    const one = cli(
      ['imagetools', 'inspect', '--format', '{{(index .Image "linux/arm/v7").Architecture}}', ref],
      home,
    );
    assert.equal(one.stdout, 'arm\n');
    assert.equal(cli(['imagetools', 'inspect', '--format', '{{json .SBOM}}', ref], home).stdout, '{}\n');
    const both = cli(['imagetools', 'inspect', '--raw', '--format', '{{.Name}}', ref], home);
    assert.equal(both.status, 2);
    assert.equal(both.stderr, 'ERROR: --format and --raw cannot be used together\n');

    const mi = cli(['manifest', 'inspect', ref], home);
    assert.equal(mi.status, 0, mi.stderr);
    assert.deepEqual(JSON.parse(mi.stdout), JSON.parse(raw.stdout));
    const mv = JSON.parse(cli(['manifest', 'inspect', '--verbose', ref], home).stdout);
    assert.equal(mv.length, 3);
    assert.equal(mv[1].Descriptor.platform.architecture, 'arm64');
    assert.equal(sha256(Buffer.from(mv[1].Raw, 'base64')), e('linux/arm64'));
  });

  test('pull and push from the CLI; errors are one line with exit 1', () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const { img, ref } = seed(reg, 'cli');
    const home = tempDir('home');
    const p = cli(['pull', '--platform', 'linux/arm64', ref], home);
    assert.equal(p.status, 0, p.stderr);
    assert.equal(p.stdout, `Digest: ${img.indexDigest}\n${ref}\n`);
    assert.match(p.stderr, /^#\d+ resolve /m);
    assert.match(p.stderr, /^#\d+ sha256:[0-9a-f]{64} .*done$/m);
    const target = `${reg}/${uniqueRepo('cli-push')}:x`;
    const q = cli(['push', '-q', ref, target], home);
    // The index lists platforms this store lacks, but the registry has them in the source repo only.
    assertOneLineError(q, /pull it with --all-platforms first/);
    assert.equal(cli(['pull', '-a', ref], home).status, 0);
    const q2 = cli(['push', '-q', ref, target], home);
    assert.equal(q2.status, 0, q2.stderr);
    assert.equal(q2.stdout, `${img.indexDigest}\n`);

    const cases: Array<[string, string[], RegExp]> = [
      [
        'bad reference',
        ['pull', 'Bad/Ref'],
        /^ERROR: invalid reference "Bad\/Ref": repository name must be lowercase$/,
      ],
      ['bad digest', ['pull', 'busybox@sha256:12'], /not a valid digest/],
      [
        'unknown host',
        ['pull', 'nosuch.invalid/app:1'],
        /^ERROR: pulling nosuch\.invalid\/app:1: nosuch\.invalid unreachable: .*ENOTFOUND/,
      ],
      [
        'closed port',
        ['pull', '127.0.0.1:1/app'],
        /^ERROR: pulling 127\.0\.0\.1:1\/app:latest: 127\.0\.0\.1:1 unreachable: .*ECONNREFUSED/,
      ],
      [
        'missing tag',
        ['pull', `${ref.replace(/:v1$/, '')}:nope`],
        /^ERROR: pulling .*:nope: not found \(MANIFEST_UNKNOWN\)$/,
      ],
      ['missing repository', ['pull', `${reg}/${uniqueRepo('none')}:1`], /not found/],
      ['push of an unknown image', ['push', `${reg}/none/x:1`], /no image named .* in the local store/],
      [
        'inspect missing tag',
        ['imagetools', 'inspect', `${ref.replace(/:v1$/, '')}:nope`],
        /MANIFEST_UNKNOWN/,
      ],
    ];
    for (const [name, args, want] of cases) {
      const r = cli(args, home);
      assertOneLineError(r, want);
      assert.ok(r.ms < 30_000, `${name}: took ${r.ms} ms`);
    }
    const usage = cli(['pull', '--platform', 'linux/', ref], home);
    assert.equal(usage.status, 2, usage.stderr);
    assert.match(usage.stderr, /^ERROR: invalid platform "linux\/"/);
  });

  test('basic auth: login checks the password, pull and push use it, logout forgets it', () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const basic = requireEnv('POLYARCH_TEST_REGISTRY_BASIC');
    const user = requireEnv('POLYARCH_TEST_REGISTRY_USER');
    const password = requireEnv('POLYARCH_TEST_REGISTRY_PASSWORD');
    const { img, ref } = seed(reg, 'auth');
    const home = tempDir('home');
    const target = `${basic}/${uniqueRepo('auth')}:1`;
    const cfg = join(home, 'docker', 'config.json');

    const wrong = cli(['login', '-u', user, '--password-stdin', basic], home, {
      input: 'not-the-password\n',
    });
    assertOneLineError(
      wrong,
      new RegExp(`login to ${basic} failed: the registry refused the credentials of user "${user}"`),
    );
    assert.ok(!existsSync(cfg), 'nothing stored after a failed login');
    assert.doesNotMatch(wrong.stderr, /not-the-password/);

    assert.equal(cli(['pull', '-a', ref], home).status, 0);
    const anon = cli(['push', ref, target], home);
    assertOneLineError(anon, /authentication required \(run: polyarch login/);

    const ok = cli(['login', '-u', user, '--password-stdin', basic], home, { input: `${password}\n` });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, 'Login Succeeded\n');
    assert.equal(statSync(cfg).mode & 0o777, 0o600);
    const stored = JSON.parse(readFileSync(cfg, 'utf8'));
    assert.equal(Buffer.from(stored.auths[basic].auth, 'base64').toString(), `${user}:${password}`);

    const pushed = cli(['push', '-q', ref, target], home);
    assert.equal(pushed.status, 0, pushed.stderr);
    assert.equal(pushed.stdout, `${img.indexDigest}\n`);
    assert.doesNotMatch(pushed.stderr + pushed.stdout, new RegExp(password));

    const home2 = tempDir('home');
    const pulled = cli(['login', '-u', user, '-p', password, basic], home2);
    assert.equal(pulled.status, 0, pulled.stderr);
    const p2 = cli(['pull', '-a', target], home2);
    assert.equal(p2.status, 0, p2.stderr);
    assert.match(p2.stdout, new RegExp(img.indexDigest));

    // Wrong stored credentials: one line, exit 1, nothing in the store.
    const home3 = tempDir('home');
    const bad = cli(['login', '-u', user, '-p', 'wrong', basic], home3);
    assert.equal(bad.status, 1);
    cli(['login', '-u', user, '-p', password, basic], home3);
    const c3 = join(home3, 'docker', 'config.json');
    const j = JSON.parse(readFileSync(c3, 'utf8'));
    j.auths[basic].auth = Buffer.from(`${user}:wrong`).toString('base64');
    writeFileSync(c3, JSON.stringify(j));
    const denied = cli(['pull', target], home3);
    assertOneLineError(
      denied,
      /pulling .*: .*authentication required \(the stored credentials were refused\)/,
    );
    assert.equal(blobCount(join(home3, 'root', 'store')), 0, 'nothing written to the store');

    const out = cli(['logout', basic], home);
    assert.equal(out.stdout, `Removing login credentials for ${basic}\n`);
    assert.equal(JSON.parse(readFileSync(cfg, 'utf8')).auths[basic], undefined);
    assert.equal(cli(['logout', basic], home).stdout, `Not logged in to ${basic}\n`);
  });

  test('token auth: bearer tokens from the realm, login, push with mounts, pull', () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const tok = requireEnv('POLYARCH_TEST_REGISTRY_TOKEN');
    const user = requireEnv('POLYARCH_TEST_REGISTRY_USER');
    const password = requireEnv('POLYARCH_TEST_REGISTRY_PASSWORD');
    const { img, ref } = seed(reg, 'token');
    const home = tempDir('home');
    assert.equal(cli(['pull', '-a', ref], home).status, 0);
    const target = `${tok}/${uniqueRepo('token')}:1`;
    assertOneLineError(cli(['push', ref, target], home), /pushing .*: .*authentication required/);
    assertOneLineError(
      cli(['login', '-u', user, '--password-stdin', tok], home, { input: 'wrong\n' }),
      /login to .* failed: the registry refused the credentials/,
    );
    assert.equal(
      cli(['login', '-u', user, '--password-stdin', tok], home, { input: `${password}\n` }).status,
      0,
    );
    const pushed = cli(['push', '-q', ref, target], home);
    assert.equal(pushed.status, 0, pushed.stderr);
    assert.equal(pushed.stdout, `${img.indexDigest}\n`);
    // Another repository on the token registry: the mount needs pull on the source too.
    const second = `${tok}/${uniqueRepo('token-mount')}:1`;
    // The mount source is the repository the stored image is named after.
    assert.equal(cli(['pull', '-a', target], home).status, 0);
    const m2 = cli(['push', target, second], home);
    assert.equal(m2.status, 0, m2.stderr);
    assert.match(m2.stderr, /^#\d+ mounted sha256:[0-9a-f]{64} .*done$/m);
    const fresh = tempDir('home');
    assert.equal(cli(['login', '-u', user, '-p', password, tok], fresh).status, 0);
    const p = cli(['pull', '-a', second], fresh);
    assert.equal(p.status, 0, p.stderr);
    assert.match(p.stdout, new RegExp(img.indexDigest));
  });

  test('imagetools create: combine images from two repositories into a new index', () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const a = seed(reg, 'create-a');
    const b = seed(reg, 'create-b');
    const home = tempDir('home');
    const armFromB = b.img.platforms.get('linux/arm64')!.manifest;
    const target = `${reg}/${uniqueRepo('create-t')}:multi`;
    const dry = cli(
      [
        'imagetools',
        'create',
        '--dry-run',
        '--platform',
        'linux/amd64',
        '--platform',
        'linux/arm64',
        a.ref,
        `${b.ref.replace(/:v1$/, '')}@${armFromB}`,
      ],
      home,
    );
    assert.equal(dry.status, 0, dry.stderr);
    const idx = JSON.parse(dry.stdout);
    assert.deepEqual(
      idx.manifests.map((m: { digest: string; platform: { architecture: string } }) => [
        m.digest,
        m.platform.architecture,
      ]),
      [
        [a.img.platforms.get('linux/amd64')!.manifest, 'amd64'],
        [a.img.platforms.get('linux/arm64')!.manifest, 'arm64'],
        [armFromB, 'arm64'],
      ],
    );
    const made = cli(
      [
        'imagetools',
        'create',
        '-t',
        target,
        '--annotation',
        'index:org.opencontainers.image.title=combined',
        '--platform',
        'linux/amd64',
        '--platform',
        'linux/arm64',
        a.ref,
        `${b.ref.replace(/:v1$/, '')}@${armFromB}`,
      ],
      home,
    );
    assert.equal(made.status, 0, made.stderr);
    const raw = skopeo(['inspect', '--raw', `docker://${target}`]);
    assert.equal(made.stdout, `${target}@${sha256(raw)}\n`);
    assert.equal(JSON.parse(raw.toString()).annotations['org.opencontainers.image.title'], 'combined');
    // Every child and blob was copied into the target repository: skopeo can copy it all.
    const out = join(tempDir('copy'), 'o');
    skopeo(['copy', '--all', `docker://${target}`, `oci:${out}:x`]);
    assertOneLineError(
      cli(['imagetools', 'create', '-t', target, '--platform', 'linux/s390x', a.ref], home),
      /no manifests/,
    );
  });

  test('imagetools inspect prints descriptor annotations in their own aligned block', () => {
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const a = seed(reg, 'annot');
    const home = tempDir('home');
    const target = `${reg}/${uniqueRepo('annot-t')}:1`;
    const made = cli(
      [
        'imagetools',
        'create',
        '-t',
        target,
        '--platform',
        'linux/arm64',
        '--annotation',
        'manifest-descriptor:org.example.k=v1',
        '--annotation',
        'manifest-descriptor:org.example.longer.key=v2',
        a.ref,
      ],
      home,
    );
    assert.equal(made.status, 0, made.stderr);
    const digest = made.stdout.trim().split('@')[1];
    const out = cli(['imagetools', 'inspect', target], home).stdout;
    const child = a.img.platforms.get('linux/arm64')!.manifest;
    assert.equal(
      out,
      [
        `Name:      ${target}`,
        `MediaType: ${MediaType.OciIndex}`,
        `Digest:    ${digest}`,
        '           ',
        'Manifests: ',
        `  Name:        ${target}@${child}`,
        `  MediaType:   ${MediaType.OciManifest}`,
        '  Platform:    linux/arm64',
        '  Annotations: ',
        '    org.example.k:          v1',
        '    org.example.longer.key: v2',
        '',
      ].join('\n'),
    );
  });

  test('token auth with an identity token (OAuth2 refresh-token grant) from config.json', async () => {
    const tok = requireEnv('POLYARCH_TEST_REGISTRY_TOKEN');
    const realm = requireEnv('POLYARCH_TEST_TOKEN_REALM');
    const service = requireEnv('POLYARCH_TEST_TOKEN_SERVICE');
    const user = requireEnv('POLYARCH_TEST_REGISTRY_USER');
    const password = requireEnv('POLYARCH_TEST_REGISTRY_PASSWORD');
    // Get a refresh token the way `docker login` does for OAuth registries.
    const res = await fetch(realm, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'password',
        username: user,
        password,
        service,
        client_id: 'polyarch-test',
        access_type: 'offline',
      }).toString(),
    });
    assert.equal(res.status, 200);
    const refresh = ((await res.json()) as { refresh_token?: string }).refresh_token;
    assert.ok(refresh, 'the token server issued a refresh token');
    const reg = requireEnv('POLYARCH_TEST_REGISTRY');
    const { img, ref } = seed(reg, 'identity');
    const home = tempDir('home');
    assert.equal(cli(['pull', '-a', ref], home).status, 0);
    mkdirSync(join(home, 'docker'), { recursive: true });
    writeFileSync(
      join(home, 'docker', 'config.json'),
      JSON.stringify({ auths: { [tok]: { identitytoken: refresh } } }),
    );
    const target = `${tok}/${uniqueRepo('identity')}:1`;
    const pushed = cli(['push', '-q', ref, target], home);
    assert.equal(pushed.status, 0, pushed.stderr);
    assert.equal(pushed.stdout, `${img.indexDigest}\n`);
    writeFileSync(
      join(home, 'docker', 'config.json'),
      JSON.stringify({ auths: { [tok]: { identitytoken: 'revoked' } } }),
    );
    assertOneLineError(
      cli(['push', ref, `${tok}/${uniqueRepo('identity')}:2`], home),
      /authentication failed at/,
    );
  });

  test('the test environment busybox index pulls per platform', async () => {
    const bb = requireEnv('POLYARCH_TEST_BUSYBOX');
    const s = await ContentStore.open(join(tempDir('store'), 'bb'));
    const r = await pull(bb, { store: s, platforms: ['linux/arm64'] });
    assert.deepEqual(r.platforms, ['linux/arm64']);
    const text = String(await inspectImage(bb));
    assert.equal((text.match(/^ {2}Platform:/gm) ?? []).length >= 5, true, text);
  });

  test('docker.io names resolve through the configured mirror (no Docker Hub here)', () => {
    const config = requireEnv('POLYARCH_TEST_CONFIG');
    const bb = requireEnv('POLYARCH_TEST_BUSYBOX');
    const home = tempDir('home');
    const r = cli(['pull', '--platform', 'linux/arm/v7', 'busybox'], home, {
      env: { POLYARCH_CONFIG: config },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\ndocker\.io\/library\/busybox:latest\n$/);
    const direct = cli(['imagetools', 'inspect', '--format', '{{json .Manifest}}', bb], home);
    assert.equal(r.stdout.split('\n')[0], `Digest: ${JSON.parse(direct.stdout).digest}`);
  });
});
