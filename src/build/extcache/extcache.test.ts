import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Digest } from '../../oci/index.js';
import { parseCacheConfig, parseInline } from './format.js';
import { parseCacheSpec } from './spec.js';

const D = (c: string) => `sha256:${c.repeat(64)}` as Digest;
const K = 'a'.repeat(64);

test('cache specs: buildx syntax, defaults, and what each type accepts', () => {
  const r = parseCacheSpec(
    'type=registry,ref=127.0.0.1:5000/app:cache,mode=max,compression=zstd,compression-level=9',
    'export',
  );
  assert.deepEqual(
    {
      type: r.type,
      ref: r.ref,
      mode: r.mode,
      c: r.compression,
      l: r.compressionLevel,
      im: r.imageManifest,
      oci: r.ociMediaTypes,
      ie: r.ignoreError,
    },
    {
      type: 'registry',
      ref: '127.0.0.1:5000/app:cache',
      mode: 'max',
      c: 'zstd',
      l: 9,
      im: false,
      oci: true,
      ie: false,
    },
  );
  assert.equal(parseCacheSpec('user/app:cache', 'import').ref, 'user/app:cache');
  assert.equal(parseCacheSpec('type=local,src=cc', 'import', '/work').dir, '/work/cc');
  assert.equal(parseCacheSpec('type=local,dest=/x,ignore-error=true', 'export').ignoreError, true);
  assert.equal(parseCacheSpec('type=inline', 'export').type, 'inline');
  for (const [spec, dir, msg] of [
    ['type=gha', 'export', /type=gha is not supported/],
    ['type=registry', 'export', /needs ref=/],
    ['type=local,src=x', 'export', /src= is not an attribute of --cache-to type=local/],
    ['type=local,dest=x', 'import', /dest= is not an attribute of --cache-from/],
    ['type=registry,ref=a,mode=all', 'export', /mode=all: expected min or max/],
    ['type=registry,ref=a,compression=lz4', 'export', /expected gzip, zstd or uncompressed/],
    ['type=registry,ref=a,compression-level=10', 'export', /expected 0 to 9/],
    ['type=registry,ref=a,image-manifest=true,oci-mediatypes=false', 'export', /needs oci-mediatypes=true/],
    ['type=registry,ref=a,image-manifest=yes', 'export', /expected true or false/],
    ['type=registry,ref=UPPER', 'export', /ref=UPPER/],
  ] as const)
    assert.throws(() => parseCacheSpec(spec, dir), { message: msg, exitCode: 2 } as never, spec);
});

test('cache config: records checked, a layer must be in the manifest', () => {
  const layer = {
    digest: D('b'),
    size: 10,
    mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    diffId: D('c'),
  };
  const cfg = (records: unknown) => Buffer.from(JSON.stringify({ version: 1, records }));
  const listed = [{ mediaType: layer.mediaType, digest: layer.digest, size: 10 }];
  const got = parseCacheConfig(
    cfg([{ key: K, parent: 'scratch', created: '2024-01-01T00:00:00Z', layer }]),
    listed,
  );
  assert.equal(got[0]!.layer!.diffId, D('c'));
  assert.throws(() => parseCacheConfig(Buffer.from('{'), listed), /not JSON/);
  assert.throws(() => parseCacheConfig(cfg('x'), listed), /not a polyarch cache config/);
  assert.throws(
    () => parseCacheConfig(cfg([{ key: 'short', parent: 'p', layer: null }]), listed),
    /malformed record/,
  );
  assert.throws(
    () => parseCacheConfig(cfg([{ key: K, parent: 'p', layer: { ...layer, size: -1 } }]), listed),
    /malformed layer/,
  );
  assert.throws(
    () => parseCacheConfig(cfg([{ key: K, parent: 'p', layer }]), []),
    /not in the cache manifest/,
  );
});

test('inline records map layer indexes onto the image', () => {
  const layers = [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('1'), size: 3 }];
  const cfg = { 'polyarch.cache.v1': { version: 1, records: [{ key: K, parent: 'image:x', layer: 0 }] } };
  assert.equal(parseInline(cfg, layers, [D('2')])[0]!.layer!.digest, D('1'));
  assert.deepEqual(parseInline({}, layers, []), []);
  const bad = { 'polyarch.cache.v1': { version: 1, records: [{ key: K, parent: 'p', layer: 4 }] } };
  assert.throws(() => parseInline(bad, layers, [D('2')]), /no layer 4/);
});
