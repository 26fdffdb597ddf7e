import type { Static, TObject } from '@sinclair/typebox';
import type { EngineConfig } from './config.ts';
import type { AnyConnector, ConnectorSpec } from './connector.ts';
import { NonRetriableError } from './errors.ts';
import { describeSchemaError, runtimeValidatorFor } from './schema-check.ts';

/**
 * A connector's settings as its code reads them: `connectors.<name>` from the loaded config,
 * values of unset environment variables left out, defaults filled in, and checked again
 * (a config built in code, or a value from the environment, never passed loadConfig's check).
 * The error names the key and never shows a secret's value.
 */
export function connectorSettings<C extends TObject>(spec: ConnectorSpec<C, string, unknown>, config: EngineConfig): Static<C> {
  const given = { ...config.connectors?.[spec.name] };
  // An empty secret is an unset one (a variable set to ""): the live-or-sandbox rule decides.
  for (const field of spec.secrets) if (given[field] === '') delete given[field];
  return checkedSettings(spec.config, given, `connectors.${spec.name}`, spec.secrets) as Static<C>;
}

/**
 * `given` checked against `schema` as a config file may write it, with its defaults filled
 * in (a copy; `given` is not changed; undefined values, from unset variables, are missing). `where` prefixes the error, e.g. connectors.semrush;
 * a problem with one of `secrets` is described without its value.
 */
export function checkedSettings(schema: TObject, given: unknown, where: string, secrets: readonly string[] = []): Record<string, unknown> {
  const validate = runtimeValidatorFor(writtenSchema(schema));
  const value = withoutUndefined(given ?? {});
  if (validate(value)) return value as Record<string, unknown>;
  for (const err of validate.errors ?? []) {
    const described = describeSchemaError(err, value);
    if (!described) continue;
    const path = [where, ...described.path].join('.');
    if (secrets.includes(String(described.path[0]))) {
      // What was expected, without what was given.
      const expected = described.message.includes(', got ') ? described.message.replace(/, got .*$/, '') : 'not a valid value';
      throw new NonRetriableError(`${path}: ${expected} (the value is not shown)`);
    }
    throw new NonRetriableError(`${path}: ${described.message}`);
  }
  throw new NonRetriableError(`${where}: ${validate.errors?.[0]?.message ?? 'is invalid'}`);
}

const written = new WeakMap<TObject, Record<string, unknown>>();

function writtenSchema(schema: TObject): Record<string, unknown> {
  let plain = written.get(schema);
  if (!plain) {
    plain = asWritten(schema);
    written.set(schema, plain);
  }
  return plain;
}

/**
 * A connector schema as a config file may be written: a field with a default may be left
 * out. The specs declare such fields required (so their settings type has them), and the
 * factory gets them filled in by connectorSettings. Plain JSON, for Ajv and the editors.
 */
export function asWritten(schema: unknown): Record<string, unknown> {
  return relaxed(JSON.parse(JSON.stringify(schema)) as Record<string, unknown>);
}

function relaxed(schema: Record<string, unknown>): Record<string, unknown> {
  const properties = schema.properties as Record<string, Record<string, unknown>> | undefined;
  if (properties) {
    for (const sub of Object.values(properties)) relaxed(sub);
    if (Array.isArray(schema.required)) {
      const required = (schema.required as string[]).filter((k) => properties[k]?.default === undefined);
      if (required.length) schema.required = required;
      else delete schema.required;
    }
  }
  return schema;
}

/** The config's `connectors` as the file may hold it: one optional key per registered connector, nothing else. */
export function connectorsSchema(connectors: ReadonlyMap<string, AnyConnector>): Record<string, unknown> {
  const properties: Record<string, unknown> = {};
  for (const [name, spec] of [...connectors].sort(([a], [b]) => a.localeCompare(b))) {
    properties[name] = { ...asWritten(spec.config), description: spec.description };
  }
  return {
    type: 'object',
    description: 'Settings of each connector by name; values may be ${{ env.NAME }} (secrets stay in the environment). Unknown names and keys are errors.',
    properties,
    additionalProperties: false,
  };
}

/** A copy without the keys whose value is undefined (a value from an unset variable is missing). */
function withoutUndefined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutUndefined);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [k, withoutUndefined(v)]),
  );
}
