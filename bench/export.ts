/**
 * Export benchmark: one snapshot layer (a generated tree) exported as an image into a content
 * store — overlay diff pack + parallel gzip + verified store write, the exporter's real path —
 * against `tar -c | pigz -p $(nproc)` on the same files. Then the warm export (layer memo).
 *
 *   node dist/bench/export.js [--size MiB] [--level L] [--dir DIR] [--keep] [--json]
 *
 * Defaults: 256 MiB (use --size 1024 for the 1 GiB case), level 6, threads = cores (as the
 * exporter's default), a fresh temp dir removed afterwards. Both sides run in child processes
 * so each peak RSS is its own: ours from process.resourceUsage() in the child, pigz's (the
 * largest of tar and pigz) from getrusage(RUSAGE_CHILDREN) in a python3 wrapper.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exportBuild } from '../src/build/export/index.js';
import { parseOutputs } from '../src/build/export/outputs.js';
import type { BuildResult } from '../src/build/result.js';
import { ContentStore } from '../src/content/index.js';
import { parsePlatform } from '../src/platform/index.js';
import { Snapshotter } from '../src/snapshot/index.js';
import { generateTree } from './tree.js';

const { values: args } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    level: { type: 'string', default: '6' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    // internal: export the snapshot under this state root in a fresh process, print JSON
    measure: { type: 'string' },
  },
});
const sizeMiB = Number(args.size);
const level = Number(args.level);
if (!(sizeMiB > 0) || !(level >= 1 && level <= 9)) {
  console.error('usage: export.js [--size MiB] [--level 1..9] [--dir DIR] [--keep] [--json]');
  process.exit(2);
}
const KEY = 'bench-export-layer';

function result(): BuildResult {
  return {
    platforms: [
      {
        platform: parsePlatform('linux/amd64'),
        layers: [{ kind: 'snapshot', key: KEY }],
        config: { architecture: 'amd64', os: 'linux', history: [{ created_by: 'bench' }] },
      },
    ],
  };
}

/** Child: export once cold and once warm; print times, RSS and sizes. */
async function measure(stateRoot: string): Promise<void> {
  const store = await ContentStore.open(join(stateRoot, 'store'));
  const snapshotter = await Snapshotter.open({ root: stateRoot });
  const outputs = parseOutputs({ output: [`type=image,name=bench/export:1,compression-level=${level}`] });
  const ctx = { store, snapshotter, stateRoot, sourceDateEpoch: 0 };
  const t0 = performance.now();
  const cold = await exportBuild(result(), outputs, ctx);
  const coldMs = performance.now() - t0;
  const t1 = performance.now();
  const warm = await exportBuild(result(), outputs, ctx);
  const warmMs = performance.now() - t1;
  const layer = cold.manifests[0]!;
  const m = JSON.parse((await store.readBlob(layer.manifest.digest)).toString()) as {
    layers: { size: number }[];
  };
  console.log(
    JSON.stringify({
      coldMs,
      warmMs,
      packedCold: cold.stats.packed,
      packedWarm: warm.stats.packed,
      digest: cold.digest,
      blobBytes: m.layers[0]!.size,
      maxRssKiB: process.resourceUsage().maxRSS,
    }),
  );
}

function child(cmd: string, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd}: exit ${code}`))));
  });
}

async function main(): Promise<void> {
  const work = args.dir ?? mkdtempSync(join(tmpdir(), 'polyarch-bench-export-'));
  const stateRoot = join(work, 'state');
  try {
    const snapshotter = await Snapshotter.open({ root: stateRoot });
    let files = 0;
    const t0 = performance.now();
    const info = await snapshotter.create(KEY, [], async (fs) => {
      files = generateTree(fs, sizeMiB * 2 ** 20).files;
    });
    const genMs = performance.now() - t0;
    spawnSync('sh', ['-c', `tar -C '${info.fs}' -cf - . > /dev/null`]); // warm the page cache alike

    const ours = JSON.parse(
      await child(process.execPath, [process.argv[1]!, '--measure', stateRoot, '--level', String(level)]),
    ) as {
      coldMs: number;
      warmMs: number;
      packedCold: number;
      packedWarm: number;
      digest: string;
      blobBytes: number;
      maxRssKiB: number;
    };

    const n = availableParallelism();
    const out = join(work, 'pigz.tar.gz');
    const script = `tar -C '${info.fs}' -cf - . | pigz -${level} -p ${n} > '${out}'`;
    const py =
      'import resource,subprocess,sys,time\n' +
      't=time.monotonic(); r=subprocess.run(["sh","-c",sys.argv[1]]); d=time.monotonic()-t\n' +
      'print(d*1000, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)';
    const [pigzMs, pigzRssKiB] = (await child('python3', ['-c', py, script]))
      .trim()
      .split(/\s+/)
      .map(Number) as [number, number];

    const r = {
      tree: { files, MiB: sizeMiB, generateSeconds: +(genMs / 1000).toFixed(2) },
      polyarch: {
        coldSeconds: +(ours.coldMs / 1000).toFixed(2),
        warmSeconds: +(ours.warmMs / 1000).toFixed(3),
        packedCold: ours.packedCold,
        packedWarm: ours.packedWarm,
        blobMiB: +(ours.blobBytes / 2 ** 20).toFixed(1),
        peakRssMiB: +(ours.maxRssKiB / 1024).toFixed(1),
        digest: ours.digest,
      },
      pigz: {
        command: `tar -c | pigz -${level} -p ${n}`,
        seconds: +(pigzMs / 1000).toFixed(2),
        gzMiB: +(statSync(out).size / 2 ** 20).toFixed(1),
        peakRssMiB: +(pigzRssKiB / 1024).toFixed(1),
      },
      /** polyarch cold export time / pigz time: below 1 is faster than pigz. */
      ratio: +(ours.coldMs / pigzMs).toFixed(2),
    };
    if (args.json) console.log(JSON.stringify(r, null, 2));
    else {
      console.log(`tree: ${r.tree.files} files, ${r.tree.MiB} MiB (generated in ${r.tree.generateSeconds}s)`);
      console.log(
        `polyarch export (pack+gzip+store, level ${level}): ${r.polyarch.coldSeconds}s, ${r.polyarch.blobMiB} MiB blob, peak RSS ${r.polyarch.peakRssMiB} MiB`,
      );
      console.log(
        `polyarch warm export (memo): ${r.polyarch.warmSeconds}s, layers re-packed: ${r.polyarch.packedWarm}`,
      );
      console.log(
        `${r.pigz.command}: ${r.pigz.seconds}s, ${r.pigz.gzMiB} MiB, peak RSS ${r.pigz.peakRssMiB} MiB`,
      );
      console.log(`ratio polyarch/pigz: ${r.ratio}`);
    }
  } finally {
    if (!args.keep) rmSync(work, { recursive: true, force: true });
  }
}

if (args.measure) await measure(args.measure);
else await main();
