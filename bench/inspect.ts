/**
 * Latency benchmark: `polyarch imagetools inspect REF` (and `--raw`) of an image index in a
 * registry this script starts, against `skopeo inspect --raw` of the same reference, each
 * as a child process, `runs` times, interleaved. Target (issue: registry client): polyarch's
 * median ≤ 1.2× skopeo's.
 *
 *   node dist/bench/inspect.js [--runs N]     # default 20
 *
 * The index (3 platforms) is pushed with skopeo from an OCI layout made on the spot.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startRegistry } from '../test/env/registry.js';
import { makeLayout } from '../test/registry-helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' } } });
const runs = Number(values.runs);
const TARGET = 1.2;

const dir = mkdtempSync(join(tmpdir(), 'polyarch-bench-inspect-'));
const env = {
  ...process.env,
  POLYARCH_ROOT: join(dir, 'root'),
  DOCKER_CONFIG: join(dir, 'docker'),
  POLYARCH_CONFIG: join(dir, 'registries.toml'),
};

function time(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

const reg = await startRegistry({ parentDir: dir });
try {
  const img = makeLayout(join(dir, 'layout'), 'v1', ['linux/amd64', 'linux/arm64', 'linux/arm/v7']);
  const ref = `${reg.host}/bench/inspect:v1`;
  spawnSync('skopeo', ['copy', '--all', '--dest-tls-verify=false', `oci:${img.dir}:v1`, `docker://${ref}`], {
    stdio: 'inherit',
  });
  const bin = join(repo, 'bin', 'polyarch');
  const cases: Array<[string, string, string[]]> = [
    ['skopeo inspect --raw', 'skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]],
    ['polyarch imagetools inspect', bin, ['imagetools', 'inspect', ref]],
    ['polyarch imagetools inspect --raw', bin, ['imagetools', 'inspect', '--raw', ref]],
    ['node -e 0 (floor)', process.execPath, ['-e', '0']],
  ];
  const times = new Map(cases.map(([name]) => [name, [] as number[]]));
  for (const [, cmd, args] of cases) time(cmd, args); // warm the page cache
  for (let i = 0; i < runs; i++)
    for (const [name, cmd, args] of cases) times.get(name)!.push(time(cmd, args));
  console.log(`runs: ${runs}, index of 3 platforms at ${ref}`);
  for (const [name, xs] of times)
    console.log(`${name.padEnd(34)} median ${median(xs).toFixed(1).padStart(6)} ms`);
  const sk = median(times.get('skopeo inspect --raw')!);
  const pa = median(times.get('polyarch imagetools inspect')!);
  const ratio = pa / sk;
  console.log(`ratio polyarch / skopeo: ${ratio.toFixed(2)}`);
  console.log(`target: ≤ ${TARGET}×: ${ratio <= TARGET ? 'met' : 'MISSED'}`);
  process.exitCode = ratio <= TARGET ? 0 : 1;
} finally {
  await reg.stop();
  rmSync(dir, { recursive: true, force: true });
}
