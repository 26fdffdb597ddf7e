import type { Static, TObject } from '@sinclair/typebox';
import type { Clock } from './clock.ts';
import type { Logger } from './log.ts';
import type { AnyVerifierType } from './verifier.ts';

/**
 * A connector is a spec: the client of one outside system (SEMrush, Claude, SMTP ...) as
 * data the engine can act on without knowing the system. Its config schema is merged into
 * the config file's schema (checked at load, autocompleted in editors), its `secrets` decide
 * whether the live service or the sandbox answers (see openConnector), and `create` turns
 * the checked settings into the small interface steps call. The engine names no connector:
 * the composition root registers them (steps/index.ts createRegistry).
 */
export interface ConnectorSpec<C extends TObject = TObject, S extends string = string, T = unknown> {
  /** Its key under `connectors:` in the config, like "semrush". */
  readonly name: string;
  /** One line for the config schema and the README. */
  readonly description: string;
  /**
   * The settings under `connectors.<name>`: a TypeBox object with a description on every
   * field, `additionalProperties: false`, a default on every field but the secrets (those
   * with a default may be left out of the file; the factory gets them filled in).
   */
  readonly config: C;
  /** The fields the live service needs (keys, a host); all set means live, else the sandbox. */
  readonly secrets: readonly S[];
  /** The client, from checked settings with defaults applied and every secret set. */
  create(config: LiveConfig<C, S>, deps: ConnectorDeps): T | Promise<T>;
  /**
   * Starts the local stand-in (same wire protocol) and says which settings point the real
   * client at it. None for a connector that is local anyway (storage, the browser).
   */
  sandbox?(config: Static<C>, deps: ConnectorDeps): Promise<RunningSandbox<Static<C>>>;
  /** Releases the client (pools, a browser); the engine calls it once, when the process stops. */
  close?(client: T): Promise<void> | void;
  /** Webhook signature checks this system's events need, by type name (Stripe's). */
  readonly verifiers?: readonly AnyVerifierType[];
}

/** Any spec, for registries (a spec's own types are checked by defineConnector). */
export type AnyConnector = ConnectorSpec<any, any, any>;

/** The optional fields of a config schema: the ones a spec may name as secrets. */
export type SecretField<C extends TObject> = { [K in keyof Static<C>]-?: undefined extends Static<C>[K] ? K : never }[keyof Static<C>] & string;

/** The settings as the factory gets them: defaults applied, every secret set. */
export type LiveConfig<C extends TObject, S extends string> = Static<C> & { [K in S & keyof Static<C>]-?: Exclude<Static<C>[K], undefined> };

/** The client a connector spec makes (what `ctx.use(spec)` resolves to). */
export type ClientOf<X> = X extends ConnectorSpec<any, any, infer T> ? T : never;

/** What a connector's factory and sandbox are given: injected, never read from globals. */
export interface ConnectorDeps {
  readonly clock: Clock;
  readonly log: Logger;
  /** The process environment as the project read it (CHROMIUM_PATH ...). */
  readonly env: Record<string, string | undefined>;
  /** The pipelines folder (templates, prompts). */
  readonly projectDir: string;
  /** Where local state lives (.flows): sandbox outboxes, report files. */
  readonly stateDir: string;
  /** USD per unit from the config's `prices`, for clients that price their calls. */
  readonly prices: Readonly<Record<string, number>>;
}

/** A started sandbox: the settings that point the real client at it, and how to stop it. */
export interface RunningSandbox<C> {
  /** Merged over the configured settings: the sandbox's URL, the key it accepts ... */
  readonly config: Partial<C>;
  close(): Promise<void>;
}

/** Gives a connector spec its types: settings from the schema, secrets among its optional fields. */
export function defineConnector<C extends TObject, const S extends SecretField<C>, T>(spec: ConnectorSpec<C, S, T>): ConnectorSpec<C, S, T> {
  return spec;
}

export function isConnector(value: unknown): value is AnyConnector {
  const v = value as Partial<AnyConnector> | null;
  return typeof v === 'object' && v !== null && Array.isArray(v.secrets) && typeof v.config === 'object' && typeof v.create === 'function';
}
