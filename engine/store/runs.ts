import { type Cost, roundUsd } from '../cost.ts';
import type { Database } from '../db/connect.ts';
import type { RunStatus, StepStatus } from '../db/tables.ts';
import { json, type RunRow, type Scrubber, type StepRow } from './records.ts';

/** Runs and their steps: what was started, how far it got, and why it waits or stopped. */
export class RunRecords {
  constructor(
    private readonly db: Database,
    private readonly scrub: Scrubber,
  ) {}

  async create(run: { id: string; pipeline: string; file: string; hash: string; dryRun: boolean; inputs: Record<string, unknown>; now: Date }): Promise<void> {
    await this.db.kysely
      .insertInto('flow_runs')
      .values({
        id: run.id,
        pipeline: run.pipeline,
        pipeline_file: run.file,
        pipeline_hash: run.hash,
        status: 'running',
        dry_run: run.dryRun,
        inputs: json(this.scrub(run.inputs)),
        started_at: run.now,
        updated_at: run.now,
      })
      .execute();
  }

  async setStatus(id: string, status: RunStatus, now: Date, error: string | null = null): Promise<void> {
    const finished = status === 'running' ? null : now;
    // A run that ended holds no claim: a daemon worker need not release it after.
    const ended = status === 'completed' || status === 'completed_with_errors' || status === 'failed' || status === 'needs_attention';
    await this.db.kysely
      .updateTable('flow_runs')
      .set({ status, error: error && this.scrub(error), finished_at: finished, updated_at: now, ...(ended ? { claimed_by: null, lease_until: null } : {}) })
      .where('id', '=', id)
      .execute();
  }

  /** Adds what one execution of the run spent to what earlier ones (before a wait or a crash) did. */
  async addCost(runId: string, spent: Cost): Promise<void> {
    const row = await this.db.kysely.selectFrom('flow_runs').select('cost').where('id', '=', runId).executeTakeFirst();
    const stored = typeof row?.cost === 'string' ? (JSON.parse(row.cost) as Cost) : row?.cost;
    const total: Cost = { units: { ...(stored?.units ?? {}) }, usd: stored?.usd ?? 0 };
    for (const [unit, amount] of Object.entries(spent.units)) total.units[unit] = (total.units[unit] ?? 0) + amount;
    total.usd = roundUsd(total.usd + spent.usd);
    await this.db.kysely.updateTable('flow_runs').set({ cost: json(total) }).where('id', '=', runId).execute();
  }

  async setWaiting(runId: string, until: Date | null, reason: string | null): Promise<void> {
    await this.db.kysely.updateTable('flow_runs').set({ waiting_until: until, waiting_reason: reason }).where('id', '=', runId).execute();
  }

  get(id: string): Promise<RunRow | undefined> {
    return this.db.kysely.selectFrom('flow_runs').selectAll().where('id', '=', id).executeTakeFirst();
  }

  list(filter: { pipeline?: string; status?: RunStatus; limit?: number } = {}): Promise<RunRow[]> {
    let q = this.db.kysely.selectFrom('flow_runs').selectAll().orderBy('started_at', 'desc').orderBy('id', 'desc').limit(filter.limit ?? 50);
    if (filter.pipeline) q = q.where('pipeline', '=', filter.pipeline);
    if (filter.status) q = q.where('status', '=', filter.status);
    return q.execute();
  }

  steps(runId: string): Promise<StepRow[]> {
    return this.db.kysely.selectFrom('flow_steps').selectAll().where('run_id', '=', runId).orderBy('position').execute();
  }

  async startStep(runId: string, stepId: string, position: number, now: Date): Promise<void> {
    await this.db.kysely
      .insertInto('flow_steps')
      .values({
        run_id: runId,
        step_id: stepId,
        position,
        status: 'running',
        output: json(null),
        error: null,
        items_total: 0,
        items_succeeded: 0,
        items_failed: 0,
        items_skipped: 0,
        started_at: now,
        finished_at: null,
      })
      .onConflict((oc) => oc.columns(['run_id', 'step_id']).doUpdateSet({ status: 'running', finished_at: null, error: null }))
      .execute();
  }

  async finishStep(
    runId: string,
    stepId: string,
    result: { status: StepStatus; output: unknown; error?: string | null; counts?: { total: number; succeeded: number; failed: number; skipped: number }; now: Date },
  ): Promise<void> {
    await this.db.kysely
      .updateTable('flow_steps')
      .set({
        status: result.status,
        output: json(this.scrub(result.output)),
        error: result.error ? this.scrub(result.error) : null,
        items_total: result.counts?.total ?? 0,
        items_succeeded: result.counts?.succeeded ?? 0,
        items_failed: result.counts?.failed ?? 0,
        items_skipped: result.counts?.skipped ?? 0,
        finished_at: result.now,
      })
      .where('run_id', '=', runId)
      .where('step_id', '=', stepId)
      .execute();
  }
}
