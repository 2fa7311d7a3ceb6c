/**
 * `--progress=tty`: BuildKit's in-place display.
 *
 *   [+] Building 4.1s (7/9)
 *    => [internal] load build definition from Dockerfile                    0.0s
 *    => CACHED [linux/amd64 2/3] RUN apk add make                           0.0s
 *    => [linux/arm64 3/3] RUN make                                          2.3s
 *    => => # cc -o app main.c
 *    => [linux/arm64] pull 127.0.0.1:5000/busybox                           0.4s
 *    => => sha256:4abcf2… 1.05MB / 5.24MB                                   0.3s
 *    => WARN: JSONArgsRecommended: JSON arguments recommended for CMD (l… 0.0s
 *
 * Each frame moves the cursor up over the previous one and rewrites it line by line
 * (`ESC[K` clears what a shorter line leaves, `ESC[J` what a shorter frame leaves). Lines
 * are cut to the terminal width minus one so none wraps, and while running a frame is
 * limited to the terminal height (running steps kept, finished ones dropped first) so
 * cursor-up always reaches its top. Frames are drawn at most every `interval` ms and on a
 * ticker so timers move; `close()` draws one last full frame with `FINISHED`, then the
 * logs of failed steps and the warnings. `phase` names the work: Building, Pulling,
 * Pushing.
 */
import { isCanceledError, type SolveStatus, type VertexWarning } from '../../progress/index.js';
import { formatProgress, padEnd, sanitizeLine, truncate, visibleLength } from './format.js';
import { errorLogs } from './plain.js';
import { type Renderer, type RenderOutput, realScheduler, type Scheduler } from './renderer.js';
import { formatWarnings } from './summary.js';
import { Trace } from './trace.js';

export interface TtyOptions {
  /** Default: the real clock. */
  scheduler?: Scheduler;
  /** Default: `out.columns`, else 80 (also when the terminal reports 0). Read for every frame. */
  columns?: number;
  /** Default: `out.rows`, else 24. */
  rows?: number;
  /** ANSI colours (blue done, red error, dim logs). Default true; false for NO_COLOR. */
  color?: boolean;
  /** Header word. Default `Building`. */
  phase?: string;
  /** Log lines shown under a running step. Default 6 (BuildKit's). */
  logLines?: number;
  /** Minimum ms between frames, and the ticker period. Default 100. */
  interval?: number;
  /** Print the warnings summary at close. Default true. */
  printWarnings?: boolean;
  verbose?: boolean;
}

export interface FrameOptions {
  now: number;
  width: number;
  height: number;
  /** The last frame: every line, no height limit, no log tails, FINISHED when all done. */
  final: boolean;
  color: boolean;
  phase: string;
}

const SGR = { blue: '\x1b[34m', red: '\x1b[31m', yellow: '\x1b[33m', faint: '\x1b[2m', reset: '\x1b[0m' };

interface Job {
  text: string;
  completed: boolean;
  color?: string;
  /** Log tail lines that belong under this job (already formatted). */
  tail: string[];
}

/** The lines of one frame (without cursor movement): pure, for tests. */
export function ttyFrame(trace: Trace, o: FrameOptions): string[] {
  const width = Math.max(o.width, 20);
  const { total, completed } = trace.counts();
  // Once everything finished, the clock stops at the last completion.
  const end = total > 0 && completed === total ? trace.lastCompleted() : o.now;
  const elapsed = trace.startTime === undefined ? 0 : Math.max(0, end - trace.startTime) / 1000;
  const finished = o.final && completed > 0 && completed === total ? ' FINISHED' : '';
  const header = truncate(
    `[+] ${o.phase} ${elapsed.toFixed(1)}s (${completed}/${total})${finished}`,
    width - 1,
  );

  const jobs: Job[] = [];
  for (const st of trace.started) {
    const v = st.vertex;
    let name = sanitizeLine(v.name);
    let color: string | undefined;
    if (v.error) {
      const canceled = isCanceledError(v.error);
      name = (canceled ? 'CANCELED ' : 'ERROR ') + name;
      color = canceled ? SGR.yellow : SGR.red;
    }
    if (v.cached) name = `CACHED ${name}`;
    const start = st.startTime ?? o.now;
    const end = v.completed ?? o.now;
    const job = line(' => ', name, '', end - start, width);
    const running = !st.completed;
    const tail =
      running && !o.final
        ? [...st.tail, ...(st.partial ? [st.partial] : [])]
            .slice(-trace.tailLines)
            .map((l) => truncate(` => => # ${sanitizeLine(l.text)}`, width - 1))
        : [];
    if (job !== undefined)
      jobs.push({ text: job, completed: !running, color: running ? undefined : (color ?? SGR.blue), tail });
    for (const s of st.statuses) {
      const sEnd = s.completed ?? (st.completed ? (v.completed ?? o.now) : o.now);
      const text = line(
        ' => ',
        `=> ${sanitizeLine(s.id)}`,
        formatProgress(s.current, s.total),
        sEnd - (s.started ?? sEnd),
        width,
      );
      if (text !== undefined)
        jobs.push({
          text,
          completed: s.completed !== undefined,
          color: s.completed !== undefined ? SGR.blue : undefined,
          tail: [],
        });
    }
    // Build-check warnings under their step, in yellow, with the step's time (BuildKit's).
    for (const w of st.warnings) {
      const text = line(' => ', `WARN: ${sanitizeLine(w.short)}`, '', end - start, width);
      if (text !== undefined) jobs.push({ text, completed: true, color: SGR.yellow, tail: [] });
    }
  }

  const shown = o.final ? jobs : fitHeight(jobs, o.height - 2);
  const out = [header];
  for (const j of shown) {
    out.push(o.color && j.color ? `${j.color}${j.text}${SGR.reset}` : j.text);
    for (const t of j.tail) out.push(o.color ? `${SGR.faint}${t}${SGR.reset}` : t);
  }
  return out;
}

/** One job line: prefix and name on the left, status after it, timer right-aligned. */
function line(pfx: string, name: string, status: string, ms: number, width: number): string | undefined {
  let dt = ms / 1000;
  if (dt < 0.05) dt = 0;
  const timer = ` ${dt.toFixed(1)}s`;
  let left = width - pfx.length - timer.length - 1;
  let showStatus = false;
  if (status !== '' && left + status.length > 20) {
    showStatus = true;
    left -= status.length + 1;
  }
  if (left < 12) return undefined; // too narrow to say anything useful
  const text = pfx + truncate(name, left) + (showStatus ? ` ${status}` : '');
  return padEnd(text, width - 1 - visibleLength(timer)) + timer;
}

/**
 * Jobs that fit in `limit` lines. As in BuildKit, running steps come first, then their log
 * tails (where room is left), then the most recent finished steps; original order kept.
 */
function fitHeight(jobs: Job[], limit: number): Job[] {
  if (limit <= 0) return [];
  let free = limit - jobs.filter((j) => !j.completed).length;
  const tails = new Set<number>();
  for (const [i, j] of jobs.entries()) {
    if (j.tail.length > 0 && j.tail.length <= free) {
      tails.add(i);
      free -= j.tail.length;
    }
  }
  const room = limit - [...tails].reduce((n, i) => n + jobs[i]!.tail.length, 0);
  const keep = new Set<number>();
  for (let i = jobs.length - 1; i >= 0 && keep.size < room; i--) if (!jobs[i]!.completed) keep.add(i);
  for (let i = jobs.length - 1; i >= 0 && keep.size < room; i--) keep.add(i);
  const out: Job[] = [];
  for (const [i, j] of jobs.entries()) if (keep.has(i)) out.push(tails.has(i) ? j : { ...j, tail: [] });
  return out;
}

export class TtyRenderer implements Renderer {
  readonly trace: Trace;
  private readonly out: RenderOutput;
  private readonly opts: TtyOptions;
  private readonly sched: Scheduler;
  private readonly interval: number;
  private lineCount = 0;
  private lastFrame = Number.NEGATIVE_INFINITY;
  private dirty = false;
  private ticker: unknown;
  private closed = false;

  constructor(out: RenderOutput, opts: TtyOptions = {}) {
    this.out = out;
    this.opts = opts;
    this.sched = opts.scheduler ?? realScheduler;
    this.interval = opts.interval ?? 100;
    // The tty keeps only tails; nothing drains `pending`, so it is not collected.
    this.trace = new Trace({ tailLines: opts.logLines ?? 6, errorLines: 200, pending: false });
  }

  get warnings(): VertexWarning[] {
    return this.trace.warnings;
  }

  write(ss: SolveStatus): void {
    if (this.closed) return;
    this.trace.update(ss);
    this.ticker ??= this.sched.setInterval(() => this.tick(), this.interval);
    if (this.sched.now() - this.lastFrame >= this.interval) this.draw(false);
    else this.dirty = true;
  }

  private tick(): void {
    if (this.closed) return;
    // Redraw when something changed, or while steps run so their timers move.
    const running = this.trace.started.some((st) => !st.completed);
    if (this.dirty || running) this.draw(false);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker !== undefined) this.sched.clearInterval(this.ticker);
    this.trace.flushAll();
    if (this.trace.byDigest.size > 0) this.draw(true);
    this.out.write(errorLogs(this.trace));
    if (this.opts.printWarnings ?? true)
      this.out.write(
        formatWarnings(this.trace.warnings, {
          verbose: this.opts.verbose ?? false,
          color: this.opts.color ?? true,
        }),
      );
  }

  private draw(final: boolean): void {
    const now = this.sched.now();
    this.lastFrame = now;
    this.dirty = false;
    const lines = ttyFrame(this.trace, {
      now,
      // A pty with no size set (`script`, some CI) reports 0: use the defaults then.
      width: this.opts.columns || this.out.columns || 80,
      height: this.opts.rows || this.out.rows || 24,
      final,
      color: this.opts.color ?? true,
      phase: this.opts.phase ?? 'Building',
    });
    let s = '\x1b[?25l';
    if (this.lineCount > 0) s += `\x1b[${this.lineCount}A`;
    s += '\r';
    for (const l of lines) s += `${l}\x1b[K\n`;
    if (this.lineCount > lines.length) s += '\x1b[J';
    s += '\x1b[?25h';
    this.lineCount = lines.length;
    this.out.write(s);
  }
}
