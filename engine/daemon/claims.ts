import { sql, type Transaction } from 'kysely';
import type { Database } from '../db/connect.ts';
import type { Tables } from '../db/tables.ts';
import { newRunId } from '../ids.ts';
import type { Pipeline } from '../pipeline/types.ts';
import type { RunRow } from '../store/index.ts';
import type { RunQueue } from './queue.ts';

export type TriggerKind = 'schedule' | 'webhook' | 'event' | 'manual';

export interface QueuedRun {
  pipeline: Pipeline;
  inputs: Record<string, unknown>;
  trigger: TriggerKind;
  /** The fire time, webhook event id or event id behind the run. */
  ref: string | null;
  now: Date;
  startAfter?: Date;
}

/**
 * The life of a run in the daemon, on its row in flow_runs:
 *
 *   queued ──claim──▶ running ──▶ completed | completed_with_errors | failed
 *      ▲                 │
 *      └── requeue ◀─────┴── waiting (a quota window), interrupted (a daemon stopping),
 *                            or a lease that ran out (a daemon that died)
 *
 * Claiming is a conditional UPDATE: of two workers handed the same run, one wins. The
 * winner renews its lease while it works; a lease that runs out means the worker is gone.
 */
export class RunClaims {
  constructor(
    private readonly db: Database,
    private readonly queue: RunQueue,
  ) {}

  /** Creates a queued run and its job in `trx`. */
  async enqueueNew(trx: Transaction<Tables>, run: QueuedRun): Promise<string> {
    const id = newRunId(run.now);
    await queuedRunInsert(id, run).execute(trx);
    await this.queue.enqueue(trx, id, run.startAfter);
    return id;
  }

  /**
   * A webhook's run: records the event id (unique per route) and, only if it is new, the
   * queued run, in one statement; then the job. Returns undefined for an event seen before.
   * (Four round trips in all with BEGIN and COMMIT: the webhook answer waits for them.)
   */
  async enqueueWebhook(trx: Transaction<Tables>, run: QueuedRun, route: string, eventId: string): Promise<string | undefined> {
    const id = newRunId(run.now);
    const { rows } = await sql<{ id: string }>`
      WITH fresh AS (
        INSERT INTO flow_webhook_events (route, event_id, run_id, received_at) VALUES (${route}, ${eventId}, ${id}, ${run.now})
        ON CONFLICT (route, event_id) DO NOTHING RETURNING event_id
      )
      ${queuedRunInsert(id, run, sql`FROM fresh`)}
      RETURNING id`.execute(trx);
    if (!rows.length) return undefined;
    await this.queue.enqueue(trx, id, run.startAfter);
    return id;
  }

  /** Takes a queued or waiting run for `worker`; undefined if another has it or it is over. */
  async claim(runId: string, worker: string, now: Date, leaseMs: number): Promise<RunRow | undefined> {
    return this.db.kysely
      .updateTable('flow_runs')
      .set({ status: 'running', claimed_by: worker, lease_until: new Date(now.getTime() + leaseMs), updated_at: now })
      .where('id', '=', runId)
      .where('status', 'in', ['queued', 'waiting'])
      // Not one a worker still holds (between parking and handing it back).
      .where((eb) => eb.or([eb('claimed_by', 'is', null), eb('lease_until', '<', now)]))
      .returningAll()
      .executeTakeFirst();
  }

  /** Extends the lease; false when the run is no longer this worker's (it was taken over). */
  async renew(runId: string, worker: string, now: Date, leaseMs: number): Promise<boolean> {
    const row = await this.db.kysely
      .updateTable('flow_runs')
      .set({ lease_until: new Date(now.getTime() + leaseMs) })
      .where('id', '=', runId)
      .where('claimed_by', '=', worker)
      .where('status', '=', 'running')
      .returning('id')
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Drops the claim of a run that ended. */
  async release(runId: string, worker: string): Promise<void> {
    await this.db.kysely
      .updateTable('flow_runs')
      .set({ claimed_by: null, lease_until: null })
      .where('id', '=', runId)
      .where('claimed_by', '=', worker)
      .execute();
  }

  /**
   * Puts a run this worker stopped back in the queue: at once (a daemon stopping), or when
   * its quota window opens (waiting).
   */
  async requeue(runId: string, worker: string, status: 'queued' | 'waiting', now: Date, startAfter?: Date): Promise<boolean> {
    return this.db.kysely.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('flow_runs')
        .set({ status, claimed_by: null, lease_until: null, updated_at: now })
        .where('id', '=', runId)
        .where('claimed_by', '=', worker)
        .returning('id')
        .executeTakeFirst();
      if (row) await this.queue.enqueue(trx, runId, startAfter);
      return row !== undefined;
    });
  }

  /**
   * Queues again every run whose lease ran out (its worker died or lost the database).
   * Conditional on the lease still being out, so of several daemons one takes each run.
   */
  async reapExpired(now: Date): Promise<string[]> {
    return this.db.kysely.transaction().execute(async (trx) => {
      const rows = await trx
        .updateTable('flow_runs')
        .set({ status: 'queued', claimed_by: null, lease_until: null, updated_at: now })
        .where('status', '=', 'running')
        .where('lease_until', '<', now)
        .returning('id')
        .execute();
      for (const r of rows) await this.queue.enqueue(trx, r.id);
      return rows.map((r) => r.id);
    });
  }

  /** Another run of the pipeline is queued, running or waiting (for overlap rules). */
  async activeRunOf(db: Transaction<Tables>, pipeline: string, except?: string): Promise<string | undefined> {
    let q = db
      .selectFrom('flow_runs')
      .select('id')
      .where('pipeline', '=', pipeline)
      .where('status', 'in', ['queued', 'running', 'waiting'])
      .where('dry_run', '=', false);
    if (except) q = q.where('id', '!=', except);
    return (await q.orderBy('started_at').limit(1).executeTakeFirst())?.id;
  }

  /** An earlier scheduled run of the pipeline still executing under a live lease. */
  async earlierRunning(pipeline: string, runId: string, startedAt: Date, now: Date): Promise<string | undefined> {
    const row = await this.db.kysely
      .selectFrom('flow_runs')
      .select('id')
      .where('pipeline', '=', pipeline)
      .where('id', '!=', runId)
      .where('status', '=', 'running')
      .where('lease_until', '>=', now)
      .where('started_at', '<=', startedAt)
      .limit(1)
      .executeTakeFirst();
    return row?.id;
  }

  /** Takes an advisory transaction lock on a name (dedupe keys, one event at a time). */
  async lock(trx: Transaction<Tables>, name: string): Promise<void> {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`flows trigger ${name}`}))`.execute(trx);
  }
}

/** The INSERT of a queued run's row; `from` makes it conditional (a row per row of a CTE). */
function queuedRunInsert(id: string, run: QueuedRun, from = sql``) {
  return sql`
    INSERT INTO flow_runs (id, pipeline, pipeline_file, pipeline_hash, status, dry_run, inputs, started_at, updated_at, trigger, trigger_ref)
    SELECT ${id}, ${run.pipeline.name}, ${run.pipeline.file}, ${run.pipeline.hash}, 'queued', false, ${JSON.stringify(run.inputs)}::jsonb,
           ${run.now}::timestamptz, ${run.now}::timestamptz, ${run.trigger}, ${run.ref}::text
    ${from}`;
}
