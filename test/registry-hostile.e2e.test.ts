/**
 * Hostile registries (issue 11), through ./bin/polyarch as a user runs it, against the
 * misbehaving server of test/env/hostile-registry.ts: endless bodies (manifest, config,
 * token, error) stop at their byte limit; trickles and stalls fail on the minimum rate and
 * the stall timeout while a slow but steady blob passes; a server that never answers fails
 * at the headers deadline; credentials never go over plain HTTP to a token realm on another
 * host. Each failure is one `ERROR:` line naming the registry and the object, measured for
 * time and for the CLI's peak memory (VmHWM).
 *
 * The timeouts are shrunk with POLYARCH_REGISTRY_TIMEOUT_SCALE (0.05: headers and stall
 * 1.5 s, rate window 3 s; the minimum rate stays 1 KiB/s), so the whole file takes seconds.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DEFAULT_TIMEOUTS, timeouts } from '../src/registry/limits.js';
import { type HostileRegistry, startHostileRegistry } from './env/hostile-registry.js';
import { bin, tempDir } from './registry-helpers.js';

const SCALE = '0.05';
const t = timeouts({ POLYARCH_REGISTRY_TIMEOUT_SCALE: SCALE });
/** Peak RSS allowed for the CLI: node itself takes ~60 MiB here; the endless bodies were GBs. */
const MAX_PEAK_KIB = 150 * 1024;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Peak resident set of the CLI process (VmHWM), KiB. */
  peakKiB: number;
}

/** Runs the CLI without blocking this process (the hostile server lives here), watching its VmHWM. */
function run(args: string[], home: string, env: NodeJS.ProcessEnv = {}, killAfterMs = 60_000): Promise<Run> {
  const start = Date.now();
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      POLYARCH_ROOT: join(home, 'root'),
      DOCKER_CONFIG: join(home, 'docker'),
      POLYARCH_CONFIG: join(home, 'registries.toml'),
      POLYARCH_REGISTRY_TIMEOUT_SCALE: SCALE,
      POLYARCH_PROGRESS: 'quiet',
      ...env,
    },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  let peakKiB = 0;
  const sample = () => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peakKiB = Math.max(peakKiB, Number(m[1]));
      // A regression must not take the machine down with it: stop well above the bound.
      if (peakKiB > 2 * MAX_PEAK_KIB) child.kill('SIGKILL');
    } catch {
      // exited
    }
  };
  const poll = setInterval(sample, 25);
  // A hang must fail the test, not the suite's patience.
  const kill = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  return new Promise((resolve) => {
    child.on('exit', () => sample());
    child.on('close', (status) => {
      clearInterval(poll);
      clearTimeout(kill);
      resolve({ status, stdout, stderr, ms: Date.now() - start, peakKiB });
    });
  });
}

/** Exit 1, one ERROR line matching `want` (WARNING lines allowed before it), within `maxMs`, bounded memory. */
function assertBoundedError(r: Run, want: RegExp, maxMs: number): void {
  const lines = r.stderr.trimEnd().split('\n');
  const errors = lines.filter((l) => l.startsWith('ERROR: '));
  assert.equal(r.status, 1, `exit status (stderr: ${r.stderr})`);
  assert.equal(errors.length, 1, `one ERROR line expected:\n${r.stderr}`);
  assert.deepEqual(
    lines.filter((l) => !l.startsWith('ERROR: ') && !l.startsWith('WARNING: ')),
    [],
    `nothing but the error (and warnings):\n${r.stderr}`,
  );
  assert.match(errors[0]!, want);
  assert.ok(r.ms <= maxMs, `failed within ${maxMs} ms (took ${r.ms} ms): ${errors[0]}`);
  assert.ok(r.peakKiB > 0, 'the peak RSS was sampled');
  assert.ok(r.peakKiB <= MAX_PEAK_KIB, `peak RSS ${r.peakKiB} KiB <= ${MAX_PEAK_KIB} KiB`);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('the timeouts: documented defaults, scaled by POLYARCH_REGISTRY_TIMEOUT_SCALE', () => {
  assert.deepEqual(timeouts({}), DEFAULT_TIMEOUTS);
  assert.equal(DEFAULT_TIMEOUTS.headersMs, 30_000);
  assert.equal(t.headersMs, 1500);
  assert.equal(t.stallMs, 1500);
  assert.equal(t.rateWindowMs, 3000);
  assert.equal(t.minRate, 1024);
  assert.equal(t.asideMs, 500);
  assert.deepEqual(timeouts({ POLYARCH_REGISTRY_TIMEOUT_SCALE: 'x' }), DEFAULT_TIMEOUTS);
  assert.equal(timeouts({ POLYARCH_REGISTRY_MIN_RATE: '0' }).minRate, 0);
});

describe('hostile registry', { concurrency: 4 }, () => {
  let h: HostileRegistry;
  let h1: string;
  before(async () => {
    h = await startHostileRegistry();
    h1 = esc(h.host);
  });
  after(() => h.close());
  const home = () => tempDir('hostile');

  test('an endless chunked manifest stops at 4 MiB received', async () => {
    const sentBefore = h.endlessBytes();
    const r = await run(['pull', `${h.host}/endless-manifest:1`], home());
    assertBoundedError(
      r,
      new RegExp(
        `^ERROR: pulling ${h1}/endless-manifest:1: GET manifest ${h1}/endless-manifest:1: the manifest from ${h1} is larger than 4 MiB`,
      ),
      20_000,
    );
    assert.ok(h.endlessBytes() - sentBefore >= 4 * 1024 * 1024, 'the server really sent more than the limit');
    const i = await run(['imagetools', 'inspect', `${h.host}/endless-manifest:1`], home());
    assertBoundedError(i, /^ERROR: inspecting .*endless-manifest:1: .*larger than 4 MiB/, 20_000);
  });

  test('an endless error body is cut: the status still reports', async () => {
    const r = await run(['pull', `${h.host}/endless-error:1`], home());
    assertBoundedError(r, /^ERROR: pulling .*endless-error:1: .*(404|not found)/i, 20_000);
  });

  test('a 503 whose body trickles is retried without waiting for the body each time', async () => {
    const r = await run(['pull', `${h.host}/trickle-error:1`], home());
    // 4 tries, each reading the body for at most asideMs (0.5 s), plus backoff (0.25+0.5+1 s).
    assertBoundedError(r, /^ERROR: pulling .*trickle-error:1: .*503/, 4 * t.asideMs + 1750 + 5_000);
  });

  test('an endless config stops at the size its manifest gives', async () => {
    const i = await run(
      ['imagetools', 'inspect', '--format', '{{json .Image}}', `${h.host}/endless-config:1`],
      home(),
    );
    assertBoundedError(
      i,
      new RegExp(
        `GET blob ${h1}/endless-config@${h.image.configDigest}: the config \\(${h.image.config.length} bytes in the manifest\\) from ${h1} is larger than ${h.image.config.length} bytes`,
      ),
      20_000,
    );
    const r = await run(['pull', `${h.host}/endless-config:1`], home());
    assertBoundedError(
      r,
      new RegExp(`endless-config@${h.image.configDigest}: more than the expected`),
      20_000,
    );
  });

  test('an endless token response stops at 1 MiB', async () => {
    const r = await run(['pull', `${h.host}/endless-token:1`], home());
    assertBoundedError(
      r,
      new RegExp(`token server: the token response from ${h1} is larger than 1 MiB`),
      20_000,
    );
  });

  test('a manifest trickled at 1 byte/s fails on the minimum rate', async () => {
    const r = await run(['pull', `${h.host}/trickle-manifest:1`], home());
    assertBoundedError(
      r,
      new RegExp(
        // The window is 3 s; a loaded machine may notice a second late.
        `GET manifest ${h1}/trickle-manifest:1: ${h1} is too slow: \\d+ bytes in [3-5](\\.\\d)?s \\(the minimum is 1 KiB/s over 3s\\)`,
      ),
      t.rateWindowMs + 12_000,
    );
    assert.ok(r.ms >= t.rateWindowMs, `not before a whole window (${r.ms} ms)`);
  });

  test('a blob trickled at 1 byte/s fails on the minimum rate, naming repository and digest', async () => {
    const r = await run(['pull', `${h.host}/trickle-blob:1`], home());
    assertBoundedError(
      r,
      new RegExp(`GET blob ${h1}/trickle-blob@${h.image.layerDigest}: ${h1} is too slow`),
      t.rateWindowMs + 12_000,
    );
  });

  test('a slow but steady blob (16 KiB/s, longer than the rate window) is pulled', async () => {
    const r = await run(['pull', `${h.host}/slow-blob:1`], home());
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.ms > t.rateWindowMs, `the transfer outlasted the window (${r.ms} ms)`);
  });

  test('a blob that stalls half-way resumes with Range after the stall timeout', async () => {
    const r = await run(['pull', `${h.host}/stall-blob:1`], home());
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.ms >= t.stallMs, `waited for the stall (${r.ms} ms)`);
  });

  test('a registry that never answers fails at the headers deadline', async () => {
    const r = await run(['pull', `${h.host}/hang:1`], home());
    assertBoundedError(
      r,
      new RegExp(
        `^ERROR: pulling ${h1}/hang:1: GET manifest ${h1}/hang:1: no response headers from ${h1} within 1\\.5s$`,
      ),
      t.headersMs + 10_000,
    );
    const i = await run(['imagetools', 'inspect', `${h.host}/hang:1`], home());
    assertBoundedError(i, /no response headers from .* within 1\.5s$/, t.headersMs + 10_000);
  });

  test('a server that accepts and never speaks (not even TLS) fails at the connect timeout', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(silent.address() as { port: number }).port}`;
    try {
      const r = await run(['pull', `${host}/x:1`], home());
      assertBoundedError(
        r,
        new RegExp(`GET manifest ${esc(host)}/x:1: could not connect to ${esc(host)} within 250ms`),
        15_000,
      );
      // Marked http: the request goes out in plain HTTP and the headers never come.
      const dir = home();
      writeFileSync(join(dir, 'registries.toml'), `[registry."${host}"]\nhttp = true\n`);
      const p = await run(['pull', `${host}/x:1`], dir);
      assertBoundedError(p, new RegExp(`no response headers from ${esc(host)} within 1\\.5s$`), 15_000);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  test('credentials do not go over plain HTTP to a token realm on another host', async () => {
    const secret = `s3cret-${process.pid}`;
    const withCreds = () => {
      const dir = home();
      const auth = Buffer.from(`alice:${secret}`).toString('base64');
      const docker = join(dir, 'docker');
      mkdirSync(docker, { recursive: true });
      writeFileSync(join(docker, 'config.json'), JSON.stringify({ auths: { [h.host]: { auth } } }));
      return dir;
    };
    const seen = h.realmAuth.length;
    const r = await run(['pull', `${h.host}/private:1`], withCreds());
    assertBoundedError(
      r,
      new RegExp(
        `authentication required \\(the credentials for ${h1} were not sent to its token server http://${esc(h.realmHost)}: plain HTTP to another host`,
      ),
      20_000,
    );
    assert.ok(h.realmAuth.length > seen, 'the realm was asked (anonymously)');
    assert.deepEqual(
      h.realmAuth.slice(seen),
      h.realmAuth.slice(seen).map(() => ''),
      'no Authorization header at the realm',
    );
    assert.ok(!r.stderr.includes(secret));

    // Control: the user marks the realm host http = true; then the credentials go there.
    const dir = withCreds();
    writeFileSync(join(dir, 'registries.toml'), `[registry."${h.realmHost}"]\nhttp = true\n`);
    const seen2 = h.realmAuth.length;
    const c = await run(['pull', `${h.host}/private:1`], dir);
    assertBoundedError(c, /authentication required \(the stored credentials were refused\)/, 20_000);
    assert.ok(
      h.realmAuth.slice(seen2).includes(`Basic ${Buffer.from(`alice:${secret}`).toString('base64')}`),
      `the realm got the credentials: ${JSON.stringify(h.realmAuth.slice(seen2))}`,
    );
  });
});
