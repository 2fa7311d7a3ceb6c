/**
 * Picks the renderer for `--progress`, the way buildx does. In a command:
 *
 *   .option('--progress <mode>', 'Set type of progress output (auto, tty, plain, rawjson, quiet)')
 *   ...
 *   const { chooseRenderer } = await import('../ui/index.js');
 *   const r = chooseRenderer(opts.progress, { stream: ctx.err, isTTY: ctx.isTTY, env: ctx.env });
 *   try {
 *     await build({ ..., progress: r });
 *   } finally {
 *     await r.close(); // final frame, failed steps' logs, warnings — before the CLI's ERROR line
 *   }
 *
 * Mode: the flag, else `$POLYARCH_PROGRESS` (like `BUILDKIT_PROGRESS`), else `auto`.
 * `auto` is `tty` when the stream is a terminal (and `TERM` is not `dumb`), else `plain`.
 * An explicit `tty` is honoured even when the stream is not a terminal (for `script`
 * and CI logs that render ANSI). `NO_COLOR` (any non-empty value) turns colours off.
 */
import { UsageError } from '../../util/errors.js';
import { PlainRenderer } from './plain.js';
import { QuietRenderer, RawJSONRenderer } from './rawjson.js';
import type { Renderer, RenderOutput, Scheduler } from './renderer.js';
import { TtyRenderer } from './tty.js';

export const PROGRESS_MODES = ['auto', 'tty', 'plain', 'rawjson', 'quiet'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

export interface ChooseOptions {
  /** Where to draw, normally stderr. */
  stream: RenderOutput;
  /** Whether `stream` is a terminal. */
  isTTY: boolean;
  env?: NodeJS.ProcessEnv;
  /** tty header word: Building (default), Pulling, Pushing. */
  phase?: string;
  /** For tests: the tty clock and size. */
  scheduler?: Scheduler;
  columns?: number;
  rows?: number;
  /** Print warning details too. */
  verbose?: boolean;
}

/** The mode to use: validates `mode` (or the env default) and resolves `auto`. */
export function resolveProgressMode(
  mode: string | undefined,
  opts: Pick<ChooseOptions, 'isTTY' | 'env'>,
): Exclude<ProgressMode, 'auto'> {
  const env = opts.env ?? {};
  const raw = (mode === undefined || mode === '' ? env.POLYARCH_PROGRESS || 'auto' : mode)
    .trim()
    .toLowerCase();
  if (!(PROGRESS_MODES as readonly string[]).includes(raw)) {
    const from = mode === undefined || mode === '' ? 'POLYARCH_PROGRESS ' : '';
    throw new UsageError(
      `invalid progress mode ${from}"${raw}": expected one of ${PROGRESS_MODES.join(', ')}`,
    );
  }
  if (raw === 'auto') return opts.isTTY && env.TERM !== 'dumb' ? 'tty' : 'plain';
  return raw as Exclude<ProgressMode, 'auto'>;
}

export function chooseRenderer(mode: string | undefined, opts: ChooseOptions): Renderer {
  const env = opts.env ?? {};
  const color = !env.NO_COLOR;
  switch (resolveProgressMode(mode, opts)) {
    case 'tty':
      return new TtyRenderer(opts.stream, {
        color,
        ...(opts.phase !== undefined ? { phase: opts.phase } : {}),
        ...(opts.scheduler ? { scheduler: opts.scheduler } : {}),
        ...(opts.columns !== undefined ? { columns: opts.columns } : {}),
        ...(opts.rows !== undefined ? { rows: opts.rows } : {}),
        verbose: opts.verbose ?? false,
      });
    case 'plain':
      return new PlainRenderer(opts.stream, {
        verbose: opts.verbose ?? false,
        ...(opts.scheduler ? { scheduler: opts.scheduler } : {}),
      });
    case 'rawjson':
      return new RawJSONRenderer(opts.stream);
    case 'quiet':
      return new QuietRenderer();
  }
}
