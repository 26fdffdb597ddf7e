import { type TSchema, Type } from '@sinclair/typebox';
import type { CompiledValue, Condition } from '../expr/index.ts';
import type { AnyStepType } from '../types.ts';

declare const parsed: unique symbol;

export type Trigger =
  | { kind: 'schedule'; cron: string; timezone: string; catchup: 'none' | 'last' | 'all'; overlap: 'skip' | 'queue' }
  | { kind: 'webhook'; path: string; verify?: string; events?: string[]; when?: Condition; eventId?: string; inputs?: Record<string, unknown> }
  | { kind: 'event'; name: string; when?: Condition; dedupe?: { key: string; windowMs: number }; inputs?: Record<string, unknown> }
  | { kind: 'manual' };

export type ForeachSource =
  | { kind: 'expression'; list: CompiledValue }
  | { kind: 'query'; query: string; params: CompiledValue; key: string; pageSize: number };

export interface RetryPolicy {
  attempts: number;
  backoffMs: number;
  maxBackoffMs: number;
}

export interface PipelineStep {
  readonly id: string;
  readonly name?: string;
  /** Index among the pipeline's top-level steps (a sub-step has its group's). */
  readonly position: number;
  /** Document order over every step, sub-steps included: what a step may refer to. */
  readonly order: number;
  /** The foreach group this step belongs to, if it is a sub-step. */
  readonly group?: string;
  /** The step type's name, or "group" for a foreach group. */
  readonly uses: string;
  /** The step type; absent for a foreach group, which has `steps` instead. */
  readonly type?: AnyStepType;
  /** A foreach group's steps, run in order for each item. */
  readonly steps?: readonly PipelineStep[];
  /** The step's inputs as written, and compiled: every template parsed once, at load. */
  readonly with: Record<string, unknown>;
  readonly input: CompiledValue;
  readonly foreach?: ForeachSource;
  readonly itemKey?: CompiledValue;
  /** Item outputs kept as the step's results (default FOREACH_RESULTS_LIMIT). */
  readonly keepResults?: number;
  readonly concurrency: number;
  readonly when?: Condition;
  readonly retry: RetryPolicy;
  readonly timeoutMs?: number;
  readonly quota?: string;
  readonly quotaKey?: CompiledValue;
  /** The timezone quota_timezone gives: the window and days of this effect read there. */
  readonly quotaTimezone?: CompiledValue;
  readonly rateLimit?: string;
  readonly budget?: string;
  /**
   * An effect left in doubt by a crash: `stop` (default) waits for a person to settle it;
   * `repeat` performs it again, for a call the user declares harmless to repeat (a paid read).
   */
  readonly inDoubt?: 'stop' | 'repeat';
  readonly key?: CompiledValue;
  /** The output later steps see: the type's output, or the foreach summary around it. */
  readonly outputSchema: TSchema;
}

/** A pipeline that passed every check. Only the loader makes one; only the executor takes one. */
export interface Pipeline {
  readonly [parsed]: true;
  readonly name: string;
  readonly description?: string;
  readonly trigger: Trigger;
  readonly inputs: Record<string, Record<string, unknown>>;
  readonly steps: readonly PipelineStep[];
  readonly file: string;
  /** sha256 of the file, recorded with each run to notice a file changed before a resume. */
  readonly hash: string;
}

/** A step that calls a step type (not a group). */
export type CallStep = PipelineStep & { readonly type: AnyStepType };

export function isCallStep(step: PipelineStep): step is CallStep {
  return step.type !== undefined;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, backoffMs: 1000, maxBackoffMs: 300_000 };
export const DEFAULT_PAGE_SIZE = 500;
/** Item outputs kept in a foreach step's `results` (the rest are in the run's item records). */
export const FOREACH_RESULTS_LIMIT = 1000;

export function foreachOutputSchema(itemOutput: TSchema): TSchema {
  return Type.Object(
    {
      total: Type.Integer({ description: 'Items seen.' }),
      succeeded: Type.Integer(),
      failed: Type.Integer(),
      skipped: Type.Integer({ description: 'Items whose `when` was false.' }),
      results: Type.Array(itemOutput, { description: `Outputs of the first ${FOREACH_RESULTS_LIMIT} succeeded items, in order of completion.` }),
      results_truncated: Type.Boolean(),
    },
    { additionalProperties: false },
  );
}
