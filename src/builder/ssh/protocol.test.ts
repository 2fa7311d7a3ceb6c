import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { FrameReader, FrameWriter, greeting, MAX_DATA, NODE_PROTOCOL, parseGreeting } from './protocol.js';

describe('ssh node protocol', () => {
  test('greeting line, then messages and data frames round-trip in order', async () => {
    const pipe = new PassThrough();
    const w = new FrameWriter(pipe);
    const r = new FrameReader(pipe);
    pipe.write(greeting('1.2.3'));
    const big = Buffer.alloc(MAX_DATA * 2 + 7, 0x5a);
    await w.send({ t: 'file', digest: 'sha256:x', size: big.length });
    const sent = w.data([big]);
    const line = await r.line();
    assert.deepEqual(parseGreeting(line!), { protocol: NODE_PROTOCOL, version: 'polyarch/v1.2.3' });
    assert.deepEqual(await r.message(), { t: 'file', digest: 'sha256:x', size: big.length });
    const chunks: Buffer[] = [];
    for await (const c of r.data(big.length)) chunks.push(c);
    assert.equal(await sent, big.length);
    // Split into frames no larger than MAX_DATA, reassembled byte for byte.
    assert.equal(chunks.length, 3);
    assert.ok(Buffer.concat(chunks).equals(big));
    w.end();
    assert.equal(await r.message(), undefined);
  });

  test('a stream that ends mid-frame, an oversized or unknown frame, non-JSON: errors, no hang', async () => {
    const cases: [Buffer, RegExp][] = [
      [Buffer.from([0, 0, 0, 10, 0, 0x7b]), /closed the connection mid-frame/],
      [Buffer.from([0xff, 0, 0, 0, 1]), /over the limit/],
      [Buffer.from([0, 0, 0, 1, 7, 0]), /unknown frame kind 7/],
      [Buffer.concat([Buffer.from([0, 0, 0, 3, 0]), Buffer.from('abc')]), /not JSON/],
      [Buffer.concat([Buffer.from([0, 0, 0, 2, 0]), Buffer.from('{}')]), /has no type/],
    ];
    for (const [bytes, want] of cases) {
      const pipe = new PassThrough();
      const r = new FrameReader(pipe);
      pipe.end(bytes);
      await assert.rejects(r.message(), want);
    }
  });

  test('data that does not match its announced size is refused', async () => {
    const pipe = new PassThrough();
    const w = new FrameWriter(pipe);
    const r = new FrameReader(pipe);
    await w.data([Buffer.from('12345')]);
    w.end();
    const read = async () => {
      for await (const _ of r.data(3));
    };
    await assert.rejects(read(), /does not match its announced size/);
  });

  test('greetings that are not a polyarch node', () => {
    assert.equal(parseGreeting('Welcome to Ubuntu'), undefined);
    assert.equal(parseGreeting('POLYARCH-NODE/x polyarch/v1'), undefined);
    assert.deepEqual(parseGreeting('POLYARCH-NODE/7 polyarch/v9.0.0\r'), {
      protocol: 7,
      version: 'polyarch/v9.0.0',
    });
  });
});
