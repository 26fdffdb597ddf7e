import { Cron } from 'croner';
import { CompiledQuery, sql } from 'kysely';
import type { BudgetConfig, EngineConfig } from './config.ts';
import { priceOf } from './cost.ts';
import type { Database } from './db/connect.ts';
import { StoppedWaitingError } from './quota/ledger.ts';

/**
 * Budgets: money and API units a named budget may spend per calendar day, week (from Monday)
 * or month, in the business timezone. A step with `budget: <name>` reserves the most its
 * call can cost (its plan's estimate) before the call, under a lock, and settles the
 * reservation to what was really spent after it; a call that would pass a limit is not
 * made: the run stops taking work and waits, resumable, until the next period.
 */

const PERIOD_CRON = { day: '0 0 * * *', week: '0 0 * * 1', month: '0 0 1 * *' } as const;
const SPAN_MS = { day: 86_400_000, week: 7 * 86_400_000, month: 31 * 86_400_000 } as const;

const crons = new Map<string, Cron>();

/** The calendar period holding `at`. */
export function budgetPeriod(budget: BudgetConfig, defaultTimezone: string, at: Date): { start: Date; end: Date } {
  const tz = budget.timezone ?? defaultTimezone;
  let cron = crons.get(`${budget.per} ${tz}`);
  if (!cron) crons.set(`${budget.per} ${tz}`, (cron = new Cron(PERIOD_CRON[budget.per], { timezone: tz, paused: true })));
  let start = cron.nextRun(new Date(at.getTime() - SPAN_MS[budget.per] - 86_400_000))!;
  for (let next = cron.nextRun(start); next && next <= at; next = cron.nextRun(start)) start = next;
  return { start, end: cron.nextRun(start)! };
}

/** A call that would pass the budget: not made; the run waits for `until`. */
export class BudgetExhaustedError extends StoppedWaitingError {
  override readonly message: string;
  constructor(
    readonly budget: string,
    readonly reason: string,
    until: Date,
  ) {
    super(until);
    this.message = reason;
  }
}

export interface BudgetUse {
  units: Record<string, number>;
  usd: number;
}

type Query = <R>(text: string, params: readonly unknown[]) => Promise<R[]>;

/** Spent and reserved so far in a period: one row per unit in budget_totals, kept with the ledger. */
async function useIn(query: Query, budget: string, start: Date): Promise<BudgetUse> {
  const rows = await query<{ unit: string; amount: string | number }>('SELECT unit, amount FROM budget_totals WHERE budget = $1 AND period_start = $2', [budget, start]);
  const units = Object.fromEntries(rows.filter((r) => r.unit !== 'usd').map((r) => [r.unit, Number(r.amount)]));
  return { units, usd: Number(rows.find((r) => r.unit === 'usd')?.amount ?? 0) };
}

/** Raw parameterised SQL on a kysely transaction (or the database). */
const queryOn =
  (on: { executeQuery: Database['kysely']['executeQuery'] }): Query =>
  async <R>(text: string, params: readonly unknown[]) =>
    (await on.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows;

/** What a budget has spent (and reserved) in its current period. */
export async function budgetUse(db: Database, config: EngineConfig, name: string, now: Date): Promise<BudgetUse & { start: Date; end: Date }> {
  const budget = config.budgets![name]!;
  const period = budgetPeriod(budget, config.business?.timezone ?? 'UTC', now);
  return { ...(await useIn((text, params) => db.query(text, params), name, period.start)), ...period };
}

const fmt = (n: number) => (Number.isInteger(n) ? n.toLocaleString('en-US') : n.toFixed(2));

/**
 * Reserves `estimate` against the budget, or throws BudgetExhaustedError when it does not
 * fit. Returns the reservation's id, to settle with what was really spent.
 */
export async function reserveBudget(
  db: Database,
  config: EngineConfig,
  name: string,
  estimate: Record<string, number>,
  ref: { runId: string; stepId: string; itemKey: string },
  now: Date,
): Promise<string> {
  const budget = config.budgets![name]!;
  const period = budgetPeriod(budget, config.business?.timezone ?? 'UTC', now);
  const usd = priceOf(estimate, config.prices);
  return db.kysely.transaction().execute(async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${`flows budget ${name}`}))`.execute(trx);
    const query = queryOn(trx);
    const used = await useIn(query, name, period.start);
    for (const [unit, limit] of Object.entries(budget.limits)) {
      const spent = unit === 'usd' ? used.usd : (used.units[unit] ?? 0);
      const next = unit === 'usd' ? usd : (estimate[unit] ?? 0);
      if (next > 0 && spent + next > limit) {
        throw new BudgetExhaustedError(
          name,
          `budget ${name} reached: ${fmt(spent)} of ${fmt(limit)} ${unit} spent this ${budget.per}, and the next call may take ${fmt(next)}; resumes ${period.end.toISOString()}`,
          period.end,
        );
      }
    }
    // The ledger row and the totals in one statement.
    const totals = Object.entries({ ...estimate, usd }).filter(([, n]) => n !== 0);
    const values = totals.map((_, i) => `($1, $2, $${9 + 2 * i}, $${10 + 2 * i}::numeric)`).join(', ');
    const [row] = await query<{ id: string }>(
      `WITH row AS (
         INSERT INTO budget_ledger (budget, period_start, run_id, step_id, item_key, units, usd, settled, created_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, false, $8) RETURNING id
       )${
         totals.length
           ? `, totals AS (
         INSERT INTO budget_totals (budget, period_start, unit, amount) VALUES ${values}
         ON CONFLICT (budget, period_start, unit) DO UPDATE SET amount = budget_totals.amount + EXCLUDED.amount
       )`
           : ''
       }
       SELECT id FROM row`,
      [name, period.start, ref.runId, ref.stepId, ref.itemKey, JSON.stringify(estimate), usd, now, ...totals.flat()],
    );
    return String(row!.id);
  });
}

/**
 * Replaces a reservation's estimate with what the call really spent, in the ledger and the
 * totals, in one statement (one round trip per call: it runs for every enriched domain).
 */
export async function settleBudget(db: Database, config: EngineConfig, id: string, spent: Record<string, number>): Promise<void> {
  await db.query(
    `WITH prev AS (
       SELECT id, budget, period_start, units, usd FROM budget_ledger WHERE id = $1 AND NOT settled FOR UPDATE
     ), done AS (
       UPDATE budget_ledger l SET units = $2::jsonb, usd = $3::numeric, settled = true FROM prev WHERE l.id = prev.id RETURNING l.id
     ), deltas AS (
       SELECT prev.budget, prev.period_start, k.unit,
              coalesce(($2::jsonb ->> k.unit)::numeric, 0) - coalesce((prev.units ->> k.unit)::numeric, 0) AS amount
         FROM prev, (SELECT jsonb_object_keys($2::jsonb) AS unit UNION SELECT jsonb_object_keys(units) FROM prev) k
       UNION ALL
       SELECT budget, period_start, 'usd', $3::numeric - usd FROM prev
     )
     INSERT INTO budget_totals (budget, period_start, unit, amount)
     SELECT budget, period_start, unit, amount FROM deltas WHERE amount <> 0 AND EXISTS (SELECT 1 FROM done)
     ON CONFLICT (budget, period_start, unit) DO UPDATE SET amount = budget_totals.amount + EXCLUDED.amount`,
    [id, JSON.stringify(spent), priceOf(spent, config.prices)],
  );
}
