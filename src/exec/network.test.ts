import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, test } from 'node:test';
import { humanDuration } from '../util/gofmt.js';
import { normalizeSignal } from './containers.js';
import {
  assignHostPorts,
  exposedPorts,
  formatPort,
  type PortMapping,
  parseNetworkMode,
  parsePublish,
  planPorts,
} from './network.js';

describe('parsePublish: docker run -p', () => {
  const good: [string, PortMapping][] = [
    ['80', { hostPort: 0, containerPort: 80, proto: 'tcp' }],
    ['8080:80', { hostPort: 8080, containerPort: 80, proto: 'tcp' }],
    ['127.0.0.1:8080:80', { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, proto: 'tcp' }],
    ['127.0.0.1::80', { hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, proto: 'tcp' }],
    ['0.0.0.0:53:53/udp', { hostPort: 53, containerPort: 53, proto: 'udp' }],
    ['5000:5000/tcp', { hostPort: 5000, containerPort: 5000, proto: 'tcp' }],
    ['[::1]:8080:80', { hostIp: '::1', hostPort: 8080, containerPort: 80, proto: 'tcp' }],
    ['[::1]::80', { hostIp: '::1', hostPort: 0, containerPort: 80, proto: 'tcp' }],
  ];
  for (const [spec, want] of good) test(spec, () => assert.deepEqual(parsePublish(spec), want));

  const bad: [string, RegExp][] = [
    ['', /use \[IP:\]\[HOST:\]CONTAINER/],
    ['80:', /use \[IP:\]\[HOST:\]CONTAINER/],
    ['a:b:c:d', /use \[IP:\]\[HOST:\]CONTAINER/],
    ['http', /container port "http" is not a number/],
    ['0', /container port "0" is not a number from 1 to 65535/],
    ['65536:80', /host port "65536"/],
    ['80/sctp', /protocol "sctp" is not tcp or udp/],
    ['localhost:80:80', /"localhost" is not an IP address/],
    ['300.1.1.1:80:80', /"300\.1\.1\.1" is not an IP address/],
    ['8000-8010:80-90', /port ranges are not supported yet/],
  ];
  for (const [spec, why] of bad)
    test(`rejects "${spec}" with exit 125`, () =>
      assert.throws(
        () => parsePublish(spec),
        (e: Error & { exitCode?: number }) =>
          e.exitCode === 125 && why.test(e.message) && e.message.includes(`"${spec}"`),
      ));
});

test('formatPort is docker ps PORTS', () => {
  assert.equal(formatPort({ hostPort: 8080, containerPort: 80, proto: 'tcp' }), '0.0.0.0:8080->80/tcp');
  assert.equal(
    formatPort({ hostIp: '::1', hostPort: 53, containerPort: 53, proto: 'udp' }),
    '[::1]:53->53/udp',
  );
});

test('network modes: bridge (also "default"), host, none', () => {
  assert.equal(parseNetworkMode('default'), 'bridge');
  for (const m of ['bridge', 'host', 'none']) assert.equal(parseNetworkMode(m), m);
  assert.throws(() => parseNetworkMode('overlay'), /use bridge, host or none/);
});

test('-P takes the exposed ports; -p wins for the same container port', () => {
  const exposed = exposedPorts({ '80/tcp': {}, '53/udp': {}, '9000': {}, bogus: {} });
  // Object key order: integer-like keys ('9000') come first.
  assert.deepEqual(exposed, [
    { hostPort: 0, containerPort: 9000, proto: 'tcp' },
    { hostPort: 0, containerPort: 80, proto: 'tcp' },
    { hostPort: 0, containerPort: 53, proto: 'udp' },
  ]);
  const asked = [parsePublish('8080:80')];
  assert.deepEqual(planPorts(asked, exposed, 0, false).map(formatPort), [
    '0.0.0.0:8080->80/tcp',
    '0.0.0.0:0->9000/tcp',
    '0.0.0.0:0->53/udp',
  ]);
});

test('a matrix: one after the other shares the ports; together, only the first keeps them', () => {
  const asked = [parsePublish('8080:80')];
  assert.equal(planPorts(asked, [], 1, false)[0]!.hostPort, 8080);
  assert.equal(planPorts(asked, [], 0, true)[0]!.hostPort, 8080);
  assert.equal(planPorts(asked, [], 1, true)[0]!.hostPort, 0);
});

test('assignHostPorts picks ports that are free', async () => {
  const [p] = await assignHostPorts([{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, proto: 'tcp' }]);
  assert.ok(p!.hostPort > 0);
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(p!.hostPort, '127.0.0.1', r));
  srv.close();
  const [u] = await assignHostPorts([{ hostPort: 0, containerPort: 53, proto: 'udp' }]);
  assert.ok(u!.hostPort > 0);
});

test('signals as docker takes them; runc names', () => {
  for (const [given, want] of [
    ['KILL', 'KILL'],
    ['sigterm', 'TERM'],
    ['SIGHUP', 'HUP'],
    ['9', '9'],
  ])
    assert.equal(normalizeSignal(given!), want);
  assert.throws(() => normalizeSignal('NOPE'), /invalid signal: NOPE/);
  assert.throws(() => normalizeSignal('99'), /invalid signal: 99/);
});

test('humanDuration: docker units', () => {
  for (const [ms, want] of [
    [400, 'Less than a second'],
    [1000, '1 second'],
    [5000, '5 seconds'],
    [60_000, 'About a minute'],
    [5 * 60_000, '5 minutes'],
    [3600_000, 'About an hour'],
    [3 * 3600_000, '3 hours'],
    [3 * 86400_000, '3 days'],
  ] as const)
    assert.equal(humanDuration(ms), want);
});
