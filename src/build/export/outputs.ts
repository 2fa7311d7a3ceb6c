/**
 * `--output`/`--push`/`--load`/`-t` → typed output specs, with buildx's semantics.
 *
 *   const outputs = parseOutputs({ output: ['type=oci,dest=out.tar'], tags: ['app:1'] });
 *   // [{ type: 'oci', dest: 'out.tar', names: ['docker.io/library/app:1'], ... }]
 *   const { outputs, warning } = resolveOutputs({ tags: [] }); // [] + buildx's cache-only warning
 *
 * Rules (buildx's, adapted): `--push` is `type=registry` (or sets `push=true` on a given
 * image/registry output), `--load` is `type=image`. With no output at all and a `-t`, the image
 * goes to the local store; with neither, nothing is exported and a warning says so. A bare
 * `-o DIR` is `type=local,dest=DIR`. `name=` (several names comma-separated, quote the whole
 * field in CSV: `"name=a,b"`) wins over `-t`. Every name is normalised (docker.io/library/…,
 * `:latest`). Bad specs are UsageErrors (exit 2) naming the key.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Compression } from '../../oci/index.js';
import { formatReference, parseReference } from '../../oci/reference.js';
import { errorMessage, PolyarchError, UsageError } from '../../util/errors.js';

export type OutputType = 'image' | 'registry' | 'oci' | 'docker' | 'local' | 'tar';

export interface OutputSpec {
  type: OutputType;
  /** Normalised image names (`docker.io/library/app:1`); for image/registry/oci/docker. */
  names: string[];
  /** Destination path for oci/docker/local/tar. */
  dest?: string;
  /** Keep the image in the local store under `names` (type=image; default true there). */
  store: boolean;
  /** Push `names` to their registries (type=registry, or `push=true`). */
  push: boolean;
  /** Push by digest only, no tag (`push-by-digest=true`). */
  pushByDigest: boolean;
  /** OCI media types (default) or Docker schema 2 ones (default for type=docker). */
  ociMediaTypes: boolean;
  /** Layer compression for newly packed layers; default gzip. Reused base layers stay as they are. */
  compression: Compression;
  /** Default: gzip 6, zstd 3 (layer/compress.ts). */
  compressionLevel?: number;
  /** type=oci: a tar file (default) or, with `tar=false` or an existing directory dest, a layout dir. */
  tar: boolean;
  /** The spec as given, for messages. */
  raw: string;
}

export interface OutputFlags {
  /** `-o/--output`, repeatable. */
  output?: string[];
  push?: boolean;
  load?: boolean;
  /** `-t/--tag`, repeatable. */
  tags?: string[];
  /** polyarch's state root: when given, destinations are checked against it (checkDestinations). */
  stateRoot?: string;
}

/** buildx's wording, adapted. */
export const NO_OUTPUT_WARNING =
  'WARNING: No output specified. Build result will only remain in the build cache. ' +
  'To push result image into registry use --push or to load image into the local store use --load';

const TYPES: readonly OutputType[] = ['image', 'registry', 'oci', 'docker', 'local', 'tar'];

/** Keys each type accepts (besides `type`). */
const KEYS: Record<OutputType, readonly string[]> = {
  image: [
    'name',
    'push',
    'push-by-digest',
    'oci-mediatypes',
    'compression',
    'compression-level',
    'store',
    'unpack',
  ],
  registry: ['name', 'push', 'push-by-digest', 'oci-mediatypes', 'compression', 'compression-level'],
  oci: ['name', 'dest', 'tar', 'oci-mediatypes', 'compression', 'compression-level'],
  docker: ['name', 'dest', 'oci-mediatypes', 'compression', 'compression-level'],
  local: ['dest'],
  tar: ['dest'],
};

/** Splits one CSV record (buildx parses specs as CSV): commas separate, double quotes group. */
export function splitCsv(spec: string): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i]!;
    if (quoted) {
      if (c === '"' && spec[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  if (quoted) throw new UsageError(`invalid output "${spec}": unterminated quote`);
  fields.push(cur);
  return fields;
}

function bool(spec: string, key: string, value: string): boolean {
  if (value === 'true' || value === '') return true;
  if (value === 'false') return false;
  throw new UsageError(`invalid output "${spec}": ${key}=${value}: expected true or false`);
}

function normaliseName(spec: string, name: string): string {
  try {
    return formatReference(parseReference(name));
  } catch (err) {
    throw new UsageError(`invalid output "${spec}": name "${name}": ${errorMessage(err)}`, { cause: err });
  }
}

/** Parses one `--output` value; `tags` are the `-t` names (already normalised). */
export function parseOutput(spec: string, tags: string[] = []): OutputSpec {
  if (spec.trim() === '') throw new UsageError('invalid output "": spec is empty');
  // buildx: a value without '=' is a local destination directory ('-' would be stdout).
  if (!spec.includes('=')) {
    if (spec === '-')
      throw new UsageError('invalid output "-": writing to stdout is not supported; use dest=FILE');
    spec = `type=local,dest=${spec}`;
  }
  const kv = new Map<string, string>();
  for (const field of splitCsv(spec)) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? '' : field.slice(eq + 1).trim();
    if (key === '') throw new UsageError(`invalid output "${spec}": empty key in "${field}"`);
    if (kv.has(key)) throw new UsageError(`invalid output "${spec}": key "${key}" given twice`);
    kv.set(key, value);
  }
  const type = kv.get('type');
  if (type === undefined) throw new UsageError(`invalid output "${spec}": key "type" is missing`);
  if (!TYPES.includes(type as OutputType))
    throw new UsageError(`invalid output "${spec}": type "${type}" is not one of ${TYPES.join(', ')}`);
  const t = type as OutputType;
  for (const key of kv.keys())
    if (key !== 'type' && !KEYS[t].includes(key))
      throw new UsageError(
        `invalid output "${spec}": key "${key}" is not supported by type=${t} (allowed: ${KEYS[t].join(', ')})`,
      );

  const nameValue = kv.get('name');
  const names =
    nameValue !== undefined
      ? nameValue
          .split(',')
          .map((n) => n.trim())
          .filter((n) => n !== '')
          .map((n) => normaliseName(spec, n))
      : ['image', 'registry', 'oci', 'docker'].includes(t)
        ? [...tags]
        : [];

  const compression = (kv.get('compression') ?? 'gzip') as Compression;
  if (!['gzip', 'zstd', 'uncompressed'].includes(compression))
    throw new UsageError(
      `invalid output "${spec}": key "compression": "${compression}" is not gzip, zstd or uncompressed`,
    );
  let compressionLevel: number | undefined;
  const lv = kv.get('compression-level');
  if (lv !== undefined) {
    const n = /^\d+$/.test(lv) ? Number(lv) : Number.NaN;
    const [lo, hi] = compression === 'zstd' ? [1, 19] : compression === 'gzip' ? [0, 9] : [0, 0];
    if (compression === 'uncompressed')
      throw new UsageError(
        `invalid output "${spec}": key "compression-level" needs compression=gzip or zstd`,
      );
    if (!(n >= lo && n <= hi))
      throw new UsageError(
        `invalid output "${spec}": key "compression-level": "${lv}" is not an integer in ${lo}..${hi} for ${compression}`,
      );
    compressionLevel = n;
  }

  const dest = kv.get('dest');
  if (['oci', 'docker', 'local', 'tar'].includes(t)) {
    if (dest === undefined || dest === '')
      throw new UsageError(`invalid output "${spec}": key "dest" is required for type=${t}`);
    if (dest === '-')
      throw new UsageError(`invalid output "${spec}": key "dest": writing to stdout is not supported`);
  }

  const pushByDigest = bool(spec, 'push-by-digest', kv.get('push-by-digest') ?? 'false');
  const push =
    t === 'registry'
      ? bool(spec, 'push', kv.get('push') ?? 'true')
      : bool(spec, 'push', kv.get('push') ?? 'false');
  const out: OutputSpec = {
    type: t,
    names,
    store: t === 'image' ? bool(spec, 'store', kv.get('store') ?? 'true') : false,
    push,
    pushByDigest,
    ociMediaTypes: bool(
      spec,
      'oci-mediatypes',
      kv.get('oci-mediatypes') ?? (t === 'docker' ? 'false' : 'true'),
    ),
    compression,
    ...(compressionLevel !== undefined ? { compressionLevel } : {}),
    tar: t === 'oci' ? bool(spec, 'tar', kv.get('tar') ?? 'true') : true,
    raw: spec,
  };
  if (dest !== undefined) out.dest = dest;
  if (out.push && out.names.length === 0)
    throw new UsageError(
      `invalid output "${spec}": key "name": a name (or -t) is needed to push to a registry`,
    );
  if (out.type === 'docker' && out.ociMediaTypes === false && compression !== 'gzip' && kv.has('compression'))
    throw new UsageError(
      `invalid output "${spec}": key "compression": ${compression} layers need oci-mediatypes=true`,
    );
  return out;
}

/** The outputs of a build command line, plus the warning to print when there are none. */
export function resolveOutputs(flags: OutputFlags): { outputs: OutputSpec[]; warning?: string } {
  const tags = (flags.tags ?? []).map((t) => {
    try {
      return formatReference(parseReference(t));
    } catch (err) {
      throw new UsageError(`invalid tag "${t}": ${errorMessage(err)}`, { cause: err });
    }
  });
  const outputs = (flags.output ?? []).map((o) => parseOutput(o, tags));
  if (flags.push) {
    const target = outputs.find((o) => o.type === 'image' || o.type === 'registry');
    if (target) target.push = true;
    else outputs.push(parseOutput('type=registry', tags));
  }
  if (flags.load && !outputs.some((o) => o.type === 'image')) outputs.push(parseOutput('type=image', tags));
  if (outputs.length === 0 && tags.length > 0) outputs.push(parseOutput('type=image', tags));
  for (const o of outputs)
    if (o.push && o.names.length === 0)
      throw new UsageError(
        `invalid output "${o.raw}": key "name": a name (or -t) is needed to push to a registry`,
      );
  const dests = new Map<string, string>();
  for (const o of outputs) {
    if (o.dest === undefined) continue;
    const other = dests.get(o.dest);
    if (other)
      throw new UsageError(
        `invalid output "${o.raw}": key "dest": "${o.dest}" is also the dest of "${other}"`,
      );
    dests.set(o.dest, o.raw);
  }
  if (flags.stateRoot !== undefined) checkDestinations(outputs, flags.stateRoot);
  return outputs.length === 0 ? { outputs, warning: NO_OUTPUT_WARNING } : { outputs };
}

/**
 * `path` with symlinks resolved as far as it exists (the rest appended): where a write to it
 * would land.
 */
function landingPath(path: string): string {
  let head = resolve(path);
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(head), ...rest);
    } catch {
      const up = dirname(head);
      if (up === head) return join(head, ...rest);
      rest.unshift(basename(head));
      head = up;
    }
  }
}

const within = (inner: string, outer: string) =>
  inner === outer || inner.startsWith(outer.endsWith(sep) ? outer : outer + sep);

/**
 * Refuses destinations an export must never write: `/` (a rootfs written there replaces the
 * host's /etc, /bin, …), polyarch's state root, a directory that contains it, or a path inside
 * it (the store and snapshots would be overwritten). Paths are compared after resolving
 * symlinks, so `dest=/tmp/link-to-root` is `/`. Errors are exit 1, naming the output and why.
 */
export function checkDestinations(outputs: readonly OutputSpec[], stateRoot: string): void {
  const root = landingPath(stateRoot);
  for (const o of outputs) {
    if (o.dest === undefined) continue;
    const d = landingPath(o.dest);
    const shown = d === resolve(o.dest) ? `"${o.dest}"` : `"${o.dest}" (${d})`;
    let why: string | undefined;
    if (d === sep)
      why = 'is the root directory /: an image written there would replace host files such as /etc and /bin';
    else if (d === root) why = `is polyarch's state root: the image would overwrite the store and snapshots`;
    else if (within(root, d))
      why = `contains polyarch's state root ${root}: the image would overwrite the store and snapshots`;
    else if (within(d, root))
      why = `is inside polyarch's state root ${root}: the image would overwrite polyarch's own state`;
    if (why)
      throw new PolyarchError(
        'INVALID_ARGUMENT',
        `invalid output "${o.raw}": dest ${shown} ${why}; choose another directory`,
      );
  }
}

/** `resolveOutputs` without the warning: the specs only (the caller prints NO_OUTPUT_WARNING when empty). */
export function parseOutputs(flags: OutputFlags): OutputSpec[] {
  return resolveOutputs(flags).outputs;
}
