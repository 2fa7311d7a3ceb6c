/**
 * Recorded progress of typical runs, made with the real `ProgressWriter` on a fake clock:
 * used as fixtures by the renderer tests and replayed by bench/progress-demo.ts.
 *
 *   const { rec } = multiPlatformBuild();   // rec.entries: [{ at, status }]
 */
import { ProgressRecorder, ProgressWriter } from '../src/progress/index.js';

/** 2026-01-01T00:00:00Z: every scenario starts here. */
export const T0 = Date.UTC(2026, 0, 1);

export class FakeClock {
  t: number;
  constructor(t = T0) {
    this.t = t;
  }
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export interface Scenario {
  rec: ProgressRecorder;
  clock: FakeClock;
}

function setup(): Scenario & { pw: ProgressWriter } {
  const clock = new FakeClock();
  const rec = new ProgressRecorder({ now: clock.now });
  return { clock, rec, pw: new ProgressWriter(rec, { now: clock.now }) };
}

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, '0')}`;

/**
 * `build --platform linux/amd64,linux/arm64,linux/arm/v7`: one shared definition step,
 * FROM cached on all, RUN cached on amd64 and run (with interleaved output) on the others,
 * a COPY each, an export, and one build-check warning.
 */
export function multiPlatformBuild(): Scenario {
  const { clock, rec, pw } = setup();
  const platforms = ['linux/amd64', 'linux/arm64', 'linux/arm/v7'];
  const def = pw.vertex({ digest: digest(1), name: '[internal] load build definition from Dockerfile' });
  const steps = platforms.map((p, i) => ({
    from: pw.vertex({ digest: digest(10 + i), name: `[${p} 1/3] FROM docker.io/library/busybox:latest` }),
    run: pw.vertex({
      digest: digest(20 + i),
      name: `[${p} 2/3] RUN echo hello from $(uname -m)`,
      inputs: [digest(10 + i)],
    }),
    copy: pw.vertex({ digest: digest(30 + i), name: `[${p} 3/3] COPY app /app`, inputs: [digest(20 + i)] }),
  }));
  const exp = pw.vertex({
    digest: digest(40),
    name: 'exporting to image',
    inputs: steps.map((s) => s.copy.digest),
  });

  def.start();
  clock.advance(12);
  def.warn({
    short:
      'JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 4)',
    detail: [
      'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals',
    ],
    url: 'https://docs.docker.com/go/dockerfile/rule/json-args-recommended/',
  });
  clock.advance(30);
  def.done();
  clock.advance(5);
  for (const s of steps) s.from.cached();
  steps[0]!.run.cached();
  clock.advance(3);
  const [, arm64, armv7] = steps;
  arm64!.run.start();
  armv7!.run.start();
  clock.advance(112);
  arm64!.run.log('hello from aarch64\n');
  clock.advance(40);
  armv7!.run.log('hello from armv7l\n');
  clock.advance(200);
  arm64!.run.log('second line, ');
  clock.advance(10);
  arm64!.run.log('in two chunks\n', 2);
  clock.advance(38);
  arm64!.run.done();
  steps[0]!.copy.start();
  clock.advance(150);
  armv7!.run.done();
  steps[0]!.copy.done();
  arm64!.copy.start();
  armv7!.copy.start();
  clock.advance(60);
  arm64!.copy.done();
  clock.advance(10);
  armv7!.copy.done();
  exp.start();
  const layers = exp.status('exporting layers');
  layers.update(0);
  clock.advance(250);
  layers.done();
  const manifest = exp.status('exporting manifest list sha256:8d5b1e2c');
  manifest.update(0);
  clock.advance(20);
  manifest.done();
  exp.done();
  void pw.close();
  return { clock, rec };
}

/**
 * One step fails after printing (the last line unterminated); a log for an unknown vertex and
 * one after completion arrive too, and a sibling step is canceled.
 */
export function failingBuild(): Scenario {
  const { clock, rec, pw } = setup();
  const run = pw.vertex({ digest: digest(2), name: '[linux/arm64 2/2] RUN make' });
  const other = pw.vertex({ digest: digest(3), name: '[linux/amd64 2/2] RUN make' });
  run.start();
  other.start();
  clock.advance(300);
  run.log('cc -o app main.c\nmain.c:3: error: expected ;');
  clock.advance(20);
  other.log('cc -o app main.c\n');
  pw.write({
    logs: [{ vertex: 'sha256:unknown', stream: 1, data: Buffer.from('lost\n'), timestamp: clock.now() }],
  });
  clock.advance(6000); // the amd64 output has waited long enough to take over
  run.log(' (in main)\n');
  clock.advance(180);
  run.fail(new Error('process "/bin/sh -c make" did not complete successfully: exit code: 2'));
  run.log('late line\n');
  clock.advance(5);
  other.cancel();
  void pw.close();
  return { clock, rec };
}

/** `pull --platform linux/arm64`: one vertex, two layers with byte progress. */
export function pullImage(): Scenario {
  const { clock, rec, pw } = setup();
  const v = pw
    .vertex({ digest: 'pull:busybox', name: '[linux/arm64] pull 127.0.0.1:5000/busybox:latest' })
    .start();
  clock.advance(15);
  const big = v.status('sha256:4abcf20661432fb2d719aaf90656f55c287f8ca915dc1c92ec14ff61e67fbaf8', {
    total: 5_242_880,
  });
  const small = v.status('sha256:9c0abc9c5bd3a7854141800ba1f4a227baa88b11b49d8207eadc483c3f2496de', {
    total: 581,
  });
  big.update(0);
  small.update(0);
  clock.advance(100);
  small.done();
  big.update(1_048_576);
  clock.advance(100);
  big.update(1_100_000); // under 5% and 5s since the last line: plain skips it
  clock.advance(100);
  big.update(3_145_728);
  clock.advance(150);
  big.done();
  clock.advance(30);
  v.done();
  void pw.close();
  return { clock, rec };
}
