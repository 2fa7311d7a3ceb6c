/**
 * BuildKit endpoints as `create` takes them (`unix:///path`, `tcp://host:port`,
 * `ssh://[user@]host[:port][/socket]`), parsed without loading the gRPC client: checking a
 * builder's endpoint, or listing builders, costs nothing more.
 */
import { UsageError } from '../util/errors.js';

export interface TlsOptions {
  /** Paths of PEM files. */
  cacert?: string;
  cert?: string;
  key?: string;
  servername?: string;
}

export type Endpoint =
  | { kind: 'unix'; path: string; raw: string }
  | { kind: 'tcp'; host: string; port: number; raw: string }
  | { kind: 'ssh'; user?: string; host: string; port?: number; socket?: string; raw: string };

const TCP = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/;
const SSH = /^ssh:\/\/(?:([^@/\s]+)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(\/\S*)?$/;

/** Parses an endpoint, or throws a UsageError naming what is wrong. */
export function parseEndpoint(raw: string): Endpoint {
  if (raw.startsWith('unix://')) {
    const path = raw.slice('unix://'.length);
    if (!path.startsWith('/')) throw new UsageError(`invalid endpoint "${raw}": want unix:///absolute/path`);
    return { kind: 'unix', path, raw };
  }
  let m = TCP.exec(raw);
  if (m) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new UsageError(`invalid endpoint "${raw}": port out of range`);
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port, raw };
  }
  m = SSH.exec(raw);
  if (m) {
    const port = m[3] === undefined ? undefined : Number(m[3]);
    if (port !== undefined && (port < 1 || port > 65535))
      throw new UsageError(`invalid endpoint "${raw}": port out of range`);
    return {
      kind: 'ssh',
      ...(m[1] !== undefined ? { user: m[1] } : {}),
      host: m[2]!.replace(/^\[|\]$/g, ''),
      ...(port !== undefined ? { port } : {}),
      ...(m[4] !== undefined && m[4] !== '/' ? { socket: m[4] } : {}),
      raw,
    };
  }
  throw new UsageError(
    `invalid endpoint "${raw}": want unix:///path, tcp://host:port or ssh://[user@]host[:port][/socket]`,
  );
}
