/**
 * Push benchmark: an image of new layers (two platforms, ~124 MB of random bytes by default, as
 * issue 16's build pushed) sent to a registry this script starts (Debian's docker-registry, as
 * the tests use), each run into a fresh repository so every blob really moves. Interleaved:
 * `polyarch push` as a child process, then the library's push() in this process with each
 * upload strategy (monolithic PUT up to the threshold, PATCH chunks above), medians and spread.
 *
 *   node dist/bench/push.js [--runs N] [--layers MiB,MiB,...] [--platforms N]
 *
 * Defaults: 7 runs, layers 40,16,6 MiB per platform, 2 platforms (2 × 62 MiB).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ContentStore } from '../src/content/index.js';
import { push } from '../src/image/push.js';
import { loadRegistryConfig } from '../src/registry/config.js';
import { RegistryClient } from '../src/registry/client.js';
import { startRegistry } from '../test/env/registry.js';
import { storeRandomImage } from '../test/registry-helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '7' },
    layers: { type: 'string', default: '40,16,6' },
    platforms: { type: 'string', default: '2' },
  },
});
const runs = Number(values.runs);
const sizes = values.layers.split(',').map((s) => Math.round(Number(s) * 1024 * 1024));
const platforms = ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/riscv64'].slice(
  0,
  Number(values.platforms),
);
if (!(runs >= 1) || sizes.some((s) => !(s > 0)) || platforms.length === 0) {
  console.error('usage: push.js [--runs N] [--layers MiB,MiB,...] [--platforms 1-4]');
  process.exit(2);
}

const MiB = 1024 * 1024;
const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;

const dir = mkdtempSync(join(tmpdir(), 'polyarch-bench-push-'));
const reg = await startRegistry({ parentDir: dir });
try {
  const root = join(dir, 'root');
  const store = await ContentStore.open(join(root, 'store'));
  await storeRandomImage(store, 'bench/push:1', platforms, sizes);
  const total = (sizes.reduce((a, b) => a + b, 0) * platforms.length) / 1e6;
  const env = { ...process.env, POLYARCH_ROOT: root, POLYARCH_PROGRESS: 'quiet' };
  const config = await loadRegistryConfig(env);
  let n = 0;
  const cases: Array<[string, () => Promise<void>]> = [
    [
      'polyarch push (CLI, defaults)',
      async () => {
        const r = spawnSync(
          join(repo, 'bin', 'polyarch'),
          ['push', 'bench/push:1', `${reg.host}/bench/cli${n++}:1`],
          {
            env,
            encoding: 'utf8',
          },
        );
        if (r.status !== 0) throw new Error(`polyarch push exited ${r.status}: ${r.stderr}`);
      },
    ],
  ];
  for (const [name, chunkThreshold, chunkSize] of [
    ['push(): PATCH 8 MiB chunks above 16 MiB', 16 * MiB, 8 * MiB],
    ['push(): PATCH 32 MiB chunks above 64 MiB', 64 * MiB, 32 * MiB],
    ['push(): one PUT per blob', Number.MAX_SAFE_INTEGER, 8 * MiB],
  ] as const)
    cases.push([
      name,
      async () => {
        const client = new RegistryClient({ config, chunkThreshold, chunkSize });
        try {
          await push('bench/push:1', { store, client, target: `${reg.host}/bench/lib${n++}:1`, env });
        } finally {
          await client.close();
        }
      },
    ]);
  const times = new Map(cases.map(([name]) => [name, [] as number[]]));
  const cpu = new Map(cases.map(([name]) => [name, [] as number[]]));
  for (let i = 0; i < runs; i++)
    for (const [name, fn] of cases) {
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      await fn();
      const c = process.cpuUsage(c0);
      times.get(name)!.push(Number(process.hrtime.bigint() - t0) / 1e6);
      cpu.get(name)!.push((c.user + c.system) / 1000);
    }
  console.log(
    `runs: ${runs}, ${platforms.length} platforms × layers of ${values.layers} MiB = ${total.toFixed(0)} MB of new blobs`,
  );
  // CPU: this process's own (the in-process cases; the CLI's is its child's, not counted).
  for (const [name, xs] of times) {
    const c = cpu.get(name)!;
    console.log(
      `${name.padEnd(44)} median ${q(xs, 0.5).toFixed(0).padStart(5)} ms  [${q(xs, 0.25).toFixed(0)}–${q(xs, 0.75).toFixed(0)}]  ${(total / (q(xs, 0.5) / 1000)).toFixed(0)} MB/s${name.includes('CLI') ? '' : `  cpu ${q(c, 0.5).toFixed(0)} ms [${q(c, 0.25).toFixed(0)}–${q(c, 0.75).toFixed(0)}]`}`,
    );
  }
} finally {
  await reg.stop();
  rmSync(dir, { recursive: true, force: true });
}
