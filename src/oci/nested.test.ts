import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Digest } from './digest.js';
import { MediaType } from './mediatypes.js';
import { MAX_INDEX_DEPTH, walkIndex } from './nested.js';
import type { Descriptor } from './types.js';

const d = (c: string, mediaType: string = MediaType.OciManifest): Descriptor => ({
  mediaType,
  digest: `sha256:${c.repeat(64)}` as Digest,
  size: 1,
});
const idx = (c: string) => d(c, MediaType.OciIndex);

describe('walkIndex', () => {
  test('leaves in document order with their parents; absent indexes are reported', async () => {
    const tree = new Map<string, Descriptor[]>([
      [idx('1').digest, [d('a'), idx('2')]],
      [idx('2').digest, [d('b')]],
    ]);
    const w = await walkIndex([idx('1'), d('c'), idx('3')], async (x) => tree.get(x.digest), 'img');
    assert.deepEqual(
      w.leaves.map((l) => [l.descriptor.digest[7], l.parents.map((p) => p.digest[7])]),
      [
        ['a', ['1']],
        ['b', ['1', '2']],
        ['c', []],
      ],
    );
    assert.deepEqual(
      w.missing.map((x) => x.digest[7]),
      ['3'],
    );
    assert.deepEqual(
      w.nested.map((x) => x.digest[7]),
      ['1', '2', '3'],
    );
  });

  test(`${MAX_INDEX_DEPTH} levels below the root are allowed, one more is an error`, async () => {
    const chain = (n: number) => async (x: Descriptor) => {
      const i = Number.parseInt(x.digest[7]!, 16);
      return i < n ? [idx((i + 1).toString(16))] : [d('f')];
    };
    const ok = await walkIndex([idx('1')], chain(MAX_INDEX_DEPTH), 'img');
    assert.equal(ok.leaves[0]!.parents.length, MAX_INDEX_DEPTH);
    await assert.rejects(
      walkIndex([idx('1')], chain(MAX_INDEX_DEPTH + 1), 'img'),
      /^PolyarchError: img: indexes nested more than 8 deep \(at sha256:9{64}\)$/,
    );
  });

  test('an index that lists itself (or the root) is refused, not walked forever', async () => {
    await assert.rejects(
      walkIndex([idx('1')], async () => [idx('1')], 'img'),
      /img: index sha256:1{64} lists itself/,
    );
    await assert.rejects(
      walkIndex([idx('1')], async () => [idx('0')], 'img', { rootDigest: idx('0').digest }),
      /img: index sha256:0{64} lists itself/,
    );
  });

  test('the same index twice side by side is not a cycle', async () => {
    const w = await walkIndex([idx('1'), idx('1')], async () => [d('a')], 'img');
    assert.equal(w.leaves.length, 2);
  });
});
