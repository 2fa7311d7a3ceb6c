/**
 * A client of one buildkitd's Control API (moby.buildkit.v1.Control).
 *
 *   const c = await BuildkitClient.connect('tcp://10.0.0.5:1234', { tls: { cacert, cert, key } });
 *   const workers = await c.listWorkers();     // [{ id, platforms: [{ os, architecture, variant }] }]
 *   const version = await c.info();            // { package, version, revision }
 *   const res = await c.solve(req, { session, onStatus });   // exporter response map
 *   c.close();
 */
import type * as http2 from 'node:http2';
import { formatPlatform, normalizePlatform, type Platform } from '../platform/index.js';
import { PolyarchError } from '../util/errors.js';
import { type DialOptions, dial } from './dial.js';
import { Channel, GrpcError, Status } from './grpc.js';
import {
  DiskUsageRequest,
  DiskUsageResponse,
  PruneRequest,
  UsageRecord as UsageRecordMessage,
  InfoRequest,
  InfoResponse,
  ListWorkersRequest,
  ListWorkersResponse,
  SolveRequest,
  SolveResponse,
  StatusRequest,
  StatusResponse,
  timestampMs,
} from './messages.js';
import type { Message } from './proto.js';
import type { BuildSession } from './session.js';

const CONTROL = '/moby.buildkit.v1.Control';

export interface WorkerInfo {
  id: string;
  labels: Record<string, string>;
  /** The worker's native platform first, then the ones it emulates. */
  platforms: Platform[];
  gcPolicy: Array<{
    all: boolean;
    filters: string[];
    keepDuration: number;
    reservedSpace: number;
    maxUsedSpace: number;
    minFreeSpace: number;
  }>;
}

export interface BuildkitVersionInfo {
  package: string;
  version: string;
  revision: string;
}

export interface UsageRecord {
  id: string;
  size: number;
  inUse: boolean;
  mutable: boolean;
  shared: boolean;
  description: string;
  recordType: string;
  /** Epoch ms. */
  createdAt?: number;
  lastUsedAt?: number;
  usageCount: number;
  parents: string[];
}

/** The parts of a SolveRequest polyarch fills (field names as in control.proto). */
export interface SolveOptions {
  ref: string;
  frontend: string;
  frontendAttrs: Record<string, string>;
  exporters: Array<{ type: string; attrs: Record<string, string> }>;
  entitlements?: string[];
  cacheImports?: Array<{ type: string; attrs: Record<string, string> }>;
  cacheExports?: Array<{ type: string; attrs: Record<string, string> }>;
}

function toPlatform(p: Message): Platform {
  return normalizePlatform({
    os: p.os,
    architecture: p.architecture,
    ...(p.variant ? { variant: p.variant } : {}),
  });
}

function usageRecord(u: Message): UsageRecord {
  return {
    id: u.id,
    size: u.size,
    inUse: u.inUse,
    mutable: u.mutable,
    shared: u.shared,
    description: u.description,
    recordType: u.recordType,
    usageCount: u.usageCount ?? 0,
    parents: [...(u.parents ?? [])],
    ...(timestampMs(u.createdAt) !== undefined ? { createdAt: timestampMs(u.createdAt)! } : {}),
    ...(timestampMs(u.lastUsedAt) !== undefined ? { lastUsedAt: timestampMs(u.lastUsedAt)! } : {}),
  };
}

export class BuildkitClient {
  private constructor(
    readonly endpoint: string,
    private readonly session: http2.ClientHttp2Session,
    readonly channel: Channel,
  ) {}

  static async connect(endpoint: string, opts: DialOptions = {}): Promise<BuildkitClient> {
    const s = await dial(endpoint, opts);
    return new BuildkitClient(endpoint, s, new Channel(s));
  }

  get closed(): boolean {
    return this.session.closed || this.session.destroyed;
  }

  close(): void {
    if (!this.session.destroyed) this.session.destroy();
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    const r = await this.channel.unary(`${CONTROL}/ListWorkers`, ListWorkersRequest, ListWorkersResponse, {});
    return (r.record as Message[]).map((w) => ({
      id: w.id,
      labels: w.labels,
      platforms: (w.platforms as Message[]).map(toPlatform),
      gcPolicy: (w.gcPolicy as Message[]).map((g) => ({
        all: g.all,
        filters: g.filters,
        keepDuration: g.keepDuration,
        reservedSpace: g.reservedSpace,
        maxUsedSpace: g.maxUsedSpace,
        minFreeSpace: g.minFreeSpace,
      })),
    }));
  }

  async info(): Promise<BuildkitVersionInfo> {
    try {
      const r = await this.channel.unary(`${CONTROL}/Info`, InfoRequest, InfoResponse, {});
      const v = r.buildkitVersion ?? {};
      return { package: v.package ?? '', version: v.version ?? '', revision: v.revision ?? '' };
    } catch (err) {
      // Daemons before v0.11 have no Info.
      if (err instanceof GrpcError && err.grpcCode === Status.UNIMPLEMENTED)
        return { package: '', version: '', revision: '' };
      throw err;
    }
  }

  async diskUsage(filter: string[] = []): Promise<UsageRecord[]> {
    const r = await this.channel.unary(`${CONTROL}/DiskUsage`, DiskUsageRequest, DiskUsageResponse, {
      filter,
    });
    return (r.record as Message[]).map(usageRecord);
  }

  /** Prunes the build cache (buildctl prune); resolves to the records removed. */
  async prune(
    opts: { all?: boolean; filter?: string[]; keepDurationNs?: number } = {},
  ): Promise<UsageRecord[]> {
    const call = this.channel.serverStream(`${CONTROL}/Prune`, PruneRequest, UsageRecordMessage, {
      all: opts.all ?? false,
      filter: opts.filter ?? [],
      ...(opts.keepDurationNs ? { keepDuration: opts.keepDurationNs } : {}),
    });
    const out: UsageRecord[] = [];
    for await (const u of call) out.push(usageRecord(u));
    return out;
  }

  /**
   * Runs one solve with `session` attached, streaming its status to `onStatus`; resolves to
   * the exporter response. Aborting `signal` cancels both calls.
   */
  async solve(
    o: SolveOptions,
    opts: { session: BuildSession; onStatus?: (s: Message) => void; signal?: AbortSignal },
  ): Promise<Record<string, string>> {
    const first = o.exporters[0];
    const req: Message = {
      ref: o.ref,
      session: opts.session.id,
      frontend: o.frontend,
      frontendAttrs: o.frontendAttrs,
      exporters: o.exporters,
      // Daemons before v0.13 read only the deprecated single exporter.
      ...(first ? { exporterDeprecated: first.type, exporterAttrsDeprecated: first.attrs } : {}),
      cache: { imports: o.cacheImports ?? [], exports: o.cacheExports ?? [] },
      entitlements: o.entitlements ?? [],
      enableSessionExporter: false,
    };
    const status = this.channel.serverStream(
      `${CONTROL}/Status`,
      StatusRequest,
      StatusResponse,
      { ref: o.ref },
      opts.signal ? { signal: opts.signal } : {},
    );
    const statusDone = (async () => {
      try {
        for await (const s of status) opts.onStatus?.(s);
      } catch {
        // The solve's own result says what went wrong.
      }
    })();
    try {
      const r = await this.channel.unary<Message>(
        `${CONTROL}/Solve`,
        SolveRequest,
        SolveResponse,
        req,
        opts.signal ? { signal: opts.signal } : {},
      );
      // The last status batches follow the answer closely; do not wait long for a slow stream.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([statusDone, new Promise((res) => (timer = setTimeout(res, 2000)))]);
      clearTimeout(timer);
      status.cancel();
      return r.exporterResponse as Record<string, string>;
    } catch (err) {
      status.cancel();
      if (err instanceof GrpcError && err.grpcCode === Status.UNAVAILABLE && !opts.signal?.aborted)
        throw new PolyarchError(
          'UNAVAILABLE',
          `lost the connection to the daemon during the build (${err.details})`,
          {
            cause: err,
          },
        );
      if (opts.session.error && err instanceof GrpcError)
        throw new PolyarchError('IO', `${err.message} (build session: ${opts.session.error.message})`, {
          cause: err,
        });
      throw err;
    }
  }
}

/** `linux/arm64, linux/amd64` for messages. */
export function platformsText(ps: readonly Platform[]): string {
  return ps.map((p) => formatPlatform(p)).join(', ');
}
