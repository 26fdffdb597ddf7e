import type { Database } from '../db/connect.ts';
import type { EffectRow, Scrubber } from '../store/records.ts';
import { GroupCommit } from './group-commit.ts';
import { SqlLedger } from './sql-ledger.ts';
import type { EffectRecord, Sql, Write, WriteOutcome } from './types.ts';

export type { EffectLedger, EffectRecord, Gate, GateVerdict, Hold, Reservation, Sql, Write, WriteOutcome } from './types.ts';
export { SqlLedger } from './sql-ledger.ts';

/** Writes that are not one statement share grouped transactions on both databases. */
abstract class GroupingLedger extends SqlLedger {
  protected readonly groups: GroupCommit;

  constructor(db: Database, scrub: Scrubber, parallel: number) {
    super(db, scrub, parallel);
    this.groups = new GroupCommit(db, { earlier: (sql, keys) => this.keysIn(sql, keys), insertDone: (sql, done, at) => this.insertDone(sql, done, at) }, parallel);
  }

  private keysIn(sql: Sql, keys: readonly string[]): Promise<EffectRow[]> {
    return sql.query<EffectRow>('SELECT * FROM flow_effects WHERE key = ANY($1::text[])', [[...keys]]);
  }
}

/**
 * On Postgres a statement write and its key are one statement (a data-modifying WITH): exactly
 * once, one round trip, no transaction held open, and the writes of concurrent items run in
 * parallel on the pool's connections.
 */
export class PostgresLedger extends GroupingLedger {
  constructor(db: Database, scrub: Scrubber) {
    super(db, scrub, 3);
  }

  protected async writeOnce(effect: EffectRecord, write: Write, now: Date): Promise<WriteOutcome> {
    if (!write.statement) return this.groups.perform(effect, write, now);
    const { sql: text, params } = write.statement;
    const wrapped = withEffectRecord(text, params.length);
    // The time as text: the driver's own Date formatting costs more than the write's other values.
    const values = [...params, effect.key, effect.runId, effect.stepId, effect.itemKey, effect.kind, this.scrub(effect.summary), now.toISOString()];
    let recorded: { rows: Record<string, unknown>[] };
    try {
      recorded = { rows: await this.db.queryHot<Record<string, unknown>>(wrapped, values) };
    } catch (err) {
      // A repeat fails on a unique key: ours, or (when the write itself is checked first) one of
      // the written table's. Either way, if our key is recorded, the effect happened.
      if ((err as { code?: string }).code !== '23505') throw err;
      const earlier = await this.find(effect.key);
      if (!earlier) throw err;
      return { state: 'done', row: earlier };
    }
    // The statement recorded the rows it returned as they are: a secret among them is scrubbed now.
    const clean = this.scrub(recorded);
    if (clean !== recorded && JSON.stringify(clean) !== JSON.stringify(recorded)) {
      await this.db.query('UPDATE flow_effects SET output = $2 WHERE key = $1', [effect.key, JSON.stringify(clean)]);
    }
    return { state: 'written', output: recorded };
  }
}

/** The embedded database has one connection: ready writes share one transaction, same-shaped inserts merged. */
export class PgliteLedger extends GroupingLedger {
  constructor(db: Database, scrub: Scrubber) {
    super(db, scrub, 1);
  }

  protected writeOnce(effect: EffectRecord, write: Write, now: Date): Promise<WriteOutcome> {
    return this.groups.perform(effect, write, now);
  }
}

export function openLedger(db: Database, scrub: Scrubber): SqlLedger {
  return db.kind === 'postgres' ? new PostgresLedger(db, scrub) : new PgliteLedger(db, scrub);
}

/**
 * The statement wrapped so that it also records its effect key, with the rows it returned (as
 * jsonb, for a repeat to return); the rows come back as rows. A data-modifying WITH runs
 * whether or not the outer query reads it. Cached by text.
 */
const wrapped = new Map<string, string>();
function withEffectRecord(statementSql: string, n: number): string {
  let text = wrapped.get(statementSql);
  if (!text) {
    text = `WITH w AS (${statementSql}),
      e AS (
        INSERT INTO flow_effects (key, run_id, step_id, item_key, kind, status, summary, output, reserved_at, done_at)
        SELECT $${n + 1}, $${n + 2}, $${n + 3}, $${n + 4}, $${n + 5}, 'done', $${n + 6},
               jsonb_build_object('rows', coalesce((SELECT jsonb_agg(to_jsonb(w)) FROM w), '[]'::jsonb)), $${n + 7}, $${n + 7})
      SELECT * FROM w`;
    if (wrapped.size > 1000) wrapped.clear();
    wrapped.set(statementSql, text);
  }
  return text;
}
