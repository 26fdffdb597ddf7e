import type { Database } from '../db/connect.ts';
import type { EffectRow, Scrubber } from '../store/records.ts';
import { inTransaction } from './sql.ts';
import type { ConfirmOptions, EffectLedger, EffectRecord, Gate, Reservation, Sql, Write, WriteOutcome } from './types.ts';

type Reserved = Extract<Reservation, { state: 'reserved' }>;
type Wait = Extract<Reservation, { state: 'wait' }>;

/** Thrown inside a reservation transaction to roll it back with an answer. */
class Declined extends Error {
  constructor(readonly outcome: Wait | Extract<Reservation, { state: 'done' | 'in-doubt' }>) {
    super('declined');
  }
}

const json = (v: unknown) => JSON.stringify(v ?? null);
const byLabel = (a: Gate, b: Gate) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0);

/**
 * The effect ledger on flow_effects, shared by both databases. What differs is how a
 * database write without gates commits with its key (writeOnce): one statement on Postgres,
 * grouped transactions on the embedded database.
 */
export abstract class SqlLedger implements EffectLedger {
  constructor(
    protected readonly db: Database,
    protected readonly scrub: Scrubber,
  ) {}

  protected abstract writeOnce(effect: EffectRecord, write: Write, now: Date): Promise<WriteOutcome>;

  async reserve(effect: EffectRecord | undefined, gates: readonly Gate[], now: Date): Promise<Reservation> {
    if (!gates.length) return effect ? this.reserveKey(this.db, effect, now) : { state: 'reserved', holds: [] };
    try {
      return await inTransaction(this.db, async (sql) => {
        // The key first. One that exists answers at once: a repeat waits for no gate and
        // counts against none. A new one is held (another reservation of it waits for this
        // transaction) before any gate's lock is taken, so the locks, which every call of a
        // quota queues on, are held for the gates' own statements and the commit only.
        if (effect) {
          const key = await this.reserveKey(sql, effect, now);
          if (key.state !== 'reserved') throw new Declined(key);
        }
        const holds = await this.reserveGates(sql, gates, now, effect?.key);
        return { state: 'reserved', holds } satisfies Reserved;
      });
    } catch (err) {
      if (err instanceof Declined) return err.outcome;
      throw err;
    }
  }

  /**
   * The effect and the gates' holds are settled side by side, not in one transaction: a
   * process that stops between them leaves a budget reservation at its estimate, or a quota
   * slot counted, which errs on the safe side and saves two round trips per call.
   */
  async confirm(effect: EffectRecord | undefined, reservation: Reserved, output: unknown, now: Date, options: ConfirmOptions = {}): Promise<void> {
    const spent = options.spent ?? {};
    await Promise.all([
      effect &&
        this.db.query("UPDATE flow_effects SET status = 'done', output = $2, done_at = $3, transient = $4 WHERE key = $1", [
          effect.key,
          json(this.scrub(output)),
          now,
          options.transient === true,
        ]),
      ...reservation.holds.map((hold) => hold.confirm(this.db, spent)),
    ]);
  }

  async release(effect: EffectRecord | undefined, reservation: Reserved, spent: Record<string, number> = {}): Promise<void> {
    await Promise.all([
      effect && this.db.query("DELETE FROM flow_effects WHERE key = $1 AND status = 'reserved'", [effect.key]),
      ...reservation.holds.map((hold) => hold.release(this.db, spent)),
    ]);
  }

  async write(effect: EffectRecord, gates: readonly Gate[], write: Write, now: Date): Promise<WriteOutcome> {
    if (!gates.length) return this.writeOnce(effect, write, now);
    try {
      return await inTransaction(this.db, async (sql) => {
        const earlier = await this.earlier(sql, effect.key);
        if (earlier) throw new Declined(earlier);
        const holds = await this.reserveGates(sql, gates, now, effect.key);
        const output = write.statement ? { rows: await sql.query(write.statement.sql, write.statement.params) } : await write.run!(sql);
        await this.insertDone(sql, [{ effect, output }], now);
        for (const hold of holds) await hold.confirm(sql, {});
        return { state: 'written', output } satisfies WriteOutcome;
      });
    } catch (err) {
      if (err instanceof Declined) return err.outcome.state === 'in-doubt' ? { state: 'done', row: err.outcome.row } : (err.outcome as WriteOutcome);
      throw err;
    }
  }

  async resolve(key: string, happened: boolean, now: Date): Promise<EffectRow> {
    const row = await this.find(key);
    if (!row) throw new Error(`no effect with key "${key}" (see flows effects)`);
    if (row.status !== 'reserved') throw new Error(`effect "${key}" is not in doubt (it is ${row.status})`);
    if (happened) await this.db.query("UPDATE flow_effects SET status = 'done', output = $2, done_at = $3 WHERE key = $1", [key, json({ resolved: 'happened' }), now]);
    else await this.db.query("DELETE FROM flow_effects WHERE key = $1 AND status = 'reserved'", [key]);
    return row;
  }

  async find(key: string): Promise<EffectRow | undefined> {
    const [row] = await this.db.query<EffectRow>('SELECT * FROM flow_effects WHERE key = $1', [key]);
    return row;
  }

  inDoubt(runId?: string): Promise<EffectRow[]> {
    return runId
      ? this.db.query<EffectRow>("SELECT * FROM flow_effects WHERE status = 'reserved' AND run_id = $1 ORDER BY reserved_at", [runId])
      : this.db.query<EffectRow>("SELECT * FROM flow_effects WHERE status = 'reserved' ORDER BY reserved_at");
  }

  async forget(runId: string, itemKeys: readonly string[]): Promise<void> {
    if (!itemKeys.length) return;
    await this.db.query('UPDATE flow_effects SET output = NULL, transient = false WHERE run_id = $1 AND transient AND item_key = ANY($2::text[])', [runId, [...itemKeys]]);
  }

  async repeat(key: string): Promise<void> {
    await this.db.query('UPDATE flow_effects SET repeats = repeats + 1 WHERE key = $1', [key]);
  }

  /** Effects of a run performed again after a crash left them in doubt. */
  async repeatsOf(runId: string): Promise<{ step_id: string; n: number; repeats: number }[]> {
    const rows = await this.db.query<{ step_id: string; n: number; repeats: number }>(
      'SELECT step_id, count(*)::int AS n, sum(repeats)::int AS repeats FROM flow_effects WHERE run_id = $1 AND repeats > 0 GROUP BY 1 ORDER BY 1',
      [runId],
    );
    return rows.map((r) => ({ step_id: r.step_id, n: Number(r.n), repeats: Number(r.repeats) }));
  }

  /** Drops every output of the run kept only until its item was recorded (the run completed). */
  async forgetRun(runId: string): Promise<void> {
    await this.db.query('UPDATE flow_effects SET output = NULL, transient = false WHERE run_id = $1 AND transient', [runId]);
  }

  /** Effects of a run counted by step, kind and status. */
  async counts(runId: string): Promise<{ step_id: string; kind: string; status: string; n: number }[]> {
    const rows = await this.db.query<{ step_id: string; kind: string; status: string; n: number }>(
      'SELECT step_id, kind, status, count(*)::int AS n FROM flow_effects WHERE run_id = $1 GROUP BY 1, 2, 3',
      [runId],
    );
    return rows.map((r) => ({ ...r, n: Number(r.n) }));
  }

  ofRun(runId: string): Promise<EffectRow[]> {
    return this.db.query<EffectRow>('SELECT * FROM flow_effects WHERE run_id = $1 ORDER BY reserved_at', [runId]);
  }

  private async reserveGates(sql: Sql, gates: readonly Gate[], now: Date, key: string | undefined) {
    const holds = [];
    for (const gate of [...gates].sort(byLabel)) {
      const verdict = await gate.reserve(sql, now, key);
      if (!verdict.ok) throw new Declined({ state: 'wait', until: verdict.until, reason: verdict.reason, scope: verdict.scope });
      if (verdict.hold) holds.push(verdict.hold);
    }
    return holds;
  }

  private async reserveKey(sql: Sql, effect: EffectRecord, now: Date): Promise<Reservation> {
    const inserted = await sql.query(
      `INSERT INTO flow_effects (key, run_id, step_id, item_key, kind, status, summary, identity, output, reserved_at)
       VALUES ($1, $2, $3, $4, $5, 'reserved', $6, $7, 'null', $8) ON CONFLICT (key) DO NOTHING RETURNING key`,
      [effect.key, effect.runId, effect.stepId, effect.itemKey, effect.kind, this.scrub(effect.summary), effect.identity ? json(this.scrub(effect.identity)) : null, now],
    );
    if (inserted.length) return { state: 'reserved', holds: [] };
    return (await this.earlier(sql, effect.key)) ?? { state: 'reserved', holds: [] };
  }

  protected async earlier(sql: Sql, key: string): Promise<Extract<Reservation, { state: 'done' | 'in-doubt' }> | undefined> {
    const [row] = await sql.query<EffectRow>('SELECT * FROM flow_effects WHERE key = $1', [key]);
    if (!row) return undefined;
    return row.status === 'done' ? { state: 'done', row } : { state: 'in-doubt', row };
  }

  /** Records database writes performed in this transaction, with their outputs, as done (one statement). */
  protected async insertDone(sql: Sql, done: readonly { effect: EffectRecord; output: unknown }[], now: Date): Promise<void> {
    if (!done.length) return;
    const per = 8;
    const values = done.map((_, i) => `(${Array.from({ length: per }, (_, j) => `$${2 + i * per + j}`).join(', ')}, 'done', $1, $1)`).join(', ');
    await sql.query(
      `INSERT INTO flow_effects (key, run_id, step_id, item_key, kind, summary, identity, output, status, reserved_at, done_at) VALUES ${values}`,
      [now, ...done.flatMap(({ effect: e, output }) => [e.key, e.runId, e.stepId, e.itemKey, e.kind, this.scrub(e.summary), e.identity ? json(this.scrub(e.identity)) : null, json(this.scrub(output))])],
    );
  }
}
