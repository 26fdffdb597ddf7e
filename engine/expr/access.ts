/**
 * The only ways expression code reads or writes object properties. Reads see own data
 * properties of plain objects, arrays and strings, nothing inherited, no getters, never a
 * function; writes cannot reach a prototype even when the key is `__proto__`.
 */
import { ExpressionError, FORBIDDEN_NAMES, forbiddenMessage } from './ast.ts';

/** `{}`-literal, JSON or YAML object: its prototype is Object.prototype or null. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Functions never escape into expression land: they read as undefined. */
export function inert(value: unknown): unknown {
  return typeof value === 'function' ? undefined : value;
}

const INDEX = /^(?:0|[1-9]\d*)$/;

/**
 * `object[key]` under the sandbox rules. Missing properties (and any property of null or
 * undefined) are undefined, GitHub Actions style. Forbidden keys throw.
 */
export function getMember(object: unknown, key: string, offset?: number): unknown {
  if (FORBIDDEN_NAMES.has(key)) throw new ExpressionError(forbiddenMessage(key), offset);
  if (typeof object === 'string') {
    if (key === 'length') return object.length;
    return INDEX.test(key) && Number(key) < object.length ? object[Number(key)] : undefined;
  }
  if (Array.isArray(object)) {
    if (key === 'length') return object.length;
    if (!INDEX.test(key)) return undefined;
  } else if (!isPlainObject(object)) {
    return undefined;
  }
  const desc = Object.getOwnPropertyDescriptor(object, key);
  return desc === undefined ? undefined : inert(desc.value);
}

/** Turns a computed key's value into a property name (null/undefined: no property). */
export function toKey(value: unknown, offset?: number): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (value === null || value === undefined) return undefined;
  throw new ExpressionError(`cannot use ${typeName(value)} as a property key`, offset);
}

/** Defines an own enumerable property; `__proto__` becomes plain data, not a prototype. */
export function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** How a value appears inside a mixed template or join(): null/undefined are empty. */
export function toText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return String(value);
  }
  if (typeof value === 'function' || typeof value === 'symbol') return '';
  try {
    return JSON.stringify(value) ?? '';
  } catch (err) {
    throw new ExpressionError(`cannot render value as JSON: ${(err as Error).message}`, undefined, {
      cause: err,
    });
  }
}
