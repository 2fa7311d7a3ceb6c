import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CacheRecord, parseDuration, parseSize, selectPrunable } from './cache.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const H = 3_600_000;

/** A record made `ageH` hours before T0 + 100 h, never reused. */
function rec(key: string, ageH: number, size: number, extra: Partial<CacheRecord> = {}): CacheRecord {
  return {
    id: key,
    key,
    type: 'regular',
    size,
    createdAt: new Date(T0 + (100 - ageH) * H),
    lastUsedAt: undefined,
    inUse: false,
    shared: false,
    parents: [],
    ...extra,
  };
}
const now = T0 + 100 * H;
const keys = (rs: CacheRecord[]) => rs.map((r) => r.key).sort();

test('selectPrunable: named cases', () => {
  const base = rec('sha256:base', 50, 1000, { type: 'source.image', shared: true });
  const loose = rec('sha256:loose', 50, 1000, { type: 'source.image' });
  const a1 = rec('build:a1', 30, 100, { parents: ['sha256:base'] });
  const a2 = rec('build:a2', 29, 100, { parents: ['sha256:base', 'build:a1'] });
  const b1 = rec('build:b1', 1, 100, { parents: ['sha256:base'] });
  const ctr = rec('container:c', 40, 10, { type: 'container', parents: ['sha256:base'] });
  const mnt = rec('cache-mount:m', 40, 10, { type: 'exec.cachemount' });
  const ctx = rec('context-index', 2, 10, { type: 'source.local' });
  const busy = rec('build:busy', 60, 100, { inUse: true, parents: ['sha256:base', 'build:a1'] });
  const all = [base, loose, a1, a2, b1, ctr, mnt, ctx];
  const cases: Array<{
    name: string;
    records: CacheRecord[];
    opts: Parameters<typeof selectPrunable>[1];
    want: string[];
  }> = [
    {
      name: 'default: build results, unshared layers, the context memo',
      records: all,
      opts: { now },
      want: ['build:a1', 'build:a2', 'build:b1', 'context-index', 'sha256:loose'],
    },
    { name: 'all: everything not in use', records: all, opts: { now, all: true }, want: keys(all) },
    {
      name: 'until 24h keeps the young',
      records: all,
      opts: { now, untilMs: 24 * H },
      want: ['build:a1', 'build:a2', 'sha256:loose'],
    },
    { name: 'until 100h keeps everything', records: all, opts: { now, untilMs: 100 * H }, want: [] },
    {
      name: 'keep-storage keeps the most recently used',
      records: [base, a1, a2, b1],
      opts: { now, keepBytes: 1100 },
      want: ['build:a1', 'build:a2'],
    },
    {
      name: 'a reused record counts as recent',
      records: [base, rec('build:old', 90, 100, { lastUsedAt: new Date(now - H) }), b1],
      opts: { now, untilMs: 24 * H },
      want: [],
    },
    {
      name: 'in use, and what it stacks on, stay',
      records: [base, a1, a2, busy],
      opts: { now, all: true },
      want: ['build:a2'],
    },
    {
      name: 'a kept container keeps its layer',
      records: [loose, rec('container:k', 1, 1, { type: 'container', parents: ['sha256:loose'] })],
      opts: { now },
      want: [],
    },
  ];
  for (const c of cases) assert.deepEqual(keys(selectPrunable(c.records, c.opts)), c.want.sort(), c.name);
});

test('parseDuration: Go durations, and bad ones rejected', () => {
  for (const [text, ms] of [
    ['24h', 24 * H],
    ['90m', 90 * 60_000],
    ['1h30m', 1.5 * H],
    ['45s', 45_000],
    ['1.5h', 1.5 * H],
    ['250ms', 250],
  ] as const)
    assert.equal(parseDuration(text), ms, text);
  for (const bad of ['', '24', 'h', '1d', '1h foo', '-1h'])
    assert.throws(() => parseDuration(bad), /invalid duration/, bad);
});

test('parseSize: bytes and binary units like docker, bad ones rejected', () => {
  for (const [text, n] of [
    ['4096', 4096],
    ['10kb', 10 * 1024],
    ['512MB', 512 * 1024 ** 2],
    ['1.5GiB', 1.5 * 1024 ** 3],
    ['2g', 2 * 1024 ** 3],
    ['7B', 7],
  ] as const)
    assert.equal(parseSize(text), n, text);
  for (const bad of ['', 'MB', '1XB', '-1', '1 2']) assert.throws(() => parseSize(bad), /invalid size/, bad);
});
