/**
 * A tiny terminal for tests: applies the ANSI a renderer writes (cursor up/down, column,
 * erase line, erase below, CR, LF with onlcr, autowrap, scrolling) to a screen buffer,
 * so tests can assert what a person would see — including that no stale line remains.
 * Colours and cursor visibility are accepted and ignored; anything else is an error, so a
 * renderer that starts emitting something new gets noticed.
 */
export class VTerm {
  readonly cols: number;
  readonly rows: number;
  /** Lines scrolled off the top, oldest first. */
  readonly scrollback: string[] = [];
  private screen: string[][];
  private x = 0;
  private y = 0;

  constructor(cols: number, rows: number) {
    this.cols = cols;
    this.rows = rows;
    this.screen = Array.from({ length: rows }, () => []);
  }

  write(s: string): void {
    for (let i = 0; i < s.length; i++) {
      const c = s[i]!;
      if (c === '\x1b') {
        const m = /^\x1b\[(\??)([0-9;]*)([A-Za-z])/.exec(s.slice(i));
        if (!m) throw new Error(`vterm: unsupported escape at ${JSON.stringify(s.slice(i, i + 8))}`);
        this.csi(m[1]!, m[2]!, m[3]!);
        i += m[0].length - 1;
      } else if (c === '\r') this.x = 0;
      else if (c === '\n') {
        this.x = 0; // onlcr
        this.lineFeed();
      } else if (c < ' ') throw new Error(`vterm: unexpected control ${c.charCodeAt(0)}`);
      else {
        if (this.x >= this.cols) {
          this.x = 0;
          this.lineFeed();
        }
        const row = this.screen[this.y]!;
        while (row.length < this.x) row.push(' ');
        row[this.x] = c;
        this.x++;
      }
    }
  }

  private lineFeed(): void {
    if (this.y < this.rows - 1) this.y++;
    else {
      this.scrollback.push(this.screen.shift()!.join('').trimEnd());
      this.screen.push([]);
    }
  }

  private csi(priv: string, params: string, fin: string): void {
    const n = Number(params.split(';')[0] || '0');
    if (priv === '?') {
      if ((fin === 'h' || fin === 'l') && params === '25') return;
      throw new Error(`vterm: unsupported private mode ${params}${fin}`);
    }
    switch (fin) {
      case 'A':
        this.y = Math.max(0, this.y - Math.max(1, n));
        this.x = Math.min(this.x, this.cols - 1);
        return;
      case 'B':
        this.y = Math.min(this.rows - 1, this.y + Math.max(1, n));
        return;
      case 'G':
        this.x = Math.max(0, n - 1);
        return;
      case 'K':
        if (n !== 0) throw new Error('vterm: only ESC[K (to end of line) is supported');
        this.screen[this.y]!.length = Math.min(this.screen[this.y]!.length, this.x);
        return;
      case 'J':
        if (n !== 0) throw new Error('vterm: only ESC[J (to end of screen) is supported');
        this.screen[this.y]!.length = Math.min(this.screen[this.y]!.length, this.x);
        for (let r = this.y + 1; r < this.rows; r++) this.screen[r] = [];
        return;
      case 'm':
        return;
      default:
        throw new Error(`vterm: unsupported CSI ${params}${fin}`);
    }
  }

  /** The visible screen, trailing blanks and trailing empty lines removed. */
  text(): string {
    const lines = this.screen.map((r) => r.join('').trimEnd());
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines.join('\n');
  }

  /** Scrollback and screen together. */
  all(): string {
    const screen = this.text();
    return [...this.scrollback, ...(screen === '' ? [] : [screen])].join('\n');
  }
}
