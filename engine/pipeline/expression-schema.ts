/**
 * The editor's view of a step's inputs. Any value inside `with` may be a `${{ }}` expression:
 * the loader ignores schema errors at a path holding one (the value is only known when the
 * step runs), so an editor must accept it there too, or it shows red on a file that
 * `flows validate` accepts. A value schema S becomes `anyOf: [S, expression]`; S keeps its
 * keys, so `additionalProperties: false` still rejects unknown keys of a literal mapping,
 * and a plain value of the wrong type still matches neither branch.
 *
 * The config needs no such pass: loadConfig checks the schema before it resolves
 * `${{ env.NAME }}`, so there an expression is accepted exactly where any string is.
 */

type JsonSchema = Record<string, unknown>;

/**
 * A string holding an unescaped `${{ ... }}`, as `isTemplate` reads it (`$${{` is a literal):
 * anywhere in the text, since a string with text around an expression is also rendered at
 * run time.
 */
export const EXPRESSION_PATTERN = '(^|[^$])\\$\\{\\{[\\s\\S]*\\}\\}';

/** Where the generated schema defines the expression string once; every wrap refers to it. */
export const EXPRESSION_REF = '#/definitions/expression';

export const EXPRESSION_DEFINITION = {
  type: 'string',
  pattern: EXPRESSION_PATTERN,
  description: 'A ${{ }} expression, evaluated when the step runs.',
};

/** Keys that describe a value rather than constrain it: kept on the wrapper, for hovers and completion. */
const ANNOTATIONS = ['title', 'description', 'default', 'examples'];

/** Subschemas of the same value: their own children may be expressions, they themselves are covered by the wrap. */
const SAME_VALUE_LISTS = ['anyOf', 'oneOf', 'allOf'];
const SAME_VALUE = ['then', 'else'];
/** Subschemas of child values (a property, an entry, an element). */
const CHILD_MAPS = ['properties', 'patternProperties'];
const CHILD = ['additionalProperties', 'additionalItems'];

function isSchemaObject(value: unknown): value is JsonSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** True when every string already passes `schema`, so an expression needs no branch of its own. */
function acceptsEveryString(schema: unknown): boolean {
  if (schema === true) return true;
  if (!isSchemaObject(schema)) return false;
  return Object.entries(schema).every(([key, value]) => {
    if (ANNOTATIONS.includes(key) || key.startsWith('x-') || key === '$comment') return true;
    if (key === 'type') return value === 'string' || (Array.isArray(value) && value.includes('string'));
    if (key === 'minLength') return typeof value === 'number' && value <= 1;
    if (key === 'anyOf') return Array.isArray(value) && value.some(acceptsEveryString);
    return false;
  });
}

/**
 * `schema` with an expression accepted at every value below it (properties, entries,
 * elements, at any depth), but not for the value itself: `with` must stay a mapping.
 */
export function acceptExpressionsWithin(schema: unknown): unknown {
  if (!isSchemaObject(schema)) return schema;
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (CHILD_MAPS.includes(key) && isSchemaObject(value)) {
      out[key] = Object.fromEntries(Object.entries(value).map(([name, child]) => [name, acceptExpression(child)]));
    } else if (key === 'items') {
      out[key] = Array.isArray(value) ? value.map(acceptExpression) : acceptExpression(value);
    } else if (CHILD.includes(key)) {
      out[key] = acceptExpression(value);
    } else if (SAME_VALUE_LISTS.includes(key) && Array.isArray(value)) {
      out[key] = value.map(acceptExpressionsWithin);
    } else if (SAME_VALUE.includes(key)) {
      out[key] = acceptExpressionsWithin(value);
    } else {
      out[key] = value;
    }
  }
  return out;
}

/** `schema` for a value that may also be an expression, as may every value below it. */
export function acceptExpression(schema: unknown): unknown {
  if (!isSchemaObject(schema)) return schema;
  const inner = acceptExpressionsWithin(schema) as JsonSchema;
  if (acceptsEveryString(inner)) return inner;
  const expression = { $ref: EXPRESSION_REF };
  const annotations = Object.fromEntries(Object.entries(inner).filter(([key]) => ANNOTATIONS.includes(key)));
  const rest = Object.fromEntries(Object.entries(inner).filter(([key]) => !ANNOTATIONS.includes(key)));
  // A bare anyOf gains one branch instead of a level: the file reads as it was written.
  if (Object.keys(rest).length === 1 && Array.isArray(rest.anyOf)) return { ...annotations, anyOf: [...rest.anyOf, expression] };
  return { ...annotations, anyOf: [rest, expression] };
}
