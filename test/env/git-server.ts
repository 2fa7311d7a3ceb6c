/**
 * A real git server over HTTP for tests: Debian's `git http-backend` (smart HTTP) run as a CGI
 * behind a small node server on 127.0.0.1. Repositories under `private/` need basic auth.
 *
 *   const git = await startGitServer();
 *   const url = await git.repo('app', { 'Dockerfile': 'FROM busybox\n' });  // http://127.0.0.1:P/app.git
 *   git.requests                                                            // every request, for counting
 *   await git.stop();
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface GitServer {
  /** `http://127.0.0.1:PORT`. */
  base: string;
  user: string;
  password: string;
  /** Method and path of every request served. */
  requests: string[];
  /** Makes a bare repository `name.git` whose main branch holds `files`; returns its URL. */
  repo(name: string, files: Record<string, string>): Promise<string>;
  /** Runs git in a work tree of repository `name` (to add commits, tags, branches). */
  git(name: string, ...args: string[]): string;
  stop(): Promise<void>;
}

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'polyarch test',
  GIT_AUTHOR_EMAIL: 'test@polyarch.invalid',
  GIT_COMMITTER_NAME: 'polyarch test',
  GIT_COMMITTER_EMAIL: 'test@polyarch.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  HOME: tmpdir(),
};

export async function startGitServer(): Promise<GitServer> {
  const root = await mkdtemp(join(tmpdir(), 'polyarch-git-'));
  const repos = join(root, 'repos');
  const trees = join(root, 'trees');
  await mkdir(repos);
  await mkdir(trees);
  const user = 'gituser';
  const password = randomBytes(8).toString('hex');
  const requests: string[] = [];
  const expected = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(`${req.method} ${url.pathname}`);
    if (url.pathname.startsWith('/private/') && req.headers.authorization !== expected) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end('authentication required\n');
      return;
    }
    const cgi = spawn('git', ['http-backend'], {
      env: {
        ...process.env,
        ...GIT_ENV,
        GIT_PROJECT_ROOT: repos,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        CONTENT_LENGTH: req.headers['content-length'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
        REMOTE_ADDR: '127.0.0.1',
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const k = line.slice(0, colon).trim();
        const v = line.slice(colon + 1).trim();
        if (k.toLowerCase() === 'status') status = Number.parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.on('close', () => res.end());
    cgi.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const git = (name: string, ...args: string[]) =>
    execFileSync('git', args, {
      cwd: join(trees, name),
      env: { ...process.env, ...GIT_ENV },
      encoding: 'utf8',
    });

  return {
    base,
    user,
    password,
    requests,
    git,
    async repo(name, files) {
      const tree = join(trees, name);
      await mkdir(tree, { recursive: true });
      for (const [path, text] of Object.entries(files)) {
        await mkdir(dirname(join(tree, path)), { recursive: true });
        await writeFile(join(tree, path), text);
      }
      git(name, 'init', '-q', '-b', 'main');
      git(name, 'add', '-A');
      git(name, 'commit', '-q', '-m', 'first');
      const bare = join(repos, `${name}.git`);
      await mkdir(dirname(bare), { recursive: true });
      execFileSync('git', ['clone', '-q', '--bare', tree, bare], { env: { ...process.env, ...GIT_ENV } });
      git(name, 'remote', 'add', 'origin', bare);
      return `${base}/${name}.git`;
    },
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await rm(root, { recursive: true, force: true });
    },
  };
}
