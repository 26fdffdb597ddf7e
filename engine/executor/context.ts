import { CompiledQuery } from 'kysely';
import type { Clock } from '../clock.ts';
import type { EngineConfig } from '../config.ts';
import { addCost, type Cost, zeroCost } from '../cost.ts';
import type { Database } from '../db/connect.ts';
import type { DryRunSink } from '../dry-run.ts';
import type { RunEvents } from '../events.ts';
import type { FlowControl } from '../flow-control/index.ts';
import type { DryRunPlanner } from '../flow-control/planner.ts';
import type { RateLimits } from '../flow-control/rate-limits.ts';
import type { Logger } from '../log.ts';
import type { Resources } from '../resources.ts';
import type { Scrubber } from '../secrets.ts';
import type { RunStore } from '../store/index.ts';
import type { Queryable } from '../types.ts';
import type { RunState } from './state.ts';

/**
 * What one run's steps share and never change: who the run is, its config and flow control,
 * the store, the clock, logs and events, the process's resources. Built once per run; what
 * changes while the run goes lives in its RunState.
 */
export interface RunEnvironment {
  readonly runId: string;
  readonly pipeline: string;
  readonly dryRun: boolean;
  /** A resumed run: items may have finished before, and are looked up to be skipped. */
  readonly resumed: boolean;
  readonly config: EngineConfig;
  readonly flow: FlowControl;
  readonly clock: Clock;
  readonly log: Logger;
  readonly events: RunEvents;
  readonly store: RunStore;
  readonly scrub: Scrubber;
  /** What steps query through: read-only in a dry run. */
  readonly db: Queryable;
  readonly rateLimits: RateLimits;
  readonly resources: Resources;
  /** Graceful stop: take no new items, let in-flight ones finish. */
  readonly stop: AbortSignal;
  /** Hard stop: abort in-flight attempts. */
  readonly abort: AbortSignal;
  /** Set for a daemon run: a quota wait longer than this parks the run instead of sleeping. */
  readonly parkAfterMs?: number;
  /** A dry run's artifacts and its flow-control planner. */
  readonly sink?: DryRunSink;
  readonly planner?: DryRunPlanner;
}

/** A run as its steps see it: the environment and the state. */
export interface RunContext extends RunEnvironment {
  readonly state: RunState;
  /** Expression scope shared by every step: inputs, steps, config, env, run. */
  readonly scope: Record<string, unknown> & { steps: Record<string, { output: unknown }> };
}

/** Adds usage to the step's cost (both real spending and a dry run's estimates). */
export function addStepCost(rc: RunContext, stepId: string, units: Record<string, number>): void {
  const cost: Cost = rc.state.costByStep.get(stepId) ?? zeroCost();
  addCost(cost, units, rc.config.prices);
  rc.state.costByStep.set(stepId, cost);
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
