/**
 * Layer packing benchmark: packs + gzips a generated tree with polyarch's deterministic tar
 * writer and parallel gzip, and compares wall time with `tar -c | pigz -p N` (or `gzip` when
 * pigz is not installed — said in the output). Then extracts the blob with applyLayerBlob and
 * with `tar -xzf`, for comparison.
 *
 *   node dist/bench/layer.js [--size MiB] [--threads N] [--level L] [--dir DIR] [--keep] [--json]
 *
 * The polyarch side runs in a child process, so the peak RSS reported is the packer's alone.
 * Defaults: 256 MiB tree, threads = available cores, level 6, a fresh temporary directory that
 * is removed afterwards. The tree mixes big and small files of partly compressible data
 * (random pages and text pages, roughly what binaries and libraries compress like).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { applyLayerBlob } from '../src/layer/apply.js';
import { compressLayer } from '../src/layer/compress.js';
import { packDir } from '../src/layer/pack.js';
import { generateTree } from './tree.js';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    threads: { type: 'string', default: String(availableParallelism()) },
    level: { type: 'string', default: '6' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    // internal: pack + gzip this tree in a fresh process and print the result as JSON
    measure: { type: 'string' },
  },
});
const sizeMiB = Number(args.size);
const threads = Number(args.threads);
const level = Number(args.level);
if (!(sizeMiB > 0) || !(threads >= 0) || !(level >= 1 && level <= 9)) {
  console.error('usage: layer.js [--size MiB] [--threads N] [--level 1..9] [--dir DIR] [--keep] [--json]');
  process.exit(2);
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function runShell(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', script], { stdio: 'inherit' });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${script}: exit ${code}`))));
  });
}

interface Measure {
  ms: number;
  maxRssKiB: number;
  result: Awaited<ReturnType<typeof compressLayer>>;
}

async function measure(tree: string, out: string): Promise<void> {
  const t = performance.now();
  const result = await compressLayer(
    Readable.from(packDir(tree, { sourceDateEpoch: 0 })),
    createWriteStream(out),
    {
      threads,
      level,
    },
  );
  const m: Measure = { ms: performance.now() - t, maxRssKiB: process.resourceUsage().maxRSS, result };
  console.log(JSON.stringify(m));
}

async function main(): Promise<void> {
  const work = args.dir ?? mkdtempSync(join(tmpdir(), 'polyarch-bench-'));
  const tree = join(work, 'tree');
  mkdirSync(tree, { recursive: true });
  try {
    const t0 = performance.now();
    const gen = generateTree(tree, sizeMiB * 1024 * 1024);
    const genMs = performance.now() - t0;
    // Warm the page cache for both contenders alike.
    spawnSync('sh', ['-c', `tar -C '${tree}' -cf - . > /dev/null`]);

    const ours = join(work, 'ours.tar.gz');
    const t1 = performance.now();
    const r = await compressLayer(
      Readable.from(packDir(tree, { sourceDateEpoch: 0 })),
      createWriteStream(ours),
      {
        threads,
        level,
      },
    );
    const oursMs = performance.now() - t1;
    const maxRssMiB = process.resourceUsage().maxRSS / 1024;

    const tool = has('pigz') ? `pigz -${level} -p ${Math.max(1, threads)}` : `gzip -${level}`;
    const theirs = join(work, 'theirs.tar.gz');
    const t2 = performance.now();
    await runShell(`tar -C '${tree}' -cf - . | ${tool} > '${theirs}'`);
    const theirsMs = performance.now() - t2;

    // Extraction of the same blob: applyLayerBlob vs `tar -xzf`.
    const applyDir = join(work, 'applied');
    mkdirSync(applyDir);
    const t3 = performance.now();
    await applyLayerBlob(createReadStream(ours), applyDir);
    const applyMs = performance.now() - t3;
    const tarDir = join(work, 'tar-x');
    mkdirSync(tarDir);
    const t4 = performance.now();
    await runShell(`tar -xzf '${ours}' -C '${tarDir}'`);
    const tarXMs = performance.now() - t4;
    rmSync(applyDir, { recursive: true, force: true });
    rmSync(tarDir, { recursive: true, force: true });

    const result = {
      tree: {
        files: gen.files,
        MiB: +(gen.bytes / 2 ** 20).toFixed(1),
        generateSeconds: +(genMs / 1000).toFixed(2),
      },
      polyarch: {
        threads,
        level,
        seconds: +(oursMs / 1000).toFixed(2),
        MiBPerSecond: +(r.uncompressedSize / 2 ** 20 / (oursMs / 1000)).toFixed(1),
        tarMiB: +(r.uncompressedSize / 2 ** 20).toFixed(1),
        gzMiB: +(r.size / 2 ** 20).toFixed(1),
        digest: r.digest,
        peakRssMiB: +maxRssMiB.toFixed(1),
      },
      system: {
        command: `tar -c | ${tool}`,
        note: has('pigz') ? undefined : 'pigz is not installed: compared with single-threaded gzip',
        seconds: +(theirsMs / 1000).toFixed(2),
        gzMiB: +(statSync(theirs).size / 2 ** 20).toFixed(1),
      },
      speedup: +(theirsMs / oursMs).toFixed(2),
      apply: { polyarchSeconds: +(applyMs / 1000).toFixed(2), tarXzfSeconds: +(tarXMs / 1000).toFixed(2) },
    };
    if (args.json) console.log(JSON.stringify(result, null, 2));
    else {
      console.log(
        `tree: ${result.tree.files} files, ${result.tree.MiB} MiB (generated in ${result.tree.generateSeconds}s)`,
      );
      console.log(
        `polyarch pack+gzip (${threads} threads, level ${level}): ${result.polyarch.seconds}s, ` +
          `${result.polyarch.MiBPerSecond} MiB/s, ${result.polyarch.gzMiB} MiB out, peak RSS ${result.polyarch.peakRssMiB} MiB`,
      );
      console.log(`${result.system.command}: ${result.system.seconds}s, ${result.system.gzMiB} MiB out`);
      if (result.system.note) console.log(`note: ${result.system.note}`);
      console.log(`speedup vs system: ${result.speedup}x`);
      console.log(
        `apply (gunzip + extract): polyarch ${result.apply.polyarchSeconds}s, tar -xzf ${result.apply.tarXzfSeconds}s`,
      );
    }
  } finally {
    if (!args.keep) rmSync(args.dir ? tree : work, { recursive: true, force: true });
  }
}

if (args.measure) await measure(args.measure, args.dir!);
else await main();
