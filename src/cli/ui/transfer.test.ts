import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Digest } from '../../oci/index.js';
import { type TransferEvent, TransferProgress } from '../../registry/progress.js';
import { humanBytes, renderTransfers } from './transfer.js';

const d = `sha256:${'ab'.repeat(32)}` as Digest;
const ev = (status: TransferEvent['status'], done: number): TransferEvent => ({
  direction: 'pull',
  kind: 'blob',
  digest: d,
  mediaType: 'x',
  status,
  done,
  total: 2_500_000,
});

test('plain renderer: one line per state change, none per byte', () => {
  let out = '';
  const p = new TransferProgress();
  const done = renderTransfers(p, { write: (s) => (out += s) }, false);
  p.emit(ev('start', 0));
  p.emit(ev('progress', 1000));
  p.emit(ev('resume', 1_200_000));
  p.emit(ev('done', 2_500_000));
  done();
  p.emit(ev('done', 2_500_000));
  assert.equal(
    out,
    [
      'blob sha256:abababababab: started',
      'blob sha256:abababababab: resuming at 1.20MB',
      'blob sha256:abababababab: done 2.50MB',
      '',
    ].join('\n'),
  );
});

test('tty renderer: redraws one bar per blob in place', () => {
  let out = '';
  const p = new TransferProgress();
  const done = renderTransfers(p, { write: (s) => (out += s) }, true);
  p.emit(ev('start', 0));
  p.emit(ev('done', 2_500_000));
  done();
  assert.match(out, /sha256:abababababab \[> {29}\] 0B\/2.50MB\n/);
  assert.match(out, /\x1b\[1A\x1b\[2Ksha256:abababababab \[={30}\] 2.50MB\/2.50MB done\n/);
});

test('human byte sizes', () => {
  assert.equal(humanBytes(0), '0B');
  assert.equal(humanBytes(999), '999B');
  assert.equal(humanBytes(1500), '1.50kB');
  assert.equal(humanBytes(12_345_678), '12.3MB');
});
