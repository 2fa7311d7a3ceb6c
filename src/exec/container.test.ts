import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ContentStore } from '../content/store.js';
import { type Descriptor, MediaType } from '../oci/index.js';
import { hostPlatform } from '../platform/index.js';
import {
  formatDuration,
  formatSummary,
  linePrefixer,
  type PlatformRun,
  selectVariants,
} from './container.js';

describe('linePrefixer', () => {
  const cases: [name: string, chunks: string[], want: string][] = [
    ['whole lines', ['a\nb\n'], 'P a\nP b\n'],
    ['a line split across chunks', ['ab', 'c\nd', 'e\n'], 'P abc\nP de\n'],
    ['a final line without newline gets one on flush', ['x\ny'], 'P x\nP y\n'],
    ['empty lines are kept', ['\n\n'], 'P \nP \n'],
    ['nothing written, nothing flushed', [], ''],
  ];
  for (const [name, chunks, want] of cases)
    test(name, () => {
      let out = '';
      const p = linePrefixer('P ', (b) => {
        out += b.toString();
      });
      for (const c of chunks) p.push(Buffer.from(c));
      p.flush();
      assert.equal(out, want);
    });

  test('a multi-byte character split across chunks stays whole', () => {
    const bytes = Buffer.from('é\n');
    const got: Buffer[] = [];
    const p = linePrefixer('> ', (b) => got.push(b));
    p.push(bytes.subarray(0, 1));
    p.push(bytes.subarray(1));
    assert.equal(Buffer.concat(got).toString(), '> é\n');
  });
});

describe('formatDuration / formatSummary', () => {
  test('durations', () => {
    assert.equal(formatDuration(12.4), '12ms');
    assert.equal(formatDuration(999), '999ms');
    assert.equal(formatDuration(1234), '1.23s');
  });

  test('an aligned table, one row per platform in run order', () => {
    const r = (platform: string, exitCode: number, durationMs: number): PlatformRun => ({
      platform,
      exitCode,
      durationMs,
      containerId: 'x',
    });
    assert.equal(
      formatSummary([r('linux/amd64', 0, 120), r('linux/arm/v7', 127, 2500)]),
      'PLATFORM      EXIT  DURATION\nlinux/amd64   0     120ms\nlinux/arm/v7  127   2.50s\n',
    );
  });
});

describe('selectVariants', () => {
  let dir: string;
  let store: ContentStore;
  let index: Descriptor;
  let single: Descriptor;

  const manifest = async (os: string, architecture: string, variant?: string) => {
    const config = await store.writeJson(
      { os, architecture, ...(variant ? { variant } : {}), rootfs: { type: 'layers', diff_ids: [] } },
      MediaType.OciConfig,
    );
    const m = await store.writeJson(
      { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [] },
      MediaType.OciManifest,
    );
    return { ...m, platform: { os, architecture, ...(variant ? { variant } : {}) } };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'polyarch-select-'));
    store = await ContentStore.open(dir);
    const entries = [
      await manifest('linux', '386'),
      await manifest('linux', 'arm64', 'v8'),
      await manifest('linux', 'arm', 'v7'),
    ];
    const attestation = {
      ...(await manifest('unknown', 'unknown')),
      annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
    };
    index = await store.writeJson(
      { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...entries, attestation] },
      MediaType.OciIndex,
    );
    const { platform: _, ...s } = await manifest('linux', 's390x');
    single = s;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const platforms = async (root: () => Descriptor, want: { platforms?: string[]; all?: boolean }) =>
    (await selectVariants(store, root(), want, 'img')).map((v) => v.platform);

  const cases: [
    name: string,
    root: () => Descriptor,
    want: { platforms?: string[]; all?: boolean },
    out: string[] | RegExp,
  ][] = [
    [
      'explicit platforms, in the order asked, normalised',
      () => index,
      { platforms: ['linux/arm/v7', 'linux/aarch64'] },
      ['linux/arm/v7', 'linux/arm64'],
    ],
    [
      'all: every platform entry, attestations left out',
      () => index,
      { all: true },
      ['linux/386', 'linux/arm64', 'linux/arm/v7'],
    ],
    [
      'explicit platform missing: error naming what it has',
      () => index,
      { platforms: ['linux/amd64'] },
      /image img has no linux\/amd64 variant \(it has linux\/386, linux\/arm64\/v8, linux\/arm\/v7\)/,
    ],
    [
      'arm/v6 is not satisfied by arm/v7 when asked explicitly',
      () => index,
      { platforms: ['linux/arm/v6'] },
      /no linux\/arm\/v6 variant/,
    ],
    ['a single manifest: its config platform', () => single, {}, ['linux/s390x']],
    [
      'a single manifest of another platform than asked',
      () => single,
      { platforms: ['linux/arm64'] },
      /has no linux\/arm64 variant \(it is linux\/s390x only\)/,
    ],
  ];
  for (const [name, root, want, out] of cases)
    test(name, async () => {
      if (out instanceof RegExp) await assert.rejects(platforms(root, want), out);
      else assert.deepEqual(await platforms(root, want), out);
    });

  test('no platform: the host, with containerd Only() fall-backs (amd64 takes 386)', async (t) => {
    if (hostPlatform().architecture !== 'amd64') return t.skip('needs an amd64 host');
    assert.deepEqual(await platforms(() => index, {}), ['linux/386']);
  });
});
