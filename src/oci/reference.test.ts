import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDigest } from './digest.js';
import {
  familiarReference,
  formatReference,
  manifestReference,
  parseReference,
  withDigest,
} from './reference.js';

const D = `sha256:${'a'.repeat(64)}`;
const long = (n: number) => 'a'.repeat(n);

const good: Array<[string, string, string]> = [
  ['bare name', 'busybox', 'docker.io/library/busybox:latest'],
  ['bare name with tag', 'busybox:1.36', 'docker.io/library/busybox:1.36'],
  ['user repository', 'user/app', 'docker.io/user/app:latest'],
  ['docker.io explicit', 'docker.io/busybox', 'docker.io/library/busybox:latest'],
  ['index.docker.io normalised', 'index.docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
  ['host with port', '127.0.0.1:5000/app', '127.0.0.1:5000/app:latest'],
  ['host with port and tag', '127.0.0.1:5000/app:v1', '127.0.0.1:5000/app:v1'],
  ['localhost without port', 'localhost/app', 'localhost/app:latest'],
  ['localhost with port', 'localhost:5000/a/b/c:x', 'localhost:5000/a/b/c:x'],
  ['dotted host', 'ghcr.io/owner/repo:main', 'ghcr.io/owner/repo:main'],
  ['digest only', `busybox@${D}`, `docker.io/library/busybox@${D}`],
  ['tag and digest', `busybox:1@${D}`, `docker.io/library/busybox:1@${D}`],
  ['host port digest', `127.0.0.1:5000/app@${D}`, `127.0.0.1:5000/app@${D}`],
  ['separators', 'reg.io/a.b/c_d/e__f/g-h/i---j', 'reg.io/a.b/c_d/e__f/g-h/i---j:latest'],
  ['upper-case host', 'Registry.Example.COM/app', 'Registry.Example.COM/app:latest'],
  ['upper-case first component is a domain', 'Foo/bar', 'Foo/bar:latest'],
  ['IPv6 host with port', '[::1]:5000/app:1', '[::1]:5000/app:1'],
  ['IPv6 host without port', '[fe80::1]/app', '[fe80::1]/app:latest'],
  ['tag with dots and dashes', 'app:v1.2-rc_3', 'docker.io/library/app:v1.2-rc_3'],
  ['tag of 128 characters', `app:${'t'.repeat(128)}`, `docker.io/library/app:${'t'.repeat(128)}`],
  ['tag starting with underscore', 'app:_x', 'docker.io/library/app:_x'],
  ['tag with upper case', 'app:Latest', 'docker.io/library/app:Latest'],
  ['numeric components', '0/1/2', 'docker.io/0/1/2:latest'],
  ['port without dot', 'host:80/x', 'host:80/x:latest'],
  ['sha512 digest', `a@sha512:${'b'.repeat(128)}`, `docker.io/library/a@sha512:${'b'.repeat(128)}`],
];

const badCases: Array<[string, string, RegExp]> = [
  ['empty', '', /reference is empty/],
  ['upper-case repository', 'Busybox', /must be lowercase/],
  ['upper-case path after host', '127.0.0.1:5000/App', /must be lowercase/],
  ['image id', 'a'.repeat(64), /64-character hexadecimal string is an image ID/],
  ['empty tag', 'busybox:', /tag is empty/],
  ['tag starting with dash', 'busybox:-x', /tag "-x" must be/],
  ['tag starting with dot', 'busybox:.x', /tag ".x" must be/],
  ['tag too long', `busybox:${'t'.repeat(129)}`, /must be 1-128 characters/],
  ['tag with slash-less colon junk', 'busybox:a:b', /tag "b"|path component|invalid port/],
  ['bad digest', 'busybox@sha256:abc', /not a valid digest/],
  ['unknown digest algorithm', `busybox@md5:${'a'.repeat(32)}`, /not a valid digest/],
  ['empty repository', ':tag', /repository name is empty/],
  ['empty path after host', '127.0.0.1:5000/', /repository name is empty/],
  ['double slash', 'reg.io//app', /empty path component/],
  ['trailing slash', 'reg.io/app/', /empty path component/],
  ['leading separator', 'reg.io/-app', /path component "-app"/],
  ['trailing separator', 'reg.io/app-', /path component "app-"/],
  ['triple underscore', 'reg.io/a___b', /path component "a___b"/],
  ['dot dot', 'reg.io/a..b', /path component "a..b"/],
  ['bad port', 'reg.io:port/app', /path component|invalid port/],
  ['non-numeric port with dot host', 'reg.io:5x/app', /invalid port "5x"/],
  ['host label ending in dash', 'bad-.io/app', /invalid host name/],
  ['unclosed IPv6', '[::1/app', /IPv6|path component/],
  ['name too long', `reg.io/${long(250)}`, /not be more than 255 characters/],
  ['white space', ' busybox', /surrounding white space/],
  ['space inside', 'busy box', /path component|must be/],
  ['at without digest', 'busybox@', /not a valid digest/],
];

for (const [name, input, want] of good) {
  test(`reference ok: ${name}`, () => {
    assert.equal(formatReference(parseReference(input)), want);
  });
}

for (const [name, input, want] of badCases) {
  test(`reference rejected: ${name}`, () => {
    assert.throws(
      () => parseReference(input),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'INVALID_REFERENCE');
        assert.ok(err.message.startsWith(`invalid reference "${input}": `), err.message);
        assert.match(err.message, want);
        return true;
      },
    );
  });
}

test('reference parts', () => {
  const r = parseReference(`127.0.0.1:5000/team/app:v2@${D}`);
  assert.equal(r.domain, '127.0.0.1:5000');
  assert.equal(r.path, 'team/app');
  assert.equal(r.tag, 'v2');
  assert.equal(r.digest, D);
  assert.equal(manifestReference(r), D);
  assert.equal(manifestReference(parseReference('busybox')), 'latest');
});

test('reference without default tag stays bare', () => {
  assert.equal(
    formatReference(parseReference('busybox', { defaultTag: false })),
    'docker.io/library/busybox',
  );
});

test('withDigest keeps the tag, as buildx prints index entries', () => {
  const r = withDigest(parseReference('busybox'), parseDigest(D));
  assert.equal(formatReference(r), `docker.io/library/busybox:latest@${D}`);
});

test('familiar form drops docker.io and library/', () => {
  assert.equal(familiarReference(parseReference('busybox')), 'busybox:latest');
  assert.equal(familiarReference(parseReference('user/app:1')), 'user/app:1');
  assert.equal(familiarReference(parseReference('127.0.0.1:5000/app')), '127.0.0.1:5000/app:latest');
});

test('round trip: formatting a parsed reference parses to the same value', () => {
  for (const [, input] of good) {
    const once = parseReference(input);
    assert.deepEqual(parseReference(formatReference(once)), once);
  }
});
