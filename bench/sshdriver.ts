/**
 * ssh-driver benchmark: the same linux/arm64 build (busybox; RUN, COPY of a context of 400
 * files, 64 MiB in all) pushed by an ssh node (sshd on a loopback port of this machine,
 * test/env/sshnode.ts) and by this machine's engine directly, alternating which goes first.
 * Both run the same engine on the same machine, so the difference is what the ssh driver
 * adds: ssh, the node process's start, the context manifest, progress over the channel.
 *
 *   node dist/bench/sshdriver.js [--runs N] [--json]
 *
 * Runs inside the test environment (a registry with busybox); started outside it, it re-runs
 * itself under test/env/harness. Needs root and Debian's sshd.
 *
 * Measured, median of --runs (default 3):
 *   - cold: the first build of a fresh state root (node and local alike), context all sent.
 *   - warm: the same build again, nothing changed: no context byte is sent.
 *   - onefile: one file of the context changed: one file is sent, COPY reruns.
 * Target: ssh warm and onefile within local + 1.5 s (one ssh session and one node start).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sshHostSkipReason, startSshHost } from '../test/env/sshnode.js';

const { values: args } = parseArgs({
  options: { runs: { type: 'string', default: '3' }, json: { type: 'boolean', default: false } },
});
const runs = Number(args.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error('usage: sshdriver.js [--runs N] [--json]');
  process.exit(2);
}
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function timed(argv: string[], env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(bin, argv, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0)
    throw new Error(`polyarch ${argv.join(' ')}: exit ${r.status}\n${r.stderr.slice(-3000)}`);
  return ms;
}

async function main(registry: string, config: string): Promise<void> {
  const skip = sshHostSkipReason();
  if (skip) {
    console.error(`bench: ${skip}`);
    process.exit(1);
  }
  const dir = mkdtempSync(join(tmpdir(), 'polyarch-bench-sshdriver-'));
  const host = await startSshHost(join(dir, 'host'), { config });
  try {
    const ctx = join(dir, 'ctx');
    mkdirSync(join(ctx, 'files'), { recursive: true });
    writeFileSync(
      join(ctx, 'Dockerfile'),
      'FROM busybox\nRUN uname -m > /arch\nCOPY . /app\nCMD ["cat", "/arch"]\n',
    );
    for (let i = 0; i < 400; i++) writeFileSync(join(ctx, 'files', `f${i}`), randomBytes(160 << 10));
    const times: Record<string, { ssh: number[]; local: number[] }> = {
      cold: { ssh: [], local: [] },
      warm: { ssh: [], local: [] },
      onefile: { ssh: [], local: [] },
    };
    for (let run = 0; run < runs; run++) {
      const base = {
        ...process.env,
        PATH: `${host.pathDir}:${process.env.PATH}`,
        POLYARCH_CONFIG: config,
        POLYARCH_BUILDER: '',
        BUILDX_BUILDER: '',
        POLYARCH_PROGRESS: 'quiet',
      };
      const envs = {
        ssh: { ...base, POLYARCH_ROOT: join(dir, `ssh-root-${run}`) },
        local: { ...base, POLYARCH_ROOT: join(dir, `local-root-${run}`) },
      };
      spawnSync(bin, ['create', '--name', 'b', '--platform', 'linux/arm64'], { env: envs.local });
      spawnSync(
        bin,
        [
          'create',
          '--name',
          'b',
          '--driver',
          'ssh',
          '--platform',
          'linux/arm64',
          '--driver-opt',
          `key=${host.clientKey},polyarch=${bin},root=${join(dir, `node-root-${run}`)}`,
          host.endpoint,
        ],
        { env: envs.ssh },
      );
      const build = (kind: 'ssh' | 'local') =>
        timed(
          [
            'build',
            '--builder',
            'b',
            '--platform',
            'linux/arm64',
            '-t',
            `${registry}/bench-ssh/${kind}:1`,
            '--push',
            ctx,
          ],
          envs[kind],
        );
      const order: Array<'ssh' | 'local'> = run % 2 ? ['local', 'ssh'] : ['ssh', 'local'];
      for (const step of ['cold', 'warm', 'onefile'] as const) {
        if (step === 'onefile') writeFileSync(join(ctx, 'files', 'f7'), randomBytes(160 << 10));
        for (const k of order) times[step]![k].push(build(k));
      }
    }
    const out: Record<string, { sshMs: number; localMs: number; overheadMs: number }> = {};
    for (const [k, v] of Object.entries(times)) {
      const ssh = Math.round(median(v.ssh));
      const local = Math.round(median(v.local));
      out[k] = { sshMs: ssh, localMs: local, overheadMs: ssh - local };
    }
    if (args.json) console.log(JSON.stringify(out));
    else {
      for (const [k, v] of Object.entries(out))
        console.log(
          `${k.padEnd(8)} ssh node ${String(v.sshMs).padStart(6)} ms   local ${String(v.localMs).padStart(6)} ms   overhead ${String(v.overheadMs).padStart(5)} ms${k === 'cold' ? '' : `  (target ≤ 1500: ${v.overheadMs <= 1500 ? 'met' : 'not met'})`}`,
        );
      console.log(
        `(median of ${runs}; context = 400 files, 64 MiB; ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]} load)`,
      );
    }
  } finally {
    await host.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!process.env.POLYARCH_TEST_REGISTRY) {
  const harness = join(repo, 'dist', 'test', 'env', 'harness.js');
  const child = spawn(process.execPath, [harness, '--', process.execPath, ...process.argv.slice(1)], {
    stdio: 'inherit',
  });
  child.on('exit', (code) => process.exit(code ?? 1));
} else {
  await main(process.env.POLYARCH_TEST_REGISTRY, process.env.POLYARCH_TEST_CONFIG!);
}
