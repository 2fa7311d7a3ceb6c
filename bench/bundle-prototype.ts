/**
 * Start-up prototype (measurement only, nothing ships): the whole of src/ as ONE script run
 * from a V8 code cache, against today's ES modules, in CPU time of the polyarch process itself
 * (`process.cpuUsage()` at exit, children excluded), interleaved runs, medians and quartiles.
 *
 *   node dist/bench/bundle-prototype.js [--runs N]      # default 12; `run` needs root + runc
 *
 * The bundle is made with the TypeScript compiler already in devDependencies (`--module amd
 * --outFile`), no bundler: a 30-line AMD loader defines the modules, Node's require() serves
 * built-ins and node_modules, and each `import.meta.url` is rewritten to the URL of the
 * module's dist/ file. The script is compiled through `vm.Script` with `cachedData`; the cache
 * is written after a first `run`, so the functions a run compiles are in it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values } = parseArgs({ options: { runs: { type: 'string', default: '12' } } });
const runs = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), 'polyarch-bench-bundle-'));

const LOADER = `
const vm = require('node:vm');
const fs = require('node:fs');
const nodeRequire = require('node:module').createRequire(${JSON.stringify(join(repo, 'dist/src/cli/main.js'))});
const mods = new Map();
globalThis.define = (name, deps, factory) => mods.set(name, { deps, factory });
function req(name) {
  const m = mods.get(name);
  if (!m) return nodeRequire(name);
  if (m.exports) return m.exports;
  m.exports = {};
  m.factory(...m.deps.map((d) => (d === 'require' ? amdRequire : d === 'exports' ? m.exports : req(d))));
  return m.exports;
}
function amdRequire(deps, ok, fail) {
  if (typeof deps === 'string') return req(deps);
  queueMicrotask(() => { try { ok(...deps.map(req)); } catch (e) { fail(e); } });
}
const file = __dirname + '/bundle.js';
const cacheFile = __dirname + '/bundle.cache';
let cachedData;
try { cachedData = fs.readFileSync(cacheFile); } catch {}
const script = new vm.Script(fs.readFileSync(file, 'utf8'), { filename: file, cachedData });
script.runInThisContext();
const args = process.argv.slice(2);
(async () => {
  await req('cli/startup').startup(process.env);
  if (args.length === 1 && args[0] === 'version') process.stdout.write('polyarch v' + req('version').VERSION + '\\n');
  else process.exitCode = await req('cli/main').runCli(args);
  if (!cachedData || script.cachedDataRejected)
    process.on('exit', () => fs.writeFileSync(cacheFile, script.createCachedData()));
})();
`;

/** The CPU a command's own process used, read by a preload at its exit. */
const PRELOAD = `process.on('exit', () => { const u = process.cpuUsage(); require('node:fs').appendFileSync(process.env.BENCH_CPU_LOG, ((u.user + u.system) / 1000) + '\\n'); });`;

try {
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'AMD',
        moduleResolution: 'node10',
        lib: ['ES2023'],
        types: ['node'],
        typeRoots: [join(repo, 'node_modules/@types')],
        rootDir: join(repo, 'src'),
        outFile: join(dir, 'raw.js'),
        skipLibCheck: true,
        noEmitOnError: false,
      },
      files: ['cli/main.ts', 'cli/startup.ts', 'cli/commands/index.ts'].map((f) => join(repo, 'src', f)),
      include: [join(repo, 'src/cli/commands/*.ts')],
      exclude: [join(repo, 'src/**/*.test.ts')],
    }),
  );
  // AMD output refuses import.meta (errors, still emitted): rewritten below.
  spawnSync(join(repo, 'node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.json')], { stdio: 'ignore' });
  let current = '';
  const raw = readFileSync(join(dir, 'raw.js'), 'utf8');
  const bundle = raw.replace(/define\("([^"]+)"|import\.meta\.url/g, (m: string, name?: string) => {
    if (name !== undefined) {
      current = name;
      return m;
    }
    return JSON.stringify(`file://${join(repo, 'dist/src', `${current}.js`)}`);
  });
  writeFileSync(join(dir, 'bundle.js'), bundle);
  writeFileSync(join(dir, 'polyarch.cjs'), LOADER);
  writeFileSync(join(dir, 'preload.cjs'), PRELOAD);

  // A one-layer busybox image in a private state root, for `run`.
  const root = join(dir, 'root');
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  execFileSync('cp', ['/bin/busybox', join(rootfs, 'bin/busybox')]);
  symlinkSync('busybox', join(rootfs, 'bin/true'));
  const tar = join(dir, 'rootfs.tar');
  execFileSync('tar', ['-C', rootfs, '-cf', tar, '.']);
  const env = { ...process.env, POLYARCH_ROOT: root, POLYARCH_PROGRESS: 'quiet' };
  execFileSync(join(repo, 'bin/polyarch'), ['import', tar, 'bench/busybox:1'], { env, stdio: 'ignore' });
  // The code cache, from a run.
  execFileSync(process.execPath, [join(dir, 'polyarch.cjs'), 'run', '--rm', 'bench/busybox:1', 'true'], {
    env,
  });

  const commands: Record<string, string[]> = {
    version: ['version'],
    '--help': ['--help'],
    'imagetools inspect --help': ['imagetools', 'inspect', '--help'],
    'run --rm IMAGE true': ['run', '--rm', 'bench/busybox:1', 'true'],
  };
  const variants: Record<string, string[]> = {
    'node -e 0': ['-e', '0'],
    'ES modules (bin/polyarch)': [join(repo, 'bin/polyarch')],
    'one script + code cache': [join(dir, 'polyarch.cjs')],
  };
  const cpu = new Map<string, number[]>();
  const measure = (key: string, args: string[]) => {
    const log = join(dir, 'cpu.log');
    rmSync(log, { force: true });
    const r = spawnSync(process.execPath, ['-r', join(dir, 'preload.cjs'), ...args], {
      env: { ...env, BENCH_CPU_LOG: log },
      stdio: 'ignore',
    });
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
    const list = cpu.get(key) ?? [];
    list.push(Number(readFileSync(log, 'utf8').trim()));
    cpu.set(key, list);
  };
  for (let i = 0; i < runs; i++) {
    measure('node -e 0', variants['node -e 0']!);
    for (const [c, cargs] of Object.entries(commands))
      for (const [v, vargs] of Object.entries(variants))
        if (v !== 'node -e 0') measure(`${c} — ${v}`, [...vargs, ...cargs]);
  }
  const q = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * p)]!;
  console.log(`runs: ${runs}; CPU ms of the polyarch process (median [p25–p75])`);
  for (const [k, xs] of cpu)
    console.log(
      `${k.padEnd(58)} ${q(xs, 0.5).toFixed(1).padStart(6)} [${q(xs, 0.25).toFixed(1)}–${q(xs, 0.75).toFixed(1)}]`,
    );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
