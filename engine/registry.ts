import type { TSchema } from '@sinclair/typebox';
import type { EngineConfig, QuotaKeySource, SectionCheck } from './config.ts';
import type { AnyConnector } from './connector.ts';
import type { Migrations } from './db/migrations.ts';
import type { AnyStepType, Queryable, StepType } from './types.ts';
import { type AnyVerifierType, builtinVerifiers } from './verifier.ts';

/** A line that a family of steps adds under one quota (and key) in `flows quotas`: what steers its volume beside the caps, like a LinkedIn account's health. */
export interface QuotaRemark {
  quota: string;
  /** The key it is about; unset: the whole quota. */
  key?: string;
  text: string;
}

/** Reads the remarks at `now`, from the database and the config (read only). */
export type QuotaRemarkSource = (db: Pick<Queryable, 'query'>, config: EngineConfig, now: Date) => Promise<QuotaRemark[]>;

/**
 * What the composition root gives the engine: the step types a pipeline may name in `uses`,
 * the connectors whose settings the config holds, and the webhook verifier types. The
 * engine knows steps and connectors only through this.
 */
export class StepRegistry {
  private readonly byType = new Map<string, AnyStepType>();
  /**
   * Config sections the steps read (prospect sources, enrichment rules ...), by top-level
   * key: validated with the rest of the config, with positions, and in the editor schema.
   */
  readonly configSections = new Map<string, TSchema>();
  /** Checks of those sections' values beyond their schema, by section. */
  readonly sectionChecks = new Map<string, SectionCheck>();
  /** Connector specs by name: `connectors.<name>` in the config is checked against each one's schema. */
  readonly connectors = new Map<string, AnyConnector>();
  /** Webhook verifier types by `type:`: the engine's hmac-sha256 and those connectors bring. */
  readonly verifiers = new Map<string, AnyVerifierType>(builtinVerifiers.map((v) => [v.type, v]));

  /** Lists of quota keys that sections declare (`keys_from: email.mailboxes`), by name. */
  readonly quotaKeySources = new Map<string, QuotaKeySource>();

  /** Declares a list of quota keys a section holds (the email section's mailboxes). */
  quotaKeys(name: string, source: QuotaKeySource): this {
    if (this.quotaKeySources.has(name)) throw new Error(`quota key list "${name}" is declared twice`);
    this.quotaKeySources.set(name, source);
    return this;
  }

  /** What steps add to `flows quotas` (a LinkedIn account's acceptance rate and what it does to the day's volume). */
  readonly quotaRemarkSources: QuotaRemarkSource[] = [];

  /** Declares a source of remarks under the quotas in `flows quotas`. */
  quotaRemarks(source: QuotaRemarkSource): this {
    this.quotaRemarkSources.push(source);
    return this;
  }

  /** Migrations of the tables the steps own, applied with the engine's when a database opens. */
  readonly migrations: Migrations = {};

  /** Declares the tables (migrations by name) a family of steps owns. */
  tables(migrations: Migrations): this {
    for (const [name, migration] of Object.entries(migrations)) {
      if (name in this.migrations) throw new Error(`migration "${name}" is declared twice`);
      this.migrations[name] = migration;
    }
    return this;
  }

  /** Declares a config section `name` checked against `schema`, and by `check` once it matches it. */
  configSection(name: string, schema: TSchema, check?: SectionCheck): this {
    if (this.configSections.has(name)) throw new Error(`config section "${name}" is declared twice`);
    this.configSections.set(name, schema);
    if (check) this.sectionChecks.set(name, check);
    return this;
  }

  constructor(steps: Iterable<StepType<any, any>> = []) {
    for (const step of steps) this.register(step);
  }

  register<I extends TSchema, O extends TSchema>(step: StepType<I, O>): this {
    if (this.byType.has(step.type)) throw new Error(`step type "${step.type}" is registered twice`);
    this.byType.set(step.type, step as unknown as AnyStepType);
    return this;
  }

  /** Registers connector specs, and the verifier types they bring. */
  connector(...specs: AnyConnector[]): this {
    for (const spec of specs) {
      if (this.connectors.has(spec.name)) throw new Error(`connector "${spec.name}" is registered twice`);
      this.connectors.set(spec.name, spec);
      for (const verifier of spec.verifiers ?? []) this.verifier(verifier);
    }
    return this;
  }

  verifier(type: AnyVerifierType): this {
    if (this.verifiers.has(type.type)) throw new Error(`webhook verifier type "${type.type}" is registered twice`);
    this.verifiers.set(type.type, type);
    return this;
  }

  get(type: string): AnyStepType | undefined {
    return this.byType.get(type);
  }

  types(): string[] {
    return [...this.byType.keys()].sort();
  }

  all(): AnyStepType[] {
    return this.types().map((t) => this.byType.get(t)!);
  }
}
