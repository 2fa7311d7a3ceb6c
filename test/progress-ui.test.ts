/**
 * The renderers against recorded runs (test/progress-scenarios.ts, made with the real
 * ProgressWriter on a fake clock): plain and rawjson output compared byte for byte with
 * golden text; tty output played into a virtual terminal (test/vterm.ts) on a fake
 * scheduler, and the screen a person would see compared.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  chooseRenderer,
  PlainRenderer,
  QuietRenderer,
  RawJSONRenderer,
  type Renderer,
  type Scheduler,
  TtyRenderer,
  type TtyOptions,
  toRawJSON,
} from '../src/cli/ui/index.js';
import { solveStatus, type SolveStatus } from '../src/progress/index.js';
import { failingBuild, multiPlatformBuild, pullImage, type Scenario, T0 } from './progress-scenarios.js';
import { VTerm } from './vterm.js';

function capture(): { out: { write(s: string): void }; text: () => string } {
  let buf = '';
  return { out: { write: (s: string) => void (buf += s) }, text: () => buf };
}

async function plain(sc: Scenario): Promise<string> {
  const c = capture();
  await sc.rec.replay(new PlainRenderer(c.out));
  return c.text();
}

/** A scheduler whose clock only moves when the test says; ticks fire as time passes. */
class FakeScheduler implements Scheduler {
  t: number;
  private fn: (() => void) | undefined;
  private period = 0;
  private next = 0;
  intervals = 0;
  constructor(t: number) {
    this.t = t;
  }
  now = () => this.t;
  setInterval(fn: () => void, ms: number): unknown {
    this.fn = fn;
    this.period = ms;
    this.next = this.t + ms;
    this.intervals++;
    return 1;
  }
  clearInterval(): void {
    this.fn = undefined;
  }
  /** Moves the clock to `t`, firing the ticker at every period boundary on the way. */
  advanceTo(t: number): void {
    while (this.fn && this.next <= t) {
      this.t = this.next;
      this.next += this.period;
      this.fn();
    }
    this.t = Math.max(this.t, t);
  }
}

interface TtyRun {
  term: VTerm;
  raw: string;
  /** Screen text after each frame written before close. */
  frames: string[];
  /** Scrollback length just before close (must stay 0: frames fit the screen). */
  scrolledBeforeClose: number;
}

async function tty(sc: Scenario, cols: number, rows: number, opts: TtyOptions = {}): Promise<TtyRun> {
  const term = new VTerm(cols, rows);
  const sched = new FakeScheduler(sc.rec.entries[0]!.at);
  let raw = '';
  const frames: string[] = [];
  const r = new TtyRenderer(
    {
      write: (s: string) => {
        raw += s;
        term.write(s);
        frames.push(term.text());
      },
    },
    { scheduler: sched, columns: cols, rows, ...opts },
  );
  for (const e of sc.rec.entries) {
    sched.advanceTo(e.at);
    r.write(e.status);
  }
  sched.advanceTo(sched.t + 1000);
  const scrolledBeforeClose = term.scrollback.length;
  await r.close();
  return { term, raw, frames, scrolledBeforeClose };
}

const PULL_RAWJSON = [
  '{"vertexes":[{"digest":"pull:busybox","name":"[linux/arm64] pull 127.0.0.1:5000/busybox:latest"}]}',
  '{"vertexes":[{"digest":"pull:busybox","name":"[linux/arm64] pull 127.0.0.1:5000/busybox:latest","started":"2026-01-01T00:00:00Z"}]}',
  '{"statuses":[{"id":"sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8","vertex":"pull:busybox","total":5242880,"current":0,"timestamp":"2026-01-01T00:00:00.015Z","started":"2026-01-01T00:00:00.015Z"}]}',
  '{"statuses":[{"id":"sha256:9c0abc9c5bd3a7854141800ba1f4a227baa88b11b49d8207eadc483c3f2496de","vertex":"pull:busybox","total":581,"current":0,"timestamp":"2026-01-01T00:00:00.015Z","started":"2026-01-01T00:00:00.015Z"}]}',
  '{"statuses":[{"id":"sha256:9c0abc9c5bd3a7854141800ba1f4a227baa88b11b49d8207eadc483c3f2496de","vertex":"pull:busybox","total":581,"current":581,"timestamp":"2026-01-01T00:00:00.115Z","started":"2026-01-01T00:00:00.015Z","completed":"2026-01-01T00:00:00.115Z"}]}',
  '{"statuses":[{"id":"sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8","vertex":"pull:busybox","total":5242880,"current":1048576,"timestamp":"2026-01-01T00:00:00.115Z","started":"2026-01-01T00:00:00.015Z"}]}',
  '{"statuses":[{"id":"sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8","vertex":"pull:busybox","total":5242880,"current":1100000,"timestamp":"2026-01-01T00:00:00.215Z","started":"2026-01-01T00:00:00.015Z"}]}',
  '{"statuses":[{"id":"sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8","vertex":"pull:busybox","total":5242880,"current":3145728,"timestamp":"2026-01-01T00:00:00.315Z","started":"2026-01-01T00:00:00.015Z"}]}',
  '{"statuses":[{"id":"sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8","vertex":"pull:busybox","total":5242880,"current":5242880,"timestamp":"2026-01-01T00:00:00.465Z","started":"2026-01-01T00:00:00.015Z","completed":"2026-01-01T00:00:00.465Z"}]}',
  '{"vertexes":[{"digest":"pull:busybox","name":"[linux/arm64] pull 127.0.0.1:5000/busybox:latest","started":"2026-01-01T00:00:00Z","completed":"2026-01-01T00:00:00.495Z"}]}',
];

describe('plain', () => {
  test('3-platform build: cached steps, grouped output, warnings at the end', async () => {
    assert.equal(
      await plain(multiPlatformBuild()),
      `#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s

#2 [linux/amd64 1/3] FROM docker.io/library/busybox:latest
#2 CACHED

#3 [linux/arm64 1/3] FROM docker.io/library/busybox:latest
#3 CACHED

#4 [linux/arm/v7 1/3] FROM docker.io/library/busybox:latest
#4 CACHED

#5 [linux/amd64 2/3] RUN echo hello from $(uname -m)
#5 CACHED

#6 [linux/arm64 2/3] RUN echo hello from $(uname -m)
#6 0.112 hello from aarch64
#6 0.352 second line, in two chunks
#6 DONE 0.4s

#7 [linux/arm/v7 2/3] RUN echo hello from $(uname -m)
#7 0.152 hello from armv7l
#7 DONE 0.6s

#8 [linux/amd64 3/3] COPY app /app
#8 DONE 0.1s

#9 [linux/arm64 3/3] COPY app /app
#9 DONE 0.1s

#10 [linux/arm/v7 3/3] COPY app /app
#10 DONE 0.1s

#11 exporting to image
#11 exporting layers
#11 exporting layers 0.3s done
#11 exporting manifest list sha256:8d5b1e2c
#11 exporting manifest list sha256:8d5b1e2c 0.0s done
#11 DONE 0.3s

 1 warning found:
 - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 4)
`,
    );
  });

  test('failure: switching after 5s, ERROR, CANCELED, late log, error logs between rulers', async () => {
    assert.equal(
      await plain(failingBuild()),
      `#1 [linux/arm64 2/2] RUN make
#1 0.300 cc -o app main.c
#1 0.300 main.c:3: error: expected ; (in main)
#1 ...

#2 [linux/amd64 2/2] RUN make
#2 0.320 cc -o app main.c
#2 ...

#1 [linux/arm64 2/2] RUN make
#1 ERROR: process "/bin/sh -c make" did not complete successfully: exit code: 2

#1 [linux/arm64 2/2] RUN make
#1 6.500 late line

#2 [linux/amd64 2/2] RUN make
#2 CANCELED
------
 > [linux/arm64 2/2] RUN make:
0.300 cc -o app main.c
0.300 main.c:3: error: expected ; (in main)
6.500 late line
------
`,
    );
  });

  test('pull: byte statuses, small steps skipped, done lines', async () => {
    const a = 'sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8';
    const b = 'sha256:9c0abc9c5bd3a7854141800ba1f4a227baa88b11b49d8207eadc483c3f2496de';
    assert.equal(
      await plain(pullImage()),
      `#1 [linux/arm64] pull 127.0.0.1:5000/busybox:latest
#1 ${a} 0B / 5.24MB
#1 ${b} 0B / 581B
#1 ${b} 581B / 581B 0.1s done
#1 ${a} 1.05MB / 5.24MB 0.1s
#1 ${a} 3.15MB / 5.24MB 0.3s
#1 ${a} 5.24MB / 5.24MB 0.5s done
#1 DONE 0.5s
`,
    );
  });

  test('output of another running vertex waits until the current one has held the screen for 5s', () => {
    const c = capture();
    const r = new PlainRenderer(c.out);
    const v = (digest: string, started: number) => ({ digest, name: digest, inputs: [], started });
    const log = (vertex: string, text: string, timestamp: number) => ({
      vertex,
      stream: 1 as const,
      data: Buffer.from(text),
      timestamp,
    });
    r.write(solveStatus({ vertexes: [v('a', T0), v('b', T0)] }));
    r.write(solveStatus({ logs: [log('b', 'from b\n', T0 + 100)] }));
    assert.equal(c.text(), '#1 a\n', 'b waits while a holds the screen');
    // a keeps talking, so it keeps the screen... until 5s of holding.
    r.write(solveStatus({ logs: [log('a', 'from a\n', T0 + 4000)] }));
    assert.ok(!c.text().includes('from b'));
    r.write(solveStatus({ logs: [log('a', 'again\n', T0 + 5100)] }));
    assert.equal(c.text(), '#1 a\n#1 4.000 from a\n#1 5.100 again\n#1 ...\n\n#2 b\n#2 0.100 from b\n');
  });

  test('held output is released by the ticker when no further event arrives', () => {
    // Three RUNs under QEMU: a holds the screen and goes quiet, b has output. Without a
    // ticker b's lines waited for the next event, however late; now the clock runs on.
    const c = capture();
    const sched = new FakeScheduler(T0);
    const r = new PlainRenderer(c.out, { scheduler: sched });
    const v = (digest: string) => ({ digest, name: digest, inputs: [], started: T0 });
    r.write(solveStatus({ vertexes: [v('a'), v('b')] }));
    r.write(
      solveStatus({ logs: [{ vertex: 'b', stream: 1, data: Buffer.from('from b\n'), timestamp: T0 + 100 }] }),
    );
    sched.advanceTo(T0 + 100);
    assert.equal(c.text(), '#1 a\n');
    sched.advanceTo(T0 + 4900);
    assert.equal(c.text(), '#1 a\n', 'still within the 5s a may hold the screen');
    sched.advanceTo(T0 + 5300);
    assert.equal(c.text(), '#1 a\n#1 ...\n\n#2 b\n#2 0.100 from b\n');
    // Nothing is held any more: the ticker stops.
    const n = sched.intervals;
    sched.advanceTo(T0 + 60_000);
    r.write(solveStatus({ vertexes: [{ ...v('b'), completed: T0 + 60_000 }] }));
    assert.equal(sched.intervals, n, 'no ticker once nothing waits');
    r.close();
    assert.equal(c.text(), '#1 a\n#1 ...\n\n#2 b\n#2 0.100 from b\n#2 DONE 60.0s\n');
  });

  test('an unterminated line is printed once it has waited 1s for its newline; its rest follows', () => {
    const c = capture();
    const sched = new FakeScheduler(T0);
    const r = new PlainRenderer(c.out, { scheduler: sched });
    // Each event is written when the clock shows its time, as in a live run.
    const log = (text: string, timestamp: number) => {
      sched.advanceTo(timestamp);
      return solveStatus({ logs: [{ vertex: 'a', stream: 1, data: Buffer.from(text), timestamp }] });
    };
    r.write(solveStatus({ vertexes: [{ digest: 'a', name: 'a', inputs: [], started: T0 }] }));
    // A burst written in pieces stays one line.
    r.write(log('Get:1 ', T0 + 100));
    r.write(log('http://deb/ [151 kB]\nReading package lists...', T0 + 200));
    sched.advanceTo(T0 + 1100);
    assert.equal(c.text(), '#1 a\n#1 0.100 Get:1 http://deb/ [151 kB]\n', 'the partial line is young');
    sched.advanceTo(T0 + 1300);
    assert.equal(c.text(), '#1 a\n#1 0.100 Get:1 http://deb/ [151 kB]\n#1 0.200 Reading package lists...\n');
    sched.advanceTo(T0 + 15_000);
    r.write(log(' Done\nBuilding dependency tree...', T0 + 16_000));
    r.write(log(' Done\n', T0 + 16_500));
    r.write(
      solveStatus({
        vertexes: [{ digest: 'a', name: 'a', inputs: [], started: T0, completed: T0 + 17_000 }],
      }),
    );
    r.close();
    assert.equal(
      c.text(),
      '#1 a\n#1 0.100 Get:1 http://deb/ [151 kB]\n#1 0.200 Reading package lists...\n#1 16.00  Done\n' +
        '#1 16.00 Building dependency tree... Done\n#1 DONE 17.0s\n',
    );
  });

  test('a vertex whose output waited 10s is shown even if the current one switched in recently', () => {
    const c = capture();
    const r = new PlainRenderer(c.out);
    const v = (digest: string) => ({ digest, name: digest, inputs: [], started: T0 });
    const log = (vertex: string, text: string, timestamp: number) => ({
      vertex,
      stream: 1 as const,
      data: Buffer.from(text),
      timestamp,
    });
    r.write(solveStatus({ vertexes: [v('c')] }));
    r.write(solveStatus({ vertexes: [v('a'), v('b')] }));
    r.write(solveStatus({ logs: [log('c', 'c1\n', T0 + 6000)] })); // c held 6s: a (first in order) takes over
    r.write(solveStatus({ logs: [log('a', 'a1\n', T0 + 10000)] })); // a held 4s only, but b waited 10s
    assert.equal(c.text(), '#1 c\n#1 6.000 c1\n#1 ...\n\n#2 a\n#2 10.00 a1\n#2 ...\n\n#3 b\n');
  });
});

describe('rawjson', () => {
  test('pull: one BuildKit-shaped JSON object per batch, empty lists omitted', async () => {
    const c = capture();
    await pullImage().rec.replay(new RawJSONRenderer(c.out));
    assert.deepEqual(c.text().split('\n'), [...PULL_RAWJSON, '']);
  });

  test('build: logs are base64 of the bytes, warnings carry base64 short and detail', async () => {
    const sc = multiPlatformBuild();
    const c = capture();
    await sc.rec.replay(new RawJSONRenderer(c.out));
    const lines = c.text().trimEnd().split('\n');
    assert.equal(lines.length, sc.rec.entries.length);
    const objs = lines.map((l) => JSON.parse(l) as Record<string, Array<Record<string, unknown>>>);
    for (const o of objs) {
      assert.ok(Object.keys(o).length > 0);
      for (const k of Object.keys(o)) assert.ok(['vertexes', 'statuses', 'logs', 'warnings'].includes(k), k);
    }
    const arm64 = sc.rec.vertexes().find((v) => v.name.startsWith('[linux/arm64 2/3]'))!;
    const text = objs
      .flatMap((o) => o.logs ?? [])
      .filter((l) => l.vertex === arm64.digest)
      .map((l) => Buffer.from(l.data as string, 'base64').toString())
      .join('');
    assert.equal(text, sc.rec.logText(arm64.digest));
    const w = objs.flatMap((o) => o.warnings ?? [])[0]!;
    assert.match(Buffer.from(w.short as string, 'base64').toString(), /^JSONArgsRecommended: /);
    assert.equal((w.detail as string[]).length, 1);
    const cached = objs.flatMap((o) => o.vertexes ?? []).filter((v) => v.cached === true);
    assert.equal(cached.length, 4, 'three FROM and the amd64 RUN');
  });
  test('toRawJSON: Go omitempty and []byte fields, for a warning with a source location', () => {
    const w = {
      vertex: 'v',
      level: 1,
      short: 'ok',
      detail: [],
      sourceInfo: { filename: 'Dockerfile', data: 'FROM x\n', language: 'Dockerfile' },
      range: [{ start: { line: 1, character: 0 }, end: { line: 1, character: 6 } }],
    };
    assert.deepEqual(toRawJSON(solveStatus({ warnings: [w] })), {
      warnings: [
        {
          vertex: 'v',
          level: 1,
          short: 'b2s=',
          sourceInfo: { filename: 'Dockerfile', data: 'RlJPTSB4Cg==', language: 'Dockerfile' },
          range: [{ start: { line: 1, character: 0 }, end: { line: 1, character: 6 } }],
        },
      ],
    });
    assert.deepEqual(toRawJSON(solveStatus()), {});
  });
});

describe('tty', () => {
  test('3-platform build: final screen with warning line, colours, no scrolling while running', async () => {
    const run = await tty(multiPlatformBuild(), 100, 30);
    assert.equal(run.scrolledBeforeClose, 0);
    assert.match(run.raw, /\x1b\[33m => WARN: JSONArgsRecommended: /, 'warnings in yellow');
    assert.match(run.raw, /\x1b\[34m => CACHED \[linux\/amd64 1\/3\]/, 'finished steps in blue');
    assert.equal(
      run.term.all(),
      `[+] Building 0.9s (11/11) FINISHED
 => [internal] load build definition from Dockerfile                                           0.0s
 => WARN: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavi 0.0s
 => CACHED [linux/amd64 1/3] FROM docker.io/library/busybox:latest                             0.0s
 => CACHED [linux/arm64 1/3] FROM docker.io/library/busybox:latest                             0.0s
 => CACHED [linux/arm/v7 1/3] FROM docker.io/library/busybox:latest                            0.0s
 => CACHED [linux/amd64 2/3] RUN echo hello from $(uname -m)                                   0.0s
 => [linux/arm64 2/3] RUN echo hello from $(uname -m)                                          0.4s
 => [linux/arm/v7 2/3] RUN echo hello from $(uname -m)                                         0.6s
 => [linux/amd64 3/3] COPY app /app                                                            0.1s
 => [linux/arm64 3/3] COPY app /app                                                            0.1s
 => [linux/arm/v7 3/3] COPY app /app                                                           0.1s
 => exporting to image                                                                         0.3s
 => => exporting layers                                                                        0.3s
 => => exporting manifest list sha256:8d5b1e2c                                                 0.0s

 1 warning found:
 - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to
 OS signals (line 4)`,
    );
  });

  test('running steps show their last log lines, dimmed; they go when the step ends', async () => {
    const run = await tty(failingBuild(), 80, 24);
    const mid = run.frames.find((f) => f.includes('(in main)'))!;
    assert.equal(
      mid,
      `[+] Building 6.4s (0/2)
 => [linux/arm64 2/2] RUN make                                             6.4s
 => => # cc -o app main.c
 => => # main.c:3: error: expected ; (in main)
 => [linux/amd64 2/2] RUN make                                             6.4s
 => => # cc -o app main.c`,
    );
    assert.match(run.raw, /\x1b\[2m => => # cc -o app main\.c\x1b\[0m/);
    assert.match(run.raw, /\x1b\[31m => ERROR \[linux\/arm64 2\/2\] RUN make/);
    // The final frame is shorter than the one before: nothing of the old one may remain.
    assert.equal(
      run.term.all(),
      `[+] Building 6.5s (2/2) FINISHED
 => ERROR [linux/arm64 2/2] RUN make                                       6.5s
 => CANCELED [linux/amd64 2/2] RUN make                                    6.5s
------
 > [linux/arm64 2/2] RUN make:
0.300 cc -o app main.c
0.300 main.c:3: error: expected ; (in main)
6.500 late line
------`,
    );
  });

  test('pull: byte statuses beside each layer, with timers', async () => {
    const run = await tty(pullImage(), 100, 10, { color: false, phase: 'Pulling' });
    assert.equal(
      run.term.all(),
      `[+] Pulling 0.5s (1/1) FINISHED
 => [linux/arm64] pull 127.0.0.1:5000/busybox:latest                                           0.5s
 => => sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8 5.24MB / 5.24MB 0.5s
 => => sha256:9c0abc9c5bd3a7854141800ba1f4a227baa88b11b49d8207eadc483c3f2496de 581B / 581B     0.1s`,
    );
    assert.ok(run.frames.some((f) => f.includes('1.05MB / 5.24MB')));
  });

  test('narrow and short terminal: lines cut, frames fit, running steps kept', async () => {
    const run = await tty(multiPlatformBuild(), 40, 8, { color: false });
    assert.equal(run.scrolledBeforeClose, 0, 'a frame taller than the screen would scroll');
    for (const f of run.frames.slice(0, -1)) {
      const lines = f.split('\n');
      assert.ok(lines.length <= 7, `frame of ${lines.length} lines:\n${f}`);
      for (const l of lines) assert.ok(l.length <= 39, `line too wide: ${JSON.stringify(l)}`);
    }
    const during = run.frames.find((f) => f.includes('hello from armv7l'));
    assert.equal(
      during,
      `[+] Building 0.3s (5/11)
 => CACHED [linux/arm/v7 1/3] FROM 0.0s
 => CACHED [linux/amd64 2/3] RUN e 0.0s
 => [linux/arm64 2/3] RUN echo hel 0.3s
 => => # hello from aarch64
 => [linux/arm/v7 2/3] RUN echo he 0.3s
 => => # hello from armv7l`,
      'running steps and their logs win over finished steps',
    );
  });

  test('frames are throttled to one per interval; the ticker moves timers', async () => {
    const sched = new FakeScheduler(T0);
    const c = capture();
    const r = new TtyRenderer(c.out, {
      scheduler: sched,
      columns: 80,
      rows: 24,
      color: false,
      interval: 100,
    });
    const frames = () => c.text().split('\x1b[?25l').length - 1;
    const v = { digest: 'x', name: 'step', inputs: [], started: T0 };
    r.write(solveStatus({ vertexes: [v] }));
    for (let i = 0; i < 20; i++)
      r.write(
        solveStatus({ logs: [{ vertex: 'x', stream: 1, data: Buffer.from(`${i}\n`), timestamp: T0 }] }),
      );
    assert.equal(frames(), 1, 'burst within one interval draws once');
    const st = r.trace.byDigest.get('x')!;
    assert.deepEqual(
      st.tail.map((l) => l.text),
      ['14', '15', '16', '17', '18', '19'],
      'keeps the last 6 lines',
    );
    assert.equal(st.pending.length, 0, 'and nothing else: a long build must not grow memory');
    sched.advanceTo(T0 + 100);
    assert.equal(frames(), 2, 'the ticker draws the pending change');
    sched.advanceTo(T0 + 1000);
    assert.equal(frames(), 11, 'a running step redraws every tick so its timer moves');
    assert.equal(sched.intervals, 1);
    r.write(solveStatus({ vertexes: [{ ...v, completed: T0 + 1000 }] }));
    sched.advanceTo(T0 + 2000);
    assert.equal(frames(), 12, 'nothing running and nothing new: no redraws');
    await r.close();
    assert.equal(frames(), 13, 'close draws the final frame');
  });
});

describe('robustness', () => {
  const junk: SolveStatus[] = [
    solveStatus(),
    solveStatus({ logs: [{ vertex: 'nope', stream: 2, data: Buffer.from('x\n'), timestamp: T0 }] }),
    solveStatus({ statuses: [{ id: 's', vertex: 'nope', current: 1, timestamp: T0 }] }),
    solveStatus({ warnings: [{ vertex: 'nope', level: 1, short: 'w', detail: [] }] }),
    solveStatus({ vertexes: [{ digest: 'v', name: 'v', inputs: [] }] }),
    solveStatus({ logs: [{ vertex: 'v', stream: 1, data: Buffer.from('before start'), timestamp: T0 }] }),
    solveStatus({ vertexes: [{ digest: 'v', name: 'v', inputs: [], started: T0, completed: T0 + 5 }] }),
    solveStatus({
      logs: [{ vertex: 'v', stream: 1, data: Buffer.from('\x1b[2J\x1b[Hafter\r\n'), timestamp: T0 + 9 }],
    }),
    solveStatus({ statuses: [{ id: 's', vertex: 'v', current: 5, total: 0, timestamp: T0 + 9 }] }),
    solveStatus({ vertexes: [{ digest: 'v', name: 'v', inputs: [] }] }),
    { vertexes: undefined, statuses: null, logs: [null], warnings: undefined } as unknown as SolveStatus,
  ];
  const makers: Array<[string, (out: { write(s: string): void }) => Renderer]> = [
    ['plain', (out) => new PlainRenderer(out)],
    ['tty', (out) => new TtyRenderer(out, { scheduler: new FakeScheduler(T0), columns: 30, rows: 5 })],
    ['rawjson', (out) => new RawJSONRenderer(out)],
    ['quiet', () => new QuietRenderer()],
  ];
  for (const [name, make] of makers) {
    test(`${name}: unknown ids, logs around completion and malformed batches do not throw`, async () => {
      const c = capture();
      const r = make(c.out);
      for (const ss of junk) r.write(ss);
      await r.close();
      r.write(junk[1]!); // after close: ignored
      assert.equal(r.warnings.length, 1);
    });
  }

  test('tty: escape sequences in step output cannot move the cursor', async () => {
    const sched = new FakeScheduler(T0);
    const term = new VTerm(60, 10);
    const r = new TtyRenderer(
      { write: (s: string) => term.write(s) },
      { scheduler: sched, columns: 60, rows: 10 },
    );
    r.write(solveStatus({ vertexes: [{ digest: 'v', name: 'RUN evil', inputs: [], started: T0 }] }));
    sched.advanceTo(T0 + 200);
    r.write(
      solveStatus({
        logs: [
          {
            vertex: 'v',
            stream: 1,
            data: Buffer.from('\x1b[5Aup\x1b]0;title\x07 50%\r100%\tok\n'),
            timestamp: T0,
          },
        ],
      }),
    );
    sched.advanceTo(T0 + 300);
    assert.equal(
      term.text(),
      `[+] Building 0.3s (0/1)\n${' => RUN evil'.padEnd(54)} 0.3s\n => => # 100%    ok`,
    );
    await r.close();
  });

  test('plain: the same vertex seen from two producers is printed once', async () => {
    const c = capture();
    const r = new PlainRenderer(c.out);
    const v = { digest: 'd', name: '[internal] load metadata', inputs: [], started: T0 };
    r.write(solveStatus({ vertexes: [v] }));
    r.write(solveStatus({ vertexes: [{ ...v, started: undefined }] }));
    r.write(solveStatus({ vertexes: [{ ...v, completed: T0 + 200 }] }));
    r.write(solveStatus({ vertexes: [{ ...v, completed: T0 + 200 }] }));
    r.close();
    assert.equal(c.text(), '#1 [internal] load metadata\n#1 DONE 0.2s\n');
  });
});

describe('chooseRenderer', () => {
  const stream = { write() {} };
  const cases: Array<[string, string | undefined, boolean, NodeJS.ProcessEnv, string]> = [
    ['auto on a terminal', 'auto', true, {}, 'TtyRenderer'],
    ['auto on a pipe', 'auto', false, {}, 'PlainRenderer'],
    ['no flag, terminal', undefined, true, {}, 'TtyRenderer'],
    ['auto with TERM=dumb', 'auto', true, { TERM: 'dumb' }, 'PlainRenderer'],
    ['env default', undefined, true, { POLYARCH_PROGRESS: 'rawjson' }, 'RawJSONRenderer'],
    ['flag beats env', 'quiet', true, { POLYARCH_PROGRESS: 'rawjson' }, 'QuietRenderer'],
    ['explicit tty on a pipe', 'tty', false, {}, 'TtyRenderer'],
    ['plain', 'plain', true, {}, 'PlainRenderer'],
    ['case and blanks', ' Plain ', true, {}, 'PlainRenderer'],
  ];
  for (const [name, mode, isTTY, env, want] of cases)
    test(name, () => {
      assert.equal(chooseRenderer(mode, { stream, isTTY, env }).constructor.name, want);
    });

  test('bad mode is a usage error naming the input', () => {
    assert.throws(() => chooseRenderer('fancy', { stream, isTTY: true, env: {} }), {
      name: 'UsageError',
      message: 'invalid progress mode "fancy": expected one of auto, tty, plain, rawjson, quiet',
    });
    assert.throws(() => chooseRenderer(undefined, { stream, isTTY: true, env: { POLYARCH_PROGRESS: 'x' } }), {
      message: /POLYARCH_PROGRESS "x"/,
    });
  });

  test('NO_COLOR: tty output has no colour codes', async () => {
    const run = async (env: NodeJS.ProcessEnv) => {
      const c = capture();
      const r = chooseRenderer('tty', {
        stream: c.out,
        isTTY: true,
        env,
        scheduler: new FakeScheduler(T0),
        columns: 80,
        rows: 24,
      });
      await failingBuild().rec.replay(r);
      return c.text();
    };
    assert.match(await run({}), /\x1b\[3[14]m/);
    assert.doesNotMatch(await run({ NO_COLOR: '1' }), /\x1b\[[0-9;]*m/);
  });
});
