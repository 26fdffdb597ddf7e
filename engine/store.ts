import { type Kysely, sql, type Transaction } from 'kysely';
import type { Database } from './db/connect.ts';
import type { FlowEffectsTable, ItemStatus, RunStatus, StepStatus, Tables } from './db/tables.ts';
import type { Selectable } from 'kysely';

export type RunRow = Selectable<Tables['flow_runs']>;
export type StepRow = Selectable<Tables['flow_steps']>;
export type EffectRow = Selectable<FlowEffectsTable>;
type Db = Kysely<Tables> | Transaction<Tables>;

export interface ItemRecord {
  runId: string;
  stepId: string;
  itemKey: string;
  status: ItemStatus;
  attempts: number;
  output: unknown;
  error: string | null;
  finishedAt: Date;
}

export type Reservation =
  | { state: 'reserved' }
  | { state: 'done'; row: EffectRow }
  /** Reserved by an attempt that never reported back (a crash in the middle of the effect). */
  | { state: 'in-doubt'; row: EffectRow };

const json = (v: unknown) => JSON.stringify(v ?? null);

/**
 * Everything the engine records about runs, steps, items and effects. Writes pass through
 * `scrub` so secret values never reach the database.
 */
export class RunStore {
  constructor(
    readonly db: Database,
    private readonly scrub: <T>(value: T) => T = (v) => v,
  ) {}

  get kysely(): Kysely<Tables> {
    return this.db.kysely;
  }

  async createRun(run: {
    id: string;
    pipeline: string;
    file: string;
    hash: string;
    dryRun: boolean;
    inputs: Record<string, unknown>;
    now: Date;
  }): Promise<void> {
    await this.kysely
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

  async setRunStatus(id: string, status: RunStatus, now: Date, error: string | null = null): Promise<void> {
    const finished = status === 'running' ? null : now;
    // A run that ended holds no claim: a daemon worker need not release it after.
    const ended = status === 'completed' || status === 'completed_with_errors' || status === 'failed' || status === 'needs_attention';
    await this.kysely
      .updateTable('flow_runs')
      .set({ status, error: error && this.scrub(error), finished_at: finished, updated_at: now, ...(ended ? { claimed_by: null, lease_until: null } : {}) })
      .where('id', '=', id)
      .execute();
  }

  getRun(id: string): Promise<RunRow | undefined> {
    return this.kysely.selectFrom('flow_runs').selectAll().where('id', '=', id).executeTakeFirst();
  }

  listRuns(filter: { pipeline?: string; status?: RunStatus; limit?: number } = {}): Promise<RunRow[]> {
    let q = this.kysely.selectFrom('flow_runs').selectAll().orderBy('started_at', 'desc').orderBy('id', 'desc').limit(filter.limit ?? 50);
    if (filter.pipeline) q = q.where('pipeline', '=', filter.pipeline);
    if (filter.status) q = q.where('status', '=', filter.status);
    return q.execute();
  }

  getSteps(runId: string): Promise<StepRow[]> {
    return this.kysely.selectFrom('flow_steps').selectAll().where('run_id', '=', runId).orderBy('position').execute();
  }

  async startStep(runId: string, stepId: string, position: number, now: Date): Promise<void> {
    await this.kysely
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
    result: {
      status: StepStatus;
      output: unknown;
      error?: string | null;
      counts?: { total: number; succeeded: number; failed: number; skipped: number };
      now: Date;
    },
  ): Promise<void> {
    await this.kysely
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

  /** Writes finished items in one statement; a later record of the same item wins. */
  async recordItems(items: ItemRecord[]): Promise<void> {
    if (!items.length) return;
    await this.kysely
      .insertInto('flow_items')
      .values(
        items.map((i) => ({
          run_id: i.runId,
          step_id: i.stepId,
          item_key: i.itemKey,
          status: i.status,
          attempts: i.attempts,
          output: json(this.scrub(i.output)),
          error: i.error && this.scrub(i.error),
          finished_at: i.finishedAt,
        })),
      )
      .onConflict((oc) =>
        oc.columns(['run_id', 'step_id', 'item_key']).doUpdateSet({
          status: sql`excluded.status`,
          attempts: sql`excluded.attempts`,
          output: sql`excluded.output`,
          error: sql`excluded.error`,
          finished_at: sql`excluded.finished_at`,
        }),
      )
      .execute();
  }

  /** Of `keys`, those already finished (succeeded or skipped) in this run's step. */
  async finishedItemKeys(runId: string, stepId: string, keys: string[]): Promise<Set<string>> {
    if (!keys.length) return new Set();
    const rows = await this.kysely
      .selectFrom('flow_items')
      .select('item_key')
      .where('run_id', '=', runId)
      .where('step_id', '=', stepId)
      .where('status', 'in', ['succeeded', 'skipped'])
      .where('item_key', 'in', keys)
      .execute();
    return new Set(rows.map((r) => r.item_key));
  }

  async itemCounts(runId: string, stepId: string): Promise<Record<ItemStatus, number>> {
    const rows = await this.kysely
      .selectFrom('flow_items')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .where('run_id', '=', runId)
      .where('step_id', '=', stepId)
      .groupBy('status')
      .execute();
    const counts: Record<ItemStatus, number> = { succeeded: 0, failed: 0, skipped: 0 };
    for (const r of rows) counts[r.status as ItemStatus] = Number(r.n);
    return counts;
  }

  /** Items skipped with a reason (SkipItemError), counted by step and reason. */
  async skipReasons(runId: string): Promise<{ step_id: string; reason: string; n: number }[]> {
    const rows = await this.kysely
      .selectFrom('flow_items')
      .select(['step_id', 'error as reason', (eb) => eb.fn.countAll<string>().as('n')])
      .where('run_id', '=', runId)
      .where('status', '=', 'skipped')
      .where('error', 'is not', null)
      .groupBy(['step_id', 'error'])
      .orderBy('n', 'desc')
      .execute();
    return rows.map((r) => ({ step_id: r.step_id, reason: r.reason ?? '', n: Number(r.n) }));
  }

  failedItems(runId: string, limit = 100) {
    return this.kysely
      .selectFrom('flow_items')
      .select(['step_id', 'item_key', 'error', 'attempts'])
      .where('run_id', '=', runId)
      .where('status', '=', 'failed')
      .orderBy('finished_at')
      .limit(limit)
      .execute();
  }

  /** Succeeded item outputs of a step, for `results` when a step is resumed. */
  async itemOutputs(runId: string, stepId: string, limit: number): Promise<unknown[]> {
    const rows = await this.kysely
      .selectFrom('flow_items')
      .select('output')
      .where('run_id', '=', runId)
      .where('step_id', '=', stepId)
      .where('status', '=', 'succeeded')
      .where('output', 'is not', null)
      .where(sql`output`, '!=', sql`'null'::jsonb`)
      .orderBy('finished_at')
      .limit(limit)
      .execute();
    return rows.map((r) => r.output);
  }

  /**
   * Reserves an effect's idempotency key. Called inside the transaction that also reserves
   * its quota (and, for a database write, performs the write), so either all of it is
   * recorded or none.
   */
  async reserveEffect(
    db: Db,
    effect: { key: string; runId: string; stepId: string; itemKey: string; kind: string; summary: string; now: Date; quota?: string; quotaKey?: string },
  ): Promise<Reservation> {
    const inserted = await db
      .insertInto('flow_effects')
      .values({
        key: effect.key,
        run_id: effect.runId,
        step_id: effect.stepId,
        item_key: effect.itemKey,
        kind: effect.kind,
        status: 'reserved',
        summary: this.scrub(effect.summary),
        output: json(null),
        reserved_at: effect.now,
        quota: effect.quota ?? null,
        quota_key: effect.quota === undefined ? null : (effect.quotaKey ?? ''),
      })
      .onConflict((oc) => oc.column('key').doNothing())
      .returning('key')
      .executeTakeFirst();
    if (inserted) return { state: 'reserved' };
    const row = await db.selectFrom('flow_effects').selectAll().where('key', '=', effect.key).executeTakeFirstOrThrow();
    return row.status === 'done' ? { state: 'done', row } : { state: 'in-doubt', row };
  }

  /** Records database writes performed in this transaction, with their outputs, as done. */
  async insertDone(
    db: Db,
    effects: { key: string; runId: string; stepId: string; itemKey: string; kind: string; summary: string; output: unknown }[],
    now: Date,
  ): Promise<void> {
    if (!effects.length) return;
    await db
      .insertInto('flow_effects')
      .values(
        effects.map((e) => ({
          key: e.key,
          run_id: e.runId,
          step_id: e.stepId,
          item_key: e.itemKey,
          kind: e.kind,
          status: 'done' as const,
          summary: this.scrub(e.summary),
          output: json(this.scrub(e.output)),
          reserved_at: now,
          done_at: now,
        })),
      )
      .execute();
  }

  effectsByKeys(db: Db, keys: string[]): Promise<EffectRow[]> {
    return db.selectFrom('flow_effects').selectAll().where('key', 'in', keys).execute();
  }

  /**
   * Runs a data-modifying statement (with RETURNING) and records its idempotency key in the
   * same statement. When the key exists already, nothing is written (the statement fails on
   * the key as a whole) and the rows recorded the first time are returned instead.
   */
  async performStatement(
    effect: { key: string; runId: string; stepId: string; itemKey: string; kind: string; summary: string; now: Date },
    statement: { sql: string; params: readonly unknown[] },
  ): Promise<{ repeated: boolean; rows: Record<string, unknown>[] }> {
    const text = withEffectRecord(statement.sql, statement.params.length);
    const params = [...statement.params, effect.key, effect.runId, effect.stepId, effect.itemKey, effect.kind, this.scrub(effect.summary), effect.now];
    try {
      const [row] = await this.db.queryHot<{ output: { rows: Record<string, unknown>[] } }>(text, params);
      return { repeated: false, rows: row?.output.rows ?? [] };
    } catch (err) {
      // A repeat fails on a unique key: ours, or (when the write itself is checked first)
      // one of the written table. Either way, if our key is recorded, the effect happened.
      if ((err as { code?: string }).code !== '23505') throw err;
      const earlier = await this.findEffect(effect.key);
      if (!earlier) throw err;
      const output = earlier.output as { rows?: Record<string, unknown>[] } | null;
      return { repeated: true, rows: output?.rows ?? [] };
    }
  }

  async completeEffect(db: Db, key: string, output: unknown, now: Date): Promise<void> {
    await db
      .updateTable('flow_effects')
      .set({ status: 'done', output: json(this.scrub(output)), done_at: now })
      .where('key', '=', key)
      .execute();
  }

  /** The effect did not happen (the attempt failed before it): free the key for a retry. */
  async releaseEffect(key: string): Promise<void> {
    await this.kysely.deleteFrom('flow_effects').where('key', '=', key).where('status', '=', 'reserved').execute();
  }

  /** Serialises reservations under one quota and key, across processes, until the transaction ends. */
  async lockQuota(db: Db, quota: string, key: string): Promise<void> {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`flows quota ${quota}\u001f${key}`}))`.execute(db);
  }

  async quotaUse(db: Db, quota: string, key: string, from: Date, to: Date): Promise<{ count: number; last: Date | null; oldest: Date | null }> {
    const row = await db
      .selectFrom('flow_effects')
      .select((eb) => [eb.fn.countAll<number>().as('count'), eb.fn.min('reserved_at').as('oldest')])
      .where('quota', '=', quota)
      .where('quota_key', '=', key)
      .where('reserved_at', '>=', from)
      .where('reserved_at', '<', to)
      .executeTakeFirstOrThrow();
    const last = await db
      .selectFrom('flow_effects')
      .select((eb) => eb.fn.max('reserved_at').as('at'))
      .where('quota', '=', quota)
      .where('quota_key', '=', key)
      .executeTakeFirstOrThrow();
    const date = (v: unknown) => (v ? new Date(v as string) : null);
    return { count: Number(row.count), last: date(last.at), oldest: date(row.oldest) };
  }

  /** Effects counted per quota key in [from, to), for `flows quotas`. */
  quotaUsage(quota: string, from: Date, to: Date) {
    return this.kysely
      .selectFrom('flow_effects')
      .select(['quota_key', (eb) => eb.fn.countAll<number>().as('used')])
      .where('quota', '=', quota)
      .where('reserved_at', '>=', from)
      .where('reserved_at', '<', to)
      .groupBy('quota_key')
      .execute();
  }

  async setRunWaiting(runId: string, until: Date | null, reason: string | null): Promise<void> {
    await this.kysely.updateTable('flow_runs').set({ waiting_until: until, waiting_reason: reason }).where('id', '=', runId).execute();
  }

  effectsInDoubt(runId?: string): Promise<EffectRow[]> {
    let q = this.kysely.selectFrom('flow_effects').selectAll().where('status', '=', 'reserved').orderBy('reserved_at');
    if (runId) q = q.where('run_id', '=', runId);
    return q.execute();
  }

  findEffect(key: string): Promise<EffectRow | undefined> {
    return this.kysely.selectFrom('flow_effects').selectAll().where('key', '=', key).executeTakeFirst();
  }

  effectsOfRun(runId: string): Promise<EffectRow[]> {
    return this.kysely.selectFrom('flow_effects').selectAll().where('run_id', '=', runId).orderBy('reserved_at').execute();
  }

  async effectCounts(runId: string): Promise<{ step_id: string; kind: string; status: string; n: number }[]> {
    const rows = await this.kysely
      .selectFrom('flow_effects')
      .select(['step_id', 'kind', 'status', (eb) => eb.fn.countAll<number>().as('n')])
      .where('run_id', '=', runId)
      .groupBy(['step_id', 'kind', 'status'])
      .execute();
    return rows.map((r) => ({ ...r, n: Number(r.n) }));
  }
}

/** The statement wrapped so that it also records its effect key, with the rows it returned. Cached by text. */
const wrapped = new Map<string, string>();
function withEffectRecord(statementSql: string, n: number): string {
  let text = wrapped.get(statementSql);
  if (!text) {
    text = `WITH w AS (${statementSql}),
      e AS (
        INSERT INTO flow_effects (key, run_id, step_id, item_key, kind, status, summary, output, reserved_at, done_at)
        SELECT $${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5}, 'done', $${n + 6},
               jsonb_build_object('rows', coalesce((SELECT jsonb_agg(to_jsonb(w)) FROM w), '[]'::jsonb)), $${n + 7}, $${n + 7}
        RETURNING output)
      SELECT output FROM e`;
    if (wrapped.size > 1000) wrapped.clear();
    wrapped.set(statementSql, text);
  }
  return text;
}
