/**
 * A registry that misbehaves on purpose, for the hostile-registry tests: a real node HTTP
 * server on 127.0.0.1 whose repository name picks the misbehaviour, and a token server on
 * another loopback address (127.0.0.2) that records the Authorization headers it gets.
 *
 *   const h = await startHostileRegistry();
 *   // pull `${h.host}/endless-manifest:1`, `${h.host}/trickle-blob:1`, …
 *   h.realmAuth;   // Authorization header of each request to the 127.0.0.2 realm
 *   await h.close();
 *
 * Repositories (any tag):
 * - `good`              a small valid image (one gzip layer), served promptly
 * - `endless-manifest`  200, chunked, no Content-Length, never ends
 * - `endless-error`     404 with a chunked body that never ends
 * - `trickle-error`     503 (retried by clients) with its body at 1 byte/s
 * - `endless-config`    a valid manifest; its config blob is chunked and never ends
 * - `endless-token`     401 Bearer with a realm on this host whose answer never ends
 * - `trickle-manifest`  200, then the manifest at 1 byte/s
 * - `trickle-blob`      valid manifest and config; the layer at 1 byte/s
 * - `slow-blob`         the layer in 8 KiB pieces every 0.5 s (16 KiB/s: slow, steady, valid)
 * - `stall-blob`        the layer's first half, then silence; a Range request gets the rest
 * - `hang`              reads the request and never answers
 * - `private`           401 Bearer with realm http://127.0.0.2:Q/token, always
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A one-file ustar archive. */
function tar(name: string, content: Buffer): Buffer {
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

export interface HostileImage {
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  layer: Buffer;
  layerDigest: string;
}

/** A valid linux/amd64 image with one gzip layer of `size` incompressible bytes. */
function image(size: number): HostileImage {
  const raw = tar('data', randomBytes(size));
  const layer = gzipSync(raw, { level: 1 });
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [sha(raw)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: sha(config),
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length },
      ],
    }),
  );
  return {
    manifest,
    manifestDigest: sha(manifest),
    config,
    configDigest: sha(config),
    layer,
    layerDigest: sha(layer),
  };
}

export interface HostileRegistry {
  /** `127.0.0.1:P` */
  host: string;
  /** `127.0.0.2:Q`, the realm of `private`. */
  realmHost: string;
  /** The Authorization header of each request the 127.0.0.2 realm got ('' when none). */
  realmAuth: string[];
  /** The image `good`, `slow-blob`, `trickle-blob`, `stall-blob` and `endless-config` serve. */
  image: HostileImage;
  /** Bytes the endless bodies have sent so far (what a client would have had to hold). */
  endlessBytes(): number;
  close(): Promise<void>;
}

const listen = (s: Server, addr: string) =>
  new Promise<number>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, addr, () => resolve((s.address() as AddressInfo).port));
  });

export async function startHostileRegistry(): Promise<HostileRegistry> {
  const img = image(64 * 1024);
  const realmAuth: string[] = [];
  let endless = 0;
  const open = new Set<ServerResponse>();
  const timers = new Set<NodeJS.Timeout>();
  const every = (ms: number, f: () => boolean) => {
    const t = setInterval(() => {
      if (!f()) {
        clearInterval(t);
        timers.delete(t);
      }
    }, ms);
    timers.add(t);
  };

  /** Writes `fill` for ever, as fast as the client reads it, until it goes away. */
  const forever = (res: ServerResponse, head: string) => {
    const fill = Buffer.alloc(64 * 1024, 'a');
    res.write(head);
    const pump = () => {
      while (!res.destroyed) {
        endless += fill.length;
        if (!res.write(fill)) {
          res.once('drain', pump);
          return;
        }
      }
    };
    pump();
  };

  /** Sends `body` `n` bytes every `ms`, then ends. */
  const drip = (res: ServerResponse, body: Buffer, n: number, ms: number) => {
    let at = 0;
    res.flushHeaders(); // the headers now, the body later
    every(ms, () => {
      if (res.destroyed) return false;
      res.write(body.subarray(at, at + n));
      at += n;
      if (at >= body.length) {
        res.end();
        return false;
      }
      return true;
    });
  };

  const blob = (res: ServerResponse, b: Buffer) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': b.length });
    res.end(b);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/endless-token') {
      res.writeHead(200, { 'content-type': 'application/json' });
      forever(res, '{"token":"');
      return;
    }
    if (url.pathname === '/v2/' || url.pathname === '/v2') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    const manifest = () => {
      res.writeHead(200, {
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
        'content-length': img.manifest.length,
        'docker-content-digest': img.manifestDigest,
      });
      res.end(req.method === 'HEAD' ? undefined : img.manifest);
    };
    switch (repo) {
      case 'endless-manifest':
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
        forever(res, '{"schemaVersion":2,"x":"');
        return;
      case 'endless-error':
        res.writeHead(404, { 'content-type': 'application/json' });
        forever(res, '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"');
        return;
      case 'trickle-error':
        res.writeHead(503, { 'content-type': 'application/json' });
        drip(res, Buffer.from('{"errors":[{"code":"UNAVAILABLE","message":"slowly"}]}'), 1, 1000);
        return;
      case 'trickle-manifest':
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
        drip(res, img.manifest, 1, 1000);
        return;
      case 'hang':
        return; // the request stays open, unanswered
      case 'private':
        res.writeHead(401, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer realm="http://${realmHost}/token",service="hostile",scope="repository:private:pull"`,
        });
        res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        return;
      case 'endless-token':
        if (!req.headers.authorization) {
          res.writeHead(401, {
            'content-type': 'application/json',
            'www-authenticate': `Bearer realm="http://${host}/endless-token",service="hostile"`,
          });
          res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
          return;
        }
        manifest();
        return;
    }
    if (kind === 'manifests') return manifest();
    if (ref === img.configDigest) {
      if (repo === 'endless-config') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        forever(res, '{"architecture":"');
        return;
      }
      return blob(res, img.config);
    }
    if (ref !== img.layerDigest) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}');
      return;
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': img.layer.length });
      res.end();
      return;
    }
    switch (repo) {
      case 'trickle-blob':
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': img.layer.length,
        });
        drip(res, img.layer, 1, 1000);
        return;
      case 'slow-blob':
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': img.layer.length,
        });
        drip(res, img.layer, 8 * 1024, 500);
        return;
      case 'stall-blob': {
        const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        if (range) {
          const from = Number(range[1]);
          res.writeHead(206, {
            'content-type': 'application/octet-stream',
            'content-length': img.layer.length - from,
            'content-range': `bytes ${from}-${img.layer.length - 1}/${img.layer.length}`,
          });
          res.end(img.layer.subarray(from));
          return;
        }
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': img.layer.length,
        });
        res.write(img.layer.subarray(0, img.layer.length >> 1));
        return; // then silence
      }
      default:
        return blob(res, img.layer);
    }
  };

  const server = createServer(handle);
  const realm = createServer((req, res) => {
    realmAuth.push(req.headers.authorization ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: 'anonymous', expires_in: 300 }));
  });
  const port = await listen(server, '127.0.0.1');
  const host = `127.0.0.1:${port}`;
  const realmHost = `127.0.0.2:${await listen(realm, '127.0.0.2')}`;
  return {
    host,
    realmHost,
    realmAuth,
    image: img,
    endlessBytes: () => endless,
    close: async () => {
      for (const t of timers) clearInterval(t);
      for (const r of open) r.destroy();
      server.closeAllConnections();
      realm.closeAllConnections();
      await Promise.all([
        new Promise<void>((r) => server.close(() => r())),
        new Promise<void>((r) => realm.close(() => r())),
      ]);
    },
  };
}
