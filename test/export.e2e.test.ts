/**
 * Exporters end to end: a BuildResult made by hand from real snapshots over the test busybox
 * base, exported to the local store, OCI tar/dir, docker-archive, rootfs dirs/tar and the
 * test registry, then read back with skopeo and umoci.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { exportBuild, type ExportContext, parseOutputs, writeBuildFiles } from '../src/build/export/index.js';
import type { BuildResult } from '../src/build/result.js';
import { ContentStore } from '../src/content/index.js';
import { readTar } from '../src/layer/index.js';
import type { Descriptor, Digest, ImageConfig, Index, Manifest } from '../src/oci/index.js';
import { parsePlatform } from '../src/platform/index.js';
import { ProgressRecorder } from '../src/progress/index.js';
import { Snapshotter } from '../src/snapshot/index.js';
import { testEnv } from './env/index.js';

const run = promisify(execFile);
const env = testEnv();
const SDE = 1_700_000_000;

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('exportBuild', () => {
  let dir: string;
  let root: string;
  let store: ContentStore;
  let snapshotter: Snapshotter;
  let result: BuildResult;
  let ctx: ExportContext;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'polyarch-export-'));
    root = join(dir, 'state');
    store = await ContentStore.open(join(root, 'store'));
    snapshotter = await Snapshotter.open({ root });
    const layout = env.busyboxLayout;
    const blob = (d: string) => join(layout, 'blobs', 'sha256', d.slice(7));
    const top = (await readJson<Index>(join(layout, 'index.json'))).manifests[0]!;
    const idx = await readJson<Index>(blob(top.digest));
    const copy = (d: Descriptor) =>
      store.ingest(createReadStream(blob(d.digest)), { digest: d.digest, size: d.size });
    const platforms: BuildResult['platforms'] = [];
    for (const want of ['linux/amd64', 'linux/arm64/v8']) {
      const entry = idx.manifests.find(
        (m) =>
          [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join('/') === want,
      )!;
      const m = await readJson<Manifest>(blob(entry.digest));
      const cfg = await readJson<ImageConfig>(blob(m.config.digest));
      for (const l of m.layers) await copy(l);
      const key = `test-export-${want}`;
      await snapshotter.create(key, [], async (fs) => {
        await writeFile(join(fs, 'hello.txt'), `hello from ${want}\n`);
        await mkdir(join(fs, 'etc'), { mode: 0o755 });
        await writeFile(join(fs, 'etc', 'app.conf'), 'x=1\n');
        // An overlayfs whiteout: /etc/group of the busybox base is deleted by this layer.
        await run('mknod', [join(fs, 'etc', 'group'), 'c', '0', '0']);
      });
      const { rootfs: _r, history, ...rest } = cfg;
      platforms.push({
        platform: parsePlatform(want),
        layers: [
          { kind: 'blob', descriptor: m.layers[0]!, diffId: cfg.rootfs.diff_ids[0]! },
          { kind: 'snapshot', key },
        ],
        config: {
          ...rest,
          config: { ...rest.config, Cmd: ['cat', '/hello.txt'] },
          history: [
            ...(history?.length ? history : [{ created_by: 'busybox base' }]),
            { created_by: 'COPY hello.txt /' },
          ],
        },
      });
    }
    result = { platforms };
    ctx = { store, snapshotter, stateRoot: root, sourceDateEpoch: SDE, threads: 1 };
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('stores a multi-platform index that skopeo and umoci read; the whiteout deletes the file', async () => {
    const outputs = parseOutputs({ tags: ['polyarch-test/export:multi'] });
    const res = await exportBuild(result, outputs, ctx);
    assert.deepEqual(res.names, ['docker.io/polyarch-test/export:multi']);
    assert.equal(res.descriptor?.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.equal(res.stats.packed, 2);
    const { stdout: raw } = await run('skopeo', ['inspect', '--raw', `oci:${store.dir}:${res.names[0]}`]);
    assert.equal(sha(raw), res.digest);
    const index = JSON.parse(raw) as Index;
    assert.deepEqual(
      index.manifests.map((m) => m.platform),
      [
        { architecture: 'amd64', os: 'linux' },
        { architecture: 'arm64', os: 'linux', variant: 'v8' },
      ],
    );
    const { stdout: info } = await run('skopeo', [
      '--override-arch',
      'arm64',
      'inspect',
      `oci:${store.dir}:${res.names[0]}`,
    ]);
    const parsed = JSON.parse(info) as { Architecture: string; Layers: string[]; Created: string };
    assert.equal(parsed.Architecture, 'arm64');
    assert.equal(parsed.Layers.length, 2);
    assert.equal(parsed.Created, '2023-11-14T22:13:20Z');
    assert.deepEqual(res.metadata['containerimage.digest'], res.digest);
    assert.equal(res.metadata['image.name'], 'docker.io/polyarch-test/export:multi');

    // umoci unpacks one manifest: tag the amd64 one alone.
    await store.tag('polyarch-test/export-amd64', res.manifests[0]!.manifest);
    const bundle = join(dir, 'bundle');
    await run('umoci', ['unpack', '--image', `${store.dir}:polyarch-test/export-amd64`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    assert.equal(await readFile(join(rootfs, 'hello.txt'), 'utf8'), 'hello from linux/amd64\n');
    assert.ok(existsSync(join(rootfs, 'etc', 'passwd')), 'base file kept');
    assert.ok(!existsSync(join(rootfs, 'etc', 'group')), 'whiteout removed /etc/group');
  });

  it('is reproducible with SOURCE_DATE_EPOCH and re-packs nothing the second time', async () => {
    const outputs = parseOutputs({ output: ['type=image,name=polyarch-test/export:repro'], tags: [] });
    const a = await exportBuild(result, outputs, ctx);
    const b = await exportBuild(result, outputs, ctx);
    assert.equal(b.digest, a.digest);
    assert.equal(b.stats.packed, 0);
    assert.equal(b.stats.reused, 2);
    // A fresh memo packs again and must produce the very same bytes.
    const other = join(dir, 'state2');
    const c = await exportBuild(result, outputs, { ...ctx, stateRoot: other });
    assert.equal(c.stats.packed, 2);
    assert.equal(c.digest, a.digest);
    // Another compression is another image (and is memoised separately).
    const z = await exportBuild(
      result,
      parseOutputs({ output: ['type=image,name=x/y:z,compression=uncompressed'] }),
      ctx,
    );
    assert.notEqual(z.digest, a.digest);
    assert.equal(z.stats.packed, 2);
  });

  it('writes an OCI tar and an OCI dir that skopeo reads', async () => {
    const tarPath = join(dir, 'out', 'image.tar');
    const layoutDir = join(dir, 'out', 'layout');
    const res = await exportBuild(
      result,
      parseOutputs({
        output: [`type=oci,dest=${tarPath}`, `type=oci,dest=${layoutDir},tar=false`],
        tags: ['app:1'],
      }),
      ctx,
    );
    const { stdout: a } = await run('skopeo', ['inspect', '--raw', `oci-archive:${tarPath}:1`]);
    assert.equal(sha(a), res.digest);
    const { stdout: b } = await run('skopeo', ['inspect', '--raw', `oci:${layoutDir}:1`]);
    assert.equal(sha(b), res.digest);
    const names: string[] = [];
    for await (const e of readTar(createReadStream(tarPath))) names.push(e.header.path);
    assert.deepEqual(names.slice(0, 2), ['oci-layout', 'index.json']);
    assert.deepEqual((await readdir(join(dir, 'out'))).sort(), ['image.tar', 'layout']);
    // dest an existing directory: a layout directory even without tar=false.
    const existing = join(dir, 'out', 'existing');
    await mkdir(existing);
    await exportBuild(result, parseOutputs({ output: [`type=oci,dest=${existing}`], tags: ['app:1'] }), ctx);
    const { stdout: c } = await run('skopeo', ['inspect', '--raw', `oci:${existing}:1`]);
    assert.equal(sha(c), res.digest);
  });

  it('writes a docker-archive for one platform and refuses two', async () => {
    const one: BuildResult = { platforms: [result.platforms[1]!] };
    const file = join(dir, 'docker.tar');
    const res = await exportBuild(
      one,
      parseOutputs({ output: [`type=docker,dest=${file}`], tags: ['app:arm'] }),
      ctx,
    );
    assert.equal(res.descriptor?.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    const files = new Map<string, Buffer>();
    for await (const e of readTar(createReadStream(file))) {
      const chunks: Buffer[] = [];
      for await (const c of e.body) chunks.push(c);
      files.set(e.header.path, Buffer.concat(chunks));
    }
    const mj = JSON.parse(files.get('manifest.json')!.toString()) as Array<{
      Config: string;
      RepoTags: string[];
      Layers: string[];
    }>;
    assert.equal(mj.length, 1);
    assert.deepEqual(mj[0]!.RepoTags, ['app:arm']);
    assert.equal(mj[0]!.Layers.length, 2);
    for (const p of [mj[0]!.Config, ...mj[0]!.Layers]) assert.ok(files.has(p), `${p} in archive`);
    const cfg = JSON.parse(files.get(mj[0]!.Config)!.toString()) as ImageConfig;
    assert.equal(cfg.architecture, 'arm64');
    const { stdout } = await run('skopeo', ['inspect', `docker-archive:${file}`]);
    assert.equal((JSON.parse(stdout) as { Architecture: string }).Architecture, 'arm64');

    const dest2 = join(dir, 'docker2.tar');
    await assert.rejects(
      exportBuild(result, parseOutputs({ output: [`type=docker,dest=${dest2}`], tags: ['app:2'] }), ctx),
      (err: Error & { exitCode?: number }) => {
        assert.equal(err.exitCode, 2);
        assert.match(
          err.message,
          /type=docker holds one platform, the build has 2 \(linux\/amd64, linux\/arm64\/v8\)/,
        );
        return true;
      },
    );
    assert.ok(!existsSync(dest2));
  });

  it('writes one rootfs dir per platform (type=local) and a rootfs tar (type=tar)', async () => {
    const out = join(dir, 'local');
    await exportBuild(result, parseOutputs({ output: [`type=local,dest=${out}`] }), ctx);
    assert.deepEqual((await readdir(out)).sort(), ['linux_amd64', 'linux_arm64_v8']);
    const arm = join(out, 'linux_arm64_v8');
    assert.equal(await readFile(join(arm, 'hello.txt'), 'utf8'), 'hello from linux/arm64/v8\n');
    assert.ok(!existsSync(join(arm, 'etc', 'group')));
    assert.ok(existsSync(join(arm, 'bin', 'busybox')));
    const { stdout } = await run('file', ['-b', join(arm, 'bin', 'busybox')]).catch(() => ({
      stdout: 'aarch64',
    }));
    assert.match(stdout, /aarch64|ARM aarch64/);

    const tarFile = join(dir, 'rootfs.tar');
    await exportBuild(
      { platforms: [result.platforms[0]!] },
      parseOutputs({ output: [`type=tar,dest=${tarFile}`] }),
      ctx,
    );
    const paths = new Set<string>();
    for await (const e of readTar(createReadStream(tarFile))) paths.add(e.header.path.replace(/\/$/, ''));
    assert.ok(paths.has('hello.txt'));
    assert.ok(paths.has('etc/passwd'));
    assert.ok(!paths.has('etc/group'));

    // Several platforms: one top-level directory each inside the tar.
    const multi = join(dir, 'rootfs-multi.tar');
    await exportBuild(result, parseOutputs({ output: [`type=tar,dest=${multi}`] }), ctx);
    const top = new Set<string>();
    const all = new Set<string>();
    for await (const e of readTar(createReadStream(multi))) {
      const p = e.header.path.replace(/\/$/, '');
      top.add(p.split('/')[0]!);
      all.add(p);
    }
    assert.deepEqual([...top].sort(), ['linux_amd64', 'linux_arm64_v8']);
    assert.ok(all.has('linux_arm64_v8/hello.txt'));
    assert.ok(!all.has('linux_arm64_v8/etc/group'));
  });

  it('pushes to the registry; the reported digest is what the registry serves; a second push uploads nothing', async () => {
    const ref = `${env.registry}/polyarch-test/export-${process.pid}:v1`;
    const outputs = parseOutputs({ push: true, tags: [ref] });
    assert.equal(outputs[0]!.type, 'registry');
    const rec = new ProgressRecorder();
    const res = await exportBuild(result, outputs, { ...ctx, progress: rec });
    const ids = new Set(rec.statuses.flatMap((s) => s.statuses.map((x) => x.id)));
    assert.ok(ids.has('pushing layers'));
    assert.ok(ids.has(`pushing manifest for ${ref}`));
    for (const m of res.manifests)
      assert.ok(ids.has(m.config.digest), `byte status for config ${m.config.digest}`);
    const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
    assert.equal(sha(stdout), res.digest);
    assert.equal(res.pushed[0]?.digest, res.digest);
    assert.ok(res.stats.uploaded >= 4, `uploaded ${res.stats.uploaded}`);
    assert.equal(await store.resolve(ref), undefined, 'type=registry does not store a name locally');
    const again = await exportBuild(result, outputs, ctx);
    assert.equal(again.digest, res.digest);
    assert.equal(again.stats.uploaded, 0);
    assert.equal(again.stats.packed, 0);

    // push-by-digest: no tag, reachable by digest.
    const repo = `${env.registry}/polyarch-test/export-bydigest-${process.pid}`;
    const byDigest = await exportBuild(
      result,
      parseOutputs({ output: [`type=registry,name=${repo},push-by-digest=true`] }),
      ctx,
    );
    await run('skopeo', [
      'inspect',
      '--raw',
      '--tls-verify=false',
      `docker://${repo}@${byDigest.digest as Digest}`,
    ]);
    // No tag was pushed: distribution answers 404 (NAME_UNKNOWN) or an empty list.
    const slash = repo.indexOf('/');
    const r = await fetch(`http://${repo.slice(0, slash)}/v2/${repo.slice(slash + 1)}/tags/list`);
    const body = (await r.json()) as { tags?: string[] | null };
    assert.ok(r.status === 404 || !body.tags?.length, `tags: ${JSON.stringify(body)}`);
  });

  it('reports progress like BuildKit and writes metadata and iid files', async () => {
    const rec = new ProgressRecorder();
    const res = await exportBuild(
      result,
      parseOutputs({ output: ['type=image,name=polyarch-test/export:progress,oci-mediatypes=false'] }),
      { ...ctx, progress: rec, buildRef: 'polyarch/local/abc' },
    );
    assert.equal(res.descriptor?.mediaType, 'application/vnd.docker.distribution.manifest.list.v2+json');
    const [v] = rec.vertexes();
    assert.equal(v?.name, 'exporting to image');
    assert.ok(v?.completed && !v.error);
    const ids = new Set(rec.statuses.flatMap((s) => s.statuses.map((x) => x.id)));
    assert.ok(ids.has('exporting layers'));
    assert.ok(ids.has(`exporting manifest list ${res.digest}`));
    for (const m of res.manifests) assert.ok(ids.has(`exporting manifest ${m.manifest.digest}`));
    assert.ok(ids.has('naming to docker.io/polyarch-test/export:progress'));
    // (skopeo's oci: transport lists only OCI media types, so the store is checked directly.)
    assert.equal((await store.resolve('docker.io/polyarch-test/export:progress'))?.digest, res.digest);

    const md = join(dir, 'meta', 'metadata.json');
    const iid = join(dir, 'meta', 'iid');
    await writeBuildFiles(res, { metadataFile: md, iidFile: iid });
    assert.deepEqual(await readJson(md), {
      'buildx.build.ref': 'polyarch/local/abc',
      'containerimage.descriptor': {
        mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
        digest: res.digest,
        size: res.descriptor?.size,
      },
      'containerimage.digest': res.digest,
      'image.name': 'docker.io/polyarch-test/export:progress',
    });
    assert.equal(await readFile(iid, 'utf8'), res.digest);
  });

  it('leaves no partial file when an archive fails half-way', async () => {
    const p = result.platforms[0]!;
    const base = p.layers[0]!;
    assert.equal(base.kind, 'blob');
    // The store's blob is shorter than this descriptor claims: the tar writer fails mid-stream.
    const broken: BuildResult = {
      platforms: [
        {
          ...p,
          layers: [
            {
              ...base,
              descriptor: { ...(base.kind === 'blob' ? base.descriptor : ({} as Descriptor)), size: 1e9 },
            },
            p.layers[1]!,
          ],
        },
      ],
    };
    const outDir = join(dir, 'broken');
    await mkdir(outDir);
    const dest = join(outDir, 'image.tar');
    await assert.rejects(
      exportBuild(broken, parseOutputs({ output: [`type=oci,dest=${dest}`] }), ctx),
      /image\.tar/,
    );
    assert.deepEqual(await readdir(outDir), []);
  });

  it('stops on an aborted signal before writing anything', async () => {
    const ac = new AbortController();
    ac.abort();
    const dest = join(dir, 'aborted.tar');
    await assert.rejects(
      exportBuild(result, parseOutputs({ output: [`type=oci,dest=${dest}`] }), {
        ...ctx,
        stateRoot: join(dir, 'state-aborted'),
        signal: ac.signal,
      }),
      { name: 'AbortError' },
    );
    assert.ok(!existsSync(dest));
  });

  it('compresses new layers with zstd when asked; base layers are reused as they are', async () => {
    const out = join(dir, 'zstd-layout');
    const res = await exportBuild(
      { platforms: [result.platforms[0]!] },
      parseOutputs({
        output: [`type=oci,dest=${out},tar=false,compression=zstd,compression-level=5`],
        tags: ['z:1'],
      }),
      ctx,
    );
    const { stdout } = await run('skopeo', ['inspect', '--raw', `oci:${out}:1`]);
    assert.equal(sha(stdout), res.digest);
    const m = JSON.parse(stdout) as Manifest;
    assert.deepEqual(
      m.layers.map((l) => l.mediaType),
      ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd'],
    );
    const blob = await readFile(join(out, 'blobs', 'sha256', m.layers[1]!.digest.slice(7)));
    assert.deepEqual([...blob.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd]);
    const { stdout: list } = await run('sh', [
      '-c',
      `zstd -dc '${join(out, 'blobs', 'sha256', m.layers[1]!.digest.slice(7))}' | tar -tf -`,
    ]);
    assert.match(list, /^hello\.txt$/m);
    assert.match(list, /^etc\/\.wh\.group$/m);
  });
});
