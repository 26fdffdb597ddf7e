/**
 * Walking YAML-derived data (plain objects, arrays, scalars): render every template string
 * into a fresh structure, or list the template strings for the validator. Object keys are
 * never templated; non-plain objects (Dates, class instances) are passed through as is.
 */
import { ExpressionError } from './ast.ts';
import { isPlainObject, setOwn } from './access.ts';
import type { EvalOptions } from './evaluate.ts';
import { isTemplate, parseTemplate, renderTemplate } from './template.ts';

type Path = (string | number)[];

/**
 * Renders every template string inside `value` and returns a new structure; `value` is
 * not modified. Strings holding only escapes (`$${{`) are unescaped. A failing template
 * throws an ExpressionError whose `path` says where it was and whose `offset` is inside it.
 */
export function renderDeep(value: unknown, scope: Record<string, unknown>, options?: EvalOptions): unknown {
  const ancestors = new Set<object>();
  const walk = (v: unknown, path: Path): unknown => {
    if (typeof v === 'string') {
      if (!v.includes('${{')) return v;
      try {
        return renderTemplate(parseTemplate(v), scope, options);
      } catch (err) {
        throw err instanceof ExpressionError ? err.withPath(path) : err;
      }
    }
    const isArray = Array.isArray(v);
    if (!isArray && !isPlainObject(v)) return v;
    if (ancestors.has(v)) throw new ExpressionError('cannot render a cyclic structure', undefined, { path });
    ancestors.add(v);
    let out: unknown;
    if (isArray) {
      out = v.map((item, i) => walk(item, [...path, i]));
    } else {
      const obj: Record<string, unknown> = {};
      for (const key of Object.keys(v)) setOwn(obj, key, walk(v[key], [...path, key]));
      out = obj;
    }
    ancestors.delete(v);
    return out;
  };
  return walk(value, []);
}

/** Every template string inside `value`, with its path (keys and indexes). */
export function findTemplates(value: unknown, path: Path = []): { path: Path; text: string }[] {
  const found: { path: Path; text: string }[] = [];
  const ancestors = new Set<object>();
  const walk = (v: unknown, p: Path): void => {
    if (typeof v === 'string') {
      if (isTemplate(v)) found.push({ path: p, text: v });
      return;
    }
    const isArray = Array.isArray(v);
    if ((!isArray && !isPlainObject(v)) || ancestors.has(v)) return;
    ancestors.add(v);
    if (isArray) v.forEach((item, i) => walk(item, [...p, i]));
    else for (const key of Object.keys(v)) walk(v[key], [...p, key]);
    ancestors.delete(v);
  };
  walk(value, path);
  return found;
}
