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

/** The calendar period holding `at`. */
export function budgetPeriod(budget: BudgetConfig, defaultTimezone: string, at: Date): { start: Date; end: Date } {
  const cron = new Cron(PERIOD_CRON[budget.per], { timezone: budget.timezone ?? defaultTimezone, paused: true });
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

async function useIn(query: Query, budget: string, start: Date): Promise<BudgetUse> {
  const rows = await query<{ unit: string; amount: string | number }>(
    `SELECT u.key AS unit, sum((u.value)::numeric) AS amount
       FROM budget_ledger l, jsonb_each_text(l.units) u
      WHERE l.budget = $1 AND l.period_start = $2
      GROUP BY u.key`,
    [budget, start],
  );
  const usdRows = await query<{ usd: string | number | null }>('SELECT sum(usd) AS usd FROM budget_ledger WHERE budget = $1 AND period_start = $2', [budget, start]);
  return { units: Object.fromEntries(rows.map((r) => [r.unit, Number(r.amount)])), usd: Number(usdRows[0]?.usd ?? 0) };
}

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
    const query: Query = async <R>(text: string, params: readonly unknown[]) => (await trx.executeQuery<R>(CompiledQuery.raw(text, [...params]))).rows;
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
    const row = await trx
      .insertInto('budget_ledger')
      .values({ budget: name, period_start: period.start, run_id: ref.runId, step_id: ref.stepId, item_key: ref.itemKey, units: JSON.stringify(estimate), usd, settled: false, created_at: now })
      .returning('id')
      .executeTakeFirstOrThrow();
    return String(row.id);
  });
}

/** Replaces a reservation's estimate with what the call really spent. */
export async function settleBudget(db: Database, config: EngineConfig, id: string, spent: Record<string, number>): Promise<void> {
  await db.kysely
    .updateTable('budget_ledger')
    .set({ units: JSON.stringify(spent), usd: priceOf(spent, config.prices), settled: true })
    .where('id', '=', id)
    .execute();
}
