/**
 * COPY and ADD: the sources (context paths, a stage or image, URLs, git repositories for ADD)
 * resolved inside their roots, their content checksums in the cache key, then copied into a
 * snapshot of the parent with the instruction's owner, mode, links and excludes. ADD unpacks
 * local archives and downloads URLs into the state root's cache, checked with --checksum.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, open, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { PlanCopy } from '../dockerfile/index.js';
import { applyLayerBlob } from '../layer/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { resolveInRoot } from '../util/rootpath.js';
import { BuildContext, matchPaths } from './context.js';
import { copyTree, mkdirAll, resolveSource } from './fsops.js';
import type { VertexContext, VertexResult } from './solver.js';
import { maskURL } from './remote/url.js';
import { fetchAddGit, isGitSource } from './add-git.js';
import type { Engine } from './engine.js';
import { type FsState, gitEnv } from './engine-util.js';

export async function copyStep(
  eng: Engine,
  parent: FsState,
  source: FsState | BuildContext,
  copy: PlanCopy,
  ctx: VertexContext,
): Promise<VertexResult<FsState>> {
  const isAdd = copy.kind === 'ADD';
  const gitUrls = isAdd ? copy.sources.filter(isGitSource) : [];
  const urls = isAdd ? copy.sources.filter((s) => /^https?:\/\//.test(s) && !gitUrls.includes(s)) : [];
  const locals = copy.sources.filter((s) => !urls.includes(s) && !gitUrls.includes(s));
  const mode = copy.chmod !== undefined ? parseMode(copy.chmod) : undefined;
  const multiple = copy.sources.length + copy.contents.length > 1;
  const destIsDir = copy.dest.endsWith('/') || copy.dest === '.' || multiple;
  const fromContext = source instanceof BuildContext;

  // Content identity of what the copy reads.
  let srcKey: string;
  let contextMatches: string[][] = [];
  if (source instanceof BuildContext) {
    contextMatches = await Promise.all(locals.map((s) => source.match(s, copy.exclude)));
    srcKey = `context:${await source.checksum(contextMatches.flat(), copy.exclude)}`;
  } else srcKey = source.key;
  const gits = await Promise.all(
    gitUrls.map(async (u) =>
      fetchAddGit(u, {
        stateRoot: eng.d.root,
        env: await gitEnv(eng.ssh, eng.d.env),
        ...(eng.d.opts.secrets ? { secrets: eng.d.opts.secrets } : {}),
        keepGitDir: copy.keepGitDir ?? false,
        ...(copy.checksum !== undefined ? { checksum: copy.checksum } : {}),
        signal: ctx.signal,
      }),
    ),
  );
  const downloads = await Promise.all(urls.map((u) => download(eng, u, copy.checksum)));
  const definition = {
    op: copy.kind,
    sources: copy.sources,
    contents: copy.contents,
    dest: copy.destPath,
    destIsDir,
    chown: copy.chown,
    chmod: copy.chmod,
    parents: copy.parents,
    exclude: copy.exclude,
    src: srcKey,
    downloads: downloads.map((d) => d.digest),
    ...(gits.length > 0 ? { git: gits.map((g) => g.commit), keepGitDir: copy.keepGitDir ?? false } : {}),
  };
  if (multiple && !copy.dest.endsWith('/') && copy.dest !== '.')
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `When using ${copy.kind} with more than one source file, the destination must be a directory and end with a /`,
    );
  try {
    return await eng.fsOp(parent, definition, ctx, async (mnt) => {
      const owner = await eng.owner(mnt, copy.chown, fromContext || urls.length + gits.length > 0);
      const dest = copy.destPath;
      // A file goes into the destination when that is a directory (through links, in the rootfs).
      const intoDir = async () => {
        const at = resolveInRoot(mnt, dest);
        return (
          at.missing === undefined && (await lstat(at.host).catch(() => undefined))?.isDirectory() === true
        );
      };
      // `rel` is the source as matched (it names the destination), resolved inside `srcRoot`.
      const place = async (
        srcRoot: string,
        rel: string,
        filter?: (real: string) => (r: string) => boolean,
      ) => {
        const src = resolveSource(srcRoot, rel);
        if (!src) throw new PolyarchError('NOT_FOUND', `"/${rel}": not found`);
        const st = await lstat(src.host);
        let target: string;
        if (copy.parents && rel !== '') target = posix.join(dest, rel);
        else if (st.isDirectory()) target = dest;
        else {
          target = destIsDir || (await intoDir()) ? posix.join(dest, posix.basename(`/${rel}`)) : dest;
        }
        if (isAdd && st.isFile() && (await isArchive(src.host))) {
          // Extracted confined to the destination directory (layer/apply.ts).
          const host = await mkdirAll(mnt, dest);
          const { createReadStream } = await import('node:fs');
          await applyLayerBlob(createReadStream(src.host), host);
          return;
        }
        await copyTree({
          src: src.host,
          srcRel: src.rel,
          rootfs: mnt,
          dest: target,
          ...(owner ? { owner } : {}),
          ...(mode !== undefined ? { mode } : {}),
          ...(filter ? { filter: filter(src.rel) } : {}),
        });
      };
      if (source instanceof BuildContext) {
        for (const paths of contextMatches)
          for (const rel of paths)
            await place(source.dir, rel, (real) => (r) => !source.excluded(r, copy.exclude, real));
      } else if (locals.length > 0) {
        const view = await eng.view(source);
        try {
          for (const s of locals) {
            const clean = posix.normalize(`/${s}`).slice(1);
            const found = clean === '' ? [''] : await matchPaths(view.dir, clean);
            if (found.length === 0) throw new PolyarchError('NOT_FOUND', `"/${clean}": not found`);
            for (const rel of found) await place(view.dir, rel);
          }
        } finally {
          await view.release();
        }
      }
      // A repository's tree goes into the destination directory.
      for (const g of gits)
        await copyTree({
          src: g.dir,
          srcRel: '',
          rootfs: mnt,
          dest,
          ...(owner ? { owner } : {}),
          ...(mode !== undefined ? { mode } : {}),
        });
      for (const d of downloads) {
        const target = destIsDir || (await intoDir()) ? posix.join(dest, d.name) : dest;
        await copyTree({
          src: join(d.dir, 'file'),
          srcRel: 'file',
          rootfs: mnt,
          dest: target,
          ...(owner ? { owner } : {}),
          mode: mode ?? 0o600,
        });
      }
      for (const c of copy.contents) {
        const dir = await eng.tmp('heredoc');
        await writeFile(join(dir, 'file'), c.data, { mode: 0o644 });
        const target = destIsDir || (await intoDir()) ? posix.join(dest, c.path) : dest;
        await copyTree({
          src: join(dir, 'file'),
          srcRel: 'file',
          rootfs: mnt,
          dest: target,
          ...(owner ? { owner } : {}),
          mode: mode ?? 0o644,
        });
      }
    });
  } finally {
    for (const d of downloads) await rm(d.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function download(
  eng: Engine,
  url: string,
  checksum: string | undefined,
): Promise<{ dir: string; name: string; digest: string }> {
  const { Agent, interceptors, request } = await import('undici');
  const dir = await eng.tmp('download');
  const agent = new Agent();
  try {
    return await fetchInto(
      url,
      checksum,
      dir,
      agent.compose(interceptors.redirect({ maxRedirections: 5 })),
      request,
    );
  } finally {
    await agent.close().catch(() => undefined);
  }
}

async function fetchInto(
  url: string,
  checksum: string | undefined,
  dir: string,
  dispatcher: import('undici').Dispatcher,
  request: typeof import('undici').request,
): Promise<{ dir: string; name: string; digest: string }> {
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, { method: 'GET', dispatcher });
  } catch (err) {
    throw new PolyarchError('DOWNLOAD', `ADD ${maskURL(url)}: ${errorMessage(err)}`, { cause: err });
  }
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new PolyarchError('DOWNLOAD', `ADD ${maskURL(url)}: HTTP ${res.statusCode}`);
  }
  const h = createHash('sha256');
  const file = join(dir, 'file');
  await pipeline(
    res.body,
    async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        h.update(c);
        yield c;
      }
    },
    createWriteStream(file),
  );
  const digest = `sha256:${h.digest('hex')}`;
  if (checksum !== undefined && checksum !== digest)
    throw new PolyarchError(
      'DIGEST_MISMATCH',
      `ADD ${maskURL(url)}: digest mismatch: expected ${checksum}, got ${digest}`,
    );
  const name = posix.basename(new URL(url).pathname) || 'index.html';
  const lm = res.headers['last-modified'];
  if (typeof lm === 'string') {
    const t = new Date(lm);
    if (!Number.isNaN(t.getTime())) await (await import('node:fs/promises')).utimes(file, t, t);
  }
  return { dir, name, digest };
}

// ---- result -----------------------------------------------------------------------------

function parseMode(s: string): number {
  if (!/^[0-7]{1,4}$/.test(s))
    throw new PolyarchError('INVALID_ARGUMENT', `invalid --chmod "${s}": expected an octal mode such as 755`);
  return Number.parseInt(s, 8);
}

/** Whether a file is a tar archive ADD should extract (gzip, bzip2, xz, zstd or plain tar). */
async function isArchive(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    const b = buf.subarray(0, bytesRead);
    if (b[0] === 0x1f && b[1] === 0x8b) return true;
    if (b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) return true;
    if (b.length >= 262 && b.subarray(257, 262).toString('latin1') === 'ustar') return true;
    return false;
  } finally {
    await fh.close();
  }
}
