/**
 * Renders registry transfer events (pull/push). Not a TTY: one plain line per state change
 * (`sha256:0123abcd4567: done 2.1MB`). TTY: one byte bar per blob, redrawn in place.
 */
import type { TransferEvent, TransferProgress } from '../../registry/progress.js';
import type { Output } from '../context.js';

export function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)}${units[i]}`;
}

function short(e: TransferEvent): string {
  return e.digest.slice(0, 19);
}

const LABEL: Record<TransferEvent['status'], string> = {
  start: 'started',
  progress: 'transferring',
  done: 'done',
  exists: 'already exists',
  mounted: 'mounted from another repository',
  resume: 'resuming',
};

/** Attaches a renderer to `progress`; returns a function that finishes the display. */
export function renderTransfers(progress: TransferProgress, err: Output, tty: boolean): () => void {
  if (!tty) {
    const off = progress.on((e) => {
      if (e.status === 'progress') return;
      const size = e.status === 'done' || e.status === 'exists' ? ` ${humanBytes(e.total)}` : '';
      const at = e.status === 'resume' ? ` at ${humanBytes(e.done)}` : '';
      err.write(`${e.kind} ${short(e)}: ${LABEL[e.status]}${size}${at}\n`);
    });
    return off;
  }
  const rows = new Map<string, TransferEvent>();
  let drawn = 0;
  let last = 0;
  const draw = (force: boolean) => {
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    let s = drawn ? `\x1b[${drawn}A` : '';
    for (const e of rows.values()) {
      const width = 30;
      const frac = e.total ? Math.min(1, e.done / e.total) : 1;
      const bar = `${'='.repeat(Math.floor(frac * width))}${frac < 1 ? '>' : ''}`.padEnd(width);
      const state =
        e.status === 'progress' || e.status === 'start' || e.status === 'resume' ? '' : ` ${LABEL[e.status]}`;
      s += `\x1b[2K${short(e)} [${bar}] ${humanBytes(e.done)}/${humanBytes(e.total)}${state}\n`;
    }
    drawn = rows.size;
    err.write(s);
  };
  const off = progress.on((e) => {
    rows.set(`${e.kind}${e.digest}`, e);
    draw(e.status !== 'progress');
  });
  return () => {
    off();
    draw(true);
  };
}
