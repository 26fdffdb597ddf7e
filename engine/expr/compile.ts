/**
 * What the loader hands the executor: templates parsed once and conditions checked once.
 * A compiled value renders like renderDeep (a fresh structure, every ${{ }} evaluated) but
 * walks a tree of closures built at load, with no parsing and no path bookkeeping per item;
 * a compiled condition is one ${{ }} expression that must give true or false.
 */
import { ExpressionError } from './ast.ts';
import { isPlainObject, setOwn, typeName } from './access.ts';
import type { EvalOptions } from './evaluate.ts';
import { astOf } from './parse.ts';
import { isTemplate, isWholeTemplate, parseTemplate, renderTemplate, templateExpressions } from './template.ts';

type Path = (string | number)[];

/** A value from a pipeline file, ready to render against a scope. */
export interface CompiledValue {
  render(scope: Record<string, unknown>, options?: EvalOptions): unknown;
  /** False when the value holds no ${{ }}: rendering gives a copy of it. */
  readonly dynamic: boolean;
}

export function compileValue(value: unknown): CompiledValue {
  const render = compileAt(value, []);
  return { render, dynamic: findsTemplate(value) };
}

function compileAt(v: unknown, path: Path): (scope: Record<string, unknown>, options?: EvalOptions) => unknown {
  if (typeof v === 'string') {
    if (!v.includes('${{')) return () => v;
    const template = parseTemplate(v);
    const at = [...path];
    return (scope, options) => {
      try {
        return renderTemplate(template, scope, options);
      } catch (err) {
        throw err instanceof ExpressionError ? err.withPath(at) : err;
      }
    };
  }
  if (Array.isArray(v)) {
    const items = v.map((item, i) => compileAt(item, [...path, i]));
    return (scope, options) => items.map((item) => item(scope, options));
  }
  if (isPlainObject(v)) {
    const entries = Object.keys(v).map((key) => [key, compileAt((v as Record<string, unknown>)[key], [...path, key])] as const);
    return (scope, options) => {
      const out: Record<string, unknown> = {};
      for (const [key, item] of entries) setOwn(out, key, item(scope, options));
      return out;
    };
  }
  return () => v;
}

function findsTemplate(v: unknown): boolean {
  if (typeof v === 'string') return isTemplate(v);
  if (Array.isArray(v)) return v.some(findsTemplate);
  if (isPlainObject(v)) return Object.values(v).some(findsTemplate);
  return false;
}

/** A `when`: true or false, or one ${{ }} expression that gives true or false. */
export interface Condition {
  readonly source: string | boolean;
  holds(scope: Record<string, unknown>, options?: EvalOptions): boolean;
}

/** Why a `when` cannot be a condition, with the offset of the problem in its text. */
export class ConditionError extends Error {
  constructor(
    message: string,
    readonly offset?: number,
  ) {
    super(message);
  }
}

const always: Condition = { source: true, holds: () => true };
const never: Condition = { source: false, holds: () => false };

/**
 * Checks a `when` as written and compiles it. Every `when` of the product (a step, a foreach
 * item, a webhook, an event trigger, a category rule) has this one form, so a condition is
 * never silently read as text: a bare expression, text around the ${{ }} or a constant that
 * is not true or false is an error here, and a value that is not true or false is an error
 * when it is evaluated.
 */
export function compileCondition(raw: string | boolean): Condition {
  if (raw === true) return always;
  if (raw === false) return never;
  if (!isTemplate(raw)) throw new ConditionError(`a condition is one \${{ }} expression: write "\${{ ${raw.trim()} }}"`);
  const template = parseTemplate(raw);
  const parts = templateExpressions(template);
  if (!isWholeTemplate(template)) {
    throw new ConditionError(`a condition is one \${{ }} expression giving true or false, with nothing around it (write "\${{ a == b }}")`, 0);
  }
  const ast = astOf(parts[0]!.expr);
  if (ast.type === 'Literal' && typeof ast.value !== 'boolean') {
    throw new ConditionError(`this condition is always ${JSON.stringify(ast.value)}, not true or false`, parts[0]!.offset);
  }
  return {
    source: raw,
    holds(scope, options) {
      const value = renderTemplate(template, scope, options);
      if (typeof value !== 'boolean') {
        throw new ExpressionError(`the condition ${raw} gave ${describe(value)}, not true or false (compare it: == null, != '', > 0 ...)`);
      }
      return value;
    },
  };
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return `the text ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === 'number') return `the number ${value}`;
  return `a${/^[aeiou]/.test(typeName(value)) ? 'n' : ''} ${typeName(value)}`;
}
