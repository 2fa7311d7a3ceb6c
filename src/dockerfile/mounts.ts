/** `RUN --mount=…` specs: split, checked and expanded as BuildKit's dockerfile frontend does (bind, cache, tmpfs, secret, ssh). */
import { posixJoin } from './plan-ctx.js';
import type { RunMount, SourceRef } from './plan-types.js';

export function parseMount(
  spec: string,
  expand: (w: string) => string,
  fail: (m: string) => never,
  resolveFrom: (v: string) => SourceRef,
  sshCount: () => number,
  workdir: string,
): RunMount {
  const kv = new Map<string, string | undefined>();
  for (const [key, raw, f] of splitMountSpec(spec)) {
    if (!MOUNT_KEYS.has(key)) fail(`unexpected key '${key}' in '${f}'`);
    kv.set(key, raw === undefined ? undefined : expand(raw));
  }
  const type = (kv.get('type') ?? 'bind') as RunMount['type'];
  if (!['bind', 'cache', 'tmpfs', 'secret', 'ssh'].includes(type)) fail(`unsupported mount type "${type}"`);
  const bool = (k: string): boolean | undefined => {
    if (!kv.has(k)) return undefined;
    const v = kv.get(k);
    if (v === undefined || /^true$/i.test(v)) return true;
    if (/^false$/i.test(v)) return false;
    return fail(`invalid value for ${k}: ${v}`);
  };
  const num = (k: string, radix: number): number | undefined => {
    const v = kv.get(k);
    if (v === undefined) return undefined;
    const n = Number.parseInt(v, radix);
    if (!Number.isFinite(n) || !(radix === 8 ? /^[0-7]+$/ : /^\d+$/).test(v))
      fail(`invalid value for ${k}: ${v}`);
    return n;
  };
  let target = kv.get('target') ?? kv.get('dst') ?? kv.get('destination') ?? '';
  const source = kv.get('source') ?? kv.get('src');
  const ro = bool('readonly') ?? bool('ro');
  const rw = bool('readwrite') ?? bool('rw');
  let readonly = type === 'bind';
  if (ro !== undefined) readonly = ro;
  if (rw !== undefined) readonly = !rw;
  let id = kv.get('id');
  if (type === 'secret') {
    if (!id && !target) fail('secret mount requires an id or a target');
    if (!id) id = target.split('/').filter(Boolean).pop() ?? '';
    if (!target) target = `/run/secrets/${id}`;
  } else if (type === 'ssh') {
    if (!id) id = 'default';
    if (!target) target = `/run/buildkit/ssh_agent.${sshCount()}`;
  } else if (!target) fail(`mount type ${type} requires a target`);
  // Secrets and SSH sockets are always read-only; a relative target is under the workdir.
  if (type === 'secret' || type === 'ssh') readonly = true;
  if (!target.startsWith('/')) target = posixJoin(workdir, target);
  const m: RunMount = { type, target, readonly };
  if (source !== undefined) m.source = source;
  const from = kv.get('from');
  if (from) m.from = resolveFrom(from);
  if (type === 'cache') {
    m.id = id ?? target;
    const sharing = kv.get('sharing') ?? 'shared';
    if (!['shared', 'private', 'locked'].includes(sharing)) fail(`unsupported sharing value "${sharing}"`);
    m.sharing = sharing as RunMount['sharing'];
    m.mode = num('mode', 8) ?? 0o755;
  } else if (id !== undefined) m.id = id;
  if (type === 'secret' || type === 'ssh') {
    m.mode = num('mode', 8) ?? (type === 'secret' ? 0o400 : 0o600);
    m.required = bool('required') ?? false;
  }
  const uid = num('uid', 10);
  const gid = num('gid', 10);
  if (uid !== undefined) m.uid = uid;
  if (gid !== undefined) m.gid = gid;
  if (type === 'tmpfs') {
    const size = kv.get('size');
    if (size !== undefined) m.size = parseSize(size, fail);
  }
  const env = kv.get('env');
  if (env !== undefined) m.env = env;
  return m;
}

type MountField = [key: string, raw: string | undefined, field: string];
const mountSpecCache = new Map<string, MountField[]>();

/** `type=cache,target=/x,"a=b,c"` → fields (CSV with double quotes); memoised per spec text. */
function splitMountSpec(spec: string): MountField[] {
  const hit = mountSpecCache.get(spec);
  if (hit) return hit;
  const fields: string[] = [];
  let cur = '';
  let q = false;
  for (const ch of spec) {
    if (ch === '"') q = !q;
    else if (ch === ',' && !q) {
      fields.push(cur);
      cur = '';
    } else cur += ch;
  }
  fields.push(cur);
  const out: MountField[] = [];
  for (const f of fields) {
    if (f.trim() === '') continue;
    const eq = f.indexOf('=');
    out.push([(eq < 0 ? f : f.slice(0, eq)).trim().toLowerCase(), eq < 0 ? undefined : f.slice(eq + 1), f]);
  }
  if (mountSpecCache.size > 10_000) mountSpecCache.clear();
  mountSpecCache.set(spec, out);
  return out;
}

const MOUNT_KEYS = new Set([
  'type',
  'target',
  'dst',
  'destination',
  'source',
  'src',
  'from',
  'readonly',
  'ro',
  'readwrite',
  'rw',
  'id',
  'sharing',
  'mode',
  'uid',
  'gid',
  'required',
  'size',
  'env',
]);

function parseSize(v: string, fail: (m: string) => never): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v);
  if (!m) return fail(`invalid size "${v}"`);
  const mult: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.round(Number(m[1]) * mult[m[2]!.toLowerCase()]!);
}
