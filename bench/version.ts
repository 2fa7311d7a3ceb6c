/**
 * Start-up benchmark: how long `./bin/polyarch version` takes, against a bare `node -e 0`
 * measured in the same run. Target (issue: foundations): under 100 ms.
 *
 *   node dist/bench/version.js [runs=30]
 */
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const runs = Number(process.argv[2] ?? 30);

function time(cmd: string, args: string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}`);
    out.push(ms);
  }
  return out.sort((a, b) => a - b);
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

const node = time(process.execPath, ['-e', '0']);
const version = time(join(repo, 'bin', 'polyarch'), ['version']);
const help = time(join(repo, 'bin', 'polyarch'), ['--help']);
const row = (name: string, s: number[]) =>
  `${name.padEnd(22)} median ${pct(s, 50).toFixed(1).padStart(6)} ms   p90 ${pct(s, 90).toFixed(1).padStart(6)} ms`;
console.log(`runs: ${runs}`);
console.log(row('node -e 0', node));
console.log(row('polyarch version', version));
console.log(row('polyarch --help', help));
const ok = pct(version, 50) < 100;
console.log(`target: polyarch version median < 100 ms: ${ok ? 'met' : 'MISSED'}`);
process.exitCode = ok ? 0 : 1;
