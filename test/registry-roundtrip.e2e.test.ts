/**
 * The CLI end to end in every auth flavour of the test environment, with the 5-platform
 * busybox index: pull --all-platforms from the anonymous registry, `login --password-stdin`
 * into a temporary DOCKER_CONFIG, push to the basic-auth and token-auth registries, pull
 * back into fresh stores — every digest identical. Then the failures a user meets (bad
 * references, unknown hosts, wrong passwords, missing tags) for pull, push, inspect: one
 * `ERROR:` line, exit 1, and the store's files exactly as before.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import {
  assertOneLineError,
  cli,
  requireEnv,
  sha256,
  skopeo,
  tempDir,
  uniqueRepo,
} from './registry-helpers.js';

/** Every file under `dir` (relative paths, sorted), with its size: what "nothing written" compares. */
function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(`${relative(dir, p)} ${statSync(p).size}`);
    }
  };
  walk(dir);
  return out.sort();
}

/** The platform manifests of an index as stored in a polyarch store (`sha256:…` per platform). */
function storedIndex(root: string, digest: string): Array<[string, string]> {
  const idx = JSON.parse(readFileSync(join(root, 'store', 'blobs', 'sha256', digest.slice(7)), 'utf8'));
  return idx.manifests.map(
    (m: { digest: string; platform: { os: string; architecture: string; variant?: string } }) => [
      [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/'),
      m.digest,
    ],
  );
}

test('busybox (5 platforms) round trips through the anonymous, basic and token registries', () => {
  const bb = requireEnv('POLYARCH_TEST_BUSYBOX');
  const digest = requireEnv('POLYARCH_TEST_BUSYBOX_DIGEST');
  const user = requireEnv('POLYARCH_TEST_REGISTRY_USER');
  const password = requireEnv('POLYARCH_TEST_REGISTRY_PASSWORD');
  const home = tempDir('home');
  const p = cli(['pull', '--all-platforms', '--progress', 'plain', bb], home);
  assert.equal(p.status, 0, p.stderr);
  assert.equal(p.stdout, `Digest: ${digest}\n${bb}\n`);
  const platforms = storedIndex(join(home, 'root'), digest);
  assert.equal(platforms.length, 5);
  const blobs = files(join(home, 'root', 'store', 'blobs'));

  for (const [flavour, host] of [
    ['basic', requireEnv('POLYARCH_TEST_REGISTRY_BASIC')],
    ['token', requireEnv('POLYARCH_TEST_REGISTRY_TOKEN')],
  ] as const) {
    const login = cli(['login', '-u', user, '--password-stdin', host], home, { input: `${password}\n` });
    assert.equal(login.status, 0, `${flavour}: ${login.stderr}`);
    const target = `${host}/${uniqueRepo(`bb-${flavour}`)}:1`;
    const pushed = cli(['push', '--progress', 'rawjson', bb, target], home);
    assert.equal(pushed.status, 0, `${flavour}: ${pushed.stderr}`);
    assert.match(pushed.stdout, new RegExp(`^${target}: digest: ${digest} size: \\d+\\n$`));
    // rawjson: one JSON object per line, the push vertex completed without error.
    const last = pushed.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .flatMap((s) => s.vertexes ?? [])
      .filter((v: { name: string }) => v.name === `pushing ${target}`)
      .at(-1);
    assert.ok(last?.completed && !last.error, `${flavour}: ${JSON.stringify(last)}`);
    assert.equal(
      sha256(skopeo(['inspect', '--raw', `docker://${target}`], { creds: `${user}:${password}` })),
      digest,
      `${flavour}: skopeo reads the same index`,
    );

    // A fresh store, the same credentials: everything comes back identical.
    const fresh = tempDir('home');
    const env = { DOCKER_CONFIG: join(home, 'docker') };
    const back = cli(['pull', '-a', '-q', target], fresh, { env });
    assert.equal(back.status, 0, `${flavour}: ${back.stderr}`);
    assert.equal(back.stdout, `${target}\n`);
    assert.deepEqual(storedIndex(join(fresh, 'root'), digest), platforms, flavour);
    assert.deepEqual(files(join(fresh, 'root', 'store', 'blobs')), blobs, `${flavour}: the same blobs`);

    // The wrong password: one line, exit 1, the store untouched.
    const before = files(join(fresh, 'root'));
    const cfg = join(fresh, 'docker', 'config.json');
    assert.equal(
      cli(['login', '-u', user, '--password-stdin', host], fresh, { input: `${password}\n` }).status,
      0,
    );
    const j = JSON.parse(readFileSync(cfg, 'utf8'));
    j.auths[host].auth = Buffer.from(`${user}:wrong-${password}`).toString('base64');
    writeFileSync(cfg, JSON.stringify(j));
    const denied = cli(['pull', '-a', target.replace(/:1$/, ':2')], fresh);
    // The token server refuses the password; the basic registry the request.
    assertOneLineError(
      denied,
      /^ERROR: pulling .*: .*(authentication required|authentication failed|refused)/,
    );
    assert.doesNotMatch(denied.stderr, new RegExp(password));
    const again = cli(['pull', '-a', target], fresh);
    assertOneLineError(again, /^ERROR: pulling /);
    const push = cli(['push', target, target.replace(/:1$/, ':3')], fresh);
    assertOneLineError(push, /^ERROR: pushing /);
    assert.deepEqual(files(join(fresh, 'root')), before, `${flavour}: nothing written`);
  }
});

test('bad references, unknown hosts, missing tags: one ERROR line, exit 1, the store untouched', () => {
  const reg = requireEnv('POLYARCH_TEST_REGISTRY');
  const bb = requireEnv('POLYARCH_TEST_BUSYBOX');
  const home = tempDir('home');
  assert.equal(cli(['pull', '--platform', 'linux/arm64', '-q', bb], home).status, 0);
  const before = files(join(home, 'root'));
  const missing = `${reg}/library/busybox:nope`;
  const cases: Array<[string, string[], RegExp]> = [
    [
      'pull: uppercase',
      ['pull', 'Busybox'],
      /invalid reference "Busybox": repository name must be lowercase/,
    ],
    ['pull: empty tag', ['pull', `${reg}/x:`], /invalid reference/],
    ['pull: missing tag', ['pull', missing], /^ERROR: pulling .*:nope: not found \(MANIFEST_UNKNOWN\)$/],
    ['pull: unknown host', ['pull', 'nosuch.invalid/app:1'], /nosuch\.invalid unreachable/],
    [
      'push: bad target',
      ['push', bb, 'x/Y:1'],
      /invalid reference "x\/Y:1": repository name must be lowercase/,
    ],
    [
      'push: unknown host',
      ['push', bb, 'nosuch.invalid/app:1'],
      /pushing nosuch\.invalid\/app:1: .*unreachable/,
    ],
    ['push: not in the store', ['push', `${reg}/none:1`], /no image named .* in the local store/],
    ['inspect: bad reference', ['imagetools', 'inspect', 'a//b'], /invalid reference "a\/\/b"/],
    ['inspect: missing tag', ['imagetools', 'inspect', missing], /MANIFEST_UNKNOWN/],
    ['inspect: unknown host', ['imagetools', 'inspect', 'nosuch.invalid/app'], /unreachable/],
    ['manifest inspect: missing tag', ['manifest', 'inspect', missing], /MANIFEST_UNKNOWN/],
    [
      'create: missing source',
      ['imagetools', 'create', '-t', `${reg}/x:1`, missing],
      /MANIFEST_UNKNOWN|not found/,
    ],
  ];
  for (const [name, args, want] of cases) {
    const r = cli(args, home);
    assert.doesNotMatch(r.stderr, /\n\s+at /, `${name}: no stack trace`);
    try {
      assertOneLineError(r, want);
    } catch (err) {
      assert.fail(`${name}: ${(err as Error).message}`);
    }
    assert.deepEqual(files(join(home, 'root')), before, `${name}: nothing written`);
  }
});
