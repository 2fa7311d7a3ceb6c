/**
 * The BuildKit messages polyarch speaks, written from BuildKit v0.23's .proto files (field
 * numbers are the wire contract): `moby.buildkit.v1` Control (api/services/control),
 * `moby.buildkit.v1.types` (api/types/worker.proto), fsutil's `Packet`/`Stat`
 * (types/wire.proto, types/stat.proto), the session services (session/filesync, auth,
 * secrets) and grpc.health.v1.
 */
import { msg } from './proto.js';

export const Timestamp = msg({ seconds: [1, 'int64'], nanos: [2, 'int32'] });

/** Epoch ms of a decoded Timestamp, undefined when unset. */
export function timestampMs(t: { seconds: number; nanos: number } | undefined): number | undefined {
  if (!t) return undefined;
  return t.seconds * 1000 + Math.floor(t.nanos / 1e6);
}

export const BytesMessage = msg({ data: [1, 'bytes'] });

// --- sshforward (session/sshforward/ssh.proto) -------------------------------------------

export const CheckAgentRequest = msg({ ID: [1, 'string'] });
export const CheckAgentResponse = msg({});

// --- Control ---------------------------------------------------------------------------

export const Platform = msg({
  architecture: [1, 'string'],
  os: [2, 'string'],
  variant: [3, 'string'],
  osVersion: [4, 'string'],
});

export const CacheOptionsEntry = msg({ type: [1, 'string'], attrs: [2, 'map'] });
export const CacheOptions = msg({
  exports: [4, CacheOptionsEntry, 'repeated'],
  imports: [5, CacheOptionsEntry, 'repeated'],
});
export const Exporter = msg({ type: [1, 'string'], attrs: [2, 'map'] });

export const SolveRequest = msg({
  ref: [1, 'string'],
  exporterDeprecated: [3, 'string'],
  exporterAttrsDeprecated: [4, 'map'],
  session: [5, 'string'],
  frontend: [6, 'string'],
  frontendAttrs: [7, 'map'],
  cache: [8, CacheOptions],
  entitlements: [9, 'string', 'repeated'],
  internal: [11, 'bool'],
  exporters: [13, Exporter, 'repeated'],
  enableSessionExporter: [14, 'bool'],
});

export const ExporterResponse = msg({ metadata: [1, 'map'] });
export const SolveResponse = msg({ exporterResponse: [1, 'map'] });

export const StatusRequest = msg({ ref: [1, 'string'] });

export const ProgressGroup = msg({ id: [1, 'string'], name: [2, 'string'], weak: [3, 'bool'] });
export const Vertex = msg({
  digest: [1, 'string'],
  inputs: [2, 'string', 'repeated'],
  name: [3, 'string'],
  cached: [4, 'bool'],
  started: [5, Timestamp],
  completed: [6, Timestamp],
  error: [7, 'string'],
  progressGroup: [8, ProgressGroup],
});
export const VertexStatus = msg({
  id: [1, 'string'],
  vertex: [2, 'string'],
  name: [3, 'string'],
  current: [4, 'int64'],
  total: [5, 'int64'],
  timestamp: [6, Timestamp],
  started: [7, Timestamp],
  completed: [8, Timestamp],
});
export const VertexLog = msg({
  vertex: [1, 'string'],
  timestamp: [2, Timestamp],
  stream: [3, 'int64'],
  msg: [4, 'bytes'],
});
export const SourceInfo = msg({ filename: [1, 'string'], data: [2, 'bytes'], language: [4, 'string'] });
export const Position = msg({ line: [1, 'int32'], character: [2, 'int32'] });
export const Range = msg({ start: [1, Position], end: [2, Position] });
export const VertexWarning = msg({
  vertex: [1, 'string'],
  level: [2, 'int64'],
  short: [3, 'bytes'],
  detail: [4, 'bytes', 'repeated'],
  url: [5, 'string'],
  info: [6, SourceInfo],
  ranges: [7, Range, 'repeated'],
});
export const StatusResponse = msg({
  vertexes: [1, Vertex, 'repeated'],
  statuses: [2, VertexStatus, 'repeated'],
  logs: [3, VertexLog, 'repeated'],
  warnings: [4, VertexWarning, 'repeated'],
});

export const BuildkitVersion = msg({
  package: [1, 'string'],
  version: [2, 'string'],
  revision: [3, 'string'],
});
export const GCPolicy = msg({
  all: [1, 'bool'],
  keepDuration: [2, 'int64'],
  reservedSpace: [3, 'int64'],
  filters: [4, 'string', 'repeated'],
  maxUsedSpace: [5, 'int64'],
  minFreeSpace: [6, 'int64'],
});
export const WorkerRecord = msg({
  id: [1, 'string'],
  labels: [2, 'map'],
  platforms: [3, Platform, 'repeated'],
  gcPolicy: [4, GCPolicy, 'repeated'],
  buildkitVersion: [5, BuildkitVersion],
});
export const ListWorkersRequest = msg({ filter: [1, 'string', 'repeated'] });
export const ListWorkersResponse = msg({ record: [1, WorkerRecord, 'repeated'] });
export const InfoRequest = msg({});
export const InfoResponse = msg({ buildkitVersion: [1, BuildkitVersion] });

export const DiskUsageRequest = msg({ filter: [1, 'string', 'repeated'], ageLimit: [2, 'int64'] });
export const UsageRecord = msg({
  id: [1, 'string'],
  mutable: [2, 'bool'],
  inUse: [3, 'bool'],
  size: [4, 'int64'],
  createdAt: [6, Timestamp],
  lastUsedAt: [7, Timestamp],
  usageCount: [8, 'int64'],
  description: [9, 'string'],
  recordType: [10, 'string'],
  shared: [11, 'bool'],
  parents: [12, 'string', 'repeated'],
});
export const DiskUsageResponse = msg({ record: [1, UsageRecord, 'repeated'] });
export const PruneRequest = msg({
  filter: [1, 'string', 'repeated'],
  all: [2, 'bool'],
  keepDuration: [3, 'int64'],
  reservedSpace: [4, 'int64'],
});

// --- fsutil ----------------------------------------------------------------------------

export const Stat = msg({
  path: [1, 'string'],
  mode: [2, 'uint32'],
  uid: [3, 'uint32'],
  gid: [4, 'uint32'],
  size: [5, 'int64'],
  modTime: [6, 'int64'],
  linkname: [7, 'string'],
  devmajor: [8, 'int64'],
  devminor: [9, 'int64'],
});
export const Packet = msg({ type: [1, 'int32'], stat: [2, Stat], id: [3, 'uint32'], data: [4, 'bytes'] });
export const PACKET = { STAT: 0, REQ: 1, DATA: 2, FIN: 3, ERR: 4 } as const;

// --- session services ------------------------------------------------------------------

export const CredentialsRequest = msg({ host: [1, 'string'] });
export const CredentialsResponse = msg({ username: [1, 'string'], secret: [2, 'string'] });
export const GetSecretRequest = msg({ id: [1, 'string'], annotations: [2, 'map'] });
export const GetSecretResponse = msg({ data: [1, 'bytes'] });
export const HealthCheckRequest = msg({ service: [1, 'string'] });
export const HealthCheckResponse = msg({ status: [1, 'int32'] });

// --- content (containerd api/services/content/v1/content.proto; BuildKit's session OCI stores)

export const ContentInfo = msg({
  digest: [1, 'string'],
  size: [2, 'int64'],
  createdAt: [3, Timestamp],
  updatedAt: [4, Timestamp],
  labels: [5, 'map'],
});
export const ContentInfoRequest = msg({ digest: [1, 'string'] });
export const ContentInfoResponse = msg({ info: [1, ContentInfo] });
export const ReadContentRequest = msg({ digest: [1, 'string'], offset: [2, 'int64'], size: [3, 'int64'] });
export const ReadContentResponse = msg({ offset: [1, 'int64'], data: [2, 'bytes'] });
