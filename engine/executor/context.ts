import { CompiledQuery } from 'kysely';
import type { Clock } from '../clock.ts';
import type { EngineConfig } from '../config.ts';
import type { BudgetExhaustedError } from '../budget.ts';
import type { Cost } from '../cost.ts';
import type { Database } from '../db/connect.ts';
import type { DryRunSink } from '../dry-run.ts';
import type { RunEvents } from '../events.ts';
import type { Logger } from '../log.ts';
import type { QuotaCalendar } from '../quota/calendar.ts';
import type { RateLimits } from '../rate-limits.ts';
import type { Resources } from '../resources.ts';
import type { SlotPlanner } from '../quota/slots.ts';
import type { Scrubber } from '../secrets.ts';
import type { RunStore } from '../store.ts';
import type { Queryable } from '../types.ts';
import type { DatabaseEffects } from './write-batch.ts';

/** Everything one run's steps share. Built once per run by the executor. */
export interface RunContext {
  readonly runId: string;
  readonly pipeline: string;
  readonly dryRun: boolean;
  /** A resumed run: items may have finished before, and are looked up to be skipped. */
  readonly resumed: boolean;
  readonly config: EngineConfig;
  readonly clock: Clock;
  readonly log: Logger;
  readonly events: RunEvents;
  readonly store: RunStore;
  readonly scrub: Scrubber;
  /** Graceful stop: take no new items, let in-flight ones finish. */
  readonly stop: AbortSignal;
  /** Hard stop: abort in-flight attempts. */
  readonly abort: AbortSignal;
  /** Expression scope shared by every step: inputs, steps, config, env, run. */
  readonly scope: Record<string, unknown> & { steps: Record<string, { output: unknown }> };
  readonly db: Queryable;
  readonly sink?: DryRunSink;
  /** Dry runs: slot planners by quota and key. */
  readonly slots: Map<string, Promise<SlotPlanner>>;
  readonly costByStep: Map<string, Cost>;
  /** Lines steps add to the run's summary. */
  readonly notes: { step: string; text: string }[];
  /** Database writes with their idempotency keys, committed together in small groups. */
  readonly writes: DatabaseEffects;
  readonly calendars: Map<string, QuotaCalendar>;
  readonly rateLimits: RateLimits;
  readonly resources: Resources;
  /** The latest quota wait, as recorded on the run. */
  waiting?: { until: Date; reason: string };
  /**
   * Set by the daemon: a quota wait longer than `afterMs` parks the run (it stops as on a
   * graceful stop and ends "waiting") instead of holding a worker while it sleeps.
   */
  readonly park?: { afterMs: number; controller: AbortController; until?: Date };
  /** Set when a budget is spent: the run stops taking work and waits for the next period. */
  readonly halt: { controller: AbortController; until?: Date; reason?: string };
}

export function writableQueryable(db: Database): Queryable {
  return { writable: true, query: (text, params) => db.query(text, params) };
}

/** Every statement in its own READ ONLY transaction: the database itself refuses writes. */
export function readOnlyQueryable(db: Database): Queryable {
  return {
    writable: false,
    query: <R>(text: string, params: readonly unknown[] = []) =>
      db.kysely.transaction().execute(async (trx) => {
        // Stated inside the transaction: not every dialect passes an access mode to BEGIN.
        await trx.executeQuery(CompiledQuery.raw('SET TRANSACTION READ ONLY'));
        return (await trx.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows as R[];
      }),
  };
}

/** Stops the run because a budget is spent: it ends "waiting" until the budget's next period. */
export function haltForBudget(rc: RunContext, err: BudgetExhaustedError): void {
  if (!rc.halt.until || err.until < rc.halt.until) {
    rc.halt.until = err.until;
    rc.halt.reason = err.message;
  }
  if (!rc.halt.controller.signal.aborted) {
    rc.log.warn({ budget: err.budget, until: err.until.toISOString() }, err.message);
    rc.halt.controller.abort();
  }
}
