import { Cron } from 'croner';

/**
 * The periods a cap or a budget counts over, each named for what it is. One definition of
 * each, used by quotas, budgets, the dry run and `flows quotas`, so "a week" can never mean
 * two things again:
 *
 * - hour:           the clock hour, in the timezone
 * - day:            midnight to midnight, in the timezone
 * - calendar_week:  Monday 00:00 to Monday 00:00, in the timezone
 * - calendar_month: the 1st 00:00 to the next 1st 00:00, in the timezone
 * - rolling_24h:    the 24 hours before now
 * - rolling_7d:     the 7 days before now
 *
 * Calendar periods come from croner in the IANA timezone, so they stay right across
 * daylight-saving changes (a day may last 23 or 25 hours). Pure: time comes in as arguments.
 */
export const CALENDAR_PERIODS = ['hour', 'day', 'calendar_week', 'calendar_month'] as const;
export const ROLLING_PERIODS = ['rolling_24h', 'rolling_7d'] as const;
export type CalendarPeriod = (typeof CALENDAR_PERIODS)[number];
export type RollingPeriod = (typeof ROLLING_PERIODS)[number];
export type PeriodName = CalendarPeriod | RollingPeriod;

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

const ROLLING_SPAN: Record<RollingPeriod, number> = { rolling_24h: DAY_MS, rolling_7d: 7 * DAY_MS };
const STARTS: Record<CalendarPeriod, string> = { hour: '0 * * * *', day: '0 0 * * *', calendar_week: '0 0 * * 1', calendar_month: '0 0 1 * *' };
/** Longer than any period of the kind, to search back from. */
const LONGEST: Record<CalendarPeriod, number> = { hour: 2 * HOUR_MS, day: 2 * DAY_MS, calendar_week: 8 * DAY_MS, calendar_month: 32 * DAY_MS };

export interface Span {
  start: Date;
  end: Date;
}

export function isRolling(period: PeriodName): period is RollingPeriod {
  return period in ROLLING_SPAN;
}

export function rollingSpanMs(period: RollingPeriod): number {
  return ROLLING_SPAN[period];
}

const crons = new Map<string, Cron>();
function startsOf(period: CalendarPeriod, timezone: string): Cron {
  const key = `${period} ${timezone}`;
  let cron = crons.get(key);
  if (!cron) crons.set(key, (cron = new Cron(STARTS[period], { timezone, paused: true })));
  return cron;
}

/**
 * The stretch of time whose effects count at `at`: the calendar period holding it, or the
 * rolling span ending at it, (at - span, at]: what happens at `at` counts, and what happened
 * exactly one span before no longer does.
 */
export function periodAt(period: PeriodName, timezone: string, at: Date): Span {
  if (isRolling(period)) return { start: new Date(at.getTime() - ROLLING_SPAN[period] + 1), end: new Date(at.getTime() + 1) };
  // Calendar periods do not overlap: the one found last holds `at` or another one does.
  const key = `${period} ${timezone}`;
  const last = lastPeriod.get(key);
  if (last && last.start <= at && at < last.end) return { start: new Date(last.start), end: new Date(last.end) };
  const cron = startsOf(period, timezone);
  let start = cron.nextRun(new Date(at.getTime() - LONGEST[period]))!;
  for (let next = cron.nextRun(start); next && next <= at; next = cron.nextRun(start)) start = next;
  const span = { start, end: cron.nextRun(start)! };
  lastPeriod.set(key, { start: new Date(span.start), end: new Date(span.end) });
  return span;
}

/** The calendar period found last, per period and timezone: a quota asks about the same day for every send of it. */
const lastPeriod = new Map<string, Span>();

/** Made once per timezone: making a formatter costs far more than using one. */
const dateFormats = new Map<string, Intl.DateTimeFormat>();

/** The local calendar date (YYYY-MM-DD) of `at` in the timezone. */
export function localDate(at: Date, timezone: string): string {
  let format = dateFormats.get(timezone);
  if (!format) dateFormats.set(timezone, (format = new Intl.DateTimeFormat('en-CA', { timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit' })));
  return format.format(at);
}

/** Whole calendar days from `from` (YYYY-MM-DD) to the local date of `at`: 0 on that day, negative before it. */
export function daysSince(from: string, at: Date, timezone: string): number {
  const utc = (date: string) => {
    const [y, m, d] = date.split('-').map(Number) as [number, number, number];
    return Date.UTC(y, m - 1, d);
  };
  return Math.round((utc(localDate(at, timezone)) - utc(from)) / DAY_MS);
}

/** Local midnight at the start of `date` (YYYY-MM-DD) in the timezone. */
export function startOfDate(date: string, timezone: string): Date {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  // UTC offsets lie within -12h and +14h: that local midnight is one of the first two after UTC-15h.
  const cron = startsOf('day', timezone);
  let start = cron.nextRun(new Date(Date.UTC(y, m - 1, d) - 15 * HOUR_MS))!;
  while (localDate(start, timezone) < date) start = cron.nextRun(start)!;
  return start;
}
