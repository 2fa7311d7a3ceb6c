import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planBuild } from '../dockerfile/index.js';
import { contextName, namedContextLookup, parseBuildContext } from './named-context.js';

test('parseBuildContext: each kind of value', () => {
  assert.deepEqual(parseBuildContext('lib=../lib', '/work/app').source, { kind: 'local', dir: '/work/lib' });
  assert.deepEqual(parseBuildContext('alpine=docker-image://busybox:1.36').source, {
    kind: 'image',
    ref: 'busybox:1.36',
  });
  assert.deepEqual(parseBuildContext('b=oci-layout:///srv/layout:v1').source, {
    kind: 'oci-layout',
    path: '/srv/layout',
    tag: 'v1',
  });
  const d = `sha256:${'a'.repeat(64)}`;
  assert.deepEqual(parseBuildContext(`b=oci-layout://rel/dir@${d}`, '/w').source, {
    kind: 'oci-layout',
    path: '/w/rel/dir',
    digest: d,
  });
  assert.equal(parseBuildContext('g=https://h/o/r.git#v1:sub').source.kind, 'git');
  assert.equal(parseBuildContext('g=git@h:o/r.git').source.kind, 'git');
  assert.equal(parseBuildContext('g=ssh://git@127.0.0.1:2222/srv/r.git#main').source.kind, 'git');
  assert.equal(parseBuildContext('f=https://h/files/tool.tar.gz').source.kind, 'http');
});

test('parseBuildContext: names in the short form, bad values refused with the rule', () => {
  assert.equal(parseBuildContext('docker.io/library/alpine:latest=/x').name, 'alpine');
  assert.equal(contextName('alpine:3.19'), 'alpine:3.19');
  assert.equal(contextName('127.0.0.1:5000/app:latest'), '127.0.0.1:5000/app');
  assert.throws(() => parseBuildContext('foo=bogus://x'), /unsupported context source "bogus:\/\/"/);
  assert.throws(() => parseBuildContext('novalue'), /expected NAME=VALUE/);
  assert.throws(() => parseBuildContext('Bad Name=/x'), /invalid --build-context name "Bad Name"/);
  assert.throws(() => parseBuildContext('x=docker-image://UPPER'), /invalid --build-context x=docker-image/);
  assert.throws(
    () => parseBuildContext('x=https://u:pw@h/repo.git#main:../..'),
    (err: Error) => !err.message.includes('pw@') && /xxxxx/.test(err.message),
  );
});

test('planner: a context replaces a stage of its name and an image; a stage wins over an image name', () => {
  const lookup = namedContextLookup(
    ['base=/a', 'alpine=docker-image://busybox', 'tools=/t'].map((s) => parseBuildContext(s)),
  );
  const plan = planBuild(
    'FROM busybox AS base\nRUN exit 1\nFROM docker.io/library/alpine\nCOPY --from=base /x /x\nCOPY --from=tools /y /y\nRUN --mount=from=tools,target=/m true\n',
    { namedContext: lookup },
  );
  const stages = plan.platforms[0]!.stages;
  const base = stages.find((s) => s.name === 'base')!;
  assert.deepEqual(base.base, { type: 'context', name: 'base' });
  assert.equal(base.instructions.length, 0, 'the replaced stage plans nothing of its own');
  const last = stages[stages.length - 1]!;
  assert.deepEqual(last.base, { type: 'context', name: 'alpine' });
  const copies = last.instructions.filter((i) => i.kind === 'COPY');
  assert.deepEqual(
    copies.map((c) => (c.kind === 'COPY' ? c.from : undefined)),
    [
      { type: 'stage', index: 0, name: 'base' },
      { type: 'context', name: 'tools' },
    ],
  );
  const run = last.instructions.find((i) => i.kind === 'RUN');
  assert.deepEqual(run?.kind === 'RUN' ? run.mounts[0]!.from : undefined, { type: 'context', name: 'tools' });
  // Without contexts the same Dockerfile names images.
  const plain = planBuild('FROM alpine\nCOPY --from=tools /y /y\n');
  assert.deepEqual(plain.platforms[0]!.stages[0]!.base, { type: 'image', ref: 'alpine' });
});
