/**
 * Typed shapes of the OCI image spec (descriptor, manifest, index, image config) and of
 * Docker's schema 2 equivalents, which share the same JSON layout apart from media types.
 * These mirror the JSON on the wire exactly (key names included), so a parsed document can
 * be written back unchanged. Validation lives in validate.ts.
 */
import type { OciPlatform } from '../platform/platform.js';
import type { Digest } from './digest.js';

/** A platform as it appears in JSON (descriptor `platform`, config fields); see src/platform. */
export interface PlatformSpec extends OciPlatform {
  /** Reserved by the image spec; kept when read. */
  features?: string[];
}

export type Annotations = Record<string, string>;

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Annotations;
  data?: string;
  platform?: PlatformSpec;
  artifactType?: string;
}

export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Annotations;
}

export interface Index {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Annotations;
}

export interface HealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

/** The `config` object of an image config: OCI's fields plus Docker's extensions. */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  // Docker extensions kept by buildx/BuildKit.
  Healthcheck?: HealthConfig;
  OnBuild?: string[] | null;
  Shell?: string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig extends PlatformSpec {
  created?: string;
  author?: string;
  config?: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: HistoryEntry[];
}

/** The `index.json` of an OCI image layout is an index. */
export type LayoutIndex = Index;

/** The annotation naming a reference in an OCI layout's index.json. */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
export const CREATED_ANNOTATION = 'org.opencontainers.image.created';
