/**
 * The build history: one JSON file per build in `<stateRoot>/history/<ref>.json` (written
 * atomically: a record is whole or absent), newest first by creation time.
 *
 *   const h = new HistoryStore(stateRoot(env));
 *   const all = await h.list();          // newest first
 *   const r = await h.resolve('^1');     // the one before the newest; also a ref or a unique prefix
 *   await h.prune({ olderThanMs: 48 * 3600_000 });
 *
 * Kept small and bounded: each record caps its logs (record.ts), `save` keeps at most
 * MAX_RECORDS finished records (BuildKit's history default: 50 entries), and `prune` (run by
 * `polyarch prune` / `builder prune`) drops finished records older than a cut-off.
 */
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { tempPath } from '../util/fs.js';
import { type BuildRecord, RECORD_VERSION } from './types.js';

/** Finished records kept at most (the oldest go first). */
export const MAX_RECORDS = 50;
/** Default age after which `prune` drops a finished record (BuildKit's history maxAge: 48h). */
export const DEFAULT_MAX_AGE_MS = 48 * 3600_000;

const REF = /^[a-z0-9]{25}$/;

export class HistoryStore {
  readonly dir: string;

  constructor(stateRoot: string) {
    this.dir = join(stateRoot, 'history');
  }

  path(ref: string): string {
    return join(this.dir, `${ref}.json`);
  }

  /** Where `history open` writes a record's report. */
  reportPath(ref: string): string {
    return join(this.dir, `${ref}.html`);
  }

  /**
   * Writes a record whole (a temporary file renamed over it). Not fsynced: a record is worth
   * less than the build's time, and a file a crash cut short is skipped when read.
   */
  async save(record: BuildRecord, opts: { bound?: boolean } = {}): Promise<void> {
    const dest = this.path(record.ref);
    const tmp = tempPath(dest);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      await writeFile(tmp, JSON.stringify(record), { mode: 0o600, flag: 'wx' });
      // mtime = creation time: `bound` orders records by it without reading them.
      await utimes(tmp, record.createdAt / 1000, record.createdAt / 1000);
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      throw new PolyarchError('IO', `writing ${dest}: ${errorMessage(err)}`, { cause: err });
    }
    if (opts.bound ?? true) await this.bound(MAX_RECORDS).catch(() => undefined);
  }

  /** Every readable record, newest first. Unreadable or foreign files are skipped. */
  async list(): Promise<BuildRecord[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: BuildRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json') || !REF.test(n.slice(0, -5))) continue;
      const r = await this.read(n.slice(0, -5));
      if (r) out.push(r);
    }
    return out.sort((a, b) => b.createdAt - a.createdAt || (a.ref < b.ref ? -1 : 1));
  }

  async read(ref: string): Promise<BuildRecord | undefined> {
    if (!REF.test(ref)) return undefined;
    try {
      const r = JSON.parse(await readFile(this.path(ref), 'utf8')) as BuildRecord;
      if (r?.version !== RECORD_VERSION || r.ref !== ref) return undefined;
      return settle(r);
    } catch {
      return undefined;
    }
  }

  /**
   * The record `ref` names: empty = the newest; `^N` = the Nth before the newest (`^0` is the
   * newest, as buildx); else a full ref or a unique prefix of one.
   */
  async resolve(ref: string | undefined): Promise<BuildRecord> {
    const all = await this.list();
    if (ref === undefined || ref === '') {
      if (all.length === 0) throw new PolyarchError('NOT_FOUND', 'no build records found');
      return all[0]!;
    }
    if (ref.startsWith('^')) {
      const n = /^\^(\d+)$/.exec(ref);
      if (!n)
        throw new PolyarchError(
          'INVALID_ARGUMENT',
          `invalid offset "${ref}": expected ^N (^0 is the newest)`,
        );
      const r = all[Number(n[1])];
      if (!r)
        throw new PolyarchError(
          'NOT_FOUND',
          `no build record found with offset ${n[1]} (${all.length} kept)`,
        );
      return r;
    }
    const hits = all.filter((r) => r.ref.startsWith(ref.toLowerCase()));
    if (hits.length === 1) return hits[0]!;
    if (hits.length > 1 && hits.some((r) => r.ref === ref)) return hits.find((r) => r.ref === ref)!;
    if (hits.length > 1)
      throw new PolyarchError('INVALID_ARGUMENT', `ref "${ref}" matches ${hits.length} build records`);
    throw new PolyarchError('NOT_FOUND', `no build record found for ref "${ref}"`);
  }

  /** Removes records (and their reports). */
  async remove(refs: readonly string[]): Promise<void> {
    for (const ref of refs) {
      await rm(this.path(ref), { force: true });
      await rm(this.reportPath(ref), { force: true });
    }
  }

  /**
   * Drops finished records: all of them (`all`), or those completed before `now - olderThanMs`
   * (default DEFAULT_MAX_AGE_MS). Running builds' records stay. Returns the refs removed.
   */
  async prune(opts: { all?: boolean; olderThanMs?: number; now?: number } = {}): Promise<string[]> {
    const cut = (opts.now ?? Date.now()) - (opts.olderThanMs ?? DEFAULT_MAX_AGE_MS);
    const gone = (await this.list())
      .filter((r) => r.status !== 'running' && (opts.all || (r.completedAt ?? r.createdAt) < cut))
      .map((r) => r.ref);
    await this.remove(gone);
    return gone;
  }

  /**
   * Keeps at most `max` finished records, dropping the oldest. Cheap when under the bound
   * (names only); past it, only the oldest files are read, to skip running builds.
   */
  async bound(max: number): Promise<string[]> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter(
      (n) => n.endsWith('.json') && REF.test(n.slice(0, -5)),
    );
    if (names.length <= max) return [];
    const aged = await Promise.all(
      names.map(async (n) => ({
        ref: n.slice(0, -5),
        mtime: (await stat(join(this.dir, n)).catch(() => undefined))?.mtimeMs ?? 0,
      })),
    );
    aged.sort((a, b) => b.mtime - a.mtime || (a.ref < b.ref ? -1 : 1));
    const gone: string[] = [];
    for (const a of aged.slice(max)) {
      const r = await this.read(a.ref);
      if (r?.status !== 'running') gone.push(a.ref);
    }
    await this.remove(gone);
    return gone;
  }
}

/** A record left `running` by a process that is gone counts as canceled (it was killed). */
function settle(r: BuildRecord): BuildRecord {
  if (r.status !== 'running' || r.pid === undefined || alive(r.pid)) return r;
  const last = Math.max(r.createdAt, ...r.steps.map((s) => s.completed ?? s.started ?? 0));
  return {
    ...r,
    status: 'canceled',
    completedAt: last,
    error: r.error ?? 'the build process exited before finishing',
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A new record ref: 25 characters of [a-z0-9], like BuildKit's identity.NewID. */
export function newRef(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = new Uint8Array(25);
  globalThis.crypto.getRandomValues(bytes);
  return [...bytes].map((b) => alphabet[b % 36]).join('');
}
