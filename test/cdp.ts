/**
 * Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
 * NUL-separated JSON on fds 3 and 4, Puppeteer's pipe transport), so a test can load a page,
 * collect its console errors, exceptions and network requests, evaluate expressions and take a
 * screenshot — no WebSocket client needed.
 *
 *   const b = await Chromium.launch();          // undefined when chromium is not installed
 *   const page = await b.open('file:///tmp/report.html');
 *   await page.evaluate('document.title');
 *   await page.screenshot('test-artifacts/x.png');
 *   await b.close();
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** The chromium binary on PATH, or undefined. */
export function findChromium(): string | undefined {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return undefined;
}

interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

export interface PageProblems {
  /** console.error/assert calls, Log entries of level error, uncaught exceptions. */
  errors: string[];
  /** Requests for anything but file: and data: URLs (a self-contained page makes none). */
  network: string[];
}

export class Chromium {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  private readonly listeners: ((m: Message) => void)[] = [];
  private buffer = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly profile: string,
  ) {
    const out = child.stdio[4] as Readable;
    out.setEncoding('utf8');
    out.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let i = this.buffer.indexOf('\0'); i >= 0; i = this.buffer.indexOf('\0')) {
        const text = this.buffer.slice(0, i);
        this.buffer = this.buffer.slice(i + 1);
        const m = JSON.parse(text) as Message;
        if (m.id !== undefined) {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (m.error) p?.reject(new Error(m.error.message));
          else p?.resolve(m);
        } else for (const l of this.listeners) l(m);
      }
    });
    child.on('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error('chromium exited'));
      this.pending.clear();
    });
  }

  static async launch(opts: { width?: number; height?: number } = {}): Promise<Chromium | undefined> {
    const bin = findChromium();
    if (!bin) return undefined;
    const profile = mkdtempSync(join(tmpdir(), 'history-chromium-'));
    const child = spawn(
      bin,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--hide-scrollbars',
        '--no-first-run',
        '--no-default-browser-check',
        `--user-data-dir=${profile}`,
        `--window-size=${opts.width ?? 1200},${opts.height ?? 900}`,
        '--remote-debugging-pipe',
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    let stderr = '';
    (child.stdio[2] as Readable).on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const b = new Chromium(child, profile);
    await b.send('Target.getTargets').catch((err: Error) => {
      throw new Error(`chromium did not answer on its DevTools pipe: ${err.message}\n${stderr}`);
    });
    return b;
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Message> {
    const id = this.nextId++;
    const msg = JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      (this.child.stdio[3] as Writable).write(`${msg}\0`);
    });
  }

  waitFor(pred: (m: Message) => boolean, timeoutMs = 30_000): Promise<Message> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('timed out waiting for a DevTools event')), timeoutMs);
      const l = (m: Message) => {
        if (!pred(m)) return;
        clearTimeout(t);
        this.listeners.splice(this.listeners.indexOf(l), 1);
        resolve(m);
      };
      this.listeners.push(l);
    });
  }

  /** Opens `url` in a new page and waits for its load event; problems are collected from the start. */
  async open(url: string): Promise<Page> {
    const { result } = await this.send('Target.createTarget', { url: 'about:blank' });
    const targetId = result!.targetId as string;
    const att = await this.send('Target.attachToTarget', { targetId, flatten: true });
    const sessionId = att.result!.sessionId as string;
    const problems: PageProblems = { errors: [], network: [] };
    this.listeners.push((m) => {
      if (m.sessionId !== sessionId) return;
      const p = m.params ?? {};
      if (m.method === 'Runtime.exceptionThrown') {
        const d = p.exceptionDetails as { text?: string; exception?: { description?: string } };
        problems.errors.push(`exception: ${d.exception?.description ?? d.text}`);
      } else if (m.method === 'Runtime.consoleAPICalled' && ['error', 'assert'].includes(p.type as string)) {
        const args = (p.args as { value?: unknown; description?: string }[]).map(
          (a) => a.value ?? a.description,
        );
        problems.errors.push(`console.${p.type}: ${args.join(' ')}`);
      } else if (m.method === 'Log.entryAdded') {
        const e = p.entry as { level: string; text: string; url?: string };
        if (e.level === 'error') problems.errors.push(`log: ${e.text} ${e.url ?? ''}`);
      } else if (m.method === 'Network.requestWillBeSent') {
        const u = (p.request as { url: string }).url;
        if (!/^(file|data|about):/.test(u)) problems.network.push(u);
      }
    });
    for (const d of ['Runtime.enable', 'Log.enable', 'Page.enable', 'Network.enable'])
      await this.send(d, {}, sessionId);
    const loaded = this.waitFor((m) => m.sessionId === sessionId && m.method === 'Page.loadEventFired');
    await this.send('Page.navigate', { url }, sessionId);
    await loaded;
    return new Page(this, sessionId, problems);
  }

  async close(): Promise<void> {
    await this.send('Browser.close').catch(() => undefined);
    if (this.child.exitCode === null && this.child.signalCode === null)
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.child.kill('SIGKILL');
          resolve();
        }, 5000);
        this.child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
      });
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  constructor(
    private readonly b: Chromium,
    private readonly sessionId: string,
    readonly problems: PageProblems,
  ) {}

  /** The value of a JavaScript expression (JSON-serialisable). */
  async evaluate<T>(expression: string): Promise<T> {
    const r = await this.b.send('Runtime.evaluate', { expression, returnByValue: true }, this.sessionId);
    const res = r.result as { result: { value: T }; exceptionDetails?: { text: string } };
    if (res.exceptionDetails) throw new Error(`evaluate ${expression}: ${res.exceptionDetails.text}`);
    return res.result.value;
  }

  /** A PNG of the whole page (not only the window) to `file`. */
  async screenshot(file: string): Promise<number> {
    const m = await this.b.send('Page.getLayoutMetrics', {}, this.sessionId);
    const size = (m.result!.cssContentSize ?? m.result!.contentSize) as { width: number; height: number };
    const shot = await this.b.send(
      'Page.captureScreenshot',
      {
        format: 'png',
        captureBeyondViewport: true,
        clip: { x: 0, y: 0, width: Math.ceil(size.width), height: Math.ceil(size.height), scale: 1 },
      },
      this.sessionId,
    );
    const png = Buffer.from(shot.result!.data as string, 'base64');
    writeFileSync(file, png);
    return png.length;
  }
}
