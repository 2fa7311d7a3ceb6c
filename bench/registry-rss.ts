/**
 * Memory benchmark for registry transfers: `polyarch push` then `polyarch pull` of a
 * single-layer image of random (incompressible) bytes against a registry this script starts
 * (Debian's docker-registry, as the tests use), each run as a child process under
 * `/usr/bin/time -v` for its peak RSS. Target (issue: registry client): peak RSS < 200 MB at
 * 1 GiB — transfers stream, nothing holds a blob in memory.
 *
 *   node dist/bench/registry-rss.js [--size MiB]     # default 1024
 *
 * The layer is written straight into a fresh local store (1 MiB at a time); the registry's
 * storage and both stores live in a temp dir removed at the end.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ContentStore } from '../src/content/index.js';
import { startRegistry } from '../test/env/registry.js';
import { storeRandomImage } from '../test/registry-helpers.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({ options: { size: { type: 'string', default: '1024' } } });
const sizeMiB = Number(values.size);
if (!Number.isFinite(sizeMiB) || sizeMiB <= 0)
  throw new Error(`--size: not a positive number: ${values.size}`);
const TARGET_MB = 200;

interface Run {
  seconds: number;
  rssMB: number;
}

/** Runs the CLI under /usr/bin/time -v: wall time and peak RSS. */
function polyarch(args: string[], root: string): Run {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-v', join(repo, 'bin', 'polyarch'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, POLYARCH_ROOT: root, POLYARCH_PROGRESS: 'quiet' },
    maxBuffer: 16 << 20,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`polyarch ${args.join(' ')} exited ${r.status}:\n${r.stderr}`);
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no RSS in /usr/bin/time's output:\n${r.stderr}`);
  return { seconds, rssMB: Number(m[1]) / 1024 };
}

const dir = mkdtempSync(join(tmpdir(), 'polyarch-bench-rss-'));
const reg = await startRegistry({ parentDir: dir });
try {
  const bytes = sizeMiB * 1024 * 1024;
  const src = await ContentStore.open(join(dir, 'a', 'store'));
  const t0 = Date.now();
  await storeRandomImage(src, 'bench/big:1', ['linux/amd64'], [bytes]);
  console.log(`layer: ${sizeMiB} MiB of random bytes, written in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  const ref = `${reg.host}/bench/big:1`;
  const push = polyarch(['push', 'bench/big:1', ref], join(dir, 'a'));
  const pull = polyarch(['pull', ref], join(dir, 'b'));
  const row = (name: string, r: Run) =>
    `${name.padEnd(6)} ${r.seconds.toFixed(1).padStart(6)} s  ${((sizeMiB * 1.048576) / r.seconds).toFixed(0).padStart(5)} MB/s  peak RSS ${r.rssMB.toFixed(0).padStart(4)} MB`;
  console.log(row('push', push));
  console.log(row('pull', pull));
  const ok = push.rssMB < TARGET_MB && pull.rssMB < TARGET_MB;
  console.log(`target: peak RSS < ${TARGET_MB} MB: ${ok ? 'met' : 'MISSED'}`);
  process.exitCode = ok ? 0 : 1;
} finally {
  await reg.stop();
  rmSync(dir, { recursive: true, force: true });
}
