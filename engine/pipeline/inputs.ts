import type { ValidateFunction } from 'ajv';
import { coercingAjv, schemaErrors } from '../schema-check.ts';
import { didYouMean } from '../suggest.ts';
import type { Pipeline } from './types.ts';

export class InputError extends Error {
  override readonly name = 'InputError';
}

/**
 * Checks a run's inputs against the pipeline's declared inputs: unknown names are refused,
 * defaults filled in, and strings from a command line coerced to the declared types.
 */
export function resolveInputs(pipeline: Pipeline, given: Record<string, unknown>): Record<string, unknown> {
  const declared = pipeline.inputs;
  for (const name of Object.keys(given)) {
    if (!(name in declared)) {
      const names = Object.keys(declared);
      throw new InputError(
        `pipeline "${pipeline.name}" has no input "${name}"${didYouMean(name, names) || (names.length ? `; its inputs: ${names.join(', ')}` : '; it takes no inputs')}`,
      );
    }
  }
  const validate = validatorOf(declared);
  const inputs = structuredClone(given);
  if (!validate(inputs)) {
    const problems = schemaErrors(validate, inputs).map((m) => m.replace(/^\(value\): missing required key "(.+)"$/, 'missing input "$1" (pass --input $1=...)'));
    throw new InputError(`invalid inputs for "${pipeline.name}": ${problems.join('; ')}`);
  }
  return inputs;
}

/**
 * One compiled validator per declared-inputs object. Ajv caches compiled schemas by the
 * identity of the schema object, so compiling a fresh object on every call recompiles
 * (milliseconds) and keeps every copy in Ajv's cache (a leak in the daemon).
 */
const validators = new WeakMap<object, ValidateFunction>();
function validatorOf(declared: Pipeline['inputs']): ValidateFunction {
  let validate = validators.get(declared);
  if (!validate) {
    validate = coercingAjv.compile({
      type: 'object',
      properties: declared,
      required: Object.entries(declared)
        .filter(([, s]) => !('default' in s))
        .map(([n]) => n),
      additionalProperties: false,
    });
    validators.set(declared, validate);
  }
  return validate;
}

/** `--input key=value` pairs; a value that is valid JSON (number, list, object) is taken as such. */
export function parseInputPairs(pairs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InputError(`--input takes key=value, got "${pair}"`);
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    if (/^[[{]/.test(raw)) {
      try {
        value = JSON.parse(raw);
      } catch {
        throw new InputError(`--input ${key}: "${raw}" looks like JSON but does not parse`);
      }
    }
    out[key] = value;
  }
  return out;
}
