import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PolyarchError, UsageError } from '../../util/errors.js';
import { NO_OUTPUT_WARNING, type OutputFlags, parseOutputs, resolveOutputs, splitCsv } from './outputs.js';

describe('parseOutputs: buildx semantics', () => {
  const cases: Array<{ name: string; flags: OutputFlags; want: Array<Record<string, unknown>> }> = [
    { name: 'nothing: cache only', flags: {}, want: [] },
    {
      name: '-t alone goes to the local store',
      flags: { tags: ['app:1', 'reg.example:5000/x/app'] },
      want: [
        {
          type: 'image',
          store: true,
          push: false,
          names: ['docker.io/library/app:1', 'reg.example:5000/x/app:latest'],
        },
      ],
    },
    {
      name: '--push is type=registry with the tags',
      flags: { push: true, tags: ['r:5000/a:1'] },
      want: [{ type: 'registry', push: true, store: false, names: ['r:5000/a:1'] }],
    },
    {
      name: '--push sets push on an image output',
      flags: { push: true, output: ['type=image'], tags: ['r:5000/a:1'] },
      want: [{ type: 'image', push: true, store: true }],
    },
    {
      name: '--load is type=image',
      flags: { load: true, tags: ['a'] },
      want: [{ type: 'image', store: true, names: ['docker.io/library/a:latest'] }],
    },
    {
      name: '--load and --push: both',
      flags: { load: true, push: true, tags: ['r:5000/a'] },
      want: [
        { type: 'registry', push: true },
        { type: 'image', push: false },
      ],
    },
    {
      name: 'bare -o DIR is type=local',
      flags: { output: ['out/dir'] },
      want: [{ type: 'local', dest: 'out/dir', names: [] }],
    },
    {
      name: 'name= wins over -t; several names quoted',
      flags: { output: ['type=image,"name=a:1,b:2"'], tags: ['c'] },
      want: [{ names: ['docker.io/library/a:1', 'docker.io/library/b:2'] }],
    },
    {
      name: 'oci defaults: tar, OCI media types, gzip',
      flags: { output: ['type=oci,dest=x.tar'] },
      want: [{ type: 'oci', tar: true, ociMediaTypes: true, compression: 'gzip' }],
    },
    {
      name: 'oci tar=false',
      flags: { output: ['type=oci,dest=x,tar=false'] },
      want: [{ tar: false }],
    },
    {
      name: 'docker defaults to Docker media types',
      flags: { output: ['type=docker,dest=x.tar'] },
      want: [{ type: 'docker', ociMediaTypes: false }],
    },
    {
      name: 'zstd with level',
      flags: { output: ['type=image,name=a,compression=zstd,compression-level=19,oci-mediatypes=true'] },
      want: [{ compression: 'zstd', compressionLevel: 19 }],
    },
    {
      name: 'push-by-digest',
      flags: { output: ['type=registry,name=r:5000/a,push-by-digest=true'] },
      want: [{ pushByDigest: true, push: true, names: ['r:5000/a:latest'] }],
    },
  ];
  for (const c of cases)
    it(c.name, () => {
      const got = parseOutputs(c.flags);
      assert.equal(got.length, c.want.length);
      for (const [i, w] of c.want.entries())
        for (const [k, v] of Object.entries(w))
          assert.deepEqual((got[i] as unknown as Record<string, unknown>)[k], v, `${c.name}: ${k}`);
    });

  it('warns like buildx when nothing is exported', () => {
    assert.equal(resolveOutputs({}).warning, NO_OUTPUT_WARNING);
    assert.equal(resolveOutputs({ tags: ['a'] }).warning, undefined);
  });
});

describe('parseOutputs: bad specs are usage errors naming the key', () => {
  const bad: Array<{ name: string; flags: OutputFlags; key: RegExp }> = [
    { name: 'unknown type', flags: { output: ['type=cloud'] }, key: /type "cloud"/ },
    { name: 'no type', flags: { output: ['dest=x'] }, key: /key "type" is missing/ },
    { name: 'unknown key', flags: { output: ['type=image,colour=red'] }, key: /key "colour"/ },
    { name: 'key of another type', flags: { output: ['type=local,dest=x,name=a'] }, key: /key "name"/ },
    { name: 'missing dest', flags: { output: ['type=oci'] }, key: /key "dest" is required/ },
    { name: 'stdout dest', flags: { output: ['type=tar,dest=-'] }, key: /key "dest"/ },
    { name: 'bad compression', flags: { output: ['type=image,compression=lz4'] }, key: /key "compression"/ },
    {
      name: 'gzip level out of range',
      flags: { output: ['type=image,compression-level=12'] },
      key: /key "compression-level": "12"/,
    },
    {
      name: 'level for uncompressed',
      flags: { output: ['type=image,compression=uncompressed,compression-level=1'] },
      key: /key "compression-level"/,
    },
    { name: 'bad bool', flags: { output: ['type=image,push=yes'] }, key: /push=yes/ },
    { name: 'bad name', flags: { output: ['type=image,name=UPPER/Case:x'] }, key: /name "UPPER\/Case:x"/ },
    { name: 'bad tag', flags: { tags: ['a:b:c:'] }, key: /invalid tag "a:b:c:"/ },
    { name: 'push without a name', flags: { push: true }, key: /key "name"/ },
    { name: 'key twice', flags: { output: ['type=oci,dest=a,dest=b'] }, key: /key "dest" given twice/ },
    { name: 'same dest twice', flags: { output: ['type=oci,dest=a', 'type=tar,dest=a'] }, key: /key "dest"/ },
    { name: 'unterminated quote', flags: { output: ['type=image,"name=a'] }, key: /unterminated quote/ },
  ];
  for (const c of bad)
    it(c.name, () => {
      assert.throws(
        () => parseOutputs(c.flags),
        (err: unknown) => {
          assert.ok(err instanceof UsageError, `${c.name}: ${String(err)}`);
          assert.equal(err.exitCode, 2);
          assert.match(err.message, c.key);
          return true;
        },
      );
    });
});

describe('splitCsv', () => {
  it('splits on commas outside quotes and unescapes doubled quotes', () => {
    assert.deepEqual(splitCsv('type=image,"name=a,b",x=""""'), ['type=image', 'name=a,b', 'x="']);
  });
});

describe('checkDestinations: where an export must never write', () => {
  const base = mkdtempSync(join(tmpdir(), 'polyarch-dests-'));
  after(() => rmSync(base, { recursive: true, force: true }));
  const root = join(base, 'state');
  mkdirSync(root);
  symlinkSync('/', join(base, 'to-root'));
  symlinkSync(root, join(base, 'to-state'));
  const refused: Array<[name: string, output: string, why: RegExp]> = [
    ['/', 'type=local,dest=/', /dest "\/" is the root directory \//],
    ['/ spelled otherwise', 'type=local,dest=/tmp/../', /is the root directory \//],
    ['a symlink to /', `type=local,dest=${base}/to-root`, /\(\/\) is the root directory/],
    [
      'a path through a symlink to /',
      `type=tar,dest=${base}/to-root${base}`,
      /contains polyarch's state root/,
    ],
    ['the state root', `type=local,dest=${root}`, /is polyarch's state root/],
    ['a symlink to the state root', `type=oci,dest=${base}/to-state,tar=false`, /is polyarch's state root/],
    ['its parent', `type=local,dest=${base}`, /contains polyarch's state root/],
    ['inside it, not yet made', `type=local,dest=${root}/new/dir`, /is inside polyarch's state root/],
  ];
  for (const [name, output, why] of refused)
    it(`refuses ${name}`, () => {
      assert.throws(
        () => resolveOutputs({ output: [output], stateRoot: root }),
        (err: unknown) => {
          assert.ok(err instanceof PolyarchError && !(err instanceof UsageError));
          assert.equal(err.exitCode, 1);
          assert.match(err.message, why);
          assert.match(err.message, /^invalid output ".*": dest .*; choose another directory$/);
          return true;
        },
      );
    });
  it('accepts a sibling of the state root and a name sharing its prefix', () => {
    for (const d of [join(base, 'out'), `${root}-out`, join(base, 'to-root-not')])
      assert.equal(resolveOutputs({ output: [`type=local,dest=${d}`], stateRoot: root }).outputs.length, 1);
  });
});
