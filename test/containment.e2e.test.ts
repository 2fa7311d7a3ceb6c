/**
 * Build steps never reach the host through a path: `polyarch build` through bin/polyarch, as a
 * user runs it, with Dockerfiles, contexts and a registry image that plant symlinks (absolute,
 * relative, chains, `..`, mid-path directories) towards a "host" directory outside both the
 * context and the state root. That directory holds a marker secret and a passwd with a user
 * of its own; after every build, the marker is in no layer of the exported image, in no file
 * of the state root, in no output, and the host directory is exactly as it was.
 *
 * Where the same path exists inside the stage too, the step must read the stage's file; where
 * it exists only on the host, the step fails with "not found".
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  lstatSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { after, beforeEach, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { applyLayer, openLayer, readTar, writeTar } from '../src/layer/index.js';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const tenv = testEnv();
const base = mkdtempSync(join(tmpdir(), 'polyarch-containment-'));
const work = join(base, 'ctx');
const out = join(base, 'out');
// The "host": outside the context and the state root.
const host = mkdtempSync(join(tmpdir(), 'polyarch-containment-host-'));
const MARKER = `HOST-SECRET-${randomBytes(8).toString('hex')}`;
for (const d of [work, out, join(host, 'sub')]) mkdirSync(d, { recursive: true });
writeFileSync(join(host, 'secret'), `${MARKER}\n`);
writeFileSync(join(host, 'sub', 'secret2'), `${MARKER}\n`);
writeFileSync(join(host, 'passwd'), 'root:x:0:0::/root:/bin/sh\nevil:x:4242:4242::/:/bin/sh\n');
writeFileSync(join(host, 'group'), 'root:x:0:\nevil:x:4242:\n');
const secretFile = join(base, 'build-secret');
writeFileSync(secretFile, 'a-build-secret\n');
after(() => {
  rmSync(base, { recursive: true, force: true });
  rmSync(host, { recursive: true, force: true });
});
// A state root per test, so that what one test leaves cannot fail the next.
let root = '';
let roots = 0;
beforeEach(() => {
  root = join(base, `state-${++roots}`);
  mkdirSync(root);
});
const env = () => ({
  ...process.env,
  POLYARCH_ROOT: root,
  POLYARCH_CONFIG: tenv.config,
  POLYARCH_PROGRESS: 'plain',
});

/** Every entry under a directory with its type and content (links not followed). */
function snapshot(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  const visit = (rel: string) => {
    const p = join(dir, rel);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) m.set(rel, `link:${readlinkSync(p)}`);
    else if (st.isFile()) m.set(rel, `file:${readFileSync(p, 'utf8')}`);
    else if (st.isDirectory()) {
      m.set(rel, `dir:${(st.mode & 0o7777).toString(8)}`);
      for (const n of readdirSync(p)) visit(rel === '' ? n : `${rel}/${n}`);
    } else m.set(rel, 'other');
  };
  visit('');
  return m;
}
const hostBefore = snapshot(host);

function assertHostUnchanged(): void {
  assert.deepEqual(snapshot(host), hostBefore, 'the host directory changed');
}

/** Files under `dir` (links not followed) whose content holds the marker. */
function filesWithMarker(dir: string): string[] {
  const found: string[] = [];
  const visit = (p: string) => {
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) for (const n of readdirSync(p)) visit(join(p, n));
    else if (st.isFile() && st.size < 64 << 20 && readFileSync(p).includes(MARKER)) found.push(p);
  };
  visit(dir);
  return found;
}

type Entry = string | { link: string } | { hardlink: string } | { bytes: Buffer };

function context(name: string, files: Record<string, Entry>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, e] of Object.entries(files)) {
    const p = join(dir, f);
    mkdirSync(dirname(p), { recursive: true });
    if (typeof e === 'string') writeFileSync(p, e);
    else if ('link' in e) symlinkSync(e.link, p);
    else if ('hardlink' in e) linkSync(join(dir, e.hardlink), p);
    else writeFileSync(p, e.bytes);
  }
  return dir;
}

function polyarch(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { env: env(), encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface Built {
  status: number | null;
  stderr: string;
  /** The image's layers applied in order (undefined when the build failed). */
  rootfs?: string;
}

/** Reads an OCI layout tar: the single platform's layers, decompressed, bottom-most first. */
async function ociLayers(tarFile: string): Promise<Buffer[]> {
  const files = new Map<string, Buffer>();
  for await (const e of readTar(createReadStream(tarFile))) {
    const chunks: Buffer[] = [];
    for await (const c of e.body) chunks.push(c);
    files.set(e.header.path.replace(/^\.\//, ''), Buffer.concat(chunks));
  }
  const blob = (digest: string) => {
    const b = files.get(`blobs/${digest.replace(':', '/')}`);
    assert.ok(b, `blob ${digest} in the layout`);
    return b;
  };
  type Doc = { manifests?: { digest: string }[]; layers?: { digest: string }[] };
  let doc = JSON.parse(files.get('index.json')!.toString()) as Doc;
  while (doc.manifests) {
    assert.equal(doc.manifests.length, 1, 'one platform');
    doc = JSON.parse(blob(doc.manifests[0]!.digest).toString()) as Doc;
  }
  const layers: Buffer[] = [];
  for (const l of doc.layers ?? []) {
    const { stream } = await openLayer(Readable.from([blob(l.digest)]));
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    layers.push(Buffer.concat(chunks));
  }
  return layers;
}

let n = 0;
/**
 * Builds `ctx` for the host platform into an OCI tar and checks what must hold whatever the
 * outcome: the marker in no output, no layer, no file of the state root; the host unchanged.
 */
async function build(ctx: string, ...args: string[]): Promise<Built> {
  const tarFile = join(out, `image-${++n}.tar`);
  const r = polyarch('build', '-o', `type=oci,dest=${tarFile}`, ...args, ctx);
  assert.ok(!r.stderr.includes(MARKER) && !r.stdout.includes(MARKER), 'the marker in the output');
  assert.doesNotMatch(r.stderr, /ENOENT|EEXIST|ENOTDIR|\n\s+at /, 'a raw error');
  assertHostUnchanged();
  assert.deepEqual(filesWithMarker(root), [], 'the marker in the state root');
  if (r.status !== 0) return { status: r.status, stderr: r.stderr };
  const rootfs = join(out, `rootfs-${n}`);
  mkdirSync(rootfs);
  for (const [i, layer] of (await ociLayers(tarFile)).entries()) {
    assert.ok(!layer.includes(MARKER), `the marker in layer ${i}`);
    await applyLayer([layer], rootfs);
  }
  return { status: r.status, stderr: r.stderr, rootfs };
}

function read(rootfs: string | undefined, path: string): string {
  assert.ok(rootfs, 'the build succeeded');
  return readFileSync(join(rootfs, path), 'utf8');
}

/** The stage `a` every stage test starts from: the host's paths planted inside it, and links. */
const STAGE_A = [
  'FROM busybox AS a',
  `RUN mkdir -p ${host}/sub2 /d/e && echo inside-a > ${host}/secret && echo inside-a > ${host}/sub2/s \\`,
  ' && ln -s / /hostroot \\',
  ` && ln -s ${host} /d/abs \\`,
  ` && ln -s ../../../../../../../../..${host} /d/e/rel \\`,
  ' && ln -s /d/abs /chain1 && ln -s chain1 /chain2 \\',
  ' && ln -s .. /d/e/up && ln -s ../../../../.. /d/e/top',
].join('\n');

test('COPY --from a stage: links to /, absolute, relative, chained, to .. and mid-path resolve inside the stage', async () => {
  const ctx = context('stage-links', {
    Dockerfile: [
      STAGE_A,
      'FROM a AS b',
      'RUN ln -s /hostroot/d/e/rel /nested',
      'FROM busybox',
      `COPY --from=a /hostroot${host}/secret /x1`,
      'COPY --from=a /d/abs/secret /x2',
      'COPY --from=a /d/e/rel/secret /x3',
      'COPY --from=a /chain2/secret /x4',
      // Lexical `..` in the path itself is cleaned first (as BuildKit does); links to `..` are walked.
      'COPY --from=a /d/e/up/e/up/e/rel/secret /x5',
      `COPY --from=a /d/e/top${host}/secret /x7`,
      'COPY --from=a /d/abs /xdir',
      'COPY --from=a /hostroot/etc/passwd /passwd-copy',
      'COPY --from=b /nested/sub2/s /x6',
      'COPY --from=a /d/e/rel/sec* /globbed/',
      '',
    ].join('\n'),
  });
  const r = await build(ctx);
  assert.equal(r.status, 0, r.stderr);
  for (const f of ['x1', 'x2', 'x3', 'x4', 'x5', 'x7', 'xdir/secret', 'x6', 'globbed/secret'])
    assert.equal(read(r.rootfs, f), 'inside-a\n', f);
  assert.equal(
    read(r.rootfs, 'passwd-copy'),
    read(r.rootfs, 'etc/passwd'),
    "the image's passwd, not the host's",
  );
});

test('COPY --from a stage of a path that exists only on the host: not found', async () => {
  for (const path of [
    `/hostroot${host}/sub/secret2`,
    '/d/abs/sub/secret2',
    '/chain2/sub',
    '/d/e/rel/sub/*',
  ]) {
    const ctx = context(`host-only-${n}`, {
      Dockerfile: `${STAGE_A}\nFROM busybox\nCOPY --from=a ${path} /x\n`,
    });
    const r = await build(ctx);
    assert.equal(r.status, 1, `${path}: ${r.stderr}`);
    assert.match(r.stderr, /ERROR: .*not found/, path);
  }
});

test('RUN --mount=type=bind from a stage: the source resolves inside the stage', async () => {
  const ctx = context('bind-stage', {
    Dockerfile: [
      STAGE_A,
      'FROM busybox',
      'RUN --mount=type=bind,from=a,source=/d/abs,target=/m1 \\',
      '    --mount=type=bind,from=a,source=/hostroot,target=/m2 \\',
      '    --mount=type=bind,from=a,source=/chain2/secret,target=/m3 \\',
      '    --mount=type=bind,from=a,source=../../../../d/e/rel,target=/m4 \\',
      `    cat /m1/secret /m2${host}/secret /m3 /m4/secret > /seen && ls /m2 > /m2-list`,
      '',
    ].join('\n'),
  });
  const r = await build(ctx);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(read(r.rootfs, 'seen'), 'inside-a\n'.repeat(4));
  assert.match(read(r.rootfs, 'm2-list'), /^hostroot$/m, "/ of the stage, not the host's");

  const missing = context('bind-stage-missing', {
    Dockerfile: `${STAGE_A}\nFROM busybox\nRUN --mount=type=bind,from=a,source=/d/abs/sub,target=/m cat /m/secret2\n`,
  });
  const m = await build(missing);
  assert.equal(m.status, 1, m.stderr);
  assert.match(m.stderr, /ERROR: .*mount source "\/d\/abs\/sub": not found/);
});

test('context links are resolved inside the context and copied as links; hardlinks are files', async () => {
  const ctx = context('ctx-links', {
    Dockerfile: [
      'FROM busybox',
      'COPY dirlink/file /a',
      'COPY abslink/file /b',
      'COPY filelink /c',
      'COPY real /d/',
      'COPY uplink/real/file /e',
      'COPY hostlink /f',
      'COPY hard /g',
      'COPY chain/file /h',
      '',
    ].join('\n'),
    'real/file': 'in-context\n',
    'real/inner': { link: `${host}/secret` },
    'real/rel': { link: '../../../../../../../..' },
    dirlink: { link: 'real' },
    abslink: { link: '/real' },
    filelink: { link: 'real/file' },
    uplink: { link: '../../../../../../../../..' },
    hostlink: { link: `${host}/secret` },
    hard: { hardlink: 'real/file' },
    chain: { link: 'dirlink' },
  });
  const r = await build(ctx);
  assert.equal(r.status, 0, r.stderr);
  for (const f of ['a', 'b', 'c', 'd/file', 'e', 'g', 'h'])
    assert.equal(read(r.rootfs, f), 'in-context\n', f);
  const rootfs = r.rootfs!;
  assert.equal(
    readlinkSync(join(rootfs, 'd/inner')),
    `${host}/secret`,
    'a link inside a copied dir stays a link',
  );
  assert.equal(readlinkSync(join(rootfs, 'd/rel')), '../../../../../../../..');
  // A link whose target is not inside the context is copied as the link itself.
  assert.equal(readlinkSync(join(rootfs, 'f')), `${host}/secret`);
  assert.ok(lstatSync(join(rootfs, 'g')).isFile());
});

test('a context link to a host directory: COPY link/secret is not found, so is an ignored target', async () => {
  const cases: [string, Record<string, Entry>][] = [
    ['COPY link/secret /x', { link: { link: host } }],
    ['COPY link/secret /x', { link: { link: `../../../../../../../../..${host}` } }],
    ['COPY link/sub/ /x/', { link: { link: host } }],
    ['COPY link/s* /x/', { link: { link: host } }],
    [
      'COPY link /x',
      { link: { link: 'ignored.txt' }, 'ignored.txt': 'ignored\n', '.dockerignore': 'ignored.txt\n' },
    ],
  ];
  for (const [step, files] of cases) {
    const ctx = context(`ctx-host-${n}`, { Dockerfile: `FROM busybox\n${step}\n`, ...files });
    const r = await build(ctx);
    assert.equal(r.status, 1, `${step}: ${r.stderr}`);
    assert.match(r.stderr, /ERROR: .*not found/, step);
  }
});

test('RUN --mount=type=bind from the context: .. is clamped to the context, links stay inside it', async () => {
  const ctx = context('bind-ctx', {
    Dockerfile: [
      'FROM busybox',
      'RUN --mount=type=bind,source=../../../..,target=/m1 \\',
      '    --mount=type=bind,source=/abslink,target=/m2 \\',
      '    --mount=type=bind,source=dirlink/../real,target=/m3 \\',
      '    ls /m1 > /m1-list && cat /m2/file /m3/file > /seen',
      '',
    ].join('\n'),
    'real/file': 'in-context\n',
    abslink: { link: '/real' },
    dirlink: { link: 'real' },
  });
  const r = await build(ctx);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(read(r.rootfs, 'm1-list'), 'Dockerfile\nabslink\ndirlink\nreal\n');
  assert.equal(read(r.rootfs, 'seen'), 'in-context\n'.repeat(2));

  for (const source of ['hostlink', 'hostlink/secret']) {
    const bad = context(`bind-ctx-host-${n}`, {
      Dockerfile: `FROM busybox\nRUN --mount=type=bind,source=${source},target=/m cat /m/secret\n`,
      hostlink: { link: host },
    });
    const b = await build(bad);
    assert.equal(b.status, 1, b.stderr);
    assert.match(b.stderr, /ERROR: .*not found/);
  }
});

test('WORKDIR, COPY, heredocs and every mount target through a link to a host dir stay in the rootfs', async () => {
  const ctx = context('targets', {
    Dockerfile: [
      'FROM busybox',
      `RUN ln -s ${host} /wlink && ln -s ../../../../../../..${host}/sub /rlink`,
      'WORKDIR /wlink/wd',
      'COPY f /wlink/f',
      'COPY f /rlink/f',
      'COPY dir/ /wlink/sub/',
      'COPY <<EOF /wlink/here.txt',
      'heredoc',
      'EOF',
      'RUN --mount=type=tmpfs,target=/wlink/tm \\',
      '    --mount=type=cache,target=/wlink/cache \\',
      '    --mount=type=secret,id=s,target=/wlink/sec \\',
      '    --mount=type=bind,source=dir,target=/rlink/bnd \\',
      '    echo relative > rel.txt && cat /wlink/sec /rlink/bnd/g > /mounted && echo cached > /wlink/cache/c',
      '',
    ].join('\n'),
    f: 'copied\n',
    'dir/g': 'dir-file\n',
  });
  const r = await build(ctx, '--secret', `id=s,src=${secretFile}`);
  assert.equal(r.status, 0, r.stderr);
  const inside = host.slice(1);
  assert.equal(read(r.rootfs, `${inside}/f`), 'copied\n');
  assert.equal(read(r.rootfs, `${inside}/sub/f`), 'copied\n');
  assert.equal(read(r.rootfs, `${inside}/sub/g`), 'dir-file\n');
  assert.equal(read(r.rootfs, `${inside}/here.txt`), 'heredoc\n');
  assert.ok(lstatSync(join(r.rootfs!, inside, 'wd')).isDirectory());
  assert.equal(read(r.rootfs, `${inside}/wd/rel.txt`), 'relative\n', 'RUN in the WORKDIR');
  assert.equal(read(r.rootfs, 'mounted'), 'a-build-secret\ndir-file\n');
  // Mount points made for the run are not left in the layer.
  for (const stub of ['tm', 'cache', 'sec'])
    assert.ok(!readdirSync(join(r.rootfs!, inside)).includes(stub), stub);
});

test('COPY to a destination through an absolute link whose parent is missing', async () => {
  const ctx = context('dest-missing', {
    Dockerfile: [
      'FROM busybox',
      'RUN ln -s /nonexistent/deeper/file /dst && ln -s /missing/dir /dstdir && ln -s /gone/x /wd',
      'COPY f /dst',
      'COPY f g /dstdir/',
      'WORKDIR /wd/y',
      '',
    ].join('\n'),
    f: 'f\n',
    g: 'g\n',
  });
  const r = await build(ctx);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(read(r.rootfs, 'nonexistent/deeper/file'), 'f\n');
  assert.equal(read(r.rootfs, 'missing/dir/f'), 'f\n');
  assert.equal(read(r.rootfs, 'missing/dir/g'), 'g\n');
  assert.ok(lstatSync(join(r.rootfs!, 'gone/x/y')).isDirectory());
});

test('ADD of a tar whose entries go through links: extracted inside the destination', async () => {
  const entries = [
    { header: { path: 'esc', type: 'symlink' as const, linkpath: host } },
    { header: { path: 'esc/evil.txt', type: 'file' as const, size: 9 }, body: Buffer.from('tar-evil\n') },
    { header: { path: 'up', type: 'symlink' as const, linkpath: '../../../../../../../..' } },
    {
      header: { path: `up${host}/evil2.txt`, type: 'file' as const, size: 9 },
      body: Buffer.from('tar-evil\n'),
    },
  ];
  const chunks: Buffer[] = [];
  for await (const c of writeTar(entries)) chunks.push(c);
  const ctx = context('add-tar', {
    Dockerfile: 'FROM busybox\nADD evil.tar /x/\n',
    'evil.tar': { bytes: Buffer.concat(chunks) },
  });
  const r = await build(ctx);
  assert.equal(r.status, 0, r.stderr);
  // Confined to /x (the destination): its links re-rooted there.
  assert.equal(read(r.rootfs, `x${host}/evil.txt`), 'tar-evil\n');
  assert.equal(read(r.rootfs, `x${host}/evil2.txt`), 'tar-evil\n');
});

test('an image from the registry whose /etc is a link to a host dir', async () => {
  const ref = `${tenv.registry}/containment/planted-${randomBytes(4).toString('hex')}:1`;
  // busybox with /etc and /secretlink replaced by links to the host directory.
  const plant = context('plant', {
    Dockerfile: 'FROM scratch\nCOPY --from=busybox /bin /bin\nCOPY etc /etc\nCOPY secretlink /secretlink\n',
    etc: { link: host },
    secretlink: { link: `${host}/secret` },
  });
  const p = polyarch('build', '-t', ref, '--push', plant);
  assert.equal(p.status, 0, p.stderr);
  assertHostUnchanged();

  // --chown looks the user up in the image's /etc/passwd: inside it there is none.
  const chown = context('planted-chown', { Dockerfile: `FROM ${ref}\nCOPY --chown=evil f /f\n`, f: 'f\n' });
  const c = await build(chown);
  assert.equal(c.status, 1, c.stderr);
  assert.match(c.stderr, /ERROR: .*unable to find user evil/);

  const fromEtc = await build(
    context('planted-from', { Dockerfile: `FROM busybox\nCOPY --from=${ref} /etc/secret /x\n` }),
  );
  assert.equal(fromEtc.status, 1, fromEtc.stderr);
  assert.match(fromEtc.stderr, /ERROR: .*"\/etc\/secret": not found/);
  // A link whose target is not in the image is copied as the link itself.
  const fromLink = await build(
    context('planted-link', { Dockerfile: `FROM busybox\nCOPY --from=${ref} /secretlink /x\n` }),
  );
  assert.equal(fromLink.status, 0, fromLink.stderr);
  assert.equal(readlinkSync(join(fromLink.rootfs!, 'x')), `${host}/secret`);

  for (const source of ['/etc', '/etc/passwd', '/secretlink']) {
    const bind = await build(
      context(`planted-bind-${n}`, {
        Dockerfile: `FROM busybox\nRUN --mount=type=bind,from=${ref},source=${source},target=/m ls -la /m\n`,
      }),
    );
    assert.equal(bind.status, 1, bind.stderr);
    assert.match(bind.stderr, new RegExp(`ERROR: .*mount source "${source}": not found`));
  }

  const use = context('planted-use', {
    Dockerfile: [
      `FROM ${ref}`,
      'COPY f /etc/f',
      'WORKDIR /etc/wd',
      'RUN --mount=type=tmpfs,target=/etc/tm --mount=type=cache,target=/etc/cache \\',
      '    --mount=type=bind,source=.,target=/etc/bnd \\',
      '    cat /etc/f /etc/bnd/f > /seen && ls /etc > /etc-list',
      `FROM busybox`,
      `COPY --from=0 /etc/f /seen /etc-list /out/`,
      `RUN --mount=type=bind,from=0,source=/etc,target=/m cat /m/f >> /out/seen`,
      '',
    ].join('\n'),
    f: 'f\n',
  });
  const u = await build(use);
  assert.equal(u.status, 0, u.stderr);
  assert.equal(read(u.rootfs, 'out/f'), 'f\n');
  assert.equal(read(u.rootfs, 'out/seen'), 'f\nf\nf\n');
  assert.doesNotMatch(read(u.rootfs, 'out/etc-list'), /secret|passwd/, "the image's /etc, not the host's");
});

test('link loops: one clear error, whichever step walks them', async () => {
  const loops = 'FROM busybox AS a\nRUN ln -s /loop1 /loop2 && ln -s loop2 /loop1\n';
  for (const step of [
    'FROM busybox\nCOPY --from=a /loop1/x /y',
    'FROM a\nCOPY f /loop1/x',
    'FROM a\nWORKDIR /loop2/wd',
    'FROM busybox\nRUN --mount=type=bind,from=a,source=/loop1,target=/m true',
  ]) {
    const r = await build(context(`loop-${n}`, { Dockerfile: `${loops}${step}\n`, f: 'f\n' }));
    assert.equal(r.status, 1, `${step}: ${r.stderr}`);
    assert.match(r.stderr, /^ERROR: .*too many levels of symbolic links$/m, step);
  }
});

test('a file copied to a link to / or to an existing directory goes inside it', async () => {
  const ctx = context('into-dir', {
    Dockerfile: [
      'FROM busybox',
      `RUN ln -s / /rootlink && ln -s ${host} /hostlink && mkdir /existing`,
      'COPY <<EOF /rootlink',
      'at-root',
      'EOF',
      'COPY <<EOT /existing',
      'in-existing',
      'EOT',
      'COPY f /hostlink',
      'RUN test -f /bin/busybox && test -d /etc',
      '',
    ].join('\n'),
    f: 'f\n',
  });
  const r = await build(ctx);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(read(r.rootfs, 'EOF'), 'at-root\n');
  assert.equal(read(r.rootfs, 'existing/EOT'), 'in-existing\n');
  // /hostlink points to a directory that is not in the image: the file is written there, inside.
  assert.equal(read(r.rootfs, host.slice(1)), 'f\n');
});

test('--chown looks names up in the rootfs: /etc/passwd and /etc/group linking out are not followed out', async () => {
  const ctx = context('chown-links', {
    Dockerfile: [
      'FROM busybox',
      `RUN ln -sf ../../../../../../../..${host}/passwd /etc/passwd && ln -sf ${host}/group /etc/group`,
      'COPY --chown=evil:evil f /f',
      '',
    ].join('\n'),
    f: 'f\n',
  });
  const r = await build(ctx);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /ERROR: .*unable to find user evil/);
  const group = await build(
    context('chown-group', {
      Dockerfile: `FROM busybox\nRUN ln -sf ${host}/group /etc/group\nCOPY --chown=0:evil f /f\n`,
      f: 'f\n',
    }),
  );
  assert.equal(group.status, 1, group.stderr);
  assert.match(group.stderr, /ERROR: .*unable to find group evil/);
});
