/**
 * Builder instances end to end: `create`, `use`, `ls`, `builder inspect`, `builder rm` through bin/polyarch
 * with POLYARCH_ROOT in a temp dir, golden layouts (the platform lists computed from this
 * machine), errors, and writers killed mid-update.
 */
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { decodeBuilder, ENGINE_VERSION, formatActivity, truncatePlatforms } from '../src/builder/index.js';
import { executablePlatforms, formatPlatform, hostPlatform } from '../src/platform/index.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(repo, 'bin', 'polyarch');
const root = mkdtempSync(join(tmpdir(), 'polyarch-builder-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));

const baseEnv = { ...process.env, POLYARCH_ROOT: root, POLYARCH_BUILDER: '', BUILDX_BUILDER: '' };
function run(args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(bin, args, { encoding: 'utf8', env: { ...baseEnv, ...env } });
}
function ok(args: string[], env: NodeJS.ProcessEnv = {}): string {
  const r = run(args, env);
  assert.equal(r.status, 0, `polyarch ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** What the local driver reports here: pinned first, then the host, then the rest of what runs. */
async function localLabels(pinned: string[]): Promise<string[]> {
  const here = [
    formatPlatform(hostPlatform()),
    ...(await executablePlatforms()).map((p) => formatPlatform(p)),
  ];
  return [...new Set([...pinned, ...here])].map((p) => (pinned.includes(p) ? `${p}*` : p));
}

describe('builder instances through the CLI', { concurrency: false }, () => {
  test('a fresh state root lists only default, marked current', async () => {
    const all = (await localLabels([])).join(', ');
    assert.equal(
      ok(['ls', '--no-trunc']),
      'NAME/NODE     DRIVER/ENDPOINT   STATUS    BUILDKIT          PLATFORMS\n' +
        'default*      local\n' +
        ` \\_ default    \\_ default       running   ${ENGINE_VERSION}   ${all}\n`,
    );
    // Without --no-trunc the column is buildx's grouped summary.
    const short = truncatePlatforms(await localLabels([]));
    assert.match(
      ok(['ls']),
      new RegExp(`running   ${ENGINE_VERSION}   ${short.replace(/[()+*]/g, '\\$&')}\n$`),
    );
  });

  test('create → use → ls → inspect → rm round trip', async () => {
    assert.equal(
      ok(['create', '--name', 'multi', '--platform', 'linux/arm64', '--platform', 'linux/s390x']),
      'multi\n',
    );
    const file = join(root, 'builders', 'multi.json');
    const stored = decodeBuilder(readFileSync(file, 'utf8'), file);
    assert.equal(stored.nodes[0]!.name, 'multi0');

    // Not current until `use`.
    assert.match(ok(['ls']), /^multi {9}local\n/m);
    assert.equal(ok(['use', 'multi']), '');
    assert.equal(readFileSync(join(root, 'builders', 'current'), 'utf8'), 'multi\n');

    const labels = (await localLabels(['linux/arm64', 'linux/s390x'])).join(', ');
    const dflt = (await localLabels([])).join(', ');
    assert.equal(
      ok(['ls', '--no-trunc']),
      'NAME/NODE     DRIVER/ENDPOINT   STATUS    BUILDKIT          PLATFORMS\n' +
        'multi*        local\n' +
        ` \\_ multi0     \\_ local         running   ${ENGINE_VERSION}   ${labels}\n` +
        'default       local\n' +
        ` \\_ default    \\_ default       running   ${ENGINE_VERSION}   ${dflt}\n`,
    );
    const inspect =
      'Name:          multi\n' +
      'Driver:        local\n' +
      `Last Activity: ${formatActivity(stored.lastActivity!)}\n` +
      '\n' +
      'Nodes:\n' +
      'Name:             multi0\n' +
      'Endpoint:         local\n' +
      'Status:           running\n' +
      `BuildKit version: ${ENGINE_VERSION}\n` +
      `Platforms:        ${labels}\n`;
    // The current builder, by name, and with --bootstrap (nothing to start for local).
    assert.equal(ok(['builder', 'inspect']), inspect);
    assert.equal(ok(['builder', 'inspect', 'multi']), inspect);
    assert.equal(ok(['builder', 'inspect', '--bootstrap', '--builder', 'multi']), inspect);
    // The builder variables pick another one.
    assert.match(
      ok(['builder', 'inspect'], { BUILDX_BUILDER: 'default' }),
      /^Name: {3}default\nDriver: local\n\nNodes:\n/,
    );
    assert.match(
      ok(['builder', 'inspect'], { POLYARCH_BUILDER: 'default', BUILDX_BUILDER: 'multi' }),
      /^Name: {3}default\n/,
    );

    // Top-level rm/inspect mean containers now: a builder's name says where it moved.
    for (const verb of ['rm', 'inspect']) {
      const moved = run([verb, 'multi']);
      assert.equal(moved.status, 1, moved.stderr);
      assert.equal(
        moved.stderr,
        `ERROR: "multi" is a builder, not a container: use \`polyarch builder ${verb} multi\`\n`,
      );
    }
    assert.equal(run(['rm', 'no-such-thing']).stderr, 'ERROR: No such container: no-such-thing\n');
    // buildx is the same group, as a buildx user types it.
    assert.equal(ok(['buildx', 'inspect', 'multi']), ok(['builder', 'inspect', 'multi']));
    assert.equal(ok(['buildx', 'ls']), ok(['ls']));
    assert.match(ok(['buildx', 'build', '--help']), /--platform/);
    const r = run(['builder', 'rm', 'multi']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, 'multi removed\n');
    assert.deepEqual(
      readdirSync(join(root, 'builders')).filter((f) => !f.startsWith('.')),
      [],
    );
    assert.match(ok(['ls']), /^default\* {6}local\n/m);
  });

  test('a generated name is printed and usable; rm with no name removes the current builder', () => {
    const name = ok(['create', '--use']).trim();
    assert.match(name, /^[a-z]+_[a-z]+\d*$/);
    assert.match(ok(['builder', 'inspect']), new RegExp(`^Name: {10}${name}\n`));
    const r = run(['builder', 'rm']);
    assert.equal(r.stderr, `${name} removed\n`);
    assert.match(ok(['builder', 'inspect']), /^Name: {3}default\n/);
  });

  test('--append and --node manage nodes of an ssh builder; unreachable ssh nodes are inactive', () => {
    assert.equal(ok(['create', '--name', 'far', '--driver', 'ssh', 'ssh://ci@arm1']), 'far\n');
    assert.equal(
      ok([
        'create',
        '--name',
        'far',
        '--append',
        '--node',
        'power',
        '--platform',
        'linux/ppc64le',
        'ssh://ci@p9:2222',
      ]),
      'far\n',
    );
    const ls = run(['ls']);
    assert.equal(ls.status, 0, ls.stderr);
    assert.deepEqual(ls.stdout.split('\n').slice(0, 4), [
      'NAME/NODE     DRIVER/ENDPOINT        STATUS     BUILDKIT          PLATFORMS',
      'far           ssh',
      ' \\_ far0       \\_ ssh://ci@arm1      inactive',
      ' \\_ power      \\_ ssh://ci@p9:2222   inactive                     linux/ppc64le*',
    ]);
    // A node that cannot be reached is inactive (buildx's remote driver says so too), not an error.
    assert.equal(ls.stderr, '');
    assert.equal(
      ok(['builder', 'inspect', 'far']).split('\n\nNodes:\n')[1],
      'Name:     far0\n' +
        'Endpoint: ssh://ci@arm1\n' +
        'Status:   inactive\n' +
        '\n' +
        'Name:      power\n' +
        'Endpoint:  ssh://ci@p9:2222\n' +
        'Status:    inactive\n' +
        'Platforms: linux/ppc64le*\n',
    );
    const boot = run(['builder', 'inspect', '--bootstrap', 'far']);
    assert.equal(boot.status, 1);
    // What the system ssh client said (these hosts do not resolve), on one line naming the node.
    assert.match(
      boot.stderr,
      /^ERROR: bootstrapping builder far: node far0 \(ssh:\/\/ci@arm1\): ssh exited \(255\): [^\n]+\n$/,
    );
    assert.equal(boot.stdout, '');
    // JSON: one object per builder and line.
    const lines = ok(['ls', '--format', 'json'])
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((b) => [b.Name, b.Driver, b.Current]),
      [
        ['far', 'ssh', false],
        ['default', 'local', true],
      ],
    );
    assert.deepEqual(lines[0].Nodes[1], {
      Name: 'power',
      Endpoint: 'ssh://ci@p9:2222',
      Pinned: ['linux/ppc64le'],
      Status: 'inactive',
      Version: '',
      Platforms: [{ architecture: 'ppc64le', os: 'linux' }],
    });
    assert.equal(lines[1].Nodes[0].Status, 'running');
    assert.deepEqual(lines[1].Nodes[0].Platforms[0], {
      architecture: hostPlatform().architecture,
      os: 'linux',
    });
    // Go templates with buildx's fields: a row per builder, then one per node.
    assert.equal(
      ok(['ls', '--format', '{{.Name}}|{{.DriverEndpoint}}|{{.Status}}|{{.Builder.Current}}']),
      'far|ssh||false\nfar0|ssh://ci@arm1|inactive|false\npower|ssh://ci@p9:2222|inactive|false\n' +
        'default|local||true\ndefault|default|running|true\n',
    );
    const table = run(['ls', '--format', 'table {{.Name}}\t{{.Status}}']);
    assert.equal(table.status, 0, table.stderr);
    assert.match(
      table.stdout,
      /^NAME\/NODE +STATUS\nfar +\n \\_ far0 +inactive\n \\_ power +inactive\ndefault\* +\n \\_ default +running\n$/,
    );
    assert.equal(table.stderr, '');
    const bad = run(['ls', '--format', '{{.Name}} {{.Nodes}}']);
    assert.equal(bad.status, 1);
    assert.equal(
      bad.stderr,
      `ERROR: template parsing error: template: :1:12: executing "" at <.Nodes>: can't evaluate field Nodes in type *commands.lsContext\n`,
    );
    // --all-inactive removes builders with no running node, never default.
    const rm = run(['builder', 'rm', '--all-inactive']);
    assert.equal(rm.status, 0, rm.stderr);
    assert.equal(rm.stderr, 'far removed\n');
  });

  const errors: [string, string[], number, string][] = [
    ['inspect of an unknown builder', ['builder', 'inspect', 'nope'], 1, 'ERROR: no builder "nope" found\n'],
    ['use of an unknown builder', ['use', 'nope'], 1, 'ERROR: no builder "nope" found\n'],
    ['rm of an unknown builder', ['builder', 'rm', 'nope'], 1, 'ERROR: no builder "nope" found\n'],
    [
      'rm default',
      ['builder', 'rm', 'default'],
      1,
      'ERROR: default is a reserved name and cannot be removed\n',
    ],
    [
      'rm of the current default',
      ['builder', 'rm'],
      1,
      'ERROR: default is a reserved name and cannot be removed\n',
    ],
    [
      'unknown driver',
      ['create', '--driver', 'kubernetes'],
      1,
      'ERROR: unknown driver "kubernetes": want one of local, remote, ssh\n',
    ],
    [
      'bad platform',
      ['create', '--platform', 'linux/'],
      1,
      'ERROR: invalid platform "linux/": architecture is empty\n',
    ],
    [
      'bad name',
      ['create', '--name', 'a/b'],
      2,
      'ERROR: invalid builder name "a/b": it must start with a letter and contain only letters, digits and ._-\n',
    ],
    [
      'reserved name',
      ['create', '--name', 'default'],
      2,
      'ERROR: default is a reserved name and cannot be used to create a builder\n',
    ],
    [
      'ssh endpoint with the local driver',
      ['create', 'ssh://h'],
      2,
      'ERROR: invalid endpoint "ssh://h" for the local driver: it only has "local" (use --driver ssh for ssh://...)\n',
    ],
    [
      'rm names with --all-inactive',
      ['builder', 'rm', '--all-inactive', 'x'],
      2,
      'ERROR: cannot give builder names with --all-inactive\n',
    ],
  ];
  for (const [name, args, status, stderr] of errors)
    test(`error: ${name}`, () => {
      const r = run(args);
      assert.equal(r.status, status, r.stderr);
      assert.equal(r.stderr, stderr);
    });

  test('error: a duplicate name is refused and the builder is left unchanged', () => {
    ok(['create', '--name', 'dup', '--platform', 'linux/arm64']);
    const file = join(root, 'builders', 'dup.json');
    const before = readFileSync(file, 'utf8');
    const r = run(['create', '--name', 'dup', '--platform', 'linux/s390x']);
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      'ERROR: existing instance for "dup" but no append mode, specify the node name to make changes for existing instances\n',
    );
    assert.equal(readFileSync(file, 'utf8'), before);
    assert.equal(run(['create', '--bad-flag']).status, 2);
    ok(['builder', 'rm', 'dup']);
  });

  test('writers killed at random moments never leave a builder file unreadable', async () => {
    // A child rewrites one builder as fast as it can (changing its pinned platforms); we
    // SIGKILL it mid-stream, then check the stored file and that the next writer proceeds
    // (the dead writer's lock is broken, its temp file ignored).
    ok(['create', '--name', 'busy']);
    const lib = pathToFileURL(join(repo, 'dist', 'src', 'builder', 'index.js')).href;
    const script = `
      const { createBuilder } = await import(${JSON.stringify(lib)});
      const sets = ['linux/arm64', 'linux/arm/v7,linux/ppc64le', 'linux/s390x,linux/riscv64,linux/386'];
      process.stdout.write('go\\n');
      for (let i = 0; ; i++) await createBuilder({ name: 'busy', node: 'busy0', platforms: [sets[i % 3]] });
    `;
    const file = join(root, 'builders', 'busy.json');
    for (let round = 0; round < 5; round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        env: baseEnv,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((res) => child.stdout.once('data', () => res()));
      await sleep(20 + Math.floor(Math.random() * 60));
      child.kill('SIGKILL');
      await new Promise((res) => child.once('exit', res));
      const b = decodeBuilder(readFileSync(file, 'utf8'), file);
      assert.equal(b.name, 'busy');
      assert.ok([1, 2, 3].includes(b.nodes[0]!.platforms.length));
      const ls = run(['ls']);
      assert.equal(ls.status, 0);
      assert.doesNotMatch(ls.stderr, /Cannot load/);
      assert.equal(
        ok(['create', '--name', 'busy', '--node', 'busy0', '--platform', 'linux/arm64']),
        'busy\n',
      );
    }
    ok(['builder', 'rm', 'busy']);
  });
});
