/**
 * The context and Dockerfile of a build request, made local for any driver: a directory as
 * it is, a tar on stdin unpacked into a temporary directory, a git or https context fetched
 * (build/remote, cached per commit), and the Dockerfile read (from the context, from `-f`,
 * or given as text). `cleanup()` removes whatever was made for this build.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { PolyarchError, UsageError } from '../util/errors.js';
import type { BuildRequest } from './request.js';

export interface PreparedInputs {
  /** The context directory on this machine. */
  contextDir: string;
  /** The Dockerfile's text. */
  dockerfile: string;
  /** Where it is on disk (for `<Dockerfile>.dockerignore`), when it is a file. */
  dockerfilePath?: string;
  /** Its base name, for errors and progress. */
  dockerfileName: string;
  /** A git or http context: what was fetched (for provenance; `display` has credentials masked). */
  remote?: { source: { kind: string }; display: string; commit?: string };
  cleanup(): Promise<void>;
}

export async function prepareInputs(req: BuildRequest): Promise<PreparedInputs> {
  const env = req.env ?? process.env;
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  };
  try {
    let contextDir = req.context;
    let inContext: string | undefined;
    // A git repository or an http(s) URL: fetched into a directory the build reads as usual.
    // Only a remote context loads the fetchers (git, http): a directory needs none of them.
    const [{ classifyContext }, { stateRoot }, { existsSync }] = await Promise.all([
      import('../build/remote/url.js'),
      import('../content/paths.js'),
      import('node:fs'),
    ]);
    const isRemote = classifyContext(req.context, existsSync).kind !== 'local';
    const remote = isRemote
      ? await (await import('../build/remote/index.js')).prepareRemoteContext(req.context, {
          stateRoot: stateRoot(env),
          env,
          secrets: [...(req.secrets ?? [])],
          buildArgs: { ...(req.buildArgs ?? {}) },
          ssh: [...(req.ssh ?? [])],
        })
      : undefined;
    if (remote) {
      cleanups.push(remote.cleanup);
      contextDir = remote.dir;
      // The Dockerfile's path inside a remote context, resolved there (a link in a repository
      // must not name a file of this machine); -f names a local file when there is one.
      const local = req.file !== undefined && (await stat(req.file).catch(() => undefined));
      if (req.dockerfileText === undefined && !local) {
        const { resolveInRoot } = await import('../util/rootpath.js');
        inContext = resolveInRoot(remote.dir, req.file ?? 'Dockerfile').host;
      }
    } else if (req.context === '-') {
      if (!req.contextTar) throw new UsageError('context "-": no tar stream was given for it');
      const tmp = await mkdtemp(join(tmpdir(), 'polyarch-context-'));
      cleanups.push(() => rm(tmp, { recursive: true, force: true }));
      const { applyLayerBlob } = await import('../layer/index.js');
      await applyLayerBlob(req.contextTar, tmp, { sameOwner: false });
      contextDir = tmp;
    } else {
      const st = await stat(contextDir).catch(() => undefined);
      if (!st?.isDirectory())
        throw new PolyarchError('NOT_FOUND', `unable to prepare context: path "${req.context}" not found`);
    }
    const fetched = remote
      ? {
          remote: {
            source: remote.source,
            display: remote.display,
            ...(remote.commit ? { commit: remote.commit } : {}),
          },
        }
      : {};
    if (req.dockerfileText !== undefined)
      return {
        contextDir,
        dockerfile: req.dockerfileText,
        dockerfileName: 'Dockerfile',
        ...fetched,
        cleanup,
      };
    const path = inContext ?? req.file ?? join(contextDir, 'Dockerfile');
    const dockerfilePath = isAbsolute(path) ? path : resolve(path);
    let dockerfile: string;
    try {
      dockerfile = await readFile(dockerfilePath, 'utf8');
    } catch (err) {
      throw new PolyarchError(
        'NOT_FOUND',
        `failed to read dockerfile: open ${req.file ?? 'Dockerfile'}: no such file or directory`,
        { cause: err },
      );
    }
    return {
      contextDir,
      dockerfile,
      dockerfilePath,
      dockerfileName: path.split('/').pop() || 'Dockerfile',
      ...fetched,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
