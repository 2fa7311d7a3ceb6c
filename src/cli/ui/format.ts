/**
 * Small text helpers shared by the renderers: BuildKit's byte units, durations, the
 * log-line time prefix, and making untrusted text (step output) safe to draw.
 */

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];

/**
 * Bytes the way BuildKit prints them (tonistiigi/units `%.2f`): decimal units, `581B`
 * below 1000, else two decimals: `1.05MB`, `5.24MB`, `1.00kB`.
 */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '0B';
  const neg = n < 0;
  let v = Math.abs(Math.trunc(n));
  if (v < 1000) return `${neg ? '-' : ''}${v}B`;
  let i = 0;
  let base = 1;
  while (i < UNITS.length - 1 && v >= base * 1000) {
    base *= 1000;
    i++;
  }
  v = v / base;
  return `${neg ? '-' : ''}${v.toFixed(2)}${UNITS[i]}`;
}

/** `1.05MB / 5.24MB`, or `1.05MB` with no total, or '' with neither (BuildKit's rule). */
export function formatProgress(current: number, total: number | undefined): string {
  if (total) return `${formatBytes(current)} / ${formatBytes(total)}`;
  if (current) return formatBytes(current);
  return '';
}

/** Seconds with one decimal, from milliseconds: `0.3s`. */
export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/**
 * The time prefix of a plain log line: seconds since the vertex started, with 3 decimals
 * below 10s, 2 below 100s, else 1 (BuildKit's rule), e.g. `0.312`.
 */
export function formatLogTime(ms: number): string {
  const sec = ms / 1000;
  const prec = Math.abs(sec) < 10 ? 3 : Math.abs(sec) < 100 ? 2 : 1;
  return sec.toFixed(prec);
}

// CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte escapes.
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?/g;
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

/**
 * One line of step output made safe for an in-place display: the text after the last
 * carriage return wins (progress bars), escape sequences and other control characters
 * go, tabs become spaces. Without this a step could move the cursor and break redraws.
 */
export function sanitizeLine(text: string): string {
  let t = text;
  if (t.endsWith('\r')) t = t.slice(0, -1);
  const cr = t.lastIndexOf('\r');
  if (cr >= 0) t = t.slice(cr + 1);
  return t.replace(ESCAPES, '').replace(/\t/g, '    ').replace(CONTROLS, '');
}

/** At most `width` characters (code points) of `s`. */
export function truncate(s: string, width: number): string {
  if (width <= 0) return '';
  const chars = [...s];
  return chars.length <= width ? s : chars.slice(0, width).join('');
}

/** Length in code points (what a terminal shows for most text). */
export function visibleLength(s: string): number {
  return [...s].length;
}

export function padEnd(s: string, width: number): string {
  const n = visibleLength(s);
  return n >= width ? s : s + ' '.repeat(width - n);
}
