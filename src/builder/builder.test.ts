import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { executablePlatforms, formatPlatform, hostPlatform, parsePlatformList } from '../platform/index.js';
import type { PolyarchError } from '../util/errors.js';
import {
  alignTable,
  type Builder,
  BuilderStore,
  builderPlatforms,
  createBuilder,
  hasRemoteNodes,
  leaveBuilder,
  nodeDriver,
  decodeBuilder,
  defaultBuilder,
  ENGINE_VERSION,
  encodeBuilder,
  formatActivity,
  formatBuilderInspect,
  formatBuilderTable,
  generateName,
  listBuilders,
  type NodeState,
  nodeStates,
  pickNode,
  removeBuilder,
  resolveBuilder,
  sshDriver,
  touchBuilder,
  truncatePlatforms,
  useBuilder,
  validateName,
} from './index.js';

const P = (list: string) => parsePlatformList(list);

describe('validateName', () => {
  const good = ['a', 'multi', 'eager_beaver', 'B-1.x'];
  const bad = ['', '9x', '_a', 'a/b', 'a b', '.hidden', 'a*'];
  for (const n of good) test(`accepts ${JSON.stringify(n)}`, () => assert.equal(validateName(n), n));
  for (const n of bad)
    test(`rejects ${JSON.stringify(n)} with exit code 2`, () =>
      assert.throws(
        () => validateName(n),
        (e: PolyarchError) => e.exitCode === 2 && e.message.startsWith(`invalid builder name "${n}"`),
      ));
});

describe('stored form', () => {
  const b: Builder = {
    name: 'multi',
    driver: 'local',
    nodes: [
      { name: 'multi0', endpoint: 'local', platforms: P('linux/arm64,linux/arm/v7') },
      { name: 'far', endpoint: 'ssh://u@h:22', platforms: [], flags: ['--debug'], driverOpts: { k: 'v' } },
    ],
    dynamic: false,
    lastActivity: '2026-01-02T03:04:05.000Z',
  };

  test('round-trips', () => {
    const back = decodeBuilder(encodeBuilder(b), 'x.json');
    assert.equal(encodeBuilder(back), encodeBuilder(b));
    assert.equal(formatPlatform(back.nodes[0]!.platforms[0]!), 'linux/arm64');
    assert.deepEqual(back.nodes[1]!.driverOpts, { k: 'v' });
  });

  const cases: [string, string, RegExp][] = [
    ['truncated JSON', encodeBuilder(b).slice(0, 40), /^builder file x\.json is invalid: /],
    ['not an object', '42', /not a JSON object/],
    [
      'unknown driver',
      JSON.stringify({ ...JSON.parse(encodeBuilder(b)), driver: 'k8s' }),
      /unknown driver "k8s"/,
    ],
    [
      'no nodes',
      JSON.stringify({ name: 'multi', driver: 'local', nodes: [] }),
      /"nodes" must be a non-empty/,
    ],
    [
      'bad platform',
      JSON.stringify({
        name: 'm',
        driver: 'local',
        nodes: [{ name: 'n', endpoint: 'local', platforms: ['linux/'] }],
      }),
      /node n: invalid platform "linux\/"/,
    ],
  ];
  for (const [name, text, re] of cases)
    test(`rejects ${name}`, () =>
      assert.throws(
        () => decodeBuilder(text, 'x.json'),
        (e: Error) => re.test(e.message),
      ));
});

describe('formatting', () => {
  test('alignTable pads like docker (min 10, padding 3) with no trailing blanks', () => {
    assert.equal(
      alignTable([
        ['A', 'BB', 'C'],
        ['longer-cell', '', ''],
      ]),
      'A             BB        C\nlonger-cell\n',
    );
  });

  const trunc: [string, string[], string][] = [
    ['one platform', ['linux/amd64'], 'linux/amd64'],
    ['groups variants', ['linux/amd64/v3', 'linux/amd64', 'linux/arm64'], 'linux/amd64 (+1), linux/arm64'],
    [
      'stops after four groups',
      [
        'linux/amd64',
        'linux/386',
        'linux/arm64',
        'linux/arm/v7',
        'linux/arm/v6',
        'linux/s390x',
        'linux/ppc64le',
      ],
      'linux/amd64, linux/386, linux/arm64, linux/arm/v7 (+1), (2 more)',
    ],
    ['keeps the pinned mark', ['linux/arm/v6*', 'linux/arm/v7'], 'linux/arm/v7 (+1)'],
  ];
  for (const [name, labels, want] of trunc)
    test(`truncatePlatforms: ${name}`, () => assert.equal(truncatePlatforms(labels), want));

  test('formatActivity is Go time.String in UTC', () => {
    assert.equal(formatActivity('2026-01-02T03:04:05.678Z'), '2026-01-02 03:04:05 +0000 UTC');
  });

  const multi: Builder = {
    name: 'multi',
    driver: 'local',
    nodes: [{ name: 'multi0', endpoint: 'local', platforms: P('linux/arm64') }],
    lastActivity: '2026-01-02T03:04:05.000Z',
  };
  const remote: Builder = {
    name: 'far',
    driver: 'ssh',
    nodes: [{ name: 'far0', endpoint: 'ssh://u@host', platforms: [] }],
  };
  const states = new Map<string, NodeState[]>([
    [
      'multi',
      [
        {
          node: multi.nodes[0]!,
          info: { status: 'running', platforms: P('linux/arm64,linux/amd64'), version: 'v9' },
        },
      ],
    ],
    ['far', [{ node: remote.nodes[0]!, error: new Error('cannot reach\nsecond line') }]],
    [
      'default',
      [
        {
          node: defaultBuilder.nodes[0]!,
          info: { status: 'running', platforms: P('linux/amd64'), version: 'v9' },
        },
      ],
    ],
  ]);

  test('ls table (golden)', () => {
    const { table, problems } = formatBuilderTable([remote, multi, defaultBuilder], 'multi', states);
    assert.equal(
      table,
      [
        'NAME/NODE     DRIVER/ENDPOINT    STATUS    BUILDKIT   PLATFORMS',
        'far           ssh',
        ' \\_ far0       \\_ ssh://u@host   error',
        'multi*        local',
        ' \\_ multi0     \\_ local          running   v9         linux/arm64*, linux/amd64',
        'default       local',
        ' \\_ default    \\_ default        running   v9         linux/amd64',
        '',
      ].join('\n'),
    );
    assert.deepEqual(problems, ['Failed to get status for far (far0): cannot reach']);
  });

  test('inspect text (golden)', () => {
    assert.equal(
      formatBuilderInspect(multi, states.get('multi')!),
      [
        'Name:          multi',
        'Driver:        local',
        'Last Activity: 2026-01-02 03:04:05 +0000 UTC',
        '',
        'Nodes:',
        'Name:             multi0',
        'Endpoint:         local',
        'Status:           running',
        'BuildKit version: v9',
        'Platforms:        linux/arm64*, linux/amd64',
        '',
      ].join('\n'),
    );
    assert.equal(
      formatBuilderInspect(remote, states.get('far')!),
      'Name:   far\nDriver: ssh\n\nNodes:\nName:     far0\nEndpoint: ssh://u@host\nError:    cannot reach\n',
    );
  });

  test('inspect text of a BuildKit node: driver options, labels and GC rules as buildx lays them out', () => {
    const node = {
      name: 'bk0',
      endpoint: 'tcp://10.0.0.2:1234',
      platforms: parsePlatformList(['linux/arm64']),
      driverOpts: { cacert: '/c/ca.pem', servername: 'bk' },
    };
    const b: Builder = { name: 'bk', driver: 'remote', nodes: [node] };
    const text = formatBuilderInspect(b, [
      {
        node,
        info: {
          status: 'running',
          version: 'v0.23.2',
          platforms: parsePlatformList(['linux/arm64', 'linux/amd64']),
          labels: {
            'org.mobyproject.buildkit.worker.snapshotter': 'overlayfs',
            'org.mobyproject.buildkit.worker.executor': 'oci',
          },
          gcPolicy: [
            {
              all: false,
              filters: ['type==source.local,type==exec.cachemount'],
              keepDuration: 172_800e9,
              reservedSpace: 0,
              maxUsedSpace: 512e6,
              minFreeSpace: 0,
            },
            {
              all: true,
              filters: [],
              keepDuration: 0,
              reservedSpace: 10e9,
              maxUsedSpace: 100e9,
              minFreeSpace: 51e9,
            },
          ],
        },
      },
    ]);
    assert.equal(
      text,
      [
        'Name:   bk',
        'Driver: remote',
        '',
        'Nodes:',
        'Name:             bk0',
        'Endpoint:         tcp://10.0.0.2:1234',
        'Driver Options:   cacert="/c/ca.pem" servername="bk"',
        'Status:           running',
        'BuildKit version: v0.23.2',
        'Platforms:        linux/arm64*, linux/amd64',
        'Labels:',
        ' org.mobyproject.buildkit.worker.executor:    oci',
        ' org.mobyproject.buildkit.worker.snapshotter: overlayfs',
        'GC Policy rule#0:',
        ' All:            false',
        ' Filters:        type==source.local,type==exec.cachemount',
        ' Keep Duration:  48h0m0s',
        ' Max Used Space: 488.3MiB',
        'GC Policy rule#1:',
        ' All:            true',
        ' Reserved Space: 9.313GiB',
        ' Max Used Space: 93.13GiB',
        ' Min Free Space: 47.5GiB',
        '',
      ].join('\n'),
    );
  });
});

test('generateName avoids taken names and reads as adjective_noun', () => {
  const taken = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const n = generateName((x) => taken.has(x));
    assert.match(n, /^[a-z]+_[a-z]+\d*$/);
    assert.ok(!taken.has(n));
    validateName(n);
    taken.add(n);
  }
});

describe('operations on a real store', () => {
  let root: string;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'polyarch-builder-'));
    env = { POLYARCH_ROOT: root };
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('default always exists and is current until another is used', async () => {
    const { builders, current } = await listBuilders({ env });
    assert.deepEqual(
      builders.map((b) => b.name),
      ['default'],
    );
    assert.equal(current, 'default');
    assert.equal((await resolveBuilder(undefined, { env })).name, 'default');
    await assert.rejects(
      removeBuilder('default', { env }),
      /default is a reserved name and cannot be removed/,
    );
  });

  test('create, append, change a node, use, resolve, remove', async () => {
    const now = new Date('2026-05-06T07:08:09Z');
    const a = await createBuilder({ env, name: 'farm', platforms: ['linux/arm64,linux/arm/v7'], now });
    assert.deepEqual(
      a.nodes.map((n) => [n.name, n.endpoint, n.platforms.map((p) => formatPlatform(p)).join(',')]),
      [['farm0', 'local', 'linux/arm64,linux/arm/v7']],
    );
    assert.equal(a.lastActivity, '2026-05-06T07:08:09.000Z');
    // A second local node would share the endpoint.
    await assert.rejects(
      createBuilder({ env, name: 'farm', append: true }),
      /invalid duplicate endpoint local/,
    );
    // Without --append an existing name is refused…
    await assert.rejects(
      createBuilder({ env, name: 'farm' }),
      (e: PolyarchError) => e.code === 'ALREADY_EXISTS' && /existing instance for "farm"/.test(e.message),
    );
    // …but naming its node changes that node.
    const b = await createBuilder({ env, name: 'farm', node: 'farm0', platforms: ['linux/s390x'] });
    assert.deepEqual(
      b.nodes.map((n) => n.platforms.map((p) => formatPlatform(p))),
      [['linux/s390x']],
    );
    // An ssh node may join a local builder; it keeps its own driver.
    const f2 = await createBuilder({ env, name: 'farm', append: true, driver: 'ssh', endpoint: 'ssh://h' });
    assert.deepEqual(
      f2.nodes.map((n) => nodeDriver(f2, n)),
      ['local', 'ssh'],
    );
    await leaveBuilder('farm', 'farm1', { env });
    // --append to a builder that does not exist creates it, as in buildx.
    const r = await createBuilder({
      env,
      name: 'remote',
      driver: 'ssh',
      append: true,
      endpoint: 'ssh://u@h1',
    });
    const r2 = await createBuilder({ env, name: 'remote', append: true, endpoint: 'ssh://u@h2:2222' });
    assert.deepEqual(
      r2.nodes.map((n) => `${n.name}=${n.endpoint}`),
      ['remote0=ssh://u@h1', 'remote1=ssh://u@h2:2222'],
    );
    assert.equal(r.driver, 'ssh');

    assert.equal((await resolveBuilder(undefined, { env })).name, 'default');
    await useBuilder('farm', { env });
    assert.equal((await resolveBuilder(undefined, { env })).name, 'farm');
    assert.equal(
      (await resolveBuilder(undefined, { env: { ...env, BUILDX_BUILDER: 'remote' } })).name,
      'remote',
    );
    assert.equal(
      (
        await resolveBuilder(undefined, {
          env: { ...env, BUILDX_BUILDER: 'remote', POLYARCH_BUILDER: 'default' },
        })
      ).name,
      'default',
    );
    assert.equal(
      (await resolveBuilder('remote', { env: { ...env, POLYARCH_BUILDER: 'farm' } })).name,
      'remote',
    );
    await assert.rejects(resolveBuilder('nope', { env }), {
      code: 'NOT_FOUND',
      message: 'no builder "nope" found',
    });
    await assert.rejects(useBuilder('nope', { env }), { message: 'no builder "nope" found' });

    // Removing the current builder makes default current again.
    await removeBuilder('farm', { env });
    assert.equal((await resolveBuilder(undefined, { env })).name, 'default');
    await assert.rejects(removeBuilder('farm', { env }), { code: 'NOT_FOUND' });
    await removeBuilder('remote', { env });
  });

  const createErrors: [string, Parameters<typeof createBuilder>[0], RegExp, number][] = [
    [
      'unknown driver',
      { name: 'x', driver: 'kubernetes' },
      /^unknown driver "kubernetes": want one of local, remote, ssh$/,
      1,
    ],
    [
      'bad platform',
      { name: 'x', platforms: ['linux/'] },
      /^invalid platform "linux\/": architecture is empty$/,
      1,
    ],
    ['reserved name', { name: 'default' }, /reserved name/, 2],
    ['bad name', { name: 'x/y' }, /^invalid builder name "x\/y"/, 2],
    ['bad node name', { name: 'x', node: '-n' }, /^invalid node name "-n"/, 2],
    ['ssh without endpoint', { name: 'x', driver: 'ssh' }, /needs an endpoint/, 2],
    [
      'ssh with a bad endpoint',
      { name: 'x', driver: 'ssh', endpoint: 'host' },
      /want ssh:\/\/\[user@\]host/,
      2,
    ],
    ['local with an ssh endpoint', { name: 'x', endpoint: 'ssh://h' }, /use --driver ssh/, 2],
  ];
  for (const [name, opts, re, exitCode] of createErrors)
    test(`create refuses: ${name}`, async () => {
      await assert.rejects(
        createBuilder({ ...opts, env }),
        (e: PolyarchError) => re.test(e.message) && e.exitCode === exitCode,
      );
      assert.equal(await new BuilderStore(join(root, 'builders')).get('x'), undefined);
    });

  test('local builder platforms: pinned first, then host, then what runs here', async () => {
    const b = await createBuilder({ env, name: 'pins', platforms: ['linux/riscv64', 'linux/arm64'] });
    const got = (await builderPlatforms(b)).map((p) => formatPlatform(p));
    const here = (await executablePlatforms()).map((p) => formatPlatform(p));
    const want = [...new Set(['linux/riscv64', 'linux/arm64', formatPlatform(hostPlatform()), ...here])];
    assert.deepEqual(got, want);
    const [s] = await nodeStates(b);
    assert.equal(s!.info!.status, 'running');
    assert.equal(s!.info!.version, ENGINE_VERSION);
  });

  test('remote nodes: endpoints and driver options are checked, --leave removes a node', async () => {
    await assert.rejects(
      createBuilder({ env, name: 'bk', driver: 'remote', endpoint: 'http://x:1' }),
      /invalid endpoint "http:\/\/x:1": want unix:\/\/\/path, tcp:\/\/host:port or ssh:/,
    );
    await assert.rejects(
      createBuilder({ env, name: 'bk', driver: 'remote', endpoint: 'tcp://h:1', driverOpts: { image: 'x' } }),
      /invalid driver option "image" for the remote driver/,
    );
    const b = await createBuilder({
      env,
      name: 'bk',
      driver: 'remote',
      endpoint: 'tcp://h:1234',
      driverOpts: { cacert: 'ca.pem', servername: 'bk.test' },
    });
    assert.deepEqual(b.nodes[0]!.driverOpts, {
      cacert: join(process.cwd(), 'ca.pem'),
      servername: 'bk.test',
    });
    await createBuilder({ env, name: 'bk', append: true, endpoint: 'unix:///run/bk.sock' });
    const left = await leaveBuilder('bk', 'bk0', { env });
    assert.deepEqual(
      left.nodes.map((n) => n.name),
      ['bk1'],
    );
    await assert.rejects(leaveBuilder('bk', 'bk0', { env }), /node bk0 not found in builder "bk"/);
    await assert.rejects(leaveBuilder('bk', 'bk1', { env }), /last node of builder "bk"/);
  });

  test('a builder may mix local, remote and ssh nodes (each keeps its driver)', async () => {
    const b0 = await createBuilder({ env, name: 'mixed' });
    assert.equal(hasRemoteNodes(b0), false);
    const b = await createBuilder({
      env,
      name: 'mixed',
      append: true,
      driver: 'remote',
      endpoint: 'tcp://h:1',
    });
    assert.equal(b.driver, 'local');
    assert.deepEqual(
      b.nodes.map((n) => [n.name, nodeDriver(b, n)]),
      [
        ['mixed0', 'local'],
        ['mixed1', 'remote'],
      ],
    );
    assert.equal(hasRemoteNodes(b), true);
    const stored = decodeBuilder(encodeBuilder(b), 'mixed');
    assert.equal(nodeDriver(stored, stored.nodes[1]!), 'remote');
    // Changing the remote node without --driver keeps its driver.
    const c = await createBuilder({ env, name: 'mixed', node: 'mixed1', platforms: ['linux/arm64'] });
    assert.equal(nodeDriver(c, c.nodes[1]!), 'remote');
    const d = await createBuilder({
      env,
      name: 'mixed',
      append: true,
      driver: 'ssh',
      endpoint: 'ssh://h',
      driverOpts: { key: 'id_test', polyarch: '/opt/polyarch/bin/polyarch', root: '/srv/pa' },
    });
    assert.deepEqual(
      d.nodes.map((n) => nodeDriver(d, n)),
      ['local', 'remote', 'ssh'],
    );
    // The identity file is local: made absolute; the others are paths on the node.
    assert.deepEqual(d.nodes[2]!.driverOpts, {
      key: resolve('id_test'),
      polyarch: '/opt/polyarch/bin/polyarch',
      root: '/srv/pa',
    });
    await assert.rejects(
      createBuilder({
        env,
        name: 'mixed',
        append: true,
        driver: 'ssh',
        endpoint: 'ssh://h2',
        driverOpts: { cacert: 'x' },
      }),
      /invalid driver option "cacert" for the ssh driver: want one of key, polyarch, root/,
    );
  });

  test('an ssh node that cannot be reached: inactive for info, a one-line error naming it for bootstrap', async () => {
    // Port 1 on loopback refuses at once (the real ssh client runs).
    const b = await createBuilder({ env, name: 'far', driver: 'ssh', endpoint: 'ssh://u@127.0.0.1:1' });
    const [s] = await nodeStates(b, { bootstrap: true });
    assert.match(s!.error!.message, /^node far0 \(ssh:\/\/u@127\.0\.0\.1:1\): ssh exited \(255\): .*refused/);
    await assert.rejects(builderPlatforms(b), /bootstrapping builder far: node far0 /);
    assert.equal((await sshDriver.info(b.nodes[0]!)).status, 'inactive');
    await assert.rejects(
      createBuilder({ env, name: 'far2', driver: 'ssh', endpoint: 'ssh://u@127.0.0.1:1', bootstrap: true }),
    );
    // A failed bootstrap keeps the builder, as buildx does.
    assert.ok(await new BuilderStore(join(root, 'builders')).get('far2'));
  });

  test('temp files of killed writers and foreign files are ignored; a damaged file is reported, not fatal', async () => {
    const dir = join(root, 'builders');
    const before = encodeBuilder((await resolveBuilder('pins', { env })) as Builder);
    // What a writer killed between create and rename leaves behind (a pid that has exited).
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    await writeFile(join(dir, `.tmp-pins.json-${dead}-deadbeef`), '{"name":"pins","driver":"lo');
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await writeFile(join(dir, 'broken.json'), '{"name":"broken",');
    const errors: string[] = [];
    const { builders } = await listBuilders({ env, onError: (n, e) => errors.push(`${n}: ${e.message}`) });
    assert.ok(!builders.some((b) => b.name.startsWith('.') || b.name === 'broken'));
    assert.ok(builders.some((b) => b.name === 'pins'));
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /^broken: builder file .*broken\.json is invalid: /);
    assert.equal(encodeBuilder((await resolveBuilder('pins', { env })) as Builder), before);
    // The next locked write removes temp files of dead writers (not of live ones) and leaves none of its own.
    await writeFile(join(dir, `.tmp-pins.json-${dead}-0123abcd`), '{');
    await writeFile(join(dir, `.tmp-pins.json-${process.pid}-0123abcd`), '{');
    await createBuilder({ env, name: 'pins', node: 'pins0', platforms: ['linux/ppc64le'] });
    const left = (await readdir(dir)).filter((f) => f.startsWith('.tmp-')).sort();
    assert.deepEqual(left, [`.tmp-pins.json-${process.pid}-0123abcd`]);
    assert.match(await readFile(join(dir, 'pins.json'), 'utf8'), /linux\/ppc64le/);
  });
});

describe('pickNode', () => {
  const node = (name: string, pinned: string) => ({
    name,
    endpoint: name,
    platforms: pinned ? P(pinned) : [],
  });
  const info = (list: string) => ({ status: 'running' as const, platforms: P(list), version: 'v' });
  const states: NodeState[] = [
    { node: node('a', ''), info: info('linux/amd64,linux/arm64') },
    { node: node('b', 'linux/arm64'), info: info('linux/arm64,linux/arm/v7') },
    { node: node('c', 'linux/s390x'), error: new Error('down') },
    { node: node('d', ''), info: info('linux/s390x,linux/ppc64le') },
  ];
  const cases: [string, string, string | undefined][] = [
    ['a pinned node wins over an earlier one that can build it', 'linux/arm64', 'b'],
    ['otherwise the first node that can build it', 'linux/amd64', 'a'],
    ['a node with an error is skipped even if pinned', 'linux/s390x', 'd'],
    ['normalised forms match', 'linux/aarch64', 'b'],
    ['nobody builds it', 'linux/riscv64', undefined],
  ];
  for (const [name, want, got] of cases)
    test(name, () => assert.equal(pickNode(states, want)?.node.name, got));
});

test('touchBuilder records activity and keeps nodes added meanwhile', async () => {
  const root = await mkdtemp(join(tmpdir(), 'polyarch-builder-'));
  try {
    const env = { POLYARCH_ROOT: root };
    const old = await createBuilder({
      env,
      name: 'far',
      driver: 'ssh',
      endpoint: 'ssh://h1',
      now: new Date(0),
    });
    await createBuilder({ env, name: 'far', append: true, endpoint: 'ssh://h2', now: new Date(0) });
    const t = await touchBuilder(old, { env, now: new Date('2026-03-04T05:06:07Z') });
    assert.equal(t.lastActivity, '2026-03-04T05:06:07.000Z');
    assert.equal(t.nodes.length, 2);
    assert.equal((await resolveBuilder('far', { env })).lastActivity, '2026-03-04T05:06:07.000Z');
    assert.equal(await touchBuilder(defaultBuilder, { env }), defaultBuilder);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
