/**
 * Where builder instances live: `<stateRoot>/builders/<name>.json`, one file per builder,
 * and `<stateRoot>/builders/current` holding the current builder's name.
 *
 *   const store = BuilderStore.open(env);       // $POLYARCH_ROOT selects the state root
 *   await store.put(builder);
 *   const b = await store.get('mybuilder');     // undefined when absent
 *   await store.setCurrent('mybuilder');
 *
 * Every file is replaced atomically (a temp file `.tmp-*` in the same directory, fsynced,
 * renamed over the old one, then the directory fsynced), so a writer killed at any point
 * leaves either the old file or the new one; readers ignore temp files. Read-modify-write
 * sequences (create --append, rm) run under `withLock`, which also removes temp files
 * left by writers that died. The `default` builder is never
 * stored: it is synthesised by `get`/`list`.
 */
import { mkdir, readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { stateRoot } from '../content/index.js';
import { acquireLock, pidAlive } from '../util/lock.js';
import { fsyncDir, writeFileAtomic } from '../util/fs.js';
import { formatPlatform, platform } from '../platform/index.js';
import { errorMessage, PolyarchError } from '../util/errors.js';
import { type Builder, type BuilderNode, DEFAULT_BUILDER, isDriverName } from './types.js';

/** The built-in builder: this machine, no pinned platforms. */
export const defaultBuilder: Builder = {
  name: DEFAULT_BUILDER,
  driver: 'local',
  nodes: [{ name: DEFAULT_BUILDER, endpoint: DEFAULT_BUILDER, platforms: [] }],
  dynamic: false,
};

/** buildx's rule (store/util.go): a letter first, then letters, digits and `._-`. */
const NAME = /^[a-zA-Z][a-zA-Z0-9._-]*$/;

/** Checks a builder or node name; the error names the input and the rule. */
export function validateName(name: string, what = 'builder name'): string {
  if (!NAME.test(name))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `invalid ${what} "${name}": it must start with a letter and contain only letters, digits and ._-`,
      { exitCode: 2 },
    );
  return name;
}

/** The JSON form on disk: platforms as strings, everything else as in `Builder`. */
interface StoredBuilder {
  name: string;
  driver: string;
  nodes: {
    name: string;
    endpoint: string;
    platforms: string[];
    flags?: string[];
    driverOpts?: Record<string, string>;
    driver?: string;
  }[];
  dynamic?: boolean;
  lastActivity?: string;
}

export function encodeBuilder(b: Builder): string {
  const s: StoredBuilder = {
    name: b.name,
    driver: b.driver,
    nodes: b.nodes.map((n) => ({
      name: n.name,
      endpoint: n.endpoint,
      platforms: n.platforms.map((p) => formatPlatform(p)),
      ...(n.flags && n.flags.length > 0 ? { flags: [...n.flags] } : {}),
      ...(n.driverOpts && Object.keys(n.driverOpts).length > 0 ? { driverOpts: { ...n.driverOpts } } : {}),
      ...(n.driver ? { driver: n.driver } : {}),
    })),
    dynamic: false,
    ...(b.lastActivity ? { lastActivity: b.lastActivity } : {}),
  };
  return `${JSON.stringify(s, null, 2)}\n`;
}

/** Parses and checks a stored builder; `file` names it in errors. */
export function decodeBuilder(text: string, file: string): Builder {
  const bad = (why: string) =>
    new PolyarchError('INVALID_ARGUMENT', `builder file ${file} is invalid: ${why}`);
  let s: StoredBuilder;
  try {
    s = JSON.parse(text);
  } catch (err) {
    throw bad(errorMessage(err));
  }
  if (typeof s !== 'object' || s === null) throw bad('not a JSON object');
  if (typeof s.name !== 'string' || !NAME.test(s.name)) throw bad('"name" is missing or invalid');
  if (typeof s.driver !== 'string' || !isDriverName(s.driver))
    throw bad(`unknown driver ${JSON.stringify(s.driver)}`);
  if (!Array.isArray(s.nodes) || s.nodes.length === 0) throw bad('"nodes" must be a non-empty array');
  const nodes: BuilderNode[] = s.nodes.map((n, i) => {
    if (typeof n?.name !== 'string' || typeof n.endpoint !== 'string')
      throw bad(`node ${i} lacks name or endpoint`);
    if (!Array.isArray(n.platforms)) throw bad(`node ${n.name}: "platforms" must be an array`);
    let platforms: BuilderNode['platforms'];
    try {
      platforms = n.platforms.map((p) => platform(p));
    } catch (err) {
      throw bad(`node ${n.name}: ${errorMessage(err)}`);
    }
    return {
      name: n.name,
      endpoint: n.endpoint,
      platforms,
      ...(Array.isArray(n.flags) ? { flags: n.flags.map(String) } : {}),
      ...(n.driverOpts && typeof n.driverOpts === 'object' ? { driverOpts: { ...n.driverOpts } } : {}),
      ...(typeof n.driver === 'string' && isDriverName(n.driver) ? { driver: n.driver } : {}),
    };
  });
  return {
    name: s.name,
    driver: s.driver,
    nodes,
    dynamic: false,
    ...(typeof s.lastActivity === 'string' ? { lastActivity: s.lastActivity } : {}),
  };
}

const notFound = (err: unknown) => (err as NodeJS.ErrnoException)?.code === 'ENOENT';

export class BuilderStore {
  /** `<stateRoot>/builders`. */
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The store under the state root chosen by `env` (`$POLYARCH_ROOT`, see content/paths.ts). */
  static open(env: NodeJS.ProcessEnv = process.env): BuilderStore {
    return new BuilderStore(join(stateRoot(env), 'builders'));
  }

  #file(name: string): string {
    return join(this.dir, `${validateName(name)}.json`);
  }

  /** The builder named `name` (`default` included), or undefined. */
  async get(name: string): Promise<Builder | undefined> {
    if (name === DEFAULT_BUILDER) return defaultBuilder;
    const file = this.#file(name);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (notFound(err)) return undefined;
      throw new PolyarchError('IO', `reading ${file}: ${errorMessage(err)}`, { cause: err });
    }
    const b = decodeBuilder(text, file);
    if (b.name !== name)
      throw new PolyarchError('INVALID_ARGUMENT', `builder file ${file} is invalid: it names "${b.name}"`);
    return b;
  }

  /**
   * Every stored builder sorted by name, then `default` (buildx lists its store, then the
   * default). A file that cannot be read is reported through `onError` and skipped, so one
   * hand-damaged file does not hide the others.
   */
  async list(onError: (name: string, err: Error) => void = () => {}): Promise<Builder[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if (!notFound(err))
        throw new PolyarchError('IO', `reading ${this.dir}: ${errorMessage(err)}`, { cause: err });
      names = [];
    }
    const out: Builder[] = [];
    for (const f of names.sort()) {
      // Temp files start with a dot; anything not <valid-name>.json is not ours.
      if (!f.endsWith('.json')) continue;
      const name = f.slice(0, -'.json'.length);
      if (!NAME.test(name) || name === DEFAULT_BUILDER) continue;
      try {
        const b = await this.get(name);
        if (b) out.push(b);
      } catch (err) {
        onError(name, err instanceof Error ? err : new Error(String(err)));
      }
    }
    out.push(defaultBuilder);
    return out;
  }

  /** Stores `b` (replacing a builder of that name). `default` cannot be stored. */
  async put(b: Builder): Promise<void> {
    if (b.name === DEFAULT_BUILDER)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        'default is a reserved name and cannot be used for a new builder',
      );
    validateName(b.name);
    await mkdir(this.dir, { recursive: true });
    await writeFileAtomic(join(this.dir, `${b.name}.json`), encodeBuilder(b));
  }

  /** Deletes a stored builder; false if it was not there. Clears `current` if it named it. */
  async remove(name: string): Promise<boolean> {
    try {
      await unlink(this.#file(name));
    } catch (err) {
      if (notFound(err)) return false;
      throw new PolyarchError('IO', `removing builder ${name}: ${errorMessage(err)}`, { cause: err });
    }
    if ((await this.currentName()) === name) await this.setCurrent(undefined);
    await fsyncDir(this.dir);
    return true;
  }

  /** The name in `current`, whether or not that builder still exists; undefined when unset. */
  async currentName(): Promise<string | undefined> {
    try {
      const name = (await readFile(join(this.dir, 'current'), 'utf8')).trim();
      return name === '' ? undefined : name;
    } catch (err) {
      if (notFound(err)) return undefined;
      throw new PolyarchError('IO', `reading ${join(this.dir, 'current')}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
  }

  /** Sets (or with undefined, clears) the current builder. */
  async setCurrent(name: string | undefined): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    if (name === undefined) {
      await unlink(join(this.dir, 'current')).catch((err) => {
        if (!notFound(err)) throw err;
      });
      return;
    }
    await writeFileAtomic(join(this.dir, 'current'), `${validateName(name)}\n`);
  }

  /** Deletes `.tmp-<file>-<pid>-<rand>` files whose writer no longer runs (killed mid-write). */
  async #removeDeadTemps(): Promise<void> {
    for (const f of await readdir(this.dir)) {
      const m = /^\.tmp-.*-(\d+)-[0-9a-f]+$/.exec(f);
      if (m && !pidAlive(Number(m[1]))) await unlink(join(this.dir, f)).catch(() => {});
    }
  }

  /** Runs `fn` holding the store's lock, for read-modify-write sequences. */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(this.dir, { recursive: true });
    const release = await acquireLock(join(this.dir, '.lock'));
    try {
      await this.#removeDeadTemps();
      return await fn();
    } finally {
      await release();
    }
  }
}
