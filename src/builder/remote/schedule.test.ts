import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatPlatform, parsePlatform } from '../../platform/index.js';
import { type Candidate, schedule } from './schedule.js';

const p = (s: string) => parsePlatform(s, { normalize: true });
const ps = (...s: string[]) => s.map(p);
const show = (m: Map<string, ReturnType<typeof p>[]>) =>
  Object.fromEntries([...m].map(([k, v]) => [k, v.map((x) => formatPlatform(x))]));

const amd: Candidate = {
  name: 'amd',
  pinned: [],
  native: p('linux/amd64'),
  platforms: ps('linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/s390x'),
};
const arm: Candidate = {
  name: 'arm',
  pinned: [],
  native: p('linux/arm64'),
  platforms: ps('linux/arm64', 'linux/arm/v7'),
};

test('each platform goes to a node that runs it natively', () => {
  assert.deepEqual(show(schedule(ps('linux/amd64', 'linux/arm64'), [amd, arm])), {
    amd: ['linux/amd64'],
    arm: ['linux/arm64'],
  });
});

test('pinned platforms count as native; ties go to the least-loaded node', () => {
  const arm2: Candidate = { ...arm, name: 'arm2' };
  assert.deepEqual(show(schedule(ps('linux/arm64', 'linux/arm64/v8', 'linux/amd64'), [amd, arm, arm2])), {
    arm: ['linux/arm64'],
    arm2: ['linux/arm64'],
    amd: ['linux/amd64'],
  });
  const pinned: Candidate = { ...amd, name: 'pin', pinned: ps('linux/arm/v7') };
  assert.deepEqual(show(schedule(ps('linux/arm/v7'), [arm, pinned])), { pin: ['linux/arm/v7'] });
});

test('no native node: the least-loaded one that can emulate it', () => {
  const amd2: Candidate = { ...amd, name: 'amd2' };
  assert.deepEqual(show(schedule(ps('linux/amd64', 'linux/s390x'), [amd, amd2])), {
    amd: ['linux/amd64'],
    amd2: ['linux/s390x'],
  });
});

test('nobody can build it: an error naming the platform and every node tried', () => {
  assert.throws(
    () => schedule(ps('linux/riscv64'), [arm], [{ name: 'gone', reason: 'connection refused' }]),
    /^PolyarchError: no node can build platform linux\/riscv64: tried arm \(linux\/arm64, linux\/arm\/v7\); gone \(unreachable: connection refused\)$/,
  );
});
