/**
 * SLSA provenance v1 for one platform of a build, as an in-toto v1 statement: what went in
 * (the Dockerfile by digest, the git commit of a git context, every base image by digest, the
 * build args — never a secret's value, nor an arg whose name says it is one), the builder, and
 * the times; `mode=max` adds the steps of that platform (every instruction of every stage).
 *
 *   const stmt = provenanceStatement(info, { platform, subjects, mode: 'max' });
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Digest } from '../oci/index.js';
import { formatPlatform, type Platform } from '../platform/index.js';
import { VERSION } from '../version.js';
import { IN_TOTO_STATEMENT_V1, type InTotoStatement, type InTotoSubject, inTotoStatement } from './sbom.js';

export const SLSA_V1_PREDICATE = 'https://slsa.dev/provenance/v1';
export const BUILD_TYPE = 'https://polyarch.invalid/buildtypes/dockerfile@v1';
export const DEFAULT_BUILDER_ID = `https://polyarch.invalid/builder/local@${VERSION}`;

/** A base image one platform was built from. */
export interface BaseImage {
  /** As the Dockerfile named it (`busybox`, `docker.io/library/debian:bookworm`). */
  ref: string;
  /** Normalised name. */
  name: string;
  /** The image's platform (a `FROM --platform=$BUILDPLATFORM` stage's is the builder's). */
  platform: Platform;
  /** The target platform whose build used it. */
  target: string;
  rootDigest: Digest;
  manifestDigest: Digest;
}

/** A Dockerfile instruction of a stage (for mode=max). */
export interface BuildStep {
  /** The target platform whose build this step is part of. */
  target: string;
  platform: Platform;
  stage: string;
  instruction: string;
}

export interface BuildInfo {
  dockerfile: { name: string; text: string };
  /** The context: a local directory, or a git/http source with what was fetched. */
  context: { kind: 'local' } | { kind: 'git'; url: string; commit?: string } | { kind: 'http'; url: string };
  buildArgs: Record<string, string>;
  target?: string;
  /** `--secret` and `--ssh` ids (the values are never read here). */
  secretIds: string[];
  sshIds: string[];
  labels?: Record<string, string>;
  noCache?: boolean;
  network?: string;
  bases: BaseImage[];
  steps: BuildStep[];
  startedOn: Date;
  finishedOn?: Date;
  builderId?: string;
  builderPlatform: Platform;
  invocationId?: string;
}

/**
 * Build args whose names say they hold a credential (BuildKit's SecretsUsedInArgOrEnv rule):
 * they never go into a provenance.
 */
const SECRET_NAME =
  /(?:^|_)(?:apikey|auth|credential|credentials|key|password|passwd|pat|secret|token)(?:_|$)/i;

export function isSecretArgName(name: string): boolean {
  return SECRET_NAME.test(name);
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function imageUri(b: BaseImage): string {
  const n = b.name.split('@')[0]!;
  const at = n.lastIndexOf(':');
  const slash = n.lastIndexOf('/');
  const [repo, tag] = at > slash ? [n.slice(0, at), n.slice(at + 1)] : [n, 'latest'];
  return `pkg:docker/${repo}@${tag}?platform=${encodeURIComponent(formatPlatform(b.platform))}`;
}

export interface ProvenanceOptions {
  platform: Platform;
  subjects: InTotoSubject[];
  mode: 'min' | 'max';
  builderId?: string;
}

export function provenanceStatement(info: BuildInfo, opts: ProvenanceOptions): InTotoStatement {
  const plat = formatPlatform(opts.platform);
  const args: Record<string, string> = {};
  for (const [k, v] of Object.entries(info.buildArgs).sort(([a], [b]) => a.localeCompare(b)))
    if (!isSecretArgName(k)) args[`build-arg:${k}`] = v;
  if (info.target) args.target = info.target;
  if (opts.mode === 'max')
    for (const [k, v] of Object.entries(info.labels ?? {}).sort(([a], [b]) => a.localeCompare(b)))
      args[`label:${k}`] = v;
  if (info.noCache) args['no-cache'] = '';
  const configSource: Record<string, unknown> = {
    path: info.dockerfile.name,
    digest: { sha256: sha256(info.dockerfile.text) },
  };
  if (info.context.kind !== 'local') configSource.uri = info.context.url;
  const request: Record<string, unknown> = { frontend: 'dockerfile.v0', args: { ...args, platform: plat } };
  if (opts.mode === 'max') {
    if (info.secretIds.length > 0) request.secrets = info.secretIds.map((id) => ({ id }));
    if (info.sshIds.length > 0) request.ssh = info.sshIds.map((id) => ({ id }));
  }
  const deps: Record<string, unknown>[] = [];
  const seen = new Set<string>();
  for (const b of info.bases) {
    if (b.target !== plat) continue;
    const uri = imageUri(b);
    const key = `${uri}@${b.manifestDigest}`;
    if (seen.has(key)) continue;
    seen.add(key);
    deps.push({
      uri,
      digest: { sha256: b.manifestDigest.slice('sha256:'.length) },
      ...(b.rootDigest !== b.manifestDigest
        ? { annotations: { 'org.opencontainers.image.index.digest': b.rootDigest } }
        : {}),
    });
  }
  if (info.context.kind === 'git' && info.context.commit)
    deps.push({ uri: info.context.url, digest: { sha1: info.context.commit } });
  const internal: Record<string, unknown> = { builderPlatform: formatPlatform(info.builderPlatform) };
  if (opts.mode === 'max') {
    internal.buildConfig = {
      steps: info.steps
        .filter((s) => s.target === plat)
        .map((s, i) => ({
          id: `step${i}`,
          stage: s.stage,
          platform: formatPlatform(s.platform),
          instruction: s.instruction,
        })),
    };
    if (info.network) internal.network = info.network;
  }
  const predicate = {
    buildDefinition: {
      buildType: BUILD_TYPE,
      externalParameters: { configSource, request },
      internalParameters: internal,
      resolvedDependencies: deps,
    },
    runDetails: {
      builder: { id: opts.builderId ?? info.builderId ?? DEFAULT_BUILDER_ID },
      metadata: {
        invocationId: info.invocationId ?? randomBytes(16).toString('hex'),
        startedOn: info.startedOn.toISOString(),
        ...(info.finishedOn ? { finishedOn: info.finishedOn.toISOString() } : {}),
        polyarch: { version: VERSION, mode: opts.mode },
      },
    },
  };
  return inTotoStatement(SLSA_V1_PREDICATE, opts.subjects, predicate, IN_TOTO_STATEMENT_V1);
}
