import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maskURL } from '../../build/remote/url.js';
import { recordedContext } from './build-history.js';

test('recordedContext: no password or token of a context URL reaches the record', () => {
  assert.equal(
    recordedContext('https://u:hunter2@git.example/r.git#v1', maskURL),
    'https://u:xxxxx@git.example/r.git#v1',
  );
  assert.equal(
    recordedContext('https://ghp_abc123@github.com/o/r.git', maskURL),
    'https://xxxxx@github.com/o/r.git',
  );
  assert.equal(recordedContext('ssh://git@host/r.git', maskURL), 'ssh://git@host/r.git');
  assert.equal(recordedContext('git@github.com:o/r.git', maskURL), 'git@github.com:o/r.git');
  assert.equal(recordedContext('https://h/ctx.tar.gz', maskURL), 'https://h/ctx.tar.gz');
});
