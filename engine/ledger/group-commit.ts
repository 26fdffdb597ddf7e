import type { Database } from '../db/connect.ts';
import { insertSql, shapeKey } from '../sql-insert.ts';
import type { EffectRow } from '../store/records.ts';
import type { DatabaseStatement } from '../types.ts';
import { Batcher } from '../batcher.ts';
import { inTransaction } from './sql.ts';
import type { EffectRecord, Sql, Write, WriteOutcome } from './types.ts';

interface Pending {
  effect: EffectRecord;
  write: Write;
  now: Date;
}

export interface GroupCommitStore {
  earlier(sql: Sql, keys: readonly string[]): Promise<EffectRow[]>;
  insertDone(sql: Sql, done: readonly { effect: EffectRecord; output: unknown }[], now: Date): Promise<void>;
}

/**
 * Database writes and their idempotency keys commit together, so each happens exactly once.
 * Writes that become ready while a transaction is running wait and then share the next one
 * (group commit): one statement looks up their keys, each write runs (plain inserts of one
 * shape merged into one statement), one statement records all their keys with their
 * outputs. A transaction that fails is replayed one write per transaction, so one bad write
 * fails alone.
 */
export class GroupCommit {
  private readonly batcher: Batcher<Pending, WriteOutcome>;

  constructor(
    private readonly db: Database,
    private readonly store: GroupCommitStore,
    /** Transactions at once: one on the embedded database (one connection), a few on Postgres. */
    parallel: number,
  ) {
    this.batcher = new Batcher({ commit: (batch) => this.commit(batch), parallel, keyOf: (p) => p.effect.key });
  }

  perform(effect: EffectRecord, write: Write, now: Date): Promise<WriteOutcome> {
    return this.batcher.submit({ effect, write, now });
  }

  /**
   * One transaction: which keys exist, the other writes, their keys with their outputs. A key
   * recorded meanwhile by another process makes the final insert fail, the transaction roll
   * back, and each write be replayed alone (then seen as done).
   */
  private commit(batch: readonly Pending[]): Promise<WriteOutcome[]> {
    return inTransaction(this.db, async (sql) => {
      const earlier = new Map((await this.store.earlier(sql, batch.map((p) => p.effect.key))).map((r) => [r.key, r]));
      const fresh = batch.filter((p) => !earlier.has(p.effect.key));
      const outputs = new Map<string, unknown>();
      for (const group of mergeable(fresh)) {
        const merged = await sql.query(insertSql(group[0]!.insert.shape, sum(group.map((s) => s.insert.rowCount))), group.flatMap((s) => s.params));
        let at = 0;
        for (const s of group) {
          outputs.set(s.key, { rows: merged.slice(at, at + s.insert.rowCount) });
          at += s.insert.rowCount;
        }
      }
      for (const { effect, write } of fresh) {
        if (outputs.has(effect.key)) continue;
        outputs.set(effect.key, write.statement ? { rows: await sql.query(write.statement.sql, write.statement.params) } : await write.run!(sql));
      }
      await this.store.insertDone(
        sql,
        fresh.map((p) => ({ effect: p.effect, output: outputs.get(p.effect.key) })),
        new Date(Math.max(...batch.map((p) => p.now.getTime()))),
      );
      return batch.map(({ effect }): WriteOutcome => {
        const row = earlier.get(effect.key);
        return row ? { state: 'done', row } : { state: 'written', output: outputs.get(effect.key) };
      });
    });
  }
}

type Mergeable = DatabaseStatement & { key: string; insert: NonNullable<DatabaseStatement['insert']> };

/** Plain inserts grouped by shape, where a shape has more than one. */
function mergeable(pending: readonly Pending[]): Mergeable[][] {
  const groups = new Map<string, Mergeable[]>();
  for (const { effect, write } of pending) {
    const s = write.statement;
    if (!s?.insert) continue;
    const key = shapeKey(s.insert.shape);
    const group = groups.get(key) ?? [];
    group.push({ ...s, key: effect.key, insert: s.insert });
    groups.set(key, group);
  }
  return [...groups.values()].filter((g) => g.length > 1);
}

const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);
