/**
 * The whitelisted functions, callable by bare name only. Each validates its arguments
 * (no silent coercion), returns data only, and charges work proportional to the size of
 * what it builds so a hostile expression cannot exhaust memory or time.
 */
import { createHash, randomUUID } from 'node:crypto';
import { ExpressionError, MAX_RANGE } from './ast.ts';
import { getMember, inert, isPlainObject, setOwn, toText, typeName } from './access.ts';
import { closest } from './suggest.ts';

export interface FunctionContext {
  now(): Date;
  /** Spends work units; throws once the evaluation's budget is exhausted. */
  charge(units: number): void;
}

export interface FunctionSpec {
  min: number;
  max: number;
  call(args: unknown[], ctx: FunctionContext): unknown;
}

type Check<T> = (v: unknown) => v is T;
const isString: Check<string> = (v): v is string => typeof v === 'string';
const isNumber: Check<number> = (v): v is number => typeof v === 'number';
const isInt: Check<number> = (v): v is number => Number.isSafeInteger(v);
const isArray: Check<unknown[]> = (v): v is unknown[] => Array.isArray(v);
const isSeq: Check<string | unknown[]> = (v): v is string | unknown[] => isString(v) || isArray(v);

/** Argument `i` of `fn`, which must satisfy `check` (described as `what` in the error). */
function arg<T>(fn: string, args: unknown[], i: number, check: Check<T>, what: string): T {
  const v = args[i];
  if (check(v)) return v;
  throw new ExpressionError(`${fn}() expects ${what} as argument ${i + 1}, got ${typeName(v)}`);
}

/** Numbers given either as arguments or as one array argument (min/max). */
function numbers(fn: string, args: unknown[], ctx: FunctionContext): number[] {
  const list = args.length === 1 && isArray(args[0]) ? args[0] : args;
  ctx.charge(list.length);
  if (list.length === 0) throw new ExpressionError(`${fn}() needs at least one number`);
  return list.map((v) => {
    if (!isNumber(v)) throw new ExpressionError(`${fn}() expects numbers, got ${typeName(v)}`);
    return v;
  });
}

function toIso(fn: string, d: Date): string {
  if (Number.isNaN(d.getTime())) throw new ExpressionError(`${fn}() got an invalid date`);
  return d.toISOString();
}

function roundTo(n: number, digits: number): number {
  if (digits === 0 || !Number.isFinite(n)) return Math.round(n);
  // Shift by exponent notation rather than multiplying, so round(1.005, 2) is 1.01.
  const shifted = Math.round(Number(`${n}e${digits}`));
  const back = Number(`${shifted}e${-digits}`);
  return Number.isNaN(back) ? Math.round(n * 10 ** digits) / 10 ** digits : back;
}

const fixed = (min: number, max: number, call: FunctionSpec['call']): FunctionSpec => ({ min, max, call });
const STR = 'a string';
const NUM = 'a number';
const INT = 'an integer';
const OBJ = 'an object';

const table: Record<string, FunctionSpec> = {
  length: fixed(1, 1, ([x]) => {
    if (isSeq(x)) return x.length;
    if (isPlainObject(x)) return Object.keys(x).length;
    throw new ExpressionError(`length() expects a string, array or object, got ${typeName(x)}`);
  }),
  lower: fixed(1, 1, (a) => arg('lower', a, 0, isString, STR).toLowerCase()),
  upper: fixed(1, 1, (a) => arg('upper', a, 0, isString, STR).toUpperCase()),
  trim: fixed(1, 1, (a) => arg('trim', a, 0, isString, STR).trim()),
  concat: fixed(1, Infinity, (a, ctx) => {
    if (a.some(isArray)) {
      const arrays = a.map((_, i) => arg('concat', a, i, isArray, 'an array (all arguments must be arrays)'));
      ctx.charge(arrays.reduce((n, x) => n + x.length, 0));
      return arrays.flatMap((x) => x);
    }
    const isScalar = (v: unknown): v is string | number | boolean => ['string', 'number', 'boolean'].includes(typeof v);
    const parts = a.map((_, i) => String(arg('concat', a, i, isScalar, 'a string or array')));
    ctx.charge(parts.reduce((n, s) => n + s.length, 0));
    return parts.join('');
  }),
  join: fixed(1, 2, (a, ctx) => {
    const list = arg('join', a, 0, isArray, 'an array');
    const sep = a.length > 1 ? arg('join', a, 1, isString, STR) : ',';
    ctx.charge(list.length * (sep.length + 1));
    return list.map(toText).join(sep);
  }),
  split: fixed(2, 2, (a, ctx) => {
    const parts = arg('split', a, 0, isString, STR).split(arg('split', a, 1, isString, STR));
    ctx.charge(parts.length);
    return parts;
  }),
  contains: fixed(2, 2, ([h, n]) => {
    if (isString(h)) {
      if (isString(n) || isNumber(n)) return h.includes(String(n));
      throw new ExpressionError(`contains() expects a string or number to find in a string, got ${typeName(n)}`);
    }
    if (isArray(h)) return h.includes(n);
    throw new ExpressionError(`contains() expects a string or array as argument 1, got ${typeName(h)}`);
  }),
  startsWith: fixed(2, 2, (a) => arg('startsWith', a, 0, isString, STR).startsWith(arg('startsWith', a, 1, isString, STR))),
  endsWith: fixed(2, 2, (a) => arg('endsWith', a, 0, isString, STR).endsWith(arg('endsWith', a, 1, isString, STR))),
  json: fixed(1, 2, (a, ctx) => {
    const indent = a.length > 1 ? arg('json', a, 1, isInt, INT) : undefined;
    const text = JSON.stringify(inert(a[0]), null, indent) ?? 'null';
    ctx.charge(text.length);
    return text;
  }),
  fromJson: fixed(1, 1, (a, ctx) => {
    const text = arg('fromJson', a, 0, isString, STR);
    ctx.charge(text.length);
    return JSON.parse(text) as unknown;
  }),
  default: fixed(2, 2, ([x, fallback]) => (x === null || x === undefined || x === '' ? fallback : x)),
  round: fixed(1, 2, (a) => {
    const digits = a.length > 1 ? arg('round', a, 1, isInt, INT) : 0;
    if (digits < 0 || digits > 15) throw new ExpressionError('round() digits must be between 0 and 15');
    return roundTo(arg('round', a, 0, isNumber, NUM), digits);
  }),
  floor: fixed(1, 1, (a) => Math.floor(arg('floor', a, 0, isNumber, NUM))),
  ceil: fixed(1, 1, (a) => Math.ceil(arg('ceil', a, 0, isNumber, NUM))),
  // reduce, not Math.min(...list): spreading a million elements would overflow the stack.
  min: fixed(1, Infinity, (a, ctx) => numbers('min', a, ctx).reduce((m, n) => (n < m ? n : m))),
  max: fixed(1, Infinity, (a, ctx) => numbers('max', a, ctx).reduce((m, n) => (n > m ? n : m))),
  sum: fixed(1, 1, (a, ctx) => {
    const list = arg('sum', a, 0, isArray, 'an array');
    return list.length === 0 ? 0 : numbers('sum', [list], ctx).reduce((s, n) => s + n, 0);
  }),
  keys: fixed(1, 1, (a, ctx) => {
    const keys = Object.keys(arg('keys', a, 0, isPlainObject, OBJ));
    ctx.charge(keys.length);
    return keys;
  }),
  values: fixed(1, 1, (a, ctx) => {
    const values = Object.values(arg('values', a, 0, isPlainObject, OBJ)).map(inert);
    ctx.charge(values.length);
    return values;
  }),
  range: fixed(2, 2, (a, ctx) => {
    const start = arg('range', a, 0, isInt, INT);
    const end = arg('range', a, 1, isInt, INT);
    const n = Math.max(0, end - start);
    if (n > MAX_RANGE) throw new ExpressionError(`range() would produce ${n} elements (max ${MAX_RANGE})`);
    ctx.charge(n);
    return Array.from({ length: n }, (_, i) => start + i);
  }),
  now: fixed(0, 0, (_, ctx) => toIso('now', ctx.now())),
  date: fixed(1, 1, ([x]) => {
    if (isString(x) || isNumber(x) || x instanceof Date) return toIso('date', new Date(x));
    throw new ExpressionError(`date() expects an ISO string or a timestamp, got ${typeName(x)}`);
  }),
  slice: fixed(2, 3, (a, ctx) => {
    const seq = arg('slice', a, 0, isSeq, 'a string or array');
    const end = a.length > 2 ? arg('slice', a, 2, isInt, INT) : undefined;
    const part = seq.slice(arg('slice', a, 1, isInt, INT), end);
    ctx.charge(part.length);
    return part;
  }),
  first: fixed(1, 1, (a) => arg('first', a, 0, isSeq, 'an array or string')[0]),
  last: fixed(1, 1, (a) => {
    const seq = arg('last', a, 0, isSeq, 'an array or string');
    return seq[seq.length - 1];
  }),
  pick: fixed(1, Infinity, (a, ctx) => {
    const source = arg('pick', a, 0, isPlainObject, OBJ);
    const out: Record<string, unknown> = {};
    const keys = a.slice(1).flatMap((k) => (isArray(k) ? k : [k]));
    ctx.charge(keys.length);
    for (const k of keys) {
      if (!isString(k)) throw new ExpressionError(`pick() expects string keys, got ${typeName(k)}`);
      if (Object.hasOwn(source, k)) setOwn(out, k, getMember(source, k));
    }
    return out;
  }),
  uuid: fixed(0, 0, () => randomUUID()),
  hash: fixed(1, 1, (a, ctx) => {
    const text = arg('hash', a, 0, isString, STR);
    ctx.charge(text.length / 64);
    return createHash('sha256').update(text, 'utf8').digest('hex');
  }),
  format: fixed(2, 2, (a) => {
    const digits = arg('format', a, 1, isInt, INT);
    if (digits < 0 || digits > 100) throw new ExpressionError('format() digits must be between 0 and 100');
    return arg('format', a, 0, isNumber, NUM).toFixed(digits);
  }),
};

/** Name -> function. A Map, so no name can resolve to something inherited. */
export const FUNCTIONS: ReadonlyMap<string, FunctionSpec> = new Map(Object.entries(table));

export function arityMessage(name: string, spec: FunctionSpec, got: number): string {
  const plural = (n: number) => `${n} argument${n === 1 ? '' : 's'}`;
  const want =
    spec.min === spec.max ? plural(spec.min)
    : spec.max === Infinity ? `at least ${plural(spec.min)}`
    : `${spec.min} to ${plural(spec.max)}`;
  return `${name}() expects ${want}, got ${got}`;
}

export function unknownFunctionMessage(name: string): string {
  const guess = closest(name, FUNCTIONS.keys());
  return guess === undefined
    ? `unknown function "${name}" (known: ${[...FUNCTIONS.keys()].join(', ')})`
    : `unknown function "${name}" (did you mean "${guess}"?)`;
}
