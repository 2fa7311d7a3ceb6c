/**
 * The image config a stage produces, from its base config and its planned instructions —
 * BuildKit's dispatch rules for the config half of a build (dockerfile2llb/convert.go).
 *
 *   const cfg = stageImageConfig(stage, baseConfig);   // baseConfig: the FROM image's, or the
 *                                                      // parent stage's result; {} for scratch
 *
 * Rules kept: ENV replaces a key in place or appends; ENTRYPOINT clears an inherited CMD unless
 * CMD was set in the same stage; the base's ONBUILD triggers are consumed (the planner already
 * put them at the start of the stage) and the stage's own ONBUILD are recorded; PATH is added
 * when missing (not on Windows). Pure; returns a new object.
 */
import type { ContainerConfig } from '../oci/types.js';
import type { PlanStage } from './plan.js';

/** The `config` object of an OCI/Docker image config (field names as in the JSON). */
export type ImageConfig = ContainerConfig;

export interface StageImageConfig {
  config: ImageConfig;
  /** MAINTAINER, when the stage set it. */
  author?: string;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function addEnv(env: string[], key: string, value: string): void {
  const i = env.findIndex((e) => (e.includes('=') ? e.slice(0, e.indexOf('=')) : e) === key);
  if (i >= 0) env[i] = `${key}=${value}`;
  else env.push(`${key}=${value}`);
}

export function stageImageConfig(stage: PlanStage, base: ImageConfig = {}): StageImageConfig {
  const c: ImageConfig = structuredClone(base);
  // Triggers of the base ran at the start of this stage; they do not carry over.
  c.OnBuild = null;
  const env = c.Env ?? [];
  if (!env.some((e) => e.startsWith('PATH=')) && stage.platform.os !== 'windows')
    env.push(`PATH=${DEFAULT_PATH}`);
  c.Env = env;
  let cmdSet = false;
  let author: string | undefined;
  for (const ins of stage.instructions) {
    switch (ins.kind) {
      case 'ENV':
        for (const p of ins.pairs) addEnv(env, p.key, p.value);
        break;
      case 'LABEL':
        c.Labels ??= {};
        for (const p of ins.pairs) c.Labels[p.key] = p.value;
        break;
      case 'WORKDIR':
        c.WorkingDir = ins.path;
        break;
      case 'USER':
        c.User = ins.value;
        break;
      case 'EXPOSE':
        c.ExposedPorts ??= {};
        for (const p of ins.values) c.ExposedPorts[p] = {};
        break;
      case 'VOLUME':
        c.Volumes ??= {};
        for (const v of ins.values) c.Volumes[v] = {};
        break;
      case 'STOPSIGNAL':
        c.StopSignal = ins.value;
        break;
      case 'SHELL':
        c.Shell = [...ins.shell];
        break;
      case 'CMD':
        c.Cmd = [...ins.args];
        c.ArgsEscaped = true;
        cmdSet = true;
        break;
      case 'ENTRYPOINT':
        c.Entrypoint = [...ins.args];
        if (!cmdSet) c.Cmd = null;
        break;
      case 'HEALTHCHECK':
        c.Healthcheck = {
          Test: [...ins.test],
          ...(ins.interval ? { Interval: ins.interval } : {}),
          ...(ins.timeout ? { Timeout: ins.timeout } : {}),
          ...(ins.startPeriod ? { StartPeriod: ins.startPeriod } : {}),
          ...(ins.startInterval ? { StartInterval: ins.startInterval } : {}),
          ...(ins.retries ? { Retries: ins.retries } : {}),
        };
        break;
      case 'ONBUILD':
        c.OnBuild = [...(c.OnBuild ?? []), ins.value];
        break;
      case 'MAINTAINER':
        author = ins.value;
        break;
      default:
        break;
    }
  }
  return author !== undefined ? { config: c, author } : { config: c };
}
