import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ContainerConfig } from '../oci/types.js';
import {
  buildSpec,
  clampRlimits,
  DEFAULT_PATH,
  mergeEnv,
  parseLimits,
  parseVolume,
  resolveArgs,
  resolveUserFrom,
} from './spec.js';

describe('Entrypoint and Cmd (Docker rules)', () => {
  const cases: [string, ContainerConfig | undefined, string[] | undefined, string[] | undefined, string[]][] =
    [
      ['image Cmd only', { Cmd: ['sh'] }, undefined, undefined, ['sh']],
      ['args replace Cmd', { Cmd: ['sh'] }, ['ls', '-l'], undefined, ['ls', '-l']],
      [
        'Entrypoint + Cmd',
        { Entrypoint: ['/init'], Cmd: ['--help'] },
        undefined,
        undefined,
        ['/init', '--help'],
      ],
      ['args after Entrypoint', { Entrypoint: ['/init'], Cmd: ['--help'] }, ['x'], undefined, ['/init', 'x']],
      ['empty args keep Cmd', { Cmd: ['sh'] }, [], undefined, ['sh']],
      [
        '--entrypoint drops image Cmd',
        { Entrypoint: ['/init'], Cmd: ['--help'] },
        undefined,
        ['env'],
        ['env'],
      ],
      ['--entrypoint with args', { Entrypoint: ['/init'], Cmd: ['a'] }, ['b'], ['echo'], ['echo', 'b']],
      ['--entrypoint "" clears it', { Entrypoint: ['/init'], Cmd: ['a'] }, ['id'], [''], ['id']],
      ['null fields', { Entrypoint: null, Cmd: null }, ['true'], undefined, ['true']],
    ];
  for (const [name, cfg, args, ep, want] of cases)
    test(name, () => assert.deepEqual(resolveArgs(cfg, args, ep), want));
  test('nothing to run is an error', () =>
    assert.throws(() => resolveArgs({ Entrypoint: ['/x'] }, undefined, ['']), /no command specified/));
});

describe('environment', () => {
  test('overrides by key, keeps order', () =>
    assert.deepEqual(mergeEnv(['A=1', 'B=2'], ['B=3', 'C=4=5'], ['junk', '=x']), ['A=1', 'B=3', 'C=4=5']));
  test('PATH default, HOSTNAME and HOME added', () => {
    const s = buildSpec({ rootfs: '/r', args: ['true'], hostname: 'h1', config: { Env: ['FOO=bar'] } });
    assert.deepEqual(s.process.env, [`PATH=${DEFAULT_PATH}`, 'HOSTNAME=h1', 'FOO=bar', 'HOME=/']);
  });
  test('image PATH kept, user env wins', () => {
    const s = buildSpec({ rootfs: '/r', args: ['true'], config: { Env: ['PATH=/x', 'A=1'] }, env: ['A=2'] });
    assert.equal(s.process.env[0], 'PATH=/x');
    assert.ok(s.process.env.includes('A=2'));
    assert.ok(!s.process.env.includes('A=1'));
  });
});

describe('users', () => {
  const passwd =
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n';
  const group = 'root:x:0:\nbob:x:1000:\nwheel:x:10:bob,alice\naudio:x:29:bob\nnogroup:x:65534:\n';
  const cases: [string, string, { uid: number; gid: number; additionalGids: number[]; home: string }][] = [
    ['empty = root', '', { uid: 0, gid: 0, additionalGids: [], home: '/root' }],
    ['name', 'nobody', { uid: 65534, gid: 65534, additionalGids: [], home: '/nonexistent' }],
    ['name with member groups', 'bob', { uid: 1000, gid: 1000, additionalGids: [10, 29], home: '/home/bob' }],
    ['uid known', '1000', { uid: 1000, gid: 1000, additionalGids: [10, 29], home: '/home/bob' }],
    ['uid unknown', '4242', { uid: 4242, gid: 0, additionalGids: [], home: '/' }],
    ['uid:gid', '4242:4343', { uid: 4242, gid: 4343, additionalGids: [], home: '/' }],
    ['name:group', 'bob:wheel', { uid: 1000, gid: 10, additionalGids: [29], home: '/home/bob' }],
  ];
  for (const [name, u, want] of cases)
    test(name, () => assert.deepEqual(resolveUserFrom(u, passwd, group), want));
  const bad: [string, RegExp][] = [
    ['nosuch', /unable to find user nosuch: no matching entries in passwd file/],
    ['bob:nosuch', /unable to find group nosuch/],
    [':10', /user part is empty/],
    ['bob:', /group part is empty/],
  ];
  for (const [u, msg] of bad)
    test(`rejects ${JSON.stringify(u)}`, () => assert.throws(() => resolveUserFrom(u, passwd, group), msg));
});

describe('volumes', () => {
  test('rw and ro', () => {
    assert.deepEqual(parseVolume('/a:/b'), {
      type: 'bind',
      source: '/a',
      destination: '/b',
      readonly: false,
    });
    assert.deepEqual(parseVolume('/a:/b:ro'), {
      type: 'bind',
      source: '/a',
      destination: '/b',
      readonly: true,
    });
  });
  const bad: [string, RegExp][] = [
    ['/a', /expected SRC:DST/],
    ['name:/b', /absolute host path/],
    ['/a:b', /destination must be absolute/],
    ['/a:/b:rx', /mode must be ro or rw/],
  ];
  for (const [v, msg] of bad) test(`rejects ${v}`, () => assert.throws(() => parseVolume(v), msg));
});

describe('rlimits', () => {
  const limits = parseLimits(
    'Limit                     Soft Limit           Hard Limit           Units     \n' +
      'Max cpu time              unlimited            unlimited            seconds   \n' +
      'Max open files            20000                20000                files     \n' +
      'Max locked memory         8388608              8388608              bytes     \n',
  );
  test('parses /proc/self/limits', () =>
    assert.deepEqual(limits, { RLIMIT_CPU: Infinity, RLIMIT_NOFILE: 20000, RLIMIT_MEMLOCK: 8388608 }));
  test('never above the host hard limit', () =>
    assert.deepEqual(clampRlimits([{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }], limits), [
      { type: 'RLIMIT_NOFILE', soft: 20000, hard: 20000 },
    ]));
  test('the spec default is clamped', () => {
    const s = buildSpec({ rootfs: '/r', args: ['true'], hostLimits: limits });
    assert.deepEqual(s.process.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 20000 }]);
  });
});

describe('spec shape', () => {
  test('defaults: host network, root, /, Docker caps and masks', () => {
    const s = buildSpec({ rootfs: '/r', args: ['true'] });
    assert.deepEqual(
      s.linux.namespaces.map((n) => n.type),
      ['pid', 'ipc', 'uts', 'mount'],
    );
    assert.equal(s.process.cwd, '/');
    assert.deepEqual(s.process.user, { uid: 0, gid: 0, additionalGids: [] });
    assert.equal(s.process.terminal, false);
    assert.equal(s.process.noNewPrivileges, true);
    assert.ok(s.process.capabilities.bounding.includes('CAP_NET_RAW'));
    assert.ok(!s.process.capabilities.bounding.includes('CAP_SYS_ADMIN'));
    assert.ok(s.linux.maskedPaths.includes('/proc/kcore'));
    assert.deepEqual(
      s.mounts.map((m) => m.destination),
      ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup'],
    );
  });
  test('network none, workdir, binds, tmpfs, etc files', () => {
    const s = buildSpec({
      rootfs: '/r',
      args: ['true'],
      network: 'none',
      config: { WorkingDir: 'srv/app/' },
      mounts: [parseVolume('/host:/data:ro'), { type: 'tmpfs', destination: '/scratch' }],
      etcFiles: { hosts: '/b/hosts' },
    });
    assert.ok(s.linux.namespaces.some((n) => n.type === 'network'));
    assert.equal(s.process.cwd, '/srv/app');
    assert.deepEqual(s.mounts.slice(-3), [
      { destination: '/etc/hosts', type: 'bind', source: '/b/hosts', options: ['rbind', 'rprivate'] },
      { destination: '/data', type: 'bind', source: '/host', options: ['rbind', 'rprivate', 'ro'] },
      { destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    ]);
  });
});
