/**
 * Build history end to end through bin/polyarch: real multi-platform builds (busybox from the
 * test registry, QEMU for arm64 and arm/v7) are recorded in a private state root; `history
 * ls/inspect/logs/rm/export/import/open`, `build --report`, `^N` refs, bad refs, the log caps
 * and `prune`. The report is loaded in headless Chromium over the DevTools protocol (pipe):
 * no console errors or exceptions, no network requests, one timeline row per platform with
 * that platform's steps, and a screenshot kept in test-artifacts/history-report.png.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BuildRecord, HistoryBundle } from '../src/history/index.js';
import { isHostArchitecture, parsePlatform } from '../src/platform/index.js';
import { Chromium, findChromium } from './cdp.js';
import { testEnv } from './env/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const artifacts = join(repo, 'test-artifacts');
const tenv = testEnv();
const root = mkdtempSync(join(tmpdir(), 'history-e2e-root-'));
const work = mkdtempSync(join(tmpdir(), 'history-e2e-ctx-'));
after(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});
const env: NodeJS.ProcessEnv = {
  ...process.env,
  POLYARCH_ROOT: root,
  POLYARCH_CONFIG: tenv.config,
  POLYARCH_PROGRESS: 'plain',
};
delete env.BROWSER;

function polyarch(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, { env, encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function context(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [f, data] of Object.entries(files)) writeFileSync(join(dir, f), data);
  return dir;
}

function record(ref: string): BuildRecord {
  return JSON.parse(readFileSync(join(root, 'history', `${ref}.json`), 'utf8')) as BuildRecord;
}

function refs(): string[] {
  const r = polyarch('history', 'ls', '--format', '{{.Ref}}');
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

const PLATFORMS = ['linux/amd64', 'linux/arm64', 'linux/arm/v7'];
const app = context('app', {
  Dockerfile: [
    'FROM busybox',
    'RUN echo "built on $(uname -m)" && sleep 1',
    'RUN for i in 1 2 3; do echo "line $i"; done > /lines',
    'COPY hello.txt /hello.txt',
    '',
  ].join('\n'),
  'hello.txt': 'hello\n',
});
// Built once, by the first test; the others read its record.
let first: string | undefined;
const report = join(work, 'report.html');

test('a multi-platform build is recorded: ls columns, inspect, ^N refs, build --report', () => {
  const r = polyarch('build', '--platform', PLATFORMS.join(','), '--report', report, app);
  assert.equal(r.status, 0, r.stderr);
  const ls = polyarch('history', 'ls');
  assert.equal(ls.status, 0, ls.stderr);
  const [head, row, ...rest] = ls.stdout.trimEnd().split('\n');
  assert.match(head!, /^BUILD ID\s+NAME\s+STATUS\s+CREATED AT\s+DURATION$/);
  assert.equal(rest.length, 0, ls.stdout);
  assert.match(row!, /^[a-z0-9]{25}\s+app\s+Completed\s+.+ ago\s+\d+\.\ds$/);
  first = row!.split(/\s+/)[0]!;
  assert.deepEqual(refs(), [first]);

  const rec = record(first);
  assert.equal(rec.status, 'completed');
  assert.deepEqual(
    rec.platforms.map((p) => [p.platform, p.native]),
    PLATFORMS.map((p) => [p, isHostArchitecture(parsePlatform(p))]),
  );
  // Each platform: metadata, FROM, two RUNs and a COPY, all timed, none cached (a fresh root).
  for (const p of PLATFORMS) {
    const steps = rec.steps.filter((s) => s.platform === p);
    assert.equal(steps.length, 5, `${p}: ${steps.map((s) => s.name).join(' | ')}`);
    for (const s of steps) assert.ok(s.started! <= s.completed!, s.name);
    assert.ok(steps.some((s) => s.name === `[${p} 2/4] RUN echo "built on $(uname -m)" && sleep 1`));
  }
  assert.ok(rec.steps.some((s) => s.name === '[internal] load build context' && s.platform === undefined));
  const machine = { 'linux/amd64': 'x86_64', 'linux/arm64': 'aarch64', 'linux/arm/v7': 'armv7l' };
  for (const [p, m] of Object.entries(machine)) {
    const run = rec.steps.find((s) => s.name.startsWith(`[${p} 2/4] RUN`))!;
    assert.match(
      rec.logs
        .filter((l) => l.vertex === run.digest)
        .map((l) => l.text)
        .join(''),
      new RegExp(`built on ${m}`),
    );
  }

  const insp = polyarch('history', 'inspect', '--format', 'json', first);
  assert.equal(insp.status, 0, insp.stderr);
  const j = JSON.parse(insp.stdout) as Record<string, unknown>;
  assert.equal(j.Ref, first);
  assert.equal(j.Name, 'app');
  assert.deepEqual(j.Platform, PLATFORMS);
  assert.equal(j.Status, 'completed');
  assert.equal(j.NumTotalSteps, rec.steps.length);
  assert.equal(j.NumCachedSteps, 0);
  assert.equal((j.Platforms as unknown[]).length, 3);
  assert.ok((j.CriticalPath as string[]).length >= 2);
  const pretty = polyarch('history', 'inspect');
  assert.equal(pretty.status, 0, pretty.stderr);
  assert.match(pretty.stdout, new RegExp(`^Name:\\s+app\\nRef:\\s+${first}\\n`));
  assert.match(pretty.stdout, /Platforms:\s+linux\/amd64, linux\/arm64, linux\/arm\/v7\n/);
  assert.match(pretty.stdout, /Build Steps:\s+\d+\/\d+ \(0% cached\)\n/);
  assert.match(pretty.stdout, /linux\/arm\/v7\s+(emulated|native)\s+5\s+0\s/);
  assert.match(pretty.stdout, new RegExp(`Print build logs: polyarch history logs ${first}\\n`));

  // The same build again: all cached, and ^0 is now the new one, ^1 the first.
  const again = polyarch('buildx', 'build', '--platform', PLATFORMS.join(','), app);
  assert.equal(again.status, 0, again.stderr);
  const [newest, older] = refs();
  assert.equal(older, first);
  const r0 = JSON.parse(polyarch('history', 'inspect', '--format', 'json', '^0').stdout) as Record<
    string,
    number
  >;
  assert.equal(r0.Ref, newest as unknown as number);
  assert.ok(r0.NumCachedSteps! >= 12, String(r0.NumCachedSteps));
  const r1 = polyarch('buildx', 'history', 'inspect', '--format', '{{.Ref}} {{.Status}}', '^1');
  assert.equal(r1.stdout, `${first} completed\n`);
  const prefix = polyarch('history', 'inspect', '--format', '{{.Ref}}', first.slice(0, 8));
  assert.equal(prefix.stdout, `${first}\n`);

  // --report wrote the first build's page.
  const html = readFileSync(report, 'utf8');
  assert.match(html, /^<!DOCTYPE html>/);
  assert.ok(html.includes(first));
  assert.doesNotMatch(html, /<(script|link|img)[^>]+(src|href)=/i, 'the report fetches nothing');
});

test('history logs replays the build with the plain and rawjson renderers', () => {
  assert.ok(first, 'needs the first test');
  const plain = polyarch('history', 'logs', first);
  assert.equal(plain.status, 0, plain.stderr);
  assert.match(plain.stdout, /#\d+ \[linux\/arm64 2\/4\] RUN echo "built on \$\(uname -m\)" && sleep 1\n/);
  assert.match(plain.stdout, /#\d+ \d+\.\d+ built on aarch64\n/);
  assert.match(plain.stdout, /#\d+ DONE \d+\.\ds\n/);
  const raw = polyarch('history', 'logs', '--progress', 'rawjson', first);
  assert.equal(raw.status, 0, raw.stderr);
  const lines = raw.stdout.trim().split('\n');
  assert.ok(lines.length > 10);
  for (const l of lines) JSON.parse(l);
  const bad = polyarch('history', 'logs', '--progress', 'fancy', first);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /invalid --progress "fancy"/);
});

test('bad refs: a clear one-line error, exit 1', () => {
  for (const [ref, msg] of [
    ['doesnotexist', /^ERROR: no build record found for ref "doesnotexist"\n$/],
    ['^99', /^ERROR: no build record found with offset 99 \(\d+ kept\)\n$/],
    ['^x', /^ERROR: invalid offset "\^x": expected \^N/],
  ] as const)
    for (const cmd of ['inspect', 'logs', 'open', 'rm', 'export']) {
      const r = polyarch('history', cmd, ref, ...(cmd === 'export' ? ['-o', join(work, 'x.json')] : []));
      assert.equal(r.status, 1, `${cmd} ${ref}: ${r.stderr}`);
      assert.match(r.stderr, msg, `${cmd} ${ref}`);
    }
  assert.ok(!existsSync(join(work, 'x.json')), 'no partial export');
  // A --report that cannot be written: the build is done, the command fails naming the file.
  writeFileSync(join(work, 'plain-file'), '');
  const rep = polyarch('build', '--progress', 'quiet', '--report', join(work, 'plain-file', 'r.html'), app);
  assert.equal(rep.status, 1, rep.stderr);
  assert.match(rep.stderr, /^ERROR: --report \S*plain-file\/r\.html: E[A-Z]+: /m);
  assert.equal(record(refs()[0]!).status, 'completed', 'the build itself is recorded');
  const rm = polyarch('history', 'rm');
  assert.equal(rm.status, 2);
  assert.match(rm.stderr, /name at least one REF, or --all/);
});

test('a failed build is recorded with its error and the failing step', () => {
  const dir = context('fails', {
    Dockerfile: 'FROM busybox\nRUN echo "about to fail on $(uname -m)" && exit 3\n',
  });
  const r = polyarch('build', '--platform', 'linux/arm64', dir);
  assert.equal(r.status, 1);
  const ref = refs()[0]!;
  const rec = record(ref);
  assert.equal(rec.status, 'error');
  assert.match(rec.error!, /exit code: 3/);
  const failed = rec.steps.find((s) => s.error !== undefined)!;
  // One platform: its numbered steps carry no platform prefix, and are still its own.
  assert.equal(failed.name, '[2/2] RUN echo "about to fail on $(uname -m)" && exit 3');
  assert.equal(failed.platform, 'linux/arm64');
  const ls = polyarch('history', 'ls', '--filter', 'status=error', '--format', '{{.Ref}} {{.Status}}');
  assert.equal(ls.stdout, `${ref} Error\n`);
  const insp = polyarch('history', 'inspect', ref);
  assert.match(insp.stdout, /Error:\s+.*exit code: 3/);
  const logs = polyarch('history', 'logs', ref);
  assert.match(logs.stdout, /about to fail on aarch64/);
  assert.match(logs.stdout, /ERROR: .*exit code: 3/);
});

test('logs kept per step are capped (the tail is kept); the record stays small', () => {
  // About 240 KB of output from one step: the record keeps its last 64 KiB.
  const dir = context('noisy', {
    Dockerfile:
      'FROM busybox\nRUN i=0; while [ $i -lt 6000 ]; do echo "noisy line $i padding padding padding"; i=$((i+1)); done\n',
  });
  const r = polyarch('build', '--progress', 'quiet', dir);
  assert.equal(r.status, 0, r.stderr);
  const ref = refs()[0]!;
  const rec = record(ref);
  const run = rec.steps.find((s) => s.name.includes('noisy line'))!;
  const text = rec.logs
    .filter((l) => l.vertex === run.digest)
    .map((l) => l.text)
    .join('');
  assert.ok(Buffer.byteLength(text) <= 64 * 1024, String(Buffer.byteLength(text)));
  assert.ok(Buffer.byteLength(text) > 60 * 1024, String(Buffer.byteLength(text)));
  assert.match(text, /noisy line 5999 padding/);
  assert.doesNotMatch(text, /noisy line 0 padding/);
  assert.ok(rec.logsClipped! > 150 * 1024, String(rec.logsClipped));
  assert.ok(statSync(join(root, 'history', `${ref}.json`)).size < 100 * 1024);
});

test('export writes a self-describing bundle that import reads back; rm removes records', () => {
  const all = refs();
  const out = join(work, 'bundle.json');
  const ex = polyarch('history', 'export', '--all', '-o', out);
  assert.equal(ex.status, 0, ex.stderr);
  const bundle = JSON.parse(readFileSync(out, 'utf8')) as HistoryBundle;
  assert.equal(bundle.mediaType, 'application/vnd.polyarch.build-history.v1+json');
  assert.deepEqual(
    bundle.records.map((r) => r.ref),
    all,
  );
  const rm = polyarch('history', 'rm', all[0]!, all[1]!);
  assert.equal(rm.status, 0, rm.stderr);
  assert.equal(rm.stdout, `${all[0]}\n${all[1]}\n`);
  assert.deepEqual(refs(), all.slice(2));
  const im = polyarch('history', 'import', out);
  assert.equal(im.status, 0, im.stderr);
  assert.deepEqual(refs(), all);
  // Not a bundle: refused, nothing imported.
  writeFileSync(join(work, 'junk.json'), '{"mediaType":"something/else","records":[]}');
  const junk = polyarch('history', 'import', join(work, 'junk.json'));
  assert.equal(junk.status, 1);
  assert.match(
    junk.stderr,
    /junk\.json: not a history bundle \(expected mediaType application\/vnd\.polyarch\.build-history\.v1\+json\)/,
  );
});

test('compose build is recorded too: one record per project, service steps on their platforms', () => {
  const dir = context('proj', {
    'compose.yaml':
      'services:\n  web:\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n',
    Dockerfile: 'FROM busybox\nRUN echo "web on $(uname -m)"\n',
  });
  const r = spawnSync(bin, ['compose', 'build'], { cwd: dir, env, encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, r.stderr);
  const rec = record(refs()[0]!);
  assert.equal(rec.name, 'proj');
  assert.deepEqual(rec.request.services, ['web']);
  assert.deepEqual(
    rec.platforms.map((p) => p.platform),
    ['linux/amd64', 'linux/arm64'],
  );
  for (const p of ['linux/amd64', 'linux/arm64']) {
    const run = rec.steps.find((s) => s.name === `[web ${p} 2/2] RUN echo "web on $(uname -m)"`);
    assert.ok(run, rec.steps.map((s) => s.name).join('\n'));
    assert.equal(run.platform, p);
  }
});

test('a running build shows as Running; SIGINT records it as canceled', async () => {
  const dir = context('slow', { Dockerfile: 'FROM busybox\nRUN echo started && sleep 60\n' });
  const child = spawn(bin, ['build', '--platform', 'linux/arm64', dir], { env });
  let stderr = '';
  const started = new Promise<void>((res) => {
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (/\d started\n/.test(stderr)) res();
    });
  });
  const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  await Promise.race([started, exited]);
  const ls = polyarch('history', 'ls', '--format', '{{.Ref}} {{.Status}} {{.Duration}}');
  const [ref, status, duration] = ls.stdout.split('\n')[0]!.split(' ');
  assert.equal(status, 'Running', ls.stdout);
  assert.match(duration!, /^\d+\.\ds\+$/);
  const live = JSON.parse(polyarch('history', 'inspect', '--format', 'json', ref!).stdout) as {
    Status: string;
  };
  assert.equal(live.Status, 'running');
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  const rec = record(ref!);
  assert.equal(rec.status, 'canceled');
  const run = rec.steps.find((s) => s.name.includes('sleep 60'))!;
  assert.ok(run.started !== undefined, 'the running step was recorded');
  assert.match(polyarch('history', 'inspect', ref!).stdout, /Status:\s+Canceled\n/);
});

test('prune drops build records older than 48h (or --filter until), --all every finished one', () => {
  const all = refs();
  assert.ok(all.length >= 3);
  // Age one record by three days (as if the clock had moved on).
  const old = all[all.length - 1]!;
  const file = join(root, 'history', `${old}.json`);
  const rec = record(old);
  const days = 3 * 24 * 3600_000;
  writeFileSync(
    file,
    JSON.stringify({ ...rec, createdAt: rec.createdAt - days, completedAt: rec.completedAt! - days }),
  );
  const p = polyarch('builder', 'prune', '-f');
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /Deleted build records: 1\n/);
  assert.deepEqual(refs(), all.slice(0, -1));
  const keep = polyarch('prune', '-f', '--filter', 'until=1h');
  assert.equal(keep.status, 0, keep.stderr);
  assert.doesNotMatch(keep.stdout, /Deleted build records/);
  assert.equal(refs().length, all.length - 1);
  const gone = polyarch('prune', '-f', '--all');
  assert.equal(gone.status, 0, gone.stderr);
  assert.match(gone.stdout, new RegExp(`Deleted build records: ${all.length - 1}\\n`));
  assert.deepEqual(refs(), []);
  assert.equal(polyarch('history', 'inspect').status, 1);
});

test('the report in headless Chromium: no errors, one timeline row per platform with its steps, screenshot', async (t) => {
  if (!findChromium()) {
    t.skip('chromium is not installed (scripts/setup.sh installs it)');
    return;
  }
  // A fresh build, so this test stands on its own record (the prune test removed the others).
  const r = polyarch('build', '--platform', PLATFORMS.join(','), '--no-cache', app);
  assert.equal(r.status, 0, r.stderr);
  const open = polyarch('history', 'open', '^0');
  assert.equal(open.status, 0, open.stderr);
  const path = open.stdout.trim();
  assert.equal(path, join(root, 'history', `${refs()[0]}.html`));
  const rec = record(refs()[0]!);
  // With $BROWSER set, open runs it on the file (here a script that notes what it was given).
  const browser = join(work, 'browser.sh');
  writeFileSync(browser, `#!/bin/sh\necho "$1" > ${join(work, 'browser.out')}\n`, { mode: 0o755 });
  const viaBrowser = spawnSync(bin, ['history', 'open'], {
    env: { ...env, BROWSER: browser },
    encoding: 'utf8',
  });
  assert.equal(viaBrowser.status, 0, viaBrowser.stderr);
  for (let i = 0; i < 50 && !existsSync(join(work, 'browser.out')); i++)
    await new Promise((r) => setTimeout(r, 100));
  assert.equal(readFileSync(join(work, 'browser.out'), 'utf8'), `${path}\n`);
  const b = await Chromium.launch({ width: 1200, height: 900 });
  assert.ok(b);
  try {
    const page = await b.open(`file://${path}`);
    const rows = await page.evaluate<{ platform: string; steps: number; declared: string; cached: number }[]>(
      `[...document.querySelectorAll('section.row[data-platform]')].map((s) => ({ platform: s.dataset.platform, steps: s.querySelectorAll('rect.step').length, declared: s.dataset.steps, cached: s.querySelectorAll('rect.step.cached').length }))`,
    );
    assert.deepEqual(
      rows.map((x) => x.platform),
      PLATFORMS,
    );
    for (const row of rows) {
      const want = rec.steps.filter((s) => s.platform === row.platform && s.started !== undefined).length;
      assert.equal(want, 5);
      assert.equal(row.steps, want, row.platform);
      assert.equal(row.declared, String(want));
      assert.equal(row.cached, 0, '--no-cache: nothing cached');
    }
    assert.equal(await page.evaluate('document.documentElement.dataset.ready'), '1', 'the page script ran');
    const critical = await page.evaluate<number>(`document.querySelectorAll('rect.step.critical').length`);
    assert.ok(critical >= 2, `critical path steps: ${critical}`);
    // Bars lie on one shared axis inside the SVG (no NaN, no negative widths).
    const bad = await page.evaluate<number>(
      `[...document.querySelectorAll('rect.step')].filter((r) => !(r.width.baseVal.value > 0) || !(r.x.baseVal.value >= 0)).length`,
    );
    assert.equal(bad, 0);
    mkdirSync(artifacts, { recursive: true });
    const size = await page.screenshot(join(artifacts, 'history-report.png'));
    assert.ok(size > 10_000, `screenshot of ${size} bytes`);
    assert.deepEqual(page.problems.errors, [], 'console errors');
    assert.deepEqual(page.problems.network, [], 'network requests');
  } finally {
    await b.close();
  }
});
