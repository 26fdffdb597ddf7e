import type { Database } from '../db/connect.ts';
import type { Sql } from '../ledger/types.ts';
import type { BudgetUse } from './budget-spec.ts';

/**
 * What each budget spent per period: a row per call (reserved at its estimate, settled to
 * what it cost) and running totals per unit, so a check reads a few rows however many calls
 * the period made.
 */
export class BudgetLedger {
  constructor(private readonly db: Database) {}

  async lock(sql: Sql, budget: string): Promise<void> {
    await sql.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`flows budget ${budget}`]);
  }

  /** Spent and reserved so far in the period starting at `start`. */
  async use(sql: Sql, budget: string, start: Date): Promise<BudgetUse> {
    const rows = await sql.query<{ unit: string; amount: string | number }>('SELECT unit, amount FROM flow_budget_totals WHERE budget = $1 AND period_start = $2', [budget, start]);
    const units = Object.fromEntries(rows.filter((r) => r.unit !== 'usd').map((r) => [r.unit, Number(r.amount)]));
    return { units, usd: Number(rows.find((r) => r.unit === 'usd')?.amount ?? 0) };
  }

  /** The period's spending, outside any transaction (`flows budgets`, dry runs). */
  useNow(budget: string, start: Date): Promise<BudgetUse> {
    return this.use(this.db, budget, start);
  }

  /** A reservation at the estimate: the ledger row and the totals in one statement. */
  async reserve(
    sql: Sql,
    r: { budget: string; periodStart: Date; runId: string; stepId: string; itemKey: string; estimate: Record<string, number>; usd: number; now: Date },
  ): Promise<string> {
    const totals = Object.entries({ ...r.estimate, usd: r.usd }).filter(([, n]) => n !== 0);
    const values = totals.map((_, i) => `($1, $2, $${9 + 2 * i}, $${10 + 2 * i}::numeric)`).join(', ');
    const [row] = await sql.query<{ id: string }>(
      `WITH row AS (
         INSERT INTO flow_budget_ledger (budget, period_start, run_id, step_id, item_key, units, usd, settled, created_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, false, $8) RETURNING id
       )${
         totals.length
           ? `, totals AS (
         INSERT INTO flow_budget_totals (budget, period_start, unit, amount) VALUES ${values}
         ON CONFLICT (budget, period_start, unit) DO UPDATE SET amount = flow_budget_totals.amount + EXCLUDED.amount
       )`
           : ''
       }
       SELECT id FROM row`,
      [r.budget, r.periodStart, r.runId, r.stepId, r.itemKey, JSON.stringify(r.estimate), r.usd, r.now, ...totals.flat()],
    );
    return String(row!.id);
  }

  /** Replaces a reservation's estimate with what the call spent, in the ledger and the totals, in one statement. */
  async settle(sql: Sql, id: string, spent: Record<string, number>, usd: number): Promise<void> {
    await sql.query(
      `WITH prev AS (
         SELECT id, budget, period_start, units, usd FROM flow_budget_ledger WHERE id = $1 AND NOT settled FOR UPDATE
       ), done AS (
         UPDATE flow_budget_ledger l SET units = $2::jsonb, usd = $3::numeric, settled = true FROM prev WHERE l.id = prev.id RETURNING l.id
       ), deltas AS (
         SELECT prev.budget, prev.period_start, k.unit,
                coalesce(($2::jsonb ->> k.unit)::numeric, 0) - coalesce((prev.units ->> k.unit)::numeric, 0) AS amount
           FROM prev, (SELECT jsonb_object_keys($2::jsonb) AS unit UNION SELECT jsonb_object_keys(units) FROM prev) k
         UNION ALL
         SELECT budget, period_start, 'usd', $3::numeric - usd FROM prev
       )
       INSERT INTO flow_budget_totals (budget, period_start, unit, amount)
       SELECT budget, period_start, unit, amount FROM deltas WHERE amount <> 0 AND EXISTS (SELECT 1 FROM done)
       ON CONFLICT (budget, period_start, unit) DO UPDATE SET amount = flow_budget_totals.amount + EXCLUDED.amount`,
      [id, JSON.stringify(spent), usd],
    );
  }
}
