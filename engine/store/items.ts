import { sql } from 'kysely';
import type { Database } from '../db/connect.ts';
import type { ItemStatus } from '../db/tables.ts';
import { type ItemRecord, json, type Scrubber } from './records.ts';

/** Finished foreach items: what a resumed run skips, and what `flows show` counts. */
export class ItemRecords {
  constructor(
    private readonly db: Database,
    private readonly scrub: Scrubber,
  ) {}

  /** Writes finished items in one statement; a later record of the same item wins. */
  async record(items: readonly ItemRecord[]): Promise<void> {
    if (!items.length) return;
    await this.db.kysely
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
  async finished(runId: string, stepId: string, keys: readonly string[]): Promise<Set<string>> {
    if (!keys.length) return new Set();
    const rows = await this.db.kysely
      .selectFrom('flow_items')
      .select('item_key')
      .where('run_id', '=', runId)
      .where('step_id', '=', stepId)
      .where('status', 'in', ['succeeded', 'skipped'])
      .where('item_key', 'in', [...keys])
      .execute();
    return new Set(rows.map((r) => r.item_key));
  }

  async counts(runId: string, stepId: string): Promise<Record<ItemStatus, number>> {
    const rows = await this.db.kysely
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
    const rows = await this.db.kysely
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

  failed(runId: string, limit = 100) {
    return this.db.kysely
      .selectFrom('flow_items')
      .select(['step_id', 'item_key', 'error', 'attempts'])
      .where('run_id', '=', runId)
      .where('status', '=', 'failed')
      .orderBy('finished_at')
      .limit(limit)
      .execute();
  }

  /** Succeeded item outputs of a step, for `results` when a step is resumed. */
  async outputs(runId: string, stepId: string, limit: number): Promise<unknown[]> {
    const rows = await this.db.kysely
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
}
