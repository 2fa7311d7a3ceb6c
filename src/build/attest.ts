/**
 * The attestation context of a local build: the request the flags made (with buildx's default
 * provenance) and the provenance inputs, from the engine's output and the build request.
 *
 *   const attest = attestContext({ spec, outputs, env, output: result, dockerfile, … });
 *   await exportBuild(result, outputs, { ...ctx, ...(attest ? { attest } : {}) });
 */
import type { BuildOutput } from './build.js';
import { formatPlatform, hostPlatform, normalizePlatform, type Platform } from '../platform/index.js';
import {
  type AttestContext,
  type AttestSpec,
  type BuildInfo,
  type BuildStep,
  withDefaultAttestations,
} from '../attest/index.js';

export interface AttestBuildInput {
  spec: AttestSpec;
  /** The build's outputs (types): provenance is made by default when one is an image. */
  outputs: ReadonlyArray<{ type: string }>;
  env?: NodeJS.ProcessEnv;
  output: Pick<BuildOutput, 'plan' | 'baseImages'>;
  dockerfile: { name: string; text: string };
  /** A git or http context (prepareRemoteContext's answer): `display` has credentials masked. */
  remote?: { source: { kind: string }; display: string; commit?: string };
  buildArgs: Record<string, string>;
  target?: string;
  secrets: ReadonlyArray<{ id: string }>;
  ssh: ReadonlyArray<{ id: string }>;
  labels?: Record<string, string>;
  noCache?: boolean;
  network?: string;
  startedOn: Date;
}

const IMAGE_OUTPUTS = new Set(['image', 'registry', 'oci', 'docker']);

export function attestContext(input: AttestBuildInput): AttestContext | undefined {
  const imageOutput = input.outputs.some((o) => IMAGE_OUTPUTS.has(o.type));
  if (!imageOutput) return undefined;
  const request = withDefaultAttestations(input.spec, {
    imageOutput,
    ...(input.env ? { env: input.env } : {}),
  });
  if (!request.sbom && !request.provenance) return undefined;
  const { plan, baseImages } = input.output;
  const steps: BuildStep[] = [];
  const bases: BuildInfo['bases'] = [];
  for (const pp of plan.platforms) {
    const target = formatPlatform(pp.platform);
    for (const st of pp.stages) {
      const platform: Platform = normalizePlatform({
        os: st.platform.os,
        architecture: st.platform.architecture,
        ...(st.platform.variant ? { variant: st.platform.variant } : {}),
      });
      const stage = st.name ?? `stage-${st.index}`;
      const from =
        st.base.type === 'image'
          ? st.base.ref
          : st.base.type === 'stage'
            ? (st.base.name ?? `${st.base.index}`)
            : 'scratch';
      steps.push({ target, platform, stage, instruction: `FROM ${from}` });
      for (const ins of st.instructions) steps.push({ target, platform, stage, instruction: ins.original });
      if (st.base.type !== 'image') continue;
      const ref = st.base.ref;
      const b = baseImages.find(
        (x) => x.ref === ref && formatPlatform(x.platform) === formatPlatform(platform),
      );
      if (b) bases.push({ ...b, target });
    }
  }
  const r = input.remote;
  const context: BuildInfo['context'] =
    r?.source.kind === 'git'
      ? { kind: 'git', url: r.display, ...(r.commit ? { commit: r.commit } : {}) }
      : r
        ? { kind: 'http', url: r.display }
        : { kind: 'local' };
  const build: BuildInfo = {
    dockerfile: input.dockerfile,
    context,
    buildArgs: input.buildArgs,
    ...(input.target !== undefined ? { target: input.target } : {}),
    secretIds: input.secrets.map((s) => s.id),
    sshIds: input.ssh.map((s) => s.id),
    ...(input.labels ? { labels: input.labels } : {}),
    ...(input.noCache ? { noCache: true } : {}),
    ...(input.network ? { network: input.network } : {}),
    bases,
    steps,
    startedOn: input.startedOn,
    finishedOn: new Date(),
    builderPlatform: hostPlatform(),
  };
  return {
    request,
    build,
    defaultProvenance: input.spec.provenance === undefined && request.provenance !== undefined,
  };
}
