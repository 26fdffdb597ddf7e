import type { TSchema } from '@sinclair/typebox';
import type { Migrations } from './db/migrations.ts';
import type { AnyStepType, StepType } from './types.ts';

/** The step types a pipeline may name in `uses`. The engine knows steps only through this. */
export class StepRegistry {
  private readonly byType = new Map<string, AnyStepType>();
  /**
   * Config sections the steps read (prospect sources, enrichment rules ...), by top-level
   * key: validated with the rest of the config, with positions, and in the editor schema.
   */
  readonly configSections = new Map<string, TSchema>();

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

  /** Declares a config section `name` checked against `schema`. */
  configSection(name: string, schema: TSchema): this {
    if (this.configSections.has(name)) throw new Error(`config section "${name}" is declared twice`);
    this.configSections.set(name, schema);
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
