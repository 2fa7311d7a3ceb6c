/** A failing build step, located in the Dockerfile, with the last lines of its output (the CLI prints BuildKit's report of it). */
import type { DockerfileError } from '../dockerfile/index.js';
import { PolyarchError } from '../util/errors.js';

export class BuildStepError extends PolyarchError {
  readonly file: string;
  readonly range: DockerfileError['range'];
  readonly lines: readonly string[];
  readonly vertexName: string;
  readonly logTail: string[];
  constructor(
    message: string,
    opts: {
      file: string;
      range: DockerfileError['range'];
      lines: readonly string[];
      vertexName: string;
      logTail?: string[];
      cause?: unknown;
      code?: string;
    },
  ) {
    super(opts.code ?? 'BUILD_STEP', message, { cause: opts.cause });
    this.name = 'BuildStepError';
    this.file = opts.file;
    this.range = opts.range;
    this.lines = opts.lines;
    this.vertexName = opts.vertexName;
    this.logTail = opts.logTail ?? [];
  }
}
