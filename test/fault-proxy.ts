/**
 * A fault-injecting TCP proxy for tests: it sits between polyarch and a real plain-HTTP
 * loopback registry, reads the HTTP/1.1 request heads going through (method, path,
 * headers, Content-Length body), and on the requests a rule picks it
 *
 *   - answers itself with an HTTP error (`{ status: 500 }`, `{ status: 429, retryAfter: 1 }`)
 *     after reading the request body, then closes the connection (the registry never sees
 *     the request);
 *   - cuts the connection after N bytes of the request went upstream (`{ cut: 'request',
 *     after: N }`, a dropped upload) or N bytes of the response came back (`{ cut:
 *     'response', after: N }`, a dropped download).
 *
 *   const proxy = await startFaultProxy('127.0.0.1:5000', [
 *     { method: 'GET', path: /\/blobs\//, fault: { cut: 'response', after: 1_000_000 }, times: 2 },
 *     { method: 'PUT', path: /\/manifests\//, fault: { status: 500 } },
 *   ]);
 *   await pull(`${proxy.host}/app:1`, ...);
 *   proxy.fired();   // [{ rule: 0, method: 'GET', path: '/v2/app/blobs/sha256:…', fault: … }, …]
 *   await proxy.close();
 *
 * Each rule fires `times` times (default 1), on the matching requests after the first `skip`
 * (default 0). Requests are matched in order of arrival; the first rule that still has
 * firings left and matches wins. A connection that sends a chunked request body is passed
 * through unexamined from then on (polyarch always sends Content-Length).
 */
import { createServer, type Server, type Socket, connect } from 'node:net';

export interface StatusFault {
  /** 400 answers MANIFEST_INVALID: a registry refusing a document it does not support. */
  status: 400 | 500 | 502 | 503 | 429;
  /** Seconds, sent as Retry-After. */
  retryAfter?: number;
  /** The error code answered; default MANIFEST_INVALID for 400, TOOMANYREQUESTS for 429, else UNKNOWN. */
  code?: string;
}

export type Fault = StatusFault | { cut: 'request' | 'response'; after: number };

export interface FaultRule {
  method?: string;
  /** Tested against the request target (path and query, or an absolute URL). */
  path?: RegExp;
  /** Tested against the whole request head (lower-cased header names kept as sent). */
  head?: RegExp;
  fault: Fault;
  /** Firings; default 1. */
  times?: number;
  /** Matching requests let through before the first firing; default 0. */
  skip?: number;
}

export interface Fired {
  rule: number;
  method: string;
  path: string;
  fault: Fault;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT` */
  host: string;
  /** What fired so far, in order. */
  fired(): Fired[];
  /** Requests seen so far (`GET /v2/…`). */
  requests(): string[];
  close(): Promise<void>;
}

interface Head {
  method: string;
  path: string;
  text: string;
  length: number;
}

const REASON: Record<number, string> = {
  400: 'Bad Request',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

function parseHead(buf: Buffer, end: number): Head | 'chunked' {
  const text = buf.toString('latin1', 0, end);
  const [line = ''] = text.split('\r\n', 1);
  const [method = '', path = ''] = line.split(' ');
  if (/^transfer-encoding:\s*chunked/im.test(text)) return 'chunked';
  const m = /^content-length:\s*(\d+)/im.exec(text);
  return { method, path, text, length: m ? Number(m[1]) : 0 };
}

export async function startFaultProxy(upstream: string, rules: FaultRule[]): Promise<FaultProxy> {
  const [uh, up] = upstream.split(':') as [string, string];
  const left = rules.map((r) => r.times ?? 1);
  const skips = rules.map((r) => r.skip ?? 0);
  const fired: Fired[] = [];
  const requests: string[] = [];
  const sockets = new Set<Socket>();

  const pick = (h: Head): number => {
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (left[i]! <= 0) continue;
      if (r.method && r.method !== h.method) continue;
      if (r.path && !r.path.test(h.path)) continue;
      if (r.head && !r.head.test(h.text)) continue;
      if (skips[i]! > 0) {
        skips[i]!--;
        continue;
      }
      left[i]!--;
      return i;
    }
    return -1;
  };

  const server: Server = createServer((client) => {
    sockets.add(client);
    let remote: Socket | undefined;
    let pending: Buffer = Buffer.alloc(0);
    let passthrough = false;
    // The request being read: bytes of its body still to come, and what to do with them.
    let body = 0;
    let mode: 'forward' | 'swallow' = 'forward';
    let swallowed: StatusFault | undefined;
    let requestCut = -1; // bytes still allowed upstream for a cut request, else -1
    let responseCut = -1; // bytes still allowed downstream for a cut response, else -1

    const kill = () => {
      client.destroy();
      remote?.destroy();
    };
    const upstreamSocket = (): Socket => {
      if (remote) return remote;
      const r = connect(Number(up), uh);
      sockets.add(r);
      r.on('data', (d: Buffer) => {
        if (responseCut >= 0) {
          if (d.length > responseCut) {
            client.write(d.subarray(0, responseCut), kill);
            responseCut = 0;
            return;
          }
          responseCut -= d.length;
        }
        client.write(d);
      });
      r.on('error', () => client.destroy());
      r.on('close', () => client.destroy());
      remote = r;
      return r;
    };
    const send = (d: Buffer) => {
      if (d.length === 0) return;
      if (requestCut >= 0) {
        if (d.length > requestCut) {
          upstreamSocket().write(d.subarray(0, requestCut), kill);
          requestCut = 0;
          return;
        }
        requestCut -= d.length;
      }
      upstreamSocket().write(d);
    };
    const answer = (f: StatusFault) => {
      const text = JSON.stringify({
        errors: [
          {
            code:
              f.code ??
              (f.status === 429 ? 'TOOMANYREQUESTS' : f.status === 400 ? 'MANIFEST_INVALID' : 'UNKNOWN'),
            message: 'injected by the fault proxy',
          },
        ],
      });
      const retry = f.retryAfter !== undefined ? `Retry-After: ${f.retryAfter}\r\n` : '';
      client.end(
        `HTTP/1.1 ${f.status} ${REASON[f.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${retry}Connection: close\r\n\r\n${text}`,
      );
      remote?.destroy();
    };

    const feed = (d: Buffer) => {
      if (passthrough) return send(d);
      pending = pending.length ? Buffer.concat([pending, d]) : d;
      while (pending.length > 0) {
        if (body > 0) {
          const n = Math.min(body, pending.length);
          if (mode === 'forward') send(pending.subarray(0, n));
          body -= n;
          pending = pending.subarray(n);
          if (body === 0 && mode === 'swallow' && swallowed) answer(swallowed);
          continue;
        }
        // Not an HTTP request (polyarch first tries TLS on loopback): relay it untouched, so
        // the registry refuses the handshake and the client falls back to plain HTTP.
        if (!/^[A-Z]{0,7}($| )/.test(pending.toString('latin1', 0, Math.min(pending.length, 8))))
          passthrough = true;
        const end = passthrough ? -1 : pending.indexOf('\r\n\r\n');
        if (end < 0) {
          if (pending.length > 64 * 1024) passthrough = true; // not HTTP we understand
          if (passthrough) {
            send(pending);
            pending = Buffer.alloc(0);
          }
          return;
        }
        const h = parseHead(pending, end);
        const headBytes = pending.subarray(0, end + 4);
        pending = pending.subarray(end + 4);
        if (h === 'chunked') {
          passthrough = true;
          send(headBytes);
          send(pending);
          pending = Buffer.alloc(0);
          return;
        }
        requests.push(`${h.method} ${h.path}`);
        const i = pick(h);
        const fault = i >= 0 ? rules[i]!.fault : undefined;
        if (fault) fired.push({ rule: i, method: h.method, path: h.path, fault });
        body = h.length;
        requestCut = -1;
        responseCut = -1;
        mode = 'forward';
        swallowed = undefined;
        if (fault && 'status' in fault) {
          mode = 'swallow';
          swallowed = fault;
          if (body === 0) answer(fault);
          continue;
        }
        if (fault?.cut === 'request') requestCut = fault.after;
        // No pipelining (undici's default): what comes back next answers this request.
        if (fault?.cut === 'response') responseCut = fault.after;
        send(headBytes);
      }
    };
    client.on('data', feed);
    client.on('error', () => remote?.destroy());
    client.on('close', () => {
      sockets.delete(client);
      remote?.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    fired: () => [...fired],
    requests: () => [...requests],
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
