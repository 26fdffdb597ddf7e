/**
 * Glossary
 *
 * - pipeline:  a YAML file users edit: a trigger, inputs and ordered steps.
 * - step:      one entry of a pipeline; `uses` names a step type, `with` gives its inputs
 *              (with ${{ }} expressions over inputs, earlier outputs, the item, config, env).
 * - step type: code with a typed input and output (JSON Schema, one source for validation,
 *              static types, docs and editor schemas) and a `run` function.
 * - connector: the client of an outside system as a spec (config schema, factory, sandbox
 *              speaking its protocol); steps use connectors with ctx.use(spec), the engine
 *              applies one live-or-sandbox rule to all and names none.
 * - run:       one execution of a pipeline, recorded in the database and resumable.
 * - item:      one element of a step's `foreach`; items run concurrently and are recorded
 *              so a resumed run skips the finished ones.
 * - effect:    an outside effect of a step (a send, a launch, a charge, a write). It gets an
 *              idempotency key, reserved in the database before it happens, so it is never
 *              repeated; in a dry run it is planned, never performed.
 * - gate:      flow control a call passes through: a rate limit (each attempt), a quota (a
 *              slot in its caps, days and window), a budget (its most expensive estimate).
 * - quota:     named caps on calls (per hour, day, rolling 24 hours or 7 days, calendar week),
 *              with days, a window, spacing and a ramp, declared in config; per key or not.
 * - ledger:    where effects (and gated calls) are reserved before they happen and confirmed
 *              after: the effect ledger, the quota ledger and the budget ledger.
 */
import type { Static, TSchema } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { EngineConfig } from './config.ts';
import type { Usable } from './resources.ts';
import type { InsertShape } from './sql-insert.ts';

/** What a step sees of the database: parameterised SQL, nothing else. */
export interface Queryable {
  /** `text` uses $1, $2 ... placeholders; values are never spliced into SQL. */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<R[]>;
  /** False in a dry run: every statement then runs in a READ ONLY transaction. */
  readonly writable: boolean;
}

export interface StepContext {
  readonly run: { readonly id: string; readonly pipeline: string; readonly dryRun: boolean };
  readonly step: { readonly id: string };
  /** The foreach item's key, when the step runs per item. */
  readonly itemKey?: string;
  /** The idempotency key of this effect; send it to outside systems that deduplicate by key. */
  readonly effectKey?: string;
  /** The quota the call goes under (the step's `quota:`), for a step that must pause it. */
  readonly quota?: string;
  /** The key of the call's quota: the one quota_key gave, or the one the quota picked (the mailbox a rotation chose). */
  readonly quotaKey?: string;
  readonly attempt: number;
  /** Aborts on timeout or a hard stop; pass it to every outside call. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly db: Queryable;
  readonly clock: Clock;
  readonly config: EngineConfig;
  /** Evaluates a bare expression (no ${{ }}) against the step's scope plus `extra`. */
  evaluate(expression: string, extra?: Record<string, unknown>): unknown;
  /** The process's instance of a resource or a connector (a client, the browser), made on first use. */
  use<T>(resource: Usable<T>): Promise<T>;
  /**
   * Runs `call` under the config's rate limit of this name (requests per second and in
   * flight), shared with every step using the same name; without such a limit, at once.
   */
  limit<T>(name: string, call: () => Promise<T>): Promise<T>;
  /** Records usage of a real run by unit name (priced by config `prices`), e.g. { semrush_units: 40 }. */
  spend(units: Record<string, number>): void;
  /** A line for the run's summary (real and dry runs), e.g. "120 new, 30 stale, 4,850 fresh". */
  note(text: string): void;
  /**
   * Pauses a quota (or one key of it) with a reason, for a time or until a person resumes it
   * (`flows quotas resume`): a rule a step applies, like "the provider says rate limited".
   * Calls under it wait meanwhile. Not done in a dry run.
   */
  pauseQuota(pause: { quota: string; key?: string; reason: string; forMs?: number }): Promise<void>;
  /**
   * The room under a quota, per key, over the sending window open now or the next one: what
   * its caps allow by the window's end (a rolling cap counts what still counts then). Paused
   * keys have none.
   */
  quotaRoom(quota: string): Promise<{ key: string; remaining: number; paused?: string }[]>;
}

/** A file a person can open, written to the dry-run folder. */
export interface Artifact {
  /** File name suffix, like "email.html" or "request.json". */
  name: string;
  content: string;
}

/** What an effectful step would do, computed without doing it. */
export interface PlannedEffect<O = unknown> {
  /** One line for the dry-run table: "email to ana@example.com: Your report". */
  summary: string;
  /** The output later steps see in the dry run (a plausible stand-in). */
  output: O;
  /** Rendered content (emails, messages, documents, requests). */
  artifacts?: Artifact[];
  /** Estimated usage by unit name (priced by config `prices`), e.g. { semrush_units: 10 }. */
  cost?: Record<string, number>;
}

export interface DatabaseStatement {
  sql: string;
  params: readonly unknown[];
  output(rows: Record<string, unknown>[]): unknown;
  /**
   * Set when the statement is a plain INSERT built by insertSql (one returned row per row
   * written): the engine may merge several of the same shape into one multi-row insert.
   */
  insert?: { shape: InsertShape; rowCount: number };
}

export interface EffectSpec<I> {
  /** The kind of effect ("email", "db.write", "http"); null when this input has none (a GET). */
  kind(input: I): string | null;
  /** Computes what would happen. Gets a read-only context: it cannot cause the effect. */
  plan(ctx: StepContext, input: I): Promise<PlannedEffect> | PlannedEffect;
  /**
   * One line and what identifies the effect outside (recipient, subject, Message-ID ...),
   * known before it happens: recorded with its key, so a person can look an effect in doubt
   * up in the outside system before settling it. Cheap: it runs before every effect.
   */
  describe?(input: I, ctx: StepContext): { summary: string; identity?: Record<string, string> };
  /**
   * The most one call can spend, by unit (priced by config `prices`): what a budget reserves
   * before the call. A step type without it cannot take a budget.
   */
  cost?(input: I, config: EngineConfig): Record<string, number>;
  /** Why this step's `with` leaves the cost unknown (checked at load when the step names a budget). */
  costUnknown?(withValue: Record<string, unknown>): string | undefined;
  /**
   * The effect writes only to our database: the executor runs it in the same transaction
   * that records its idempotency key, so it happens exactly once.
   */
  transactional?: boolean;
  /**
   * The effect is one SQL statement that returns rows (INSERT, UPDATE or DELETE with
   * RETURNING). The engine runs it inside a single statement together with its idempotency
   * record: exactly once, in one round trip, with no transaction to hold open. `output`
   * turns the returned rows into the step's output (also when a repeat is skipped).
   */
  statement?(input: I, ctx: StepContext): DatabaseStatement;
  /**
   * The outside system deduplicates by our idempotency key, so after a crash in the middle
   * of the effect it is safe to perform it again with the same key.
   */
  providerIdempotent?(input: I): boolean;
  /**
   * The output is large and a later step stores it where it belongs (search data): the ledger
   * keeps it only until the item is recorded, which is as long as a resume can need it. A
   * confirmed effect is never performed again either way.
   */
  transientOutput?: boolean;
}

export interface StepType<I extends TSchema = TSchema, O extends TSchema = TSchema> {
  /** The name pipelines write in `uses`, like "http.request". */
  readonly type: string;
  /** One line for docs and editor hovers. */
  readonly description: string;
  readonly input: I;
  readonly output: O;
  readonly effect?: EffectSpec<Static<I>>;
  run(ctx: StepContext, input: Static<I>): Promise<Static<O>>;
}

/** Gives the step's input and output their static types from the same schemas. */
export function defineStep<I extends TSchema, O extends TSchema>(spec: StepType<I, O>): StepType<I, O> {
  return spec;
}

export type AnyStepType = StepType<TSchema, TSchema>;
