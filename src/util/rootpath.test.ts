import assert from 'node:assert/strict';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { existsInRoot, resolveInRoot } from './rootpath.js';

const t = mkdtempSync(join(tmpdir(), 'polyarch-rootpath-'));
const root = join(t, 'root');
const host = join(t, 'host');
mkdirSync(join(root, 'etc'), { recursive: true });
mkdirSync(join(root, 'usr/bin'), { recursive: true });
mkdirSync(host);
writeFileSync(join(host, 'secret'), 'host secret');
writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0::/:/bin/sh\n');
writeFileSync(join(root, 'file'), '');
symlinkSync('/', join(root, 'hostroot'));
symlinkSync(host, join(root, 'abs-host'));
symlinkSync('../../../../../../../..', join(root, 'up'));
symlinkSync('usr/bin', join(root, 'bin'));
symlinkSync('/bin', join(root, 'chain1'));
symlinkSync('chain1/../etc', join(root, 'chain2'));
symlinkSync('/nowhere/deep', join(root, 'dangling'));
symlinkSync('loop2', join(root, 'loop1'));
symlinkSync('loop1', join(root, 'loop2'));
after(() => rmSync(t, { recursive: true, force: true }));

describe('resolveInRoot', () => {
  // [path, resolved relative path, top-most missing component]
  const cases: [string, string, string?][] = [
    ['/etc/passwd', 'etc/passwd'],
    ['etc/passwd', 'etc/passwd'],
    ['/', ''],
    ['/../../..', ''],
    ['/hostroot/etc/passwd', 'etc/passwd'],
    [`/abs-host/secret`, `${host.slice(1)}/secret`, host.slice(1).split('/')[0]],
    ['/up/etc', 'etc'],
    ['/bin/sh', 'usr/bin/sh', 'usr/bin/sh'],
    ['/chain1', 'usr/bin'],
    // `..` after a link goes up from its target, as in the kernel: /usr/bin/.. is /usr.
    ['/chain2/passwd', 'usr/etc/passwd', 'usr/etc'],
    ['/dangling/x', 'nowhere/deep/x', 'nowhere'],
    ['/file/x', 'file/x', 'file/x'],
    ['/nope/../etc', 'etc'],
    ['a/./b/../c', 'a/c', 'a'],
  ];
  for (const [p, want, missing] of cases)
    test(`${p} -> /${want}`, () => {
      const r = resolveInRoot(root, p);
      assert.equal(r.rel, want);
      assert.equal(r.host, want === '' ? root : join(root, want));
      assert.equal(r.missing, missing);
    });

  test('the last link is kept with followFinal: false', () => {
    assert.equal(resolveInRoot(root, '/hostroot', { followFinal: false }).rel, 'hostroot');
    assert.equal(resolveInRoot(root, '/chain1/', { followFinal: false }).rel, 'chain1');
    assert.equal(resolveInRoot(root, '/chain2/passwd', { followFinal: false }).rel, 'usr/etc/passwd');
  });

  test('link loops are an error', () =>
    assert.throws(() => resolveInRoot(root, '/loop1/x'), /too many levels of symbolic links/));

  test('mkdir creates through links, inside the root', () => {
    const r = resolveInRoot(root, '/dangling/a/b', { mkdir: { mode: 0o750 } });
    assert.equal(r.host, join(root, 'nowhere/deep/a/b'));
    assert.equal(statSync(r.host).mode & 0o777, 0o750);
    assert.equal(existsSync('/nowhere'), false);
    resolveInRoot(root, '/abs-host/made', { mkdir: {} });
    assert.equal(existsSync(join(host, 'made')), false, 'nothing made on the host');
    assert.ok(statSync(join(root, host.slice(1), 'made')).isDirectory());
  });

  test('mkdir replaces a file in the way', () => {
    writeFileSync(join(root, 'blocker'), 'x');
    resolveInRoot(root, '/blocker/sub', { mkdir: {} });
    assert.ok(lstatSync(join(root, 'blocker')).isDirectory());
  });

  test('existsInRoot', () => {
    assert.equal(existsInRoot(root, '/hostroot/etc/passwd'), true);
    assert.equal(existsInRoot(root, `/hostroot${host}/secret`), false);
    assert.equal(existsInRoot(root, '/loop1', false), true);
  });
});
