import type { Database } from '../db/connect.ts';
import type { EffectRow, Scrubber } from '../store/records.ts';
import { Batcher } from '../batcher.ts';
import { inTransaction } from './sql.ts';
import type { ConfirmOptions, EffectLedger, EffectRecord, Gate, Hold, Reservation, Sql, Write, WriteOutcome } from './types.ts';

type Reserved = Extract<Reservation, { state: 'reserved' }>;
type Wait = Extract<Reservation, { state: 'wait' }>;

type Answer = Wait | Extract<Reservation, { state: 'done' | 'in-doubt' }>;

/** Thrown inside a transaction to roll it back with its answers. */
class Declined extends Error {
  constructor(readonly outcomes: Answer[]) {
    super('declined');
  }
}

interface PendingReservation {
  effect: EffectRecord | undefined;
  /** In label order, the order they lock in. */
  gates: readonly Gate[];
  now: Date;
}

interface PendingConfirmation {
  key: string;
  /** The output as JSON text, scrubbed. */
  output: string;
  at: string;
  transient: boolean;
}

async function sequentially<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await fn(item));
  return out;
}

const json = (v: unknown) => JSON.stringify(v ?? null);
const byLabel = (a: Gate, b: Gate) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0);

/**
 * The effect ledger on flow_effects, shared by both databases. What differs is how a
 * database write without gates commits with its key (writeOnce): one statement on Postgres,
 * grouped transactions on the embedded database.
 */
export abstract class SqlLedger implements EffectLedger {
  /** Gated reservations, grouped by their gates (a quota and its keys): one transaction for all that wait together. */
  private readonly reservations = new Batcher<PendingReservation, Reservation>({
    commit: (batch) => this.reserveTogether(batch),
    parallel: 1,
    keyOf: (p) => p.effect?.key,
  });
  /** Confirmations that arrive together: one statement. */
  private readonly confirmations: Batcher<PendingConfirmation, void>;

  constructor(
    protected readonly db: Database,
    protected readonly scrub: Scrubber,
    /** Statements of one kind at once: one on the embedded database (one connection), a few on Postgres. */
    parallel = 1,
  ) {
    this.confirmations = new Batcher({ commit: (batch) => this.confirmTogether(batch), parallel, keyOf: (p) => p.key });
  }

  protected abstract writeOnce(effect: EffectRecord, write: Write, now: Date): Promise<WriteOutcome>;

  /**
   * The key first. One that exists answers at once: a repeat waits for no gate and counts
   * against none. A new one is held (another reservation of it waits for this transaction)
   * before any gate's lock is taken, so the locks, which every call of a quota queues on, are
   * held for the gates' own statements and the commit only. Calls whose gates can decide
   * together (the same quota and keys) and that arrive while such a transaction runs share
   * the next one: one insert of their keys, one lock, one read, each call decided in turn as
   * if alone, one insert of their slots.
   */
  async reserve(effect: EffectRecord | undefined, gates: readonly Gate[], now: Date): Promise<Reservation> {
    if (!gates.length) return effect ? ((await this.reserveKeys(this.db, [{ effect, gates, now }], now))[0] ?? { state: 'reserved', holds: [] }) : { state: 'reserved', holds: [] };
    const sorted = [...gates].sort(byLabel);
    const pending: PendingReservation = { effect, gates: sorted, now };
    const lane = sorted.every((g) => g.group && g.reserveGroup) ? sorted.map((g) => g.group).join('\u001e') : undefined;
    return lane ? this.reservations.submit(pending, lane) : (await this.reserveTogether([pending]))[0]!;
  }

  /**
   * The effect and the gates' holds are settled side by side, not in one transaction: a
   * process that stops between them leaves a budget reservation at its estimate, or a quota
   * slot counted, which errs on the safe side and saves two round trips per call.
   */
  async confirm(effect: EffectRecord | undefined, reservation: Reserved, output: unknown, now: Date, options: ConfirmOptions = {}): Promise<void> {
    const spent = options.spent ?? {};
    await Promise.all([
      effect && this.confirmations.submit({ key: effect.key, output: json(this.scrub(output)), at: now.toISOString(), transient: options.transient === true }),
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
        if (earlier) throw new Declined([earlier]);
        const pending = { effect, gates: [...gates].sort(byLabel), now };
        const outcomes: (Reservation | undefined)[] = [undefined];
        const [holds] = await this.passGates(sql, [pending], outcomes, now);
        if (outcomes[0]) throw new Declined([outcomes[0] as Answer]);
        const output = write.statement ? { rows: await sql.query(write.statement.sql, write.statement.params) } : await write.run!(sql);
        await this.insertDone(sql, [{ effect, output }], now);
        for (const hold of holds!) await hold.confirm(sql, {});
        return { state: 'written', output } satisfies WriteOutcome;
      });
    } catch (err) {
      const [answer] = err instanceof Declined ? err.outcomes : [];
      if (answer) return answer.state === 'in-doubt' ? { state: 'done', row: answer.row } : (answer as WriteOutcome);
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

  /**
   * Reservations in one transaction (see reserve). Calls a gate turns away get their key back
   * in it; when none is admitted the transaction rolls back instead, as one call alone does.
   */
  private async reserveTogether(batch: readonly PendingReservation[]): Promise<Reservation[]> {
    try {
      return await inTransaction(this.db, async (sql) => {
        const now = new Date(Math.max(...batch.map((p) => p.now.getTime())));
        const outcomes = await this.reserveKeys(sql, batch, now);
        const holds = await this.passGates(sql, batch, outcomes, now);
        const turnedAway = batch.flatMap((p, i) => (outcomes[i]?.state === 'wait' && p.effect ? [p.effect.key] : []));
        if (outcomes.every((o) => o)) throw new Declined(outcomes as Answer[]);
        if (turnedAway.length) await sql.query("DELETE FROM flow_effects WHERE key = ANY($1::text[]) AND status = 'reserved'", [turnedAway]);
        return outcomes.map((o, i) => o ?? ({ state: 'reserved', holds: holds[i]! } satisfies Reserved));
      });
    } catch (err) {
      if (err instanceof Declined) return err.outcomes;
      throw err;
    }
  }

  /**
   * The keys of a group of reservations, in one statement (in key order, so two groups never
   * wait on each other's keys); an outcome for each key that exists (done or in doubt).
   */
  private async reserveKeys(sql: Sql, batch: readonly PendingReservation[], now: Date): Promise<(Reservation | undefined)[]> {
    const effects = batch.flatMap((p) => (p.effect ? [p.effect] : [])).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    if (!effects.length) return batch.map(() => undefined);
    const per = 7;
    const values = effects.map((_, i) => `(${Array.from({ length: per }, (_, j) => `$${2 + i * per + j}`).join(', ')}, 'reserved', 'null', $1)`).join(', ');
    const inserted = await sql.query<{ key: string }>(
      `INSERT INTO flow_effects (key, run_id, step_id, item_key, kind, summary, identity, status, output, reserved_at) VALUES ${values}
       ON CONFLICT (key) DO NOTHING RETURNING key`,
      [now, ...effects.flatMap((e) => [e.key, e.runId, e.stepId, e.itemKey, e.kind, this.scrub(e.summary), e.identity ? json(this.scrub(e.identity)) : null])],
    );
    const fresh = new Set(inserted.map((r) => r.key));
    const existing = effects.filter((e) => !fresh.has(e.key)).map((e) => e.key);
    const rows = existing.length ? await sql.query<EffectRow>('SELECT * FROM flow_effects WHERE key = ANY($1::text[])', [existing]) : [];
    const earlier = new Map(rows.map((row) => [row.key, row]));
    return batch.map((p) => {
      const row = p.effect && earlier.get(p.effect.key);
      if (!row) return undefined;
      return row.status === 'done' ? { state: 'done', row } : { state: 'in-doubt', row };
    });
  }

  /** Effects confirmed together: one statement. */
  private async confirmTogether(batch: readonly PendingConfirmation[]): Promise<void[]> {
    await this.db.query(
      `UPDATE flow_effects AS f SET status = 'done', output = v.output::jsonb, done_at = v.done_at::timestamptz, transient = v.transient
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[]) AS v(key, output, done_at, transient) WHERE f.key = v.key`,
      [batch.map((p) => p.key), batch.map((p) => p.output), batch.map((p) => p.at), batch.map((p) => p.transient)],
    );
    return batch.map(() => undefined);
  }

  /**
   * The gates of calls that have no answer yet (`outcomes[i]` undefined), gate by gate in lock
   * order, a gate deciding its calls together when it can. A call a gate turns away gets its
   * wait in `outcomes` and its earlier holds given back; the holds of each call are returned.
   */
  private async passGates(sql: Sql, batch: readonly PendingReservation[], outcomes: (Reservation | undefined)[], now: Date): Promise<Hold[][]> {
    const holds: Hold[][] = batch.map(() => []);
    for (let j = 0; j < batch[0]!.gates.length; j++) {
      const live = batch.flatMap((_, i) => (outcomes[i] ? [] : [i]));
      if (!live.length) break;
      const calls = live.map((i) => ({ gate: batch[i]!.gates[j]!, effectKey: batch[i]!.effect?.key }));
      const first = calls[0]!.gate;
      const verdicts = first.reserveGroup ? await first.reserveGroup(sql, now, calls) : await sequentially(calls, (c) => c.gate.reserve(sql, now, c.effectKey));
      for (const [n, i] of live.entries()) {
        const verdict = verdicts[n]!;
        if (verdict.ok) {
          if (verdict.hold) holds[i]!.push(verdict.hold);
          continue;
        }
        outcomes[i] = { state: 'wait', until: verdict.until, reason: verdict.reason, scope: verdict.scope };
        for (const hold of holds[i]!) await hold.release(sql, {});
      }
    }
    return holds;
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
