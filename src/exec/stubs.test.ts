import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveUser } from './spec.js';
import { findStubs, removeStubs, secureJoin } from './stubs.js';

let root: string;
let host: string;

before(async () => {
  const t = await mkdtemp(join(tmpdir(), 'polyarch-stubs-'));
  root = join(t, 'rootfs');
  host = join(t, 'host');
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(join(root, 'run'));
  await mkdir(host);
  await writeFile(join(host, 'secret'), '');
  await writeFile(join(host, 'passwd'), 'evil:x:0:0::/:/bin/sh\n');
  await symlink('/run', join(root, 'var-run'));
  await symlink('../../../../../../host', join(root, 'up'));
  await symlink(host, join(root, 'abs-host'));
  await symlink(join(host, 'passwd'), join(root, 'etc/passwd'));
  await symlink('loop2', join(root, 'loop1'));
  await symlink('loop1', join(root, 'loop2'));
});
after(() => rm(join(root, '..'), { recursive: true, force: true }));

describe('secureJoin', () => {
  const cases: [string, string][] = [
    ['/etc/hosts', 'etc/hosts'],
    ['/var-run/x', 'run/x'],
    ['/up/secret', 'host/secret'],
    ['/abs-host/secret', 'HOST/secret'],
    ['/../../etc', 'etc'],
    ['a/./b/../c', 'a/c'],
  ];
  for (const [p, want] of cases)
    test(`${p} stays inside`, async () =>
      assert.equal(await secureJoin(root, p), join(root, want.replace('HOST', host.slice(1)))));
  test('symlink loops are an error', () => assert.rejects(secureJoin(root, '/loop1/x'), /too many levels/));
});

describe('mount stubs', () => {
  test('the top-most missing component, through symlinks', async () => {
    assert.deepEqual(
      await findStubs(root, ['/etc/hosts', '/etc', '/var-run/a/b', '/up/secret', '/new/deep/dir']),
      [join(root, 'etc/hosts'), join(root, 'run/a'), join(root, 'host'), join(root, 'new')],
    );
  });
  test('removed only when empty, never on the host', async () => {
    const stubs = await findStubs(root, ['/etc/hosts', '/new/deep/dir', '/kept/a', '/up/secret']);
    await writeFile(join(root, 'etc/hosts'), '');
    await mkdir(join(root, 'new/deep/dir'), { recursive: true });
    await mkdir(join(root, 'kept/a'), { recursive: true });
    await writeFile(join(root, 'kept/data'), 'content');
    await removeStubs(root, stubs);
    assert.equal(existsSync(join(root, 'etc/hosts')), false);
    assert.equal(existsSync(join(root, 'new')), false);
    assert.equal(existsSync(join(root, 'kept/a')), false, 'empty parts go');
    assert.equal(existsSync(join(root, 'kept/data')), true, 'content stays');
    assert.equal(existsSync(join(host, 'secret')), true, 'the host file is untouched');
  });
  test('user lookup does not follow a symlink to the host', async () =>
    assert.rejects(resolveUser(root, 'evil'), /unable to find user evil/));
});
