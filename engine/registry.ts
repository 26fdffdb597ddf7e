import type { AnyStepType, StepType } from './types.ts';
import type { TSchema } from '@sinclair/typebox';

/** The step types a pipeline may name in `uses`. The engine knows steps only through this. */
export class StepRegistry {
  private readonly byType = new Map<string, AnyStepType>();
  /**
   * Config sections the steps read (prospect sources, enrichment rules ...), by top-level
   * key: validated with the rest of the config, with positions, and in the editor schema.
   */
  readonly configSections = new Map<string, TSchema>();

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
