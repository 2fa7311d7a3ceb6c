import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { DigestingStream, parseDigest, sha256Digest } from './digest.js';
import { layerCompression, layerMediaType, MediaType } from './mediatypes.js';
import { parseImageConfig, parseImageDocument } from './validate.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('digests', () => {
  const good = [D, `sha512:${'0'.repeat(128)}`];
  for (const g of good) test(`accepts ${g.slice(0, 12)}…`, () => assert.equal(parseDigest(g), g));
  const bad: [string, RegExp][] = [
    ['', /expected algorithm:hex/],
    ['sha256', /expected algorithm:hex/],
    [':abc', /expected algorithm:hex/],
    [`md5:${'a'.repeat(32)}`, /unsupported algorithm "md5"/],
    [`sha256:${'A'.repeat(64)}`, /64 lower-case hex/],
    [`sha256:${'a'.repeat(63)}`, /64 lower-case hex/],
    [`sha256:${'g'.repeat(64)}`, /64 lower-case hex/],
  ];
  for (const [input, msg] of bad)
    test(`rejects ${JSON.stringify(input)}`, () => assert.throws(() => parseDigest(input), msg));

  test('streaming digest equals one-shot digest', async () => {
    const chunks = [Buffer.from('hello '), Buffer.from('world'), Buffer.alloc(100_000, 7)];
    const t = new DigestingStream();
    const sink: Buffer[] = [];
    await pipeline(Readable.from(chunks), t, async (src) => {
      for await (const c of src) sink.push(c as Buffer);
    });
    assert.equal(t.digest(), sha256Digest(Buffer.concat(chunks)));
    assert.equal(t.size, 100_011);
    assert.deepEqual(Buffer.concat(sink), Buffer.concat(chunks));
  });
});

describe('media types', () => {
  const table: [string, string][] = [
    [MediaType.OciLayerGzip, 'gzip'],
    [MediaType.DockerLayerGzip, 'gzip'],
    [MediaType.OciLayerZstd, 'zstd'],
    [MediaType.OciLayer, 'uncompressed'],
  ];
  for (const [mt, c] of table) test(`${mt} is ${c}`, () => assert.equal(layerCompression(mt), c));
  test('layer media type round-trips through compression', () => {
    for (const c of ['gzip', 'zstd', 'uncompressed'] as const)
      assert.equal(layerCompression(layerMediaType(c)), c);
    assert.equal(layerMediaType('gzip', { oci: false }), MediaType.DockerLayerGzip);
  });
});

describe('image documents', () => {
  const desc = { mediaType: MediaType.OciConfig, digest: D, size: 2 };
  const manifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: desc, layers: [] };
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      { ...desc, mediaType: MediaType.OciManifest, platform: { os: 'linux', architecture: 'arm64' } },
    ],
  };

  test('manifest', () => assert.equal(parseImageDocument(JSON.stringify(manifest), 'm').kind, 'manifest'));
  test('index', () => assert.equal(parseImageDocument(JSON.stringify(index), 'i').kind, 'index'));
  test('media type from Content-Type when the document has none', () => {
    const { mediaType: _, ...bare } = index;
    const doc = parseImageDocument(JSON.stringify(bare), 'i', MediaType.DockerManifestList);
    assert.equal(doc.mediaType, MediaType.DockerManifestList);
  });
  test('media type from shape as a last resort', () => {
    const { mediaType: _, ...bare } = manifest;
    assert.equal(parseImageDocument(JSON.stringify(bare), 'm').mediaType, MediaType.OciManifest);
  });

  const bad: [string, unknown, RegExp][] = [
    ['not JSON', '{', /invalid x: not JSON/],
    ['array', [], /not a JSON object/],
    ['schema 1', { schemaVersion: 1 }, /schema 1 manifests are not supported/],
    ['schema 3', { ...manifest, schemaVersion: 3 }, /schemaVersion must be 2/],
    [
      'bad layer digest',
      { ...manifest, layers: [{ ...desc, digest: 'sha256:zz' }] },
      /layers\[0\]\.digest "sha256:zz"/,
    ],
    [
      'negative size',
      { ...manifest, config: { ...desc, size: -1 } },
      /config\.size must be a non-negative integer/,
    ],
    ['index with layers', { ...index, layers: [] }, /must not have config or layers/],
    [
      'platform without os',
      { ...index, manifests: [{ ...desc, platform: { architecture: 'arm' } }] },
      /platform needs string os/,
    ],
    ['annotation not string', { ...manifest, annotations: { a: 1 } }, /annotations\["a"\] must be a string/],
    ['no layers', { ...manifest, layers: undefined }, /needs a layers array/],
  ];
  for (const [name, doc, msg] of bad)
    test(`rejects ${name}`, () =>
      assert.throws(() => parseImageDocument(typeof doc === 'string' ? doc : JSON.stringify(doc), 'x'), msg));

  test('content type that contradicts the document', () =>
    assert.throws(
      () => parseImageDocument(JSON.stringify(manifest), 'x', MediaType.OciIndex),
      /does not match the Content-Type/,
    ));

  test('image config', () => {
    const cfg = { architecture: 'arm64', os: 'linux', rootfs: { type: 'layers', diff_ids: [D] } };
    assert.equal(parseImageConfig(JSON.stringify(cfg), 'c').architecture, 'arm64');
    assert.throws(() => parseImageConfig(JSON.stringify({ ...cfg, os: '' }), 'c'), /os is missing/);
    assert.throws(
      () => parseImageConfig(JSON.stringify({ ...cfg, rootfs: { type: 'layers', diff_ids: ['x'] } }), 'c'),
      /diff_ids\[0\]/,
    );
  });
});
