import { CompiledQuery, type Transaction } from 'kysely';
import type { Tables } from '../db/tables.ts';
import type { EffectRow, RunStore } from '../store.ts';
import { insertSql, shapeKey } from '../sql-insert.ts';
import type { DatabaseStatement, Queryable } from '../types.ts';

export interface DatabaseEffect {
  key: string;
  runId: string;
  stepId: string;
  itemKey: string;
  kind: string;
  summary: string;
  /** Performs the write through the transaction it is given. */
  write(db: Queryable): Promise<unknown>;
  /**
   * The write as one statement, when it is one: plain inserts of one shape are merged.
   * The recorded output of a statement is `{ rows }`, the rows it returned.
   */
  statement?: DatabaseStatement;
}

export type DatabaseEffectResult = { repeated: false; output: unknown } | { repeated: true; output: unknown; row: EffectRow };

interface Pending {
  effect: DatabaseEffect;
  resolve(result: DatabaseEffectResult): void;
  reject(err: unknown): void;
}

/**
 * Database writes and their idempotency keys commit together, so each happens exactly once.
 * Writes that become ready while a transaction is running wait and then share the next one
 * (group commit): one statement reserves all their keys, each write runs, one statement
 * records all their outputs. A transaction that fails is replayed one write per
 * transaction, so one bad write fails alone.
 */
export class DatabaseEffects {
  private queue: Pending[] = [];
  private running = 0;

  /**
   * `parallel` transactions at once: one on the embedded database (it has one connection),
   * a few on Postgres so the writes of one do not wait for another's round trips.
   */
  constructor(
    private readonly store: RunStore,
    private readonly now: () => Date,
    private readonly parallel = store.db.kind === 'pglite' ? 1 : 3,
    private readonly maxBatch = 100,
  ) {}

  perform(effect: DatabaseEffect): Promise<DatabaseEffectResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ effect, resolve, reject });
      if (this.running < this.parallel) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running += 1;
    try {
      while (this.queue.length) {
        // Let pending I/O callbacks run first: writes that are about to be ready join this batch.
        await new Promise((resolve) => setImmediate(resolve));
        const batch = this.take();
        try {
          const results = await this.commit(batch);
          batch.forEach((p, i) => p.resolve(results[i]!));
        } catch (err) {
          if (batch.length === 1) batch[0]!.reject(err);
          else for (const p of batch) await this.commit([p]).then(([r]) => p.resolve(r!), p.reject);
        }
      }
    } finally {
      this.running -= 1;
    }
  }

  /** Up to maxBatch pending writes with distinct keys; a repeated key waits for the next batch. */
  private take(): Pending[] {
    const batch: Pending[] = [];
    const keys = new Set<string>();
    const rest: Pending[] = [];
    for (const p of this.queue) {
      if (batch.length < this.maxBatch && !keys.has(p.effect.key)) {
        keys.add(p.effect.key);
        batch.push(p);
      } else rest.push(p);
    }
    this.queue = rest;
    return batch;
  }

  /**
   * One transaction: look up which keys exist, perform the other writes (plain inserts of
   * the same shape as one multi-row insert), record their keys with their outputs. A key
   * recorded meanwhile by another process makes the final insert fail, the transaction roll
   * back, and each write be replayed alone (then seen as done).
   */
  private commit(batch: Pending[]): Promise<DatabaseEffectResult[]> {
    return this.store.kysely.transaction().execute(async (trx) => {
      const earlier = new Map((await this.store.effectsByKeys(trx, batch.map((p) => p.effect.key))).map((r) => [r.key, r]));
      const db = queryable(trx);
      const fresh = batch.map((p) => p.effect).filter((e) => !earlier.has(e.key));
      const outputs = new Map<string, unknown>();
      for (const group of mergeable(fresh)) {
        const merged = await db.query(insertSql(group[0]!.insert.shape, sum(group.map((s) => s.insert.rowCount))), group.flatMap((s) => s.params));
        let at = 0;
        for (const s of group) {
          outputs.set(s.key, { rows: merged.slice(at, at + s.insert.rowCount) });
          at += s.insert.rowCount;
        }
      }
      for (const effect of fresh) if (!outputs.has(effect.key)) outputs.set(effect.key, await effect.write(db));
      await this.store.insertDone(
        trx,
        fresh.map((e) => ({ ...e, output: outputs.get(e.key) })),
        this.now(),
      );
      return batch.map(({ effect }): DatabaseEffectResult => {
        const row = earlier.get(effect.key);
        return row ? { repeated: true, output: row.output, row } : { repeated: false, output: outputs.get(effect.key) };
      });
    });
  }
}

type Mergeable = DatabaseStatement & { key: string; insert: NonNullable<DatabaseStatement['insert']> };

/** Plain inserts grouped by shape, where a shape has more than one. */
function mergeable(effects: DatabaseEffect[]): Mergeable[][] {
  const groups = new Map<string, Mergeable[]>();
  for (const e of effects) {
    const s = e.statement;
    if (!s?.insert) continue;
    const key = shapeKey(s.insert.shape);
    const group = groups.get(key) ?? [];
    group.push({ ...s, key: e.key, insert: s.insert });
    groups.set(key, group);
  }
  return [...groups.values()].filter((g) => g.length > 1);
}

const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);

function queryable(trx: Transaction<Tables>): Queryable {
  return {
    writable: true,
    query: async <R>(text: string, params: readonly unknown[] = []) => (await trx.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows as R[],
  };
}

/** A statement effect's output from what was recorded for it: `{ rows }`, the rows it returned. */
export function statementOutput(statement: DatabaseStatement | undefined, recorded: unknown): unknown {
  if (!statement) return recorded;
  return statement.output((recorded as { rows?: Record<string, unknown>[] } | null)?.rows ?? []);
}
