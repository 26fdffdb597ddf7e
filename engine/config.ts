import { type Static, type TObject, type TSchema, Type } from '@sinclair/typebox';
import { Cron } from 'croner';
import { DURATION_PATTERN, parseDuration } from './duration.ts';
import type { Diagnostic } from './errors.ts';
import { findTemplates, renderDeep } from './expr/index.ts';
import type { AnyConnector } from './connector.ts';
import { connectorsSchema } from './connector-settings.ts';
import { checkSchema, validatorFor } from './schema-check.ts';
import { BudgetSchema, type BudgetConfig } from './flow-control/budget-spec.ts';
import { parseSpacing, type QuotaKeyConfig, QuotaSchema, type QuotaConfig } from './flow-control/quota-spec.ts';
import { didYouMean } from './suggest.ts';
import { isValidTimezone, reviseFlowControl } from './flow-control/config-check.ts';
import { type AnyVerifierType, builtinVerifiers, verifierEntrySchema } from './verifier.ts';
import { type Path, parseYamlSource, type SourceDoc } from './yaml.ts';

/**
 * The engine config: connectors, named quotas and rate limits, sender identities and
 * prices. One file (pipelines/flows.config.yaml), validated before anything runs; values
 * may use ${{ env.NAME }} for secrets, resolved when the file is loaded.
 */

const StringEnum = <T extends string[]>(values: [...T], description?: string) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: values, description });

export const RateLimitSchema = Type.Object(
  {
    per_second: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'Requests per second.' })),
    per_minute: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'Requests per minute.' })),
    concurrency: Type.Optional(Type.Integer({ minimum: 1, description: 'Requests in flight at once.' })),
    hold: Type.Optional(
      Type.String({
        pattern: DURATION_PATTERN,
        description:
          'Longest a call may keep one of the places (default "60s"): a call still going then is failed (and retried), and a process that died in the middle of its calls gives their places back after it.',
        'x-hint': 'write a duration like "60s"',
      }),
    ),
  },
  { additionalProperties: false },
);

export const SenderSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, description: 'A short name steps refer to, e.g. d1.' }),
    domain: Type.String({ minLength: 1, description: 'The sending domain (its SPF, DKIM and DMARC are set up for it).' }),
    from_email: Type.String({ format: 'email', description: 'The From address, on that domain.' }),
    from_name: Type.Optional(Type.String({ description: 'The name shown with it.' })),
  },
  { additionalProperties: false, description: 'One sending domain of the email channel.' },
);

/**
 * One entry of `webhooks.verifiers` as code reads it. The file is checked against the
 * options of the entry's `type`, from the verifier types registered (engine/verifier.ts).
 */
export const VerifierSchema = Type.Intersect([
  Type.Object({
    type: Type.String({ description: 'The kind of signature: hmac-sha256, or one a connector brings (stripe).' }),
    secret: Type.String({ minLength: 1, description: 'The signing secret, through ${{ env.NAME }}.' }),
  }),
  Type.Record(Type.String(), Type.Unknown()),
]);

export const WebhooksSchema = Type.Object(
  {
    body_limit: Type.Optional(Type.Integer({ minimum: 1024, description: 'Largest request body in bytes (default 1048576); larger ones are answered 413.' })),
    verifiers: Type.Optional(Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }), VerifierSchema, { additionalProperties: false })),
  },
  { additionalProperties: false, description: 'Webhook requests the daemon serves under /hooks/<path>.' },
);

export const DaemonSchema = Type.Object(
  {
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: 'HTTP port (default 8080; --port wins).' })),
    host: Type.Optional(Type.String({ description: 'Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface).' })),
    workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'Runs this daemon executes at once (default 2).' })),
    lease: Type.Optional(Type.String({ description: 'How long a claim on a run lasts without renewal; a dead daemon\'s runs are taken over after it (default "60s").' })),
    poll: Type.Optional(Type.String({ description: 'How often idle workers look for queued runs (default "2s").' })),
    park_after: Type.Optional(
      Type.String({ description: 'A quota wait longer than this frees the worker: the run is queued again for when the window opens (default "60s").' }),
    ),
    stop_timeout: Type.Optional(Type.String({ description: 'On SIGTERM, how long in-flight steps may take to finish before they are aborted (default "25s").' })),
    trust_proxy: Type.Optional(
      Type.Array(Type.String({ minLength: 1 }), {
        description:
          'The reverse proxies in front of the daemon, as addresses or CIDRs ("10.0.0.0/8", or "loopback"): their X-Forwarded-For is believed, so pages see the visitor\'s address. Unset: the address that connects, and X-Forwarded-For is ignored.',
      }),
    ),
  },
  { additionalProperties: false, description: 'The daemon: its HTTP server and workers.' },
);

export const ConfigSchema = Type.Object(
  {
    business: Type.Optional(
      Type.Object(
        {
          name: Type.String({ description: 'The business that sells the reports, as printed in reports and emails.' }),
          timezone: Type.String({ description: 'IANA timezone used where a quota or schedule names none.' }),
          address: Type.Optional(Type.String({ description: 'Physical address printed in every email.' })),
        },
        { additionalProperties: false, description: 'Who sends: name, timezone and postal address.' },
      ),
    ),
    // As code sees it before a connector's spec reads it (connectorSettings); the file is
    // checked against the schemas of the connectors registered (configSchemaWith).
    connectors: Type.Optional(
      Type.Record(Type.String(), Type.Record(Type.String(), Type.Unknown()), {
        description: 'Settings of each connector by name (base URLs, keys through ${{ env.NAME }}).',
      }),
    ),
    sandboxes: Type.Optional(
      StringEnum(
        ['auto', 'never'],
        'auto (default): a connector whose key is not set uses its local sandbox, with a warning; never: a missing key is an error (set this in production).',
      ),
    ),
    public_url: Type.Optional(
      Type.String({ pattern: '^https?://', description: 'Where the daemon is reached from outside, for links in emails (default: the daemon\'s own address, with the port it listens on).' }),
    ),
    quotas: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }), QuotaSchema, {
        additionalProperties: false,
        description: 'Caps on effects (emails, invitations) by period, window, days, spacing and key, referred to by `quota:` on a step; see `flows quotas`.',
      }),
    ),
    rate_limits: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }), RateLimitSchema, {
        additionalProperties: false,
        description: 'Pace of calls to an API, referred to by `rate_limit:` on a step; shared through Redis when REDIS_URL is set.',
      }),
    ),
    budgets: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }), BudgetSchema, {
        additionalProperties: false,
        description: 'Spending limits per period, referred to by `budget:` on a step: a call that would pass one waits for the next period.',
      }),
    ),
    senders: Type.Optional(Type.Array(SenderSchema, { description: 'The sending domains of the email channel.' })),
    prices: Type.Optional(
      Type.Record(Type.String(), Type.Number({ minimum: 0 }), {
        description: 'Price in USD of one unit, by unit name (semrush_unit, claude_input_token ...).',
      }),
    ),
    webhooks: Type.Optional(WebhooksSchema),
    daemon: Type.Optional(DaemonSchema),
  },
  { additionalProperties: false },
);

export type EngineConfig = Static<typeof ConfigSchema>;
export type VerifierConfig = Static<typeof VerifierSchema>;
export type DaemonConfig = Static<typeof DaemonSchema>;
export type { BudgetConfig, QuotaConfig };
export { parseSpacing };

export const emptyConfig: EngineConfig = {};

export { isValidTimezone };

export function checkCron(expression: string, timezone: string): string | undefined {
  try {
    new Cron(expression, { timezone, paused: true });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** What pipelines are checked against: the names they may refer to, and the default timezone. */
export type DeclaredConfig = Pick<EngineConfig, 'business' | 'quotas' | 'rate_limits' | 'budgets' | 'webhooks'>;

export interface LoadedConfig {
  /** The checked config; absent when it has problems. */
  config?: EngineConfig;
  /**
   * What the file declares even when some of its values are wrong, so that pipelines are
   * checked against it and one bad value gives one message. Absent when the file cannot be
   * read at all (broken YAML): pipelines are then not checked against the config.
   */
  declared?: DeclaredConfig;
  diagnostics: Diagnostic[];
}

/** What the config's schema is assembled from besides the engine's own sections: the registry's parts. */
export interface ConfigParts {
  /** Sections the steps declare (prospect sources ...). */
  readonly configSections: ReadonlyMap<string, TSchema>;
  /** Connector specs: `connectors.<name>`. */
  readonly connectors: ReadonlyMap<string, AnyConnector>;
  /** Webhook verifier types: `webhooks.verifiers.<name>.type`. */
  readonly verifiers: ReadonlyMap<string, AnyVerifierType>;
  /** Where a quota's `keys_from` takes its keys: a section's own list (email.mailboxes). */
  readonly quotaKeySources?: ReadonlyMap<string, QuotaKeySource>;
  /** Checks of a section's values its schema cannot express (a mailbox on its domain), by section. */
  readonly sectionChecks?: ReadonlyMap<string, SectionCheck>;
}

/** A problem a section's own check finds: where in the section (path below its key), and what to write instead. */
export interface SectionProblem {
  path: Path;
  message: string;
  /** Points at the key of `path` rather than its value. */
  key?: boolean;
}

/**
 * Checks a section's value as written (${{ env.NAME }} not yet read), once it matches the
 * section's schema: the problems are reported at file:line:col with the schema's own.
 */
export type SectionCheck = (value: unknown) => SectionProblem[];

/** The keys a config section declares for quotas, with each key's settings. */
export type QuotaKeySource = (config: EngineConfig) => Record<string, QuotaKeyConfig>;

const engineOnly: ConfigParts = { configSections: new Map(), connectors: new Map(), verifiers: new Map(builtinVerifiers.map((v) => [v.type, v])) };
const assembled = new WeakMap<ConfigParts, { key: string; schema: TObject }>();

/**
 * The config schema with the registry's parts: the steps' sections, one key per connector
 * under `connectors` (its spec's schema), and `webhooks.verifiers` entries checked against
 * the options of their type. Validation, and the editor schema in schemas/, use this one.
 */
export function configSchemaWith(parts: ConfigParts = engineOnly): TObject {
  const key = [[...parts.configSections.keys()], [...parts.connectors.keys()], [...parts.verifiers.keys()]].join('|');
  const cached = assembled.get(parts);
  if (cached?.key === key) return cached.schema;
  const extra = Object.fromEntries([...parts.configSections].map(([name, s]) => [name, Type.Optional(s)]));
  const webhooks = Type.Object(
    {
      ...WebhooksSchema.properties,
      verifiers: Type.Optional(
        Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_-]*$' }), Type.Unsafe(verifierEntrySchema(parts.verifiers)), {
          additionalProperties: false,
          description: 'Named signature checks; a webhook trigger says `verify: <name>`.',
        }),
      ),
    },
    { additionalProperties: false, description: WebhooksSchema.description },
  );
  const schema = Type.Object(
    {
      ...ConfigSchema.properties,
      connectors: Type.Optional(Type.Unsafe(connectorsSchema(parts.connectors))),
      webhooks: Type.Optional(webhooks),
      ...extra,
    },
    { additionalProperties: false },
  );
  assembled.set(parts, { key, schema });
  return schema;
}

/** A section declared by steps, as the config has it (already checked against its schema). */
export function configSection<T>(config: EngineConfig, name: string): T | undefined {
  return (config as Record<string, unknown>)[name] as T | undefined;
}

/** Parses and checks the config; ${{ env.X }} values are resolved against `env`. */
export function loadConfig(text: string, file: string, env: Record<string, string | undefined>, parts?: ConfigParts): LoadedConfig {
  const doc = parseYamlSource(text, file);
  if (doc.diagnostics.length) return { diagnostics: doc.diagnostics };
  const raw = doc.value ?? {};
  const problems = configProblems(raw, doc, parts).sort((a, b) => a.line - b.line || a.col - b.col);
  if (problems.length) return { declared: declaredIn(raw), diagnostics: problems };
  const config = resolved(raw, parts, env);
  return { config, declared: config, diagnostics: [] };
}

/** Every problem of the file's value, in the order the checks find them. */
function configProblems(raw: unknown, doc: SourceDoc, parts: ConfigParts | undefined): Diagnostic[] {
  const schema = configSchemaWith(parts);
  let diagnostics = checkSchema(schema, raw, doc, [], (path) => fromEnvironment(raw, path));
  const cfg = raw as EngineConfig;
  const defaultTz = cfg.business?.timezone;
  if (defaultTz && !isValidTimezone(defaultTz)) {
    diagnostics.push(doc.at(['business', 'timezone'], `unknown timezone "${defaultTz}" (write an IANA name like "Europe/London")`));
  }
  diagnostics = reviseFlowControl(raw as Record<string, unknown>, doc, diagnostics);
  diagnostics.push(...keySourceProblems(cfg, doc, parts));
  diagnostics.push(...sectionProblems(raw, doc, parts));
  for (const [key, value] of Object.entries(cfg.daemon ?? {})) {
    if (['lease', 'poll', 'park_after', 'stop_timeout'].includes(key) && typeof value === 'string' && parseDuration(value) === undefined) {
      diagnostics.push(doc.at(['daemon', key], `"${value}" is not a duration (write "30s" or "2m")`));
    }
  }
  for (const t of templatesIn(raw, schema).env) {
    if (!ENV_TEMPLATE.test(t.text)) {
      diagnostics.push(doc.at(t.path, 'config values may only use ${{ env.NAME }} (a whole value from the environment)'));
    }
  }
  return diagnostics;
}

/** A quota's keys_from names a list some section declares, and goes without keys; pick needs keys to pick from. */
function keySourceProblems(cfg: EngineConfig, doc: SourceDoc, parts: ConfigParts | undefined): Diagnostic[] {
  const out: Diagnostic[] = [];
  const sources = [...(parts?.quotaKeySources?.keys() ?? [])];
  for (const [name, quota] of Object.entries(cfg.quotas ?? {})) {
    if (!quota || typeof quota !== 'object') continue;
    const from = quota.keys_from;
    if (typeof from === 'string' && !sources.includes(from)) {
      const hint = didYouMean(from, sources) || (sources.length ? `; lists to take keys from: ${sources.join(', ')}` : '');
      out.push(doc.at(['quotas', name, 'keys_from'], `no list "${from}" to take keys from${hint}`));
    }
    if (from !== undefined && quota.keys !== undefined) out.push(doc.at(['quotas', name, 'keys'], 'write keys or keys_from, not both'));
    if (quota.pick !== undefined && from === undefined && quota.keys === undefined) {
      out.push(doc.at(['quotas', name, 'pick'], 'pick chooses among declared keys: add keys (or keys_from) to the quota'));
    }
  }
  return out;
}

/** What the sections' own checks find, in the sections that match their schema (a wrong one has its schema's messages). */
function sectionProblems(raw: unknown, doc: SourceDoc, parts: ConfigParts | undefined): Diagnostic[] {
  if (!isMapping(raw)) return [];
  const out: Diagnostic[] = [];
  for (const [name, check] of parts?.sectionChecks ?? []) {
    const schema = parts?.configSections.get(name);
    if (!(name in raw) || !schema || !validatorFor(schema)(raw[name])) continue;
    for (const p of check(raw[name])) out.push(doc.at([name, ...p.path], p.message, { key: p.key }));
  }
  return out;
}

/** The checked value with ${{ env.NAME }} read from `env` (deferred templates kept as written). */
function resolved(raw: unknown, parts: ConfigParts | undefined, env: Record<string, string | undefined>): EngineConfig {
  const { env: templates, deferred } = templatesIn(raw, configSchemaWith(parts));
  // An escaped template comes out of renderDeep as written.
  const kept = structuredClone(raw);
  for (const d of deferred) setAt(kept, d.path, d.text.replaceAll('${{', () => '$${{'));
  const config = renderDeep(kept, { env: { ...env } }) as EngineConfig;
  for (const quota of Object.values(config.quotas ?? {})) {
    const source = quota.keys_from && parts?.quotaKeySources?.get(quota.keys_from);
    if (source) quota.keys = source(config);
  }
  const unset = new Map<string, string>();
  for (const t of templates) {
    const name = /env\.([A-Za-z_][A-Za-z0-9_]*)/.exec(t.text)?.[1];
    if (name && !env[name]) unset.set(t.path.join('.'), name);
  }
  unsetVariables.set(config, unset);
  return config;
}

/** Templates read from the environment at load, and those in x-deferred fields (category reasons ...): templates over run-time data, kept as written. */
function templatesIn(raw: unknown, schema: TSchema): { env: ReturnType<typeof findTemplates>; deferred: ReturnType<typeof findTemplates> } {
  const all = findTemplates(raw);
  const deferred = all.filter((t) => schemaAt(schema, t.path)?.['x-deferred'] === true);
  return { env: all.filter((t) => !deferred.includes(t)), deferred };
}

/**
 * The names a config with problems still declares (quotas, rate limits, budgets, verifiers)
 * and its business timezone when that is valid. A name stays declared when its settings are
 * wrong: the settings get their own message, the steps naming it none.
 */
function declaredIn(raw: unknown): DeclaredConfig {
  const section = (value: unknown) =>
    isMapping(value) ? Object.fromEntries(Object.keys(value).map((name) => [name, isMapping(value[name]) ? value[name] : {}])) : undefined;
  const r = isMapping(raw) ? raw : {};
  const business = isMapping(r.business) ? r.business : {};
  const webhooks = isMapping(r.webhooks) ? r.webhooks : {};
  const timezone = typeof business.timezone === 'string' && isValidTimezone(business.timezone) ? business.timezone : undefined;
  return {
    business: timezone ? { name: String(business.name ?? ''), timezone } : undefined,
    quotas: section(r.quotas),
    rate_limits: section(r.rate_limits),
    budgets: section(r.budgets),
    webhooks: { verifiers: section(webhooks.verifiers) },
  } as DeclaredConfig;
}

const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * A connector or verifier value written as ${{ env.NAME }}: its type and form are checked
 * once the variable is read, when the connector starts (connectorSettings), since a
 * template in place of a URL or a number is not yet the value.
 */
function fromEnvironment(raw: unknown, path: readonly (string | number)[]): boolean {
  const [section, sub] = path;
  if (section !== 'connectors' && !(section === 'webhooks' && sub === 'verifiers')) return false;
  let at = raw;
  for (const key of path) at = at == null ? undefined : (at as Record<string | number, unknown>)[key];
  return typeof at === 'string' && ENV_TEMPLATE.test(at);
}

const ENV_TEMPLATE = /^\s*\$\{\{\s*env\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}\s*$/;

/** The schema of the value at `path`, through objects, records and arrays. */
function schemaAt(schema: TSchema, path: readonly (string | number)[]): Record<string, unknown> | undefined {
  let at: TSchema | undefined = schema;
  for (const key of path) {
    if (!at) return undefined;
    if (at.type === 'array') at = at.items as TSchema;
    else if (at.properties && typeof key === 'string' && key in at.properties) at = at.properties[key] as TSchema;
    else if (at.patternProperties) at = Object.values(at.patternProperties)[0] as TSchema;
    else if (typeof at.additionalProperties === 'object') at = at.additionalProperties as TSchema;
    else return undefined;
  }
  return at as Record<string, unknown> | undefined;
}

function setAt(root: unknown, path: readonly (string | number)[], value: unknown): void {
  let at = root as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>;
  at[path[path.length - 1]!] = value;
}

const unsetVariables = new WeakMap<EngineConfig, Map<string, string>>();

/**
 * The environment variable a config value comes from, when it was not set (so the value
 * is missing): lets the part that needs the value say which variable to set.
 */
export function unsetVariable(config: EngineConfig, path: readonly (string | number)[]): string | undefined {
  return unsetVariables.get(config)?.get(path.join('.'));
}
