/**
 * Loading a compose project like `docker compose` does:
 *
 *   const project = await loadProject({ cwd, files: ['-f' values], env: process.env, warn });
 *   project.name, project.dir, project.services.web.build?.platforms
 *
 * Steps, per file: read → YAML → interpolate (`.env` + environment) → validate (schema.ts,
 * errors `FILE: PATH: RULE`) → normalise (`build: DIR` → `{context: DIR}`, lists → maps); then
 * the files are merged in order (`mergeCompose`). Paths stay as written: they are relative to
 * the project directory (the first file's directory), resolved by plan.ts.
 */
import { readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { PolyarchError, UsageError } from '../util/errors.js';
import { interpolateTree, parseDotEnv } from './interpolate.js';
import { composeSchema } from './schema.js';

export interface ComposeBuildConfig {
  context?: string;
  dockerfile?: string;
  dockerfile_inline?: string;
  args?: Record<string, string | undefined>;
  target?: string;
  platforms?: string[];
  tags?: string[];
  labels?: Record<string, string>;
  cache_from?: string[];
  cache_to?: string[];
  no_cache?: boolean;
  pull?: boolean;
  secrets?: { source: string; target?: string }[];
  network?: string;
  /** Named build contexts (`--build-context`): name → a path, URL, `docker-image://…` or `service:NAME`. */
  additional_contexts?: Record<string, string>;
  [other: string]: unknown;
}

export interface ComposeService {
  image?: string;
  platform?: string;
  build?: ComposeBuildConfig;
  /** Service names, in the file's order. */
  depends_on?: string[];
  [other: string]: unknown;
}

export interface ComposeProject {
  name: string;
  /** Project directory: relative paths in every file are relative to it. */
  dir: string;
  /** The files read, absolute, in merge order. */
  files: string[];
  services: Record<string, ComposeService>;
  secrets: Record<string, { file?: string; environment?: string }>;
  /** `.env` merged under the process environment: what interpolation saw. */
  environment: Record<string, string | undefined>;
}

export interface LoadOptions {
  /** Working directory. Default process.cwd(). */
  cwd?: string;
  /** `-f` files; default COMPOSE_FILE, else the first of DEFAULT_FILES in cwd (+ its override). */
  files?: string[];
  /** `-p`; default COMPOSE_PROJECT_NAME, then `name:`, then the project directory's name. */
  projectName?: string;
  /** `--project-directory`; default the first file's directory. */
  projectDirectory?: string;
  /** `--env-file`; default `<project dir>/.env` when it exists. */
  envFile?: string;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  warn?: (message: string) => void;
}

/** docker compose's lookup order. */
export const DEFAULT_FILES = ['compose.yaml', 'compose.yml', 'docker-compose.yaml', 'docker-compose.yml'];

const readText = async (path: string): Promise<string | undefined> => {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
};

async function findFiles(opts: LoadOptions, cwd: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  if (opts.files && opts.files.length > 0) return opts.files.map((f) => resolve(cwd, f));
  if (env.COMPOSE_FILE)
    return env.COMPOSE_FILE.split(env.COMPOSE_PATH_SEPARATOR ?? ':')
      .filter(Boolean)
      .map((f) => resolve(cwd, f));
  for (const name of DEFAULT_FILES) {
    const path = join(cwd, name);
    if ((await readText(path)) === undefined) continue;
    // compose.yaml → compose.override.yaml (or .yml) is merged over it when present.
    const stem = name.replace(/\.ya?ml$/, '');
    for (const ext of ['yaml', 'yml']) {
      const o = join(cwd, `${stem}.override.${ext}`);
      if ((await readText(o)) !== undefined) return [path, o];
    }
    return [path];
  }
  throw new PolyarchError(
    'NOT_FOUND',
    `no configuration file provided: none of ${DEFAULT_FILES.join(', ')} in ${cwd}`,
  );
}

/** compose-go's NormalizeProjectName: lower case, only [a-z0-9_-], starting with a letter or digit. */
export function normalizeProjectName(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '')
    .replace(/^[^a-z0-9]+/, '');
}

/** An explicit project name (`name:`, `-p`, COMPOSE_PROJECT_NAME) must already be normal. */
export function checkProjectName(s: string, source: string): string {
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(s))
    throw new PolyarchError(
      'INVALID_ARGUMENT',
      `${source}: project name "${s}" is invalid: it must contain only lower-case letters, digits, dashes and underscores, and start with a letter or digit`,
    );
  return s;
}

const ajv = new Ajv({ allErrors: false, strict: false });
const validateDoc = ajv.compile(composeSchema);

/** Validates one parsed file; throws `FILE: PATH: RULE` for the first violation. */
export function validateCompose(doc: unknown, file: string): void {
  if (validateDoc(doc)) return;
  const e = validateDoc.errors?.[0];
  if (!e) return;
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
  let rule = e.message ?? 'is invalid';
  if (e.keyword === 'type') rule = `must be ${String(e.params.type).split(',').join(' or ')}`;
  if (e.keyword === 'required') rule = `must have property "${e.params.missingProperty}"`;
  throw new PolyarchError('INVALID_ARGUMENT', `${file}: ${path || '(root)'}: ${rule}`);
}

/** `["K=V", "K"]` or `{K: V}` → a map; a bare `K` (list) or `K:` (null) takes the value from `lookup`, or stays undefined. */
function toMap(v: unknown, lookup: (n: string) => string | undefined): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  if (Array.isArray(v))
    for (const item of v as string[]) {
      const eq = item.indexOf('=');
      if (eq < 0) out[item] = lookup(item);
      else out[item.slice(0, eq)] = item.slice(eq + 1);
    }
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out[k] = x === null || x === undefined ? lookup(k) : String(x);
  return out;
}

/** One validated file → the normalised shape `mergeCompose` works on. */
export function normalizeCompose(
  doc: Record<string, unknown>,
  lookup: (n: string) => string | undefined,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...doc };
  const services: Record<string, ComposeService> = {};
  for (const [name, raw] of Object.entries((doc.services as Record<string, unknown> | undefined) ?? {})) {
    const s: ComposeService = { ...((raw as Record<string, unknown> | null) ?? {}) };
    if (s.build !== undefined) {
      const b: ComposeBuildConfig =
        typeof s.build === 'string' ? { context: s.build } : { ...(s.build as ComposeBuildConfig) };
      if (b.args !== undefined) b.args = toMap(b.args, lookup);
      if (b.labels !== undefined) b.labels = toMap(b.labels, () => '') as Record<string, string>;
      if (b.additional_contexts !== undefined)
        b.additional_contexts = toMap(b.additional_contexts, () => '') as Record<string, string>;
      if (b.secrets !== undefined)
        b.secrets = (b.secrets as unknown[]).map((x) => (typeof x === 'string' ? { source: x } : x)) as {
          source: string;
          target?: string;
        }[];
      s.build = b;
    }
    if (s.depends_on !== undefined && !Array.isArray(s.depends_on)) s.depends_on = Object.keys(s.depends_on);
    services[name] = s;
  }
  if (doc.services !== undefined) out.services = services;
  return out;
}

const isMap = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/**
 * Merges `over` into `base` (both normalised) by compose's rules for the keys polyarch reads:
 * mappings merge key by key (services by name, `build.args`/`labels` by key), sequences
 * (`platforms`, `tags`, `cache_from`, `depends_on`, …) append without duplicates, scalars are
 * replaced.
 */
export function mergeCompose(base: unknown, over: unknown): unknown {
  if (isMap(base) && isMap(over)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(over)) out[k] = k in base ? mergeCompose(base[k], v) : v;
    return out;
  }
  if (Array.isArray(base) && Array.isArray(over)) {
    const seen = new Set(base.map((x) => JSON.stringify(x)));
    return [...base, ...over.filter((x) => !seen.has(JSON.stringify(x)))];
  }
  return over;
}

/** Loads, interpolates, validates and merges a project; see the module comment. */
export async function loadProject(opts: LoadOptions = {}): Promise<ComposeProject> {
  const env = opts.env ?? process.env;
  const cwd = resolve(opts.cwd ?? process.cwd());
  const files = await findFiles(opts, cwd, env);
  const dir = opts.projectDirectory ? resolve(cwd, opts.projectDirectory) : dirname(files[0]!);

  // .env: the process environment wins over it.
  const envFile = opts.envFile ? resolve(cwd, opts.envFile) : join(dir, '.env');
  const envText = await readText(envFile);
  if (envText === undefined && opts.envFile)
    throw new PolyarchError('NOT_FOUND', `--env-file ${opts.envFile}: no such file`);
  const dotenv = envText === undefined ? {} : parseDotEnv(envText, { lookup: (n) => env[n], file: envFile });
  const environment: Record<string, string | undefined> = { ...dotenv, ...env };
  const lookup = (n: string) => environment[n];
  const warned = new Set<string>();
  const warn = (m: string) => {
    if (warned.has(m)) return;
    warned.add(m);
    opts.warn?.(m);
  };

  let merged: unknown = {};
  for (const file of files) {
    const label = isAbsolute(file) && dirname(file) === cwd ? basename(file) : file;
    const text = await readText(file);
    if (text === undefined) throw new PolyarchError('NOT_FOUND', `${label}: no such file`);
    let doc: unknown;
    try {
      doc = parseYaml(text, { merge: true });
    } catch (err) {
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `${label}: ${(err as Error).message.split('\n')[0]!.replace(/:$/, '')}`,
        {
          cause: err,
        },
      );
    }
    if (doc === null || doc === undefined) doc = {};
    if (!isMap(doc)) throw new PolyarchError('INVALID_ARGUMENT', `${label}: (root): must be object`);
    doc = interpolateTree(doc, { lookup, warn, file: label });
    validateCompose(doc, label);
    merged = mergeCompose(merged, normalizeCompose(doc as Record<string, unknown>, lookup));
  }
  const m = merged as Record<string, unknown>;
  const services = (m.services as Record<string, ComposeService> | undefined) ?? {};
  let name: string;
  if (opts.projectName !== undefined) name = checkProjectName(opts.projectName, '--project-name');
  else if (environment.COMPOSE_PROJECT_NAME)
    name = checkProjectName(environment.COMPOSE_PROJECT_NAME, 'COMPOSE_PROJECT_NAME');
  else if (typeof m.name === 'string' && m.name !== '') name = checkProjectName(m.name, 'name');
  else {
    name = normalizeProjectName(basename(dir));
    if (!name)
      throw new UsageError(`project directory "${dir}" gives an empty project name: use -p NAME or name:`);
  }
  return {
    name,
    dir,
    files,
    services,
    secrets: (m.secrets as ComposeProject['secrets'] | undefined) ?? {},
    environment,
  };
}
