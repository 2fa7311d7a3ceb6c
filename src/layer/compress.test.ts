import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import {
  type CompressOptions,
  compressLayer,
  detectCompression,
  layerMediaType,
  openLayer,
} from './compress.js';

const tmp = mkdtempSync(join(tmpdir(), 'polyarch-gz-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Deterministic mixed data: text-like runs and pseudo-random bytes (an LCG), so both compress differently. */
function sample(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (i >> 12) % 2 === 0 ? 97 + ((x >>> 16) % 8) : x >>> 24;
  }
  return b;
}

function sha(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

async function compressToFile(data: Buffer, name: string, opts: CompressOptions, chunk = 70_001) {
  const file = join(tmp, name);
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) chunks.push(data.subarray(i, i + chunk));
  const r = await compressLayer(Readable.from(chunks), createWriteStream(file), opts);
  return { ...r, bytes: readFileSync(file), file };
}

describe('parallel gzip', () => {
  const data = sample(3 * 1024 * 1024 + 12345);

  test('same bytes for every thread count and input chunking; gunzip reads it', async () => {
    const runs = [];
    for (const [threads, chunk] of [
      [0, 70_001],
      [1, 4096],
      [2, 1_000_000],
      [3, 65_536],
    ] as const)
      runs.push(await compressToFile(data, `t${threads}.gz`, { threads }, chunk));
    for (const r of runs) {
      assert.deepEqual(r.bytes, runs[0]!.bytes);
      assert.equal(r.digest, sha(r.bytes));
      assert.equal(r.size, r.bytes.length);
      assert.equal(r.diffId, sha(data));
      assert.equal(r.uncompressedSize, data.length);
    }
    assert.deepEqual(gunzipSync(runs[0]!.bytes), data);
    execFileSync('gunzip', ['-t', runs[0]!.file]);
    assert.deepEqual(execFileSync('gunzip', ['-c', runs[0]!.file], { maxBuffer: 64 << 20 }), data);
    // header: no name, mtime 0
    assert.deepEqual([...runs[0]!.bytes.subarray(0, 8)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
    assert.ok(runs[0]!.bytes.length < data.length * 0.8, 'it compresses');
  });

  test('concurrent compressions share the worker pool and each gets its own bytes', async () => {
    const alone = [
      await compressToFile(data, 'c1.gz', { threads: 2 }),
      await compressToFile(data, 'c2.gz', { threads: 2, blockSize: 64 * 1024 }),
      await compressToFile(data.subarray(100), 'c3.gz', { threads: 2, level: 1 }),
    ];
    const together = await Promise.all([
      compressToFile(data, 'd1.gz', { threads: 2 }),
      compressToFile(data, 'd2.gz', { threads: 2, blockSize: 64 * 1024 }),
      compressToFile(data.subarray(100), 'd3.gz', { threads: 2, level: 1 }),
    ]);
    for (const [i, r] of together.entries()) {
      assert.deepEqual(r.bytes, alone[i]!.bytes, `compression ${i + 1}`);
      assert.equal(r.digest, sha(r.bytes));
    }
  });

  test('hashOutput: false leaves the blob digest to the output, with the same bytes', async () => {
    const file = join(tmp, 'nohash.gz');
    const r = await compressLayer(Readable.from([data]), createWriteStream(file), {
      threads: 2,
      hashOutput: false,
    });
    assert.equal('digest' in r, false);
    const bytes = readFileSync(file);
    assert.equal(r.size, bytes.length);
    assert.equal(r.diffId, sha(data));
    assert.deepEqual(bytes, (await compressToFile(data, 'hashed.gz', { threads: 2 })).bytes);
  });

  test('block size and level change the bytes, but each decompresses', async () => {
    const a = await compressToFile(data, 'b1.gz', { threads: 2, blockSize: 1024 * 1024 });
    const b = await compressToFile(data, 'b2.gz', { threads: 2, level: 1 });
    assert.notDeepEqual(a.bytes, b.bytes);
    assert.deepEqual(gunzipSync(a.bytes), data);
    assert.deepEqual(gunzipSync(b.bytes), data);
  });

  for (const [name, input] of [
    ['empty input', Buffer.alloc(0)],
    ['one byte', Buffer.from('x')],
    ['exactly one block', sample(128 * 1024, 7)],
    ['one block plus one byte', sample(128 * 1024 + 1, 8)],
  ] as const) {
    test(`edge: ${name}`, async () => {
      const r = await compressToFile(input, 'edge.gz', { threads: 2 });
      assert.deepEqual(gunzipSync(r.bytes), input);
      execFileSync('gunzip', ['-t', r.file]);
      assert.equal(r.diffId, sha(input));
    });
  }

  test('bad options are rejected', async () => {
    await assert.rejects(
      compressLayer(Readable.from([]), createWriteStream(join(tmp, 'x')), { level: 12 }),
      /level 12/,
    );
    await assert.rejects(
      compressLayer(Readable.from([]), createWriteStream(join(tmp, 'x')), { blockSize: 1000 }),
      /block size 1000/,
    );
  });
});

describe('other compressions and detection', () => {
  const data = sample(500_000, 3);

  test('uncompressed: digest equals diff_id', async () => {
    const r = await compressToFile(data, 'plain.tar', { compression: 'uncompressed' });
    assert.equal(r.digest, r.diffId);
    assert.deepEqual(r.bytes, data);
  });

  let hasZstd = true;
  try {
    execFileSync('zstd', ['--version'], { stdio: 'ignore' });
  } catch {
    hasZstd = false;
  }
  test('zstd through the zstd command', { skip: !hasZstd && 'zstd not installed' }, async () => {
    const r = await compressToFile(data, 'z.zst', { compression: 'zstd' });
    assert.equal(r.diffId, sha(data));
    assert.equal(r.digest, sha(r.bytes));
    assert.equal(detectCompression(r.bytes), 'zstd');
    const { compression, stream } = await openLayer(createReadStream(r.file));
    assert.equal(compression, 'zstd');
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c);
    assert.deepEqual(Buffer.concat(parts), data);
  });

  for (const [name, make] of [
    ['gzip', async () => (await compressToFile(data, 'd.gz', { threads: 1 })).file],
    [
      'uncompressed',
      async () => {
        writeFileSync(join(tmp, 'd.tar'), data);
        return join(tmp, 'd.tar');
      },
    ],
  ] as const) {
    test(`openLayer detects ${name}`, async () => {
      // the magic arrives split over tiny chunks
      const bytes = readFileSync(await make());
      const input = Readable.from([bytes.subarray(0, 1), bytes.subarray(1, 3), bytes.subarray(3)]);
      const { compression, stream } = await openLayer(input);
      assert.equal(compression, name);
      const parts: Buffer[] = [];
      for await (const c of stream) parts.push(c);
      assert.deepEqual(Buffer.concat(parts), data);
    });
  }

  test('openLayer on a tiny input', async () => {
    const { compression, stream } = await openLayer(Readable.from([Buffer.from('ab')]));
    assert.equal(compression, 'uncompressed');
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c);
    assert.equal(Buffer.concat(parts).toString(), 'ab');
  });
});

describe('failures', () => {
  test('an output that fails is reported, not a crash or a hang', async () => {
    const { Writable } = await import('node:stream');
    let n = 0;
    const bad = new Writable({
      highWaterMark: 1,
      write(_c, _e, cb) {
        cb(++n > 3 ? new Error('disk full') : null);
      },
    });
    await assert.rejects(compressLayer(Readable.from([sample(2_000_000)]), bad, { threads: 1 }), /disk full/);
  });

  test('an input that fails is reported', async () => {
    async function* broken() {
      yield sample(300_000);
      throw new Error('read error');
    }
    await assert.rejects(
      compressLayer(broken(), createWriteStream(join(tmp, 'broken.gz')), { threads: 1 }),
      /read error/,
    );
  });
});

test('layer media types', () => {
  assert.equal(layerMediaType('gzip'), 'application/vnd.oci.image.layer.v1.tar+gzip');
  assert.equal(layerMediaType('gzip', { oci: false }), 'application/vnd.docker.image.rootfs.diff.tar.gzip');
  assert.equal(layerMediaType('zstd'), 'application/vnd.oci.image.layer.v1.tar+zstd');
  assert.equal(layerMediaType('uncompressed'), 'application/vnd.oci.image.layer.v1.tar');
});
