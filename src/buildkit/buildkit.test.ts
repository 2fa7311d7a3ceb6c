import assert from 'node:assert/strict';
import { lstatSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GO_MODE, goFileMode, walkContext } from './filesync.js';
import { parseEndpoint, sshArgs } from './dial.js';
import { Packet, SolveRequest, StatusResponse } from './messages.js';
import { Deframer, frame } from './grpc.js';
import { decode, encode } from './proto.js';

describe('protobuf codec', () => {
  test('round-trips maps, repeated messages, nested messages and 64-bit values', () => {
    const req = {
      ref: 'abc',
      session: 's',
      frontend: 'dockerfile.v0',
      frontendAttrs: { platform: 'linux/arm64,linux/amd64', 'build-arg:X': 'é' },
      exporters: [{ type: 'image', attrs: { push: 'true', name: 'r/x' } }],
      entitlements: ['network.host'],
      enableSessionExporter: true,
    };
    const back = decode(SolveRequest, encode(SolveRequest, req));
    assert.equal(back.ref, 'abc');
    assert.deepEqual(back.frontendAttrs, req.frontendAttrs);
    assert.deepEqual(back.exporters, req.exporters);
    assert.deepEqual(back.entitlements, ['network.host']);
    assert.equal(back.enableSessionExporter, true);
    assert.equal(back.internal, false);
    const p = decode(
      Packet,
      encode(Packet, {
        type: 2,
        id: 4_000_000_000,
        stat: { path: 'a', modTime: 1_700_000_000_123_456_000, mode: GO_MODE.dir + 0o755 },
      }),
    );
    assert.equal(p.id, 4_000_000_000);
    assert.equal(p.stat.mode, GO_MODE.dir + 0o755);
    assert.ok(Math.abs(p.stat.modTime - 1_700_000_000_123_456_000) < 1024);
  });

  test('known wire bytes: field 1 string, field 4 varint', () => {
    // StatusResponse { vertexes: [{ digest: "d", cached: true }] }
    const bytes = encode(StatusResponse, { vertexes: [{ digest: 'd', cached: true }] });
    assert.deepEqual([...bytes], [0x0a, 0x05, 0x0a, 0x01, 0x64, 0x20, 0x01]);
    assert.equal(decode(StatusResponse, bytes).vertexes[0].cached, true);
  });

  test('a truncated message is an error, not garbage', () => {
    assert.throws(() => decode(SolveRequest, Buffer.from([0x0a, 0x05, 0x61])), /malformed protobuf/);
  });
});

describe('gRPC framing', () => {
  test('messages split across chunks at every byte, and several in one chunk, come out whole', () => {
    const msgs = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(70_000, 7), Buffer.from('last')];
    const wire = Buffer.concat(msgs.map((m) => frame(m)));
    for (const step of [1, 3, 5, 4096, wire.length]) {
      const d = new Deframer();
      const got: Buffer[] = [];
      for (let i = 0; i < wire.length; i += step)
        d.push(wire.subarray(i, i + step), (p) => got.push(Buffer.from(p)));
      assert.deepEqual(got, msgs, `chunks of ${step}`);
    }
  });

  test('compressed or oversized messages are refused', () => {
    assert.throws(() => new Deframer().push(Buffer.from([1, 0, 0, 0, 0]), () => {}), /compressed/);
    assert.throws(
      () => new Deframer().push(Buffer.from([0, 0xff, 0, 0, 0]), () => {}),
      /over the 16 MiB limit/,
    );
  });
});

describe('endpoints', () => {
  test('parses unix, tcp and ssh; refuses others', () => {
    assert.deepEqual(parseEndpoint('unix:///run/buildkit/buildkitd.sock'), {
      kind: 'unix',
      path: '/run/buildkit/buildkitd.sock',
      raw: 'unix:///run/buildkit/buildkitd.sock',
    });
    assert.equal(parseEndpoint('tcp://10.0.0.2:1234').kind, 'tcp');
    const ssh = parseEndpoint('ssh://me@host.example:2222/run/bk.sock');
    assert.equal(ssh.kind, 'ssh');
    assert.deepEqual(sshArgs(ssh as Extract<typeof ssh, { kind: 'ssh' }>), [
      '-o',
      'ConnectTimeout=10',
      '-l',
      'me',
      '-p',
      '2222',
      '--',
      'host.example',
      'buildctl',
      '--addr',
      'unix:///run/bk.sock',
      'dial-stdio',
    ]);
    assert.throws(() => parseEndpoint('http://x:1'), /invalid endpoint/);
    assert.throws(() => parseEndpoint('tcp://x'), /invalid endpoint/);
    assert.throws(() => parseEndpoint('unix://rel/path'), /invalid endpoint/);
  });
});

describe('fsutil walk', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'polyarch-fsutil-'));
    await mkdir(join(dir, 'a/x'), { recursive: true });
    await mkdir(join(dir, 'a-b'));
    await mkdir(join(dir, 'logs/keep'), { recursive: true });
    await writeFile(join(dir, 'a/x/f'), 'f');
    await writeFile(join(dir, 'a-b/g'), 'g');
    await writeFile(join(dir, 'logs/1.log'), '1');
    await writeFile(join(dir, 'logs/keep/k.log'), 'k');
    await writeFile(join(dir, 'Dockerfile'), 'FROM scratch');
    await symlink('Dockerfile', join(dir, 'Dockerfile.link'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("fsutil's order: parents first, siblings bytewise per component", async () => {
    const paths = (await walkContext(dir)).map((e) => e.path);
    assert.deepEqual(paths, [
      'Dockerfile',
      'Dockerfile.link',
      'a',
      'a/x',
      'a/x/f',
      'a-b',
      'a-b/g',
      'logs',
      'logs/1.log',
      'logs/keep',
      'logs/keep/k.log',
    ]);
  });

  test('exclude patterns with .dockerignore semantics, re-included paths bring their parents', async () => {
    const paths = (await walkContext(dir, { excludes: ['logs', '!logs/keep/k.log', 'a*'] })).map(
      (e) => e.path,
    );
    assert.deepEqual(paths, ['Dockerfile', 'Dockerfile.link', 'logs', 'logs/keep', 'logs/keep/k.log']);
  });

  test('include patterns and followpaths (a symlink brings its target)', async () => {
    const paths = (await walkContext(dir, { includes: ['a/x'] })).map((e) => e.path);
    assert.deepEqual(paths, ['a', 'a/x', 'a/x/f']);
    const follow = await walkContext(dir, {
      includes: ['Dockerfile.link'],
      followPaths: ['Dockerfile.link'],
    });
    assert.deepEqual(
      follow.map((e) => e.path),
      ['Dockerfile', 'Dockerfile.link'],
    );
    assert.equal(follow[1]!.stat.linkname, 'Dockerfile');
    assert.equal(follow[1]!.stat.mode, GO_MODE.symlink + 0o777);
  });

  test('Go FileMode bits, not st_mode', () => {
    assert.equal(goFileMode(lstatSync('/tmp')), GO_MODE.dir + GO_MODE.sticky + 0o777);
    assert.equal(goFileMode(lstatSync('/dev/null')), GO_MODE.device + GO_MODE.charDevice + 0o666);
  });
});
