/**
 * Plays a fake 3-platform build (pulls with byte progress, cached steps, RUN output, an
 * export) through the real renderers, in real time, so a person can look at them:
 *
 *   node dist/bench/progress-demo.js [--progress auto|tty|plain|rawjson|quiet] [--fail] [--speed N]
 *   tmux new-session -d -x 120 -y 30 'node dist/bench/progress-demo.js; sleep 30'
 *   sleep 3; tmux capture-pane -p
 *
 * `--fail` makes the arm/v7 RUN fail; `--speed 2` plays twice as fast. Exit code 1 on --fail.
 */
import { createHash } from 'node:crypto';
import { chooseRenderer } from '../src/cli/ui/index.js';
import { ProgressMux, ProgressWriter, type VertexHandle } from '../src/progress/index.js';

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const speed = Number(flag('--speed') ?? 1) || 1;
const fail = args.includes('--fail');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms / speed));

const renderer = chooseRenderer(flag('--progress'), {
  stream: process.stderr,
  isTTY: Boolean(process.stderr.isTTY),
  env: process.env,
});
const mux = new ProgressMux(renderer);
let n = 0;
const dg = () => `sha256:${(++n).toString(16).padStart(64, '0')}`;

async function pull(v: VertexHandle, p: string, layers: number[]): Promise<void> {
  v.start();
  await Promise.all(
    layers.map(async (size, i) => {
      const id = `sha256:${createHash('sha256').update(`${p} ${i}`).digest('hex')}`;
      const s = v.status(id, { total: size });
      for (let got = 0; got < size; got += Math.ceil(size / 12)) {
        s.update(got);
        await sleep(80 + i * 30);
      }
      s.done();
    }),
  );
  v.done();
}

async function platform(p: string, delay: number): Promise<void> {
  const pw = new ProgressWriter(mux.open());
  const from = pw.vertex({ digest: dg(), name: `[${p} 1/4] FROM 127.0.0.1:5000/debian:bookworm` });
  const apt = pw.vertex({
    digest: dg(),
    name: `[${p} 2/4] RUN apt-get update && apt-get install -y build-essential`,
  });
  const copy = pw.vertex({ digest: dg(), name: `[${p} 3/4] COPY . /src` });
  const make = pw.vertex({ digest: dg(), name: `[${p} 4/4] RUN make -C /src` });
  await sleep(delay);
  if (p === 'linux/amd64') from.cached();
  else await pull(from, p, [29_150_000, 1_420, 4_800_000]);
  if (p === 'linux/amd64') apt.cached();
  else {
    apt.start();
    for (const pkg of ['libc6-dev', 'gcc-12', 'make', 'dpkg-dev', 'g++-12', 'build-essential']) {
      apt.log(`Setting up ${pkg}:${p.split('/')[1]} ...\n`);
      await sleep(150);
    }
    apt.done();
  }
  copy.start();
  await sleep(60);
  copy.done();
  make.start();
  for (const f of ['main.c', 'util.c', 'net.c', 'io.c']) {
    make.log(`cc -O2 -c ${f}\n`);
    await sleep(200);
  }
  if (fail && p === 'linux/arm/v7') {
    make.log('io.c:42:7: error: unknown type name ‘uint128_t’\n', 2);
    make.fail(new Error('process "/bin/sh -c make -C /src" did not complete successfully: exit code: 2'));
    await pw.close();
    throw new Error('build failed');
  }
  make.log('cc -o app main.o util.o net.o io.o\n');
  await sleep(100);
  make.done();
  await pw.close();
}

const root = new ProgressWriter(mux.open());
const def = root.vertex({ digest: dg(), name: '[internal] load build definition from Dockerfile' }).start();
await sleep(120);
def.status('transferring dockerfile:').done(214);
def.done();
const ctx = root.vertex({ digest: dg(), name: '[internal] load build context' }).start();
ctx.status('transferring context:').update(48_310);
await sleep(200);
ctx.done();

let failed = false;
try {
  await Promise.all([
    platform('linux/amd64', 0),
    platform('linux/arm64', 100),
    platform('linux/arm/v7', 200),
  ]);
  await root.run({ digest: dg(), name: 'exporting to image' }, async (v) => {
    const layers = v.status('exporting layers');
    layers.update(0);
    await sleep(400);
    layers.done();
    const m = v.status('exporting manifest list sha256:8d5b1e2c4a77');
    m.update(0);
    await sleep(100);
    m.done();
  });
} catch {
  failed = true;
}
await root.close();
await mux.close();
if (failed) {
  process.stderr.write(
    'ERROR: failed to solve: process "/bin/sh -c make -C /src" did not complete successfully\n',
  );
  process.exitCode = 1;
}
