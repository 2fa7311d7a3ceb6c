/**
 * Registry settings from `$POLYARCH_CONFIG`, else `~/.config/polyarch/registries.toml`, in
 * buildkitd.toml's form:
 *
 *   [registry."docker.io"]
 *   mirrors = ["127.0.0.1:5000"]
 *   [registry."10.0.0.5:5000"]
 *   http = true          # plain HTTP
 *   insecure = true      # HTTPS without certificate verification
 *   ca = ["/etc/ssl/my-ca.pem"]
 *
 *   const cfg = await loadRegistryConfig(process.env);
 *   hostSettings(cfg, '127.0.0.1:5000')     // { mirrors: [], http: undefined, ... }
 *
 * A missing file is an empty config; a malformed one is an error naming file:line.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { PolyarchError } from '../util/errors.js';
import { domainError } from '../oci/reference.js';
import { parseToml, type TomlValue } from './toml.js';

export interface HostSettings {
  /** Hosts (`host[:port]`) tried before this one for pulls, in order. */
  mirrors: string[];
  /** Plain HTTP (true), HTTPS (false), or undefined: HTTPS unless the host is on loopback. */
  http?: boolean;
  /** Skip TLS certificate verification. */
  insecure?: boolean;
  /** Extra CA certificate files (PEM), trusted on top of the system's. */
  ca: string[];
}

export interface RegistryConfig {
  /** Where the settings came from (for messages); undefined when no file exists. */
  file?: string;
  hosts: Map<string, HostSettings>;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.POLYARCH_CONFIG) return env.POLYARCH_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'polyarch', 'registries.toml');
}

export function emptyConfig(): RegistryConfig {
  return { hosts: new Map() };
}

export async function loadRegistryConfig(env: NodeJS.ProcessEnv = process.env): Promise<RegistryConfig> {
  const file = configPath(env);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyConfig();
    throw new PolyarchError('INVALID_CONFIG', `reading ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseRegistryConfig(text, file);
}

function lineOf(text: string, needle: string): number {
  const i = text.indexOf(needle);
  return i < 0 ? 0 : text.slice(0, i).split('\n').length;
}

export function parseRegistryConfig(text: string, file: string): RegistryConfig {
  const doc = parseToml(text, file);
  const hosts = new Map<string, HostSettings>();
  const reg = doc.registry;
  if (reg === undefined) return { file, hosts };
  const where = (host: string) => `${file}:${lineOf(text, `"${host}"`) || lineOf(text, host)}`;
  if (typeof reg !== 'object' || Array.isArray(reg))
    throw new PolyarchError(
      'INVALID_CONFIG',
      `${file}:${lineOf(text, 'registry')}: "registry" must be a table`,
    );
  for (const [host, v] of Object.entries(reg)) {
    const fail = (rule: string) =>
      new PolyarchError('INVALID_CONFIG', `${where(host)}: registry "${host}": ${rule}`);
    if (typeof v !== 'object' || Array.isArray(v)) throw fail('must be a table');
    const domErr = domainError(host);
    if (domErr) throw fail(domErr);
    const s: HostSettings = { mirrors: [], ca: [] };
    for (const [k, val] of Object.entries(v)) {
      switch (k) {
        case 'mirrors':
          s.mirrors = stringArray(val, k, fail).map((m) => {
            // buildkitd accepts mirrors with a scheme; polyarch keeps host[:port] only.
            const h = m.replace(/^https?:\/\//, '').replace(/\/+$/, '');
            const e = domainError(h);
            if (e) throw fail(`mirror "${m}": ${e}`);
            return h;
          });
          break;
        case 'ca':
          s.ca = stringArray(val, k, fail);
          break;
        case 'http':
        case 'insecure':
          if (typeof val !== 'boolean') throw fail(`"${k}" must be true or false`);
          s[k] = val;
          break;
        default:
          // buildkitd.toml has more keys (keypair, …); refusing them beats silently ignoring them.
          throw fail(`unknown key "${k}" (known: mirrors, http, insecure, ca)`);
      }
    }
    hosts.set(host, s);
  }
  return { file, hosts };
}

function stringArray(v: TomlValue, key: string, fail: (r: string) => Error): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw fail(`"${key}" must be an array of strings`);
  return v as string[];
}

export function hostSettings(cfg: RegistryConfig, host: string): HostSettings {
  return cfg.hosts.get(host) ?? { mirrors: [], ca: [] };
}

/** True for localhost, 127.0.0.0/8 and ::1 (with or without a port): plain HTTP is allowed there. */
export function isLoopback(host: string): boolean {
  let h = host;
  if (h.startsWith('[')) h = h.slice(1, h.indexOf(']'));
  else if (h.split(':').length === 2) h = h.slice(0, h.lastIndexOf(':'));
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
