import type { EngineConfig } from './config.ts';
import { unsetVariable } from './config.ts';
import type { AnyConnector, ConnectorDeps, ConnectorSpec } from './connector.ts';
import { connectorSettings } from './connector-settings.ts';
import { NonRetriableError } from './errors.ts';
import type { Resource } from './resources.ts';

/** A connector made for this process: the client, which service answers it, and how to stop both. */
export interface OpenConnector<T> {
  readonly client: T;
  /** "live": the configured service; "sandbox": the local stand-in. */
  readonly mode: DataSource;
  close(): Promise<void>;
}

/** "live": the configured service answers; "sandbox": its local stand-in. */
export type DataSource = 'live' | 'sandbox';

const sources = new WeakMap<object, DataSource>();

/**
 * Who answers a client made by openConnector: what a step records with the data it fetched,
 * so that a report made from sandbox data says so. A client made some other way (a fake a
 * test provides) counts as live.
 */
export function sourceOf(client: unknown): DataSource {
  return (typeof client === 'object' && client !== null && sources.get(client)) || 'live';
}

/** Records who answers `client`, and returns it. */
function answeredBy<T>(client: T, source: DataSource): T {
  if (typeof client === 'object' && client !== null) sources.set(client, source);
  return client;
}

/**
 * The one rule deciding who answers a connector, the same for every spec:
 *
 * - every secret set (or none declared, like storage): the live service;
 * - otherwise, with `sandboxes: auto` (the default) and a sandbox: the sandbox, and one
 *   warning naming the environment variable to set;
 * - otherwise (`sandboxes: never`, or no sandbox): NonRetriableError naming that variable,
 *   so no buyer ever gets sandbox data in production.
 */
export async function openConnector<T>(spec: AnyConnector, config: EngineConfig, deps: ConnectorDeps): Promise<OpenConnector<T>> {
  const settings = connectorSettings(spec, config) as Record<string, unknown>;
  const missing = missingSecrets(spec, settings);
  if (missing.length === 0) {
    const client = answeredBy((await spec.create(settings, deps)) as T, 'live');
    return { client, mode: 'live', close: async () => spec.close?.(client) };
  }
  const unset = describeUnset(spec, config, missing);
  if (config.sandboxes === 'never') throw new NonRetriableError(`${unset}; the config says sandboxes: never, so no sandbox stands in`);
  if (!spec.sandbox) throw new NonRetriableError(`${unset}; ${spec.name} has no sandbox to stand in`);
  deps.log.warn({ connector: spec.name }, `${unset}; answers come from the local sandbox`);
  const sandbox = await spec.sandbox(settings, deps);
  try {
    const client = answeredBy((await spec.create({ ...settings, ...sandbox.config }, deps)) as T, 'sandbox');
    return {
      client,
      mode: 'sandbox',
      close: async () => {
        try {
          await spec.close?.(client);
        } finally {
          await sandbox.close();
        }
      },
    };
  } catch (err) {
    await sandbox.close();
    throw err;
  }
}

/** A connector whose secrets are not all set: the rule above gives it to its sandbox, or refuses it. */
export interface UnsetConnector {
  readonly name: string;
  /** What is not set and how to set it, e.g. "semrush: key not set (set the environment variable SEMRUSH_API_KEY)". */
  readonly unset: string;
}

/**
 * The connectors that answer from their sandboxes in this process under the rule above,
 * known before any is opened (the daemon says so at start). None under `sandboxes: never`.
 */
export function sandboxedConnectors(specs: Iterable<AnyConnector>, config: EngineConfig): UnsetConnector[] {
  if (config.sandboxes === 'never') return [];
  return unsetConnectors([...specs].filter((spec) => spec.sandbox), config);
}

/** The connectors whose secrets are not all set, by name, with what to set. */
export function unsetConnectors(specs: Iterable<AnyConnector>, config: EngineConfig): UnsetConnector[] {
  const unset: UnsetConnector[] = [];
  for (const spec of specs) {
    let settings: Record<string, unknown>;
    try {
      settings = connectorSettings(spec, config) as Record<string, unknown>;
    } catch {
      continue; // a bad setting stops the connector when it is opened, with its own message
    }
    const missing = missingSecrets(spec, settings);
    if (missing.length) unset.push({ name: spec.name, unset: describeUnset(spec, config, missing) });
  }
  return unset.sort((a, b) => a.name.localeCompare(b.name));
}

function missingSecrets(spec: AnyConnector, settings: Record<string, unknown>): string[] {
  return (spec.secrets as readonly string[]).filter((field) => settings[field] === undefined);
}

function describeUnset(spec: AnyConnector, config: EngineConfig, missing: readonly string[]): string {
  return `${spec.name}: ${missing.join(' and ')} not set (${missing.map((field) => howToSet(config, spec.name, field)).join('; ')})`;
}

/** "set SEMRUSH_API_KEY", or where to write the value when the config does not take it from the environment. */
function howToSet(config: EngineConfig, connector: string, field: string): string {
  const variable = unsetVariable(config, ['connectors', connector, field]);
  return variable ? `set the environment variable ${variable}` : `set connectors.${connector}.${field} in the config, through \${{ env.NAME }}`;
}

const adapted = new WeakMap<AnyConnector, Resource<unknown>>();

/** A connector spec as a process-wide resource: opened by the rule above on first use, closed with the process. */
export function connectorResource<T>(spec: ConnectorSpec<any, any, T>): Resource<T> {
  let resource = adapted.get(spec) as Resource<T> | undefined;
  if (!resource) {
    const open = new Map<T, OpenConnector<T>>();
    resource = {
      name: spec.name,
      async create(env) {
        const deps: ConnectorDeps = {
          clock: env.clock,
          log: env.log.child({ connector: spec.name }),
          env: env.env,
          projectDir: env.projectDir,
          stateDir: env.stateDir,
          prices: env.config.prices ?? {},
        };
        const opened = await openConnector<T>(spec, env.config, deps);
        open.set(opened.client, opened);
        return opened.client;
      },
      async close(client) {
        const opened = open.get(client);
        open.delete(client);
        await opened?.close();
      },
    };
    adapted.set(spec, resource as Resource<unknown>);
  }
  return resource;
}
