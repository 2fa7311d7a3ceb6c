/**
 * How late `--progress plain` shows a step's output: replays recorded runs (compare.js
 * `--record DIR`: polyarch's rawjson lines with their arrival times) through the plain renderer
 * on a clock that moves as they arrived, and measures each log line's delay from its own
 * event time to when the renderer printed it. Twice: with the renderer's ticker (as the CLI
 * runs it) and without (output printed only when an event arrives: the renderer before the
 * ticker), so the cause of late lines can be told apart from a held event loop (that shows
 * as the rawjson arrival lag compare.js reports).
 *
 *   node dist/bench/plain-lag.js /tmp/rec/001-polyarch.jsonl [...]
 */
import { readFileSync } from 'node:fs';
import { PlainRenderer, type Scheduler } from '../src/cli/ui/index.js';
import { type SolveStatus, solveStatus } from '../src/progress/index.js';

const time = (t: unknown): number | undefined =>
  typeof t === 'string' ? Date.parse(t.replace(/(\.\d{3})\d+/, '$1')) : undefined;

/** rawjson (BuildKit's JSON SolveStatus) back into a batch. */
function fromRawJSON(o: Record<string, unknown>): SolveStatus {
  const list = (k: string) => (o[k] as Record<string, unknown>[] | undefined) ?? [];
  return solveStatus({
    vertexes: list('vertexes').map((v) => ({
      digest: String(v.digest),
      name: String(v.name),
      inputs: (v.inputs as string[] | undefined) ?? [],
      ...(time(v.started) !== undefined ? { started: time(v.started)! } : {}),
      ...(time(v.completed) !== undefined ? { completed: time(v.completed)! } : {}),
      ...(v.cached ? { cached: true } : {}),
      ...(v.error ? { error: String(v.error) } : {}),
    })),
    statuses: list('statuses').map((s) => ({
      id: String(s.id),
      vertex: String(s.vertex),
      current: Number(s.current ?? 0),
      ...(s.total ? { total: Number(s.total) } : {}),
      timestamp: time(s.timestamp) ?? 0,
      ...(time(s.started) !== undefined ? { started: time(s.started)! } : {}),
      ...(time(s.completed) !== undefined ? { completed: time(s.completed)! } : {}),
    })),
    logs: list('logs').map((l) => ({
      vertex: String(l.vertex),
      stream: l.stream === 2 ? 2 : 1,
      data: Buffer.from(String(l.data), 'base64'),
      timestamp: time(l.timestamp) ?? 0,
    })),
  });
}

/** A clock set by the replay; its ticker fires at every period boundary passed. */
class ReplayClock implements Scheduler {
  t = 0;
  private fn: (() => void) | undefined;
  private next = 0;
  private period = 0;
  constructor(private readonly ticks: boolean) {}
  now = () => this.t;
  setInterval(fn: () => void, ms: number): unknown {
    this.fn = fn;
    this.period = ms;
    this.next = this.t + ms;
    return 1;
  }
  clearInterval(): void {
    this.fn = undefined;
  }
  advanceTo(t: number): void {
    while (this.ticks && this.fn && this.next <= t) {
      this.t = this.next;
      this.next += this.period;
      this.fn();
    }
    this.t = Math.max(this.t, t);
  }
}

interface Lag {
  lines: number;
  max: number;
  p95: number;
  over5s: number;
}

function replay(batches: { at: number; ss: SolveStatus }[], ticks: boolean): Lag {
  const clock = new ReplayClock(ticks);
  const started = new Map<number, number>();
  const byName = new Map<string, number>();
  for (const b of batches)
    for (const v of b.ss.vertexes) if (v.started !== undefined) byName.set(v.name, v.started);
  const lags: number[] = [];
  const out = {
    write(s: string) {
      for (const line of s.split('\n')) {
        const m = /^#(\d+) (.*)$/.exec(line);
        if (!m) continue;
        const n = Number(m[1]);
        const log = /^(\d+\.\d+) /.exec(m[2]!);
        if (!started.has(n)) {
          const at = byName.get(m[2]!);
          if (at !== undefined) started.set(n, at);
        } else if (log) {
          const lag = clock.t - (started.get(n)! + Number(log[1]) * 1000);
          if (process.env.PLAIN_LAG_DEBUG && lag > 5000)
            console.log(`    ${(lag / 1000).toFixed(1)}s late: ${line}`);
          lags.push(lag);
        }
      }
    },
  };
  const r = new PlainRenderer(out, { scheduler: clock, printWarnings: false });
  clock.t = batches[0]?.at ?? 0;
  for (const b of batches) {
    clock.advanceTo(b.at);
    r.write(b.ss);
  }
  r.close();
  const s = lags.sort((a, b) => a - b);
  return {
    lines: s.length,
    max: s.at(-1) ?? 0,
    p95: s[Math.floor(s.length * 0.95)] ?? 0,
    over5s: s.filter((x) => x > 5000).length,
  };
}

for (const file of process.argv.slice(2)) {
  const [head, ...rest] = readFileSync(file, 'utf8').trim().split('\n');
  const batches: { at: number; ss: SolveStatus }[] = [];
  for (const l of rest) {
    const { at, text } = JSON.parse(l) as { at: number; text: string };
    if (!text.startsWith('{')) continue;
    batches.push({ at, ss: fromRawJSON(JSON.parse(text)) });
  }
  const argv = (JSON.parse(head!) as { argv: string[] }).argv;
  const f = (l: Lag) =>
    `${l.lines} log lines, delay max ${(l.max / 1000).toFixed(1)}s p95 ${(l.p95 / 1000).toFixed(1)}s, ${l.over5s} over 5s`;
  console.log(`${file} (${argv.slice(0, 8).join(' ')} …)`);
  console.log(`  with ticker:    ${f(replay(batches, true))}`);
  console.log(`  without ticker: ${f(replay(batches, false))}`);
}
