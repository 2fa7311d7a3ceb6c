/**
 * The functions Go templates get (template.ts): Go's builtins (`and or not len index slice
 * eq ne lt le gt ge print printf println`) and those docker's templates package adds
 * (`json split join title lower upper pad truncate`), plus docker's header variants.
 * Functions throw `WrongType`/`WrongArgs` (reported at the argument or function, as Go
 * does) or any other error (reported as `error calling NAME: …`).
 */
import { GO_TYPE, goJson, goTypeName, isPlainObject, printValue, sprintf } from './gofmt.js';

/** A template function: gets evaluated arguments, returns a value or throws (→ "error calling"). */
export type TemplateFunc = (...args: unknown[]) => unknown;

export interface TemplateOptions {
  /** Functions to add or replace (by name). */
  funcs?: Readonly<Record<string, TemplateFunc>>;
}

/** A wrong argument type, reported at the argument (Go: "wrong type for value; expected string; got int"). */
export class WrongType extends Error {
  constructor(
    readonly index: number,
    readonly expected: string,
    readonly got: unknown,
  ) {
    super(`wrong type for value; expected ${expected}; got ${goTypeName(got)}`);
  }
}

/** Thrown by a function to report a wrong number of arguments. */
export class WrongArgs extends Error {}

function arity(name: string, args: unknown[], min: number, max = min): void {
  if (args.length < min || args.length > max)
    throw new WrongArgs(
      `wrong number of args for ${name}: want ${min === max ? min : `at least ${min}`} got ${args.length}`,
    );
}

function str(args: unknown[], i: number): string {
  const v = args[i];
  if (typeof v !== 'string') throw new WrongType(i, 'string', v);
  return v;
}

function int(args: unknown[], i: number): number {
  const v = args[i];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new WrongType(i, 'int', v);
  return v;
}

export function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map) return v.size > 0;
  return true;
}

function basicKind(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'number') return 'number';
  if (typeof v === 'string' || typeof v === 'boolean') return typeof v;
  return 'complex';
}

function eq(a: unknown, b: unknown): boolean {
  const ka = basicKind(a);
  const kb = basicKind(b);
  if (ka === 'complex' || kb === 'complex')
    throw new Error(`non-comparable type ${goTypeName(ka === 'complex' ? a : b)}`);
  if (ka === 'nil' || kb === 'nil') return ka === kb;
  if (ka !== kb) throw new Error('incompatible types for comparison');
  return a === b;
}

function lt(a: unknown, b: unknown): boolean {
  const ka = basicKind(a);
  if ((ka !== 'number' && ka !== 'string') || basicKind(b) !== ka)
    throw new Error(
      ka === basicKind(b) ? 'invalid type for comparison' : 'incompatible types for comparison',
    );
  return (a as number) < (b as number);
}

function indexOne(item: unknown, key: unknown): unknown {
  if (item === undefined || item === null) throw new Error('index of untyped nil');
  if (Array.isArray(item) || typeof item === 'string') {
    if (typeof key !== 'number' || !Number.isInteger(key))
      throw new Error(`cannot index slice/array with type ${goTypeName(key)}`);
    const len = typeof item === 'string' ? Buffer.byteLength(item) : item.length;
    if (key < 0 || key >= len) throw new Error(`index out of range: ${key}`);
    return typeof item === 'string' ? Buffer.from(item)[key] : item[key];
  }
  if (item instanceof Map) return item.get(key);
  if (isPlainObject(item)) return Object.hasOwn(item, String(key)) ? item[String(key)] : undefined;
  throw new Error(`can't index item of type ${goTypeName(item)}`);
}

/** docker's `join`: strings joined, other elements printed; a map's values sorted. */
function join(elems: unknown, sep: string): string {
  if (elems === undefined || elems === null) return '';
  if (Array.isArray(elems)) return elems.map(printValue).join(sep);
  if (elems instanceof Map) return [...elems.values()].map(printValue).sort().join(sep);
  throw new Error(`expected slice, got ${goTypeName(elems)}`);
}

export const BUILTINS: Record<string, TemplateFunc> = {
  // and/or are evaluated lazily by the executor; these are for pipelines' final values.
  and: (...a) => {
    if (a.length === 0) throw new WrongArgs('wrong number of args for and: want at least 1 got 0');
    return a.find((x) => !truthy(x)) ?? a[a.length - 1];
  },
  or: (...a) => {
    if (a.length === 0) throw new WrongArgs('wrong number of args for or: want at least 1 got 0');
    return a.find(truthy) ?? a[a.length - 1];
  },
  not: (...a) => {
    arity('not', a, 1);
    return !truthy(a[0]);
  },
  len: (...a) => {
    arity('len', a, 1);
    const v = a[0];
    if (typeof v === 'string') return Buffer.byteLength(v);
    if (Array.isArray(v)) return v.length;
    if (v instanceof Map) return v.size;
    if (isPlainObject(v) && !(GO_TYPE in v)) return Object.keys(v).length;
    throw new Error(`len of type ${goTypeName(v)}`);
  },
  index: (...a) => {
    if (a.length < 1) throw new WrongArgs('wrong number of args for index: want at least 1 got 0');
    return a.slice(1).reduce((item, key) => indexOne(item, key), a[0]);
  },
  slice: (...a) => {
    if (a.length < 1) throw new WrongArgs('wrong number of args for slice: want at least 1 got 0');
    const v = a[0];
    if (!Array.isArray(v) && typeof v !== 'string')
      throw new Error(`can't slice item of type ${goTypeName(v)}`);
    const idx = a.slice(1).map((_, i) => int(a, i + 1));
    const len = v.length;
    const [lo = 0, hi = len] = idx;
    if (lo < 0 || hi > len || lo > hi) throw new Error(`index out of range: ${lo > hi ? lo : hi}`);
    return v.slice(lo, hi);
  },
  eq: (...a) => {
    if (a.length < 2) throw new WrongArgs('missing argument for comparison');
    return a.slice(1).some((b) => eq(a[0], b));
  },
  ne: (...a) => {
    arity('ne', a, 2);
    return !eq(a[0], a[1]);
  },
  lt: (...a) => {
    arity('lt', a, 2);
    return lt(a[0], a[1]);
  },
  le: (...a) => {
    arity('le', a, 2);
    return lt(a[0], a[1]) || eq(a[0], a[1]);
  },
  gt: (...a) => {
    arity('gt', a, 2);
    return !lt(a[0], a[1]) && !eq(a[0], a[1]);
  },
  ge: (...a) => {
    arity('ge', a, 2);
    return !lt(a[0], a[1]);
  },
  print: (...a) =>
    // fmt.Sprint: a space between operands when neither is a string.
    a
      .map(
        (x, i) => (i > 0 && typeof x !== 'string' && typeof a[i - 1] !== 'string' ? ' ' : '') + printValue(x),
      )
      .join(''),
  printf: (...a) => {
    if (a.length < 1) throw new WrongArgs('wrong number of args for printf: want at least 1 got 0');
    return sprintf(str(a, 0), a.slice(1));
  },
  println: (...a) => `${a.map(printValue).join(' ')}\n`,
  // docker's templates package
  json: (...a) => {
    arity('json', a, 1);
    return goJson(a[0], { escapeHTML: false });
  },
  split: (...a) => {
    arity('split', a, 2);
    const s = str(a, 0);
    const sep = str(a, 1);
    return sep === '' ? [...s] : s.split(sep);
  },
  join: (...a) => {
    arity('join', a, 2);
    return join(a[0], str(a, 1));
  },
  title: (...a) => {
    arity('title', a, 1);
    return str(a, 0).replace(
      /(^|[^\p{L}\p{N}_'])(\p{L})/gu,
      (_m, p: string, c: string) => p + c.toUpperCase(),
    );
  },
  lower: (...a) => {
    arity('lower', a, 1);
    return str(a, 0).toLowerCase();
  },
  upper: (...a) => {
    arity('upper', a, 1);
    return str(a, 0).toUpperCase();
  },
  pad: (...a) => {
    arity('pad', a, 3);
    const s = str(a, 0);
    return s === '' ? s : ' '.repeat(Math.max(0, int(a, 1))) + s + ' '.repeat(Math.max(0, int(a, 2)));
  },
  truncate: (...a) => {
    arity('truncate', a, 2);
    const s = str(a, 0);
    const n = int(a, 1);
    return Buffer.byteLength(s) < n ? s : Buffer.from(s).subarray(0, Math.max(0, n)).toString();
  },
};

/** docker's HeaderFunctions: a table header keeps its column names intact. */
const identity: TemplateFunc = (...a) => a[0];
export const HEADER_FUNCS: Readonly<Record<string, TemplateFunc>> = {
  json: identity,
  split: identity,
  join: identity,
  title: identity,
  lower: identity,
  upper: identity,
  truncate: identity,
};
