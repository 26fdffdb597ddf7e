import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { DURATION_PATTERN } from './duration.ts';
import type { Diagnostic } from './errors.ts';
import { didYouMean } from './suggest.ts';
import type { Path, SourceDoc } from './yaml.ts';

const addFormats = addFormatsModule as unknown as { default: (ajv: Ajv) => Ajv };

function createAjv(options: { coerceTypes?: boolean; useDefaults?: boolean; allErrors?: boolean }): Ajv {
  const instance = new Ajv({ allErrors: true, verbose: true, strict: false, ...options });
  addFormats.default(instance);
  return instance;
}

/** Compiles each schema once per Ajv, cached by the schema object's identity. */
function cachedCompiler(instance: Ajv): (schema: object) => ValidateFunction {
  const compiled = new WeakMap<object, ValidateFunction>();
  return (schema) => {
    let fn = compiled.get(schema);
    if (!fn) {
      fn = instance.compile(schema);
      compiled.set(schema, fn);
    }
    return fn;
  };
}

const fileAjv = createAjv({});

/** For files: reports, never changes the value. */
export const validatorFor = cachedCompiler(fileAjv);

/** Problems of a JSON Schema written by a user (a pipeline's inputs), as messages. */
export function schemaProblems(schema: unknown): string[] {
  try {
    if (fileAjv.validateSchema(schema as object)) {
      fileAjv.compile(schema as object);
      return [];
    }
    // The meta-schema reports one mistake several ways (enum, then each anyOf branch): the first says it best.
    const [e] = fileAjv.errors ?? [];
    if (!e) return ['is invalid'];
    const allowed = (e.params as { allowedValues?: unknown[] }).allowedValues;
    return [`${e.instancePath.slice(1).replace(/\//g, '.') || 'schema'} ${allowed ? `must be one of ${allowed.join(', ')}` : (e.message ?? 'is invalid')}`];
  } catch (err) {
    return [(err as Error).message];
  }
}

/**
 * Step inputs at run time: fills in declared defaults. It stops at the first problem (the file
 * was checked whole at load; what fails here is a value an expression made), which makes the
 * check of every call of a foreach several times cheaper.
 */
export const runtimeValidatorFor = cachedCompiler(createAjv({ useDefaults: true, allErrors: false }));

/** Values typed on a command line: coerced to the declared types, defaults filled in. */
export const coercingAjv = createAjv({ coerceTypes: true, useDefaults: true });

/**
 * Validates `value` (found at `base` in `doc`) against `schema` and turns every error into a
 * placed, readable diagnostic. `ignore` drops errors at paths the caller knows are dynamic
 * (a `${{ }}` expression standing where a number is expected is checked when it runs).
 */
export function checkSchema(
  schema: object,
  value: unknown,
  doc: SourceDoc,
  base: Path,
  ignore: (path: Path) => boolean = () => false,
): Diagnostic[] {
  const validate = validatorFor(schema);
  if (validate(value)) return [];
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const err of collapse(validate.errors ?? [])) {
    const rel = pointerToPath(err.instancePath);
    if (ignore(rel)) continue;
    const described = describeError(err, value, rel);
    if (!described) continue;
    const path = [...base, ...described.path];
    const diag = doc.at(path, described.message, { key: described.key });
    const id = `${diag.path}|${diag.message}`;
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(diag);
  }
  return out;
}

/** Messages only, for values that do not come from a file (CLI inputs). */
export function schemaErrors(validate: ValidateFunction, value: unknown): string[] {
  return collapse(validate.errors ?? []).flatMap((err) => {
    const rel = pointerToPath(err.instancePath);
    const d = describeError(err, value, rel);
    return d ? [`${rel.join('.') || '(value)'}${d.path.length > rel.length ? `.${d.path.at(-1)}` : ''}: ${d.message}`] : [];
  });
}

/** Drops Ajv's summary errors of anyOf/oneOf and if/then: the branch errors say what is wrong. */
function collapse(errors: ErrorObject[]): ErrorObject[] {
  return errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && e.keyword !== 'if');
}

function pointerToPath(pointer: string): (string | number)[] {
  if (!pointer) return [];
  return pointer
    .slice(1)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

function valueAt(root: unknown, path: Path): unknown {
  let v = root;
  for (const p of path) v = v == null ? undefined : (v as Record<string | number, unknown>)[p];
  return v;
}

export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  const json = JSON.stringify(v);
  return json.length > 60 ? `${json.slice(0, 57)}..."` : json;
}

/**
 * What the patterns of our schemas ask for, in words: a message says what to write, never
 * the regular expression. A pattern not listed here needs an x-hint where it is declared.
 */
const PATTERN_WORDS: Record<string, string> = {
  '^[a-z][a-z0-9_-]*$': 'use lower-case letters, digits, "-" and "_", starting with a letter',
  '^[a-z][a-z0-9_]*$': 'use lower-case letters, digits and "_", starting with a letter',
  '^[a-z][a-z0-9_.-]*$': 'use lower-case letters, digits, ".", "-" and "_", starting with a letter, like email.sent',
  '^[a-z0-9][a-z0-9_-]*$': 'use lower-case letters, digits, "-" and "_", like report-analysis',
  '^https?://': 'write a full URL starting with http:// or https://',
  '^/[A-Za-z0-9/_.-]*$': 'write a path starting with "/", like /hooks/stripe',
  '^\\d{4}-\\d{2}-\\d{2}$': 'write a date like "2026-12-01"',
  [DURATION_PATTERN]: 'write a duration like "30s", "5m" or "1h"',
};

export function patternInWords(pattern: string): string {
  return PATTERN_WORDS[pattern] ?? 'see the reference of this field in the README';
}

/** Whether a message about a value failing `pattern` can say in words what to write. */
export const patternHasWords = (pattern: string): boolean => pattern in PATTERN_WORDS;

const ARTICLE: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
  null: 'null',
};

/** One Ajv error as a path (from the value's root) and a readable message; undefined when it adds nothing. */
export function describeSchemaError(err: ErrorObject, root: unknown): { path: (string | number)[]; message: string } | undefined {
  return describeError(err, root, pointerToPath(err.instancePath));
}

function describeError(
  err: ErrorObject,
  root: unknown,
  rel: (string | number)[],
): { path: (string | number)[]; message: string; key?: boolean } | undefined {
  const value = valueAt(root, rel);
  const params = err.params as Record<string, any>;
  const hint = (err.parentSchema as { 'x-hint'?: string } | undefined)?.['x-hint'];
  const withHint = (m: string) => (hint ? `${m} (${hint})` : m);
  const lastKey = rel.at(-1);
  switch (err.keyword) {
    case 'additionalProperties': {
      const extra = String(params.additionalProperty);
      // A mapping of names the user chooses (quotas, rate limits, sources ...): the name is wrong, not unknown.
      const names = Object.keys((err.parentSchema as { patternProperties?: object } | undefined)?.patternProperties ?? {});
      if (names.length === 1) return { path: [...rel, extra], key: true, message: `the name "${extra}" cannot be used: ${patternInWords(names[0]!)}` };
      const allowed = Object.keys((err.schema === false ? err.parentSchema?.properties : err.parentSchema?.properties) ?? {});
      const known = allowed.length ? `; allowed keys: ${allowed.join(', ')}` : '';
      const mean = didYouMean(extra, allowed);
      return { path: [...rel, extra], key: true, message: `unknown key "${extra}"${mean || known}` };
    }
    case 'required':
      return { path: rel, message: `missing required key "${params.missingProperty}"` };
    case 'type': {
      const expected = String(params.type)
        .split(',')
        .map((t) => ARTICLE[t] ?? t)
        .join(' or ');
      let message = `expected ${expected}, got ${describeValue(value)}`;
      if ((params.type === 'integer' || params.type === 'number') && typeof value === 'string') {
        const n = /^\s*(-?\d+(?:\.\d+)?)/.exec(value);
        if (n && typeof lastKey === 'string') message += ` (write ${lastKey}: ${n[1]})`;
      }
      return { path: rel, message: withHint(message) };
    }
    case 'enum':
      return {
        path: rel,
        message: `expected one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(value)}${
          typeof value === 'string' ? didYouMean(value, (params.allowedValues as unknown[]).map(String)) : ''
        }`,
      };
    case 'const':
      return { path: rel, message: `expected ${JSON.stringify(params.allowedValue)}, got ${describeValue(value)}` };
    case 'minimum':
    case 'exclusiveMinimum':
    case 'maximum':
    case 'exclusiveMaximum': {
      const integer = (err.parentSchema as { type?: string } | undefined)?.type === 'integer';
      const isPositive = err.keyword === 'minimum' && params.limit === 1;
      const what = isPositive ? `a positive ${integer ? 'integer' : 'number'}` : `${integer ? 'an integer' : 'a number'} ${params.comparison} ${params.limit}`;
      return { path: rel, message: withHint(`expected ${what}, got ${describeValue(value)}`) };
    }
    case 'minItems':
      return { path: rel, message: `expected at least ${params.limit} entr${params.limit === 1 ? 'y' : 'ies'}` };
    case 'maxItems':
      return { path: rel, message: `expected at most ${params.limit} entries` };
    case 'minLength':
      return { path: rel, message: params.limit === 1 ? 'must not be empty' : `expected at least ${params.limit} characters` };
    case 'maxLength':
      return { path: rel, message: `expected at most ${params.limit} characters` };
    case 'pattern':
      if (params.pattern === DURATION_PATTERN) {
        // The field's default is the best example of what to write.
        const example = (err.parentSchema as { default?: unknown } | undefined)?.default ?? '30s';
        return { path: rel, message: `${describeValue(value)} is not a duration (${hint ?? `write ${typeof lastKey === 'string' ? `${lastKey}: ` : ''}"${String(example)}"`})` };
      }
      return { path: rel, message: `${describeValue(value)} does not have the expected form (${hint ?? patternInWords(params.pattern)})` };
    case 'format':
      return { path: rel, message: `expected ${params.format === 'uri' ? 'a URL' : `a ${params.format}`}, got ${describeValue(value)}` };
    case 'minProperties':
      return { path: rel, message: withHint(`expected at least ${params.limit} key${params.limit === 1 ? '' : 's'}`) };
    case 'maxProperties':
      return { path: rel, message: withHint(`expected at most ${params.limit} key${params.limit === 1 ? '' : 's'}`) };
    default:
      return { path: rel, message: err.message ?? 'invalid value' };
  }
}
