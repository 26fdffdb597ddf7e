import { type Static, Type } from '@sinclair/typebox';
import { periodAt, type Span } from './periods.ts';

/**
 * Budgets: money and API units a named budget may spend per calendar period in its
 * timezone. A call reserves the most it can cost before it happens and settles to what it
 * spent after; a call that would pass a limit is not made, and the run waits, resumable,
 * until the next period.
 */
export const BUDGET_PERIODS = ['day', 'calendar_week', 'calendar_month'] as const;
export type BudgetPeriod = (typeof BUDGET_PERIODS)[number];

export const BudgetSchema = Type.Object(
  {
    per: Type.Unsafe<BudgetPeriod>({
      type: 'string',
      enum: [...BUDGET_PERIODS],
      description: 'Calendar period, in the timezone: day, calendar_week (Monday 00:00 to Monday 00:00) or calendar_month.',
    }),
    limits: Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_]*$' }), Type.Number({ minimum: 0 }), {
      additionalProperties: false,
      description: 'Most to spend per period, by unit (semrush_units, spyfu_rows, claude_input_tokens ...) and usd (at the config prices).',
    }),
    timezone: Type.Optional(Type.String({ description: 'IANA timezone of the periods (default business.timezone).' })),
  },
  { additionalProperties: false },
);

export type BudgetConfig = Static<typeof BudgetSchema>;

export interface BudgetUse {
  units: Record<string, number>;
  usd: number;
}

export function budgetPeriod(budget: BudgetConfig, defaultTimezone: string, at: Date): Span {
  return periodAt(budget.per, budget.timezone ?? defaultTimezone, at);
}

const fmt = (n: number) => (Number.isInteger(n) ? n.toLocaleString('en-US') : n.toFixed(2));
const PER: Record<BudgetPeriod, string> = { day: 'day', calendar_week: 'calendar week', calendar_month: 'calendar month' };

/**
 * Whether a call estimated at `estimate` (and `usd`) fits what the period has spent: pure, so
 * the dry run and the run decide alike. Undefined when it fits, else why not.
 */
export function budgetRefusal(name: string, budget: BudgetConfig, used: BudgetUse, estimate: Record<string, number>, usd: number, period: Span): string | undefined {
  for (const [unit, limit] of Object.entries(budget.limits)) {
    const spent = unit === 'usd' ? used.usd : (used.units[unit] ?? 0);
    const next = unit === 'usd' ? usd : (estimate[unit] ?? 0);
    if (next > 0 && spent + next > limit) {
      return `budget ${name} reached: ${fmt(spent)} of ${fmt(limit)} ${unit} spent this ${PER[budget.per]}, and the next call may take ${fmt(next)}; resumes ${period.end.toISOString()}`;
    }
  }
  return undefined;
}
