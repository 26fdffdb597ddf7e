import type { QuotaConfig } from '../config.ts';
import { NonRetriableError } from '../errors.ts';
import { DAY, type Period, type QuotaCalendar } from './calendar.ts';

/** What a quota has spent in the stretch that counts. */
export interface QuotaUse {
  count: number;
  /** The latest effect under the quota (for spacing). */
  last: Date | null;
  /** The earliest effect in the counted stretch (for a rolling week). */
  oldest: Date | null;
}

export type QuotaDecision = { ok: true } | { ok: false; until: Date; reason: string };

/** The stretch of time whose effects count against the cap at `now`. */
export function countedStretch(quota: QuotaConfig, period: Period, now: Date): { from: Date; to: Date } {
  return quota.per === 'week' ? { from: new Date(now.getTime() - 7 * DAY), to: new Date(now.getTime() + 1) } : { from: period.start, to: period.end };
}

/**
 * May one more effect happen at `now`? Pure. When not, says until when to wait: the next
 * window (outside one), the next period (cap reached), the end of the spacing gap.
 */
export function decide(name: string, quota: QuotaConfig, calendar: QuotaCalendar, now: Date, use: QuotaUse, gapMs: number): QuotaDecision {
  const inside = (t: Date) => (calendar.periodAt(t) ? t : calendar.nextPeriodAfter(t).start);
  const period = calendar.periodAt(now);
  if (!period) {
    const next = calendar.nextPeriodAfter(now);
    return { ok: false, until: next.start, reason: `outside the window of quota ${name}; it opens ${calendar.label(next.start, next.end)}` };
  }
  if (use.count >= quota.cap) {
    const until = quota.per === 'week' && use.oldest ? inside(new Date(use.oldest.getTime() + 7 * DAY)) : calendar.nextPeriodAfter(now).start;
    return { ok: false, until, reason: `quota ${name} is full (${quota.cap} per ${quota.per}) until ${until.toISOString()}` };
  }
  if (gapMs > 0 && use.last && now.getTime() < use.last.getTime() + gapMs) {
    return { ok: false, until: inside(new Date(use.last.getTime() + gapMs)), reason: `spacing of quota ${name}` };
  }
  return { ok: true };
}

/** Thrown out of a wait for a quota when the run is asked to stop: the item stays pending. */
export class StoppedWaitingError extends NonRetriableError {
  constructor(readonly until: Date) {
    super(`stopped while waiting for a quota window (it opens ${until.toISOString()})`);
  }
}

/** Whether `err`, or an error it wraps, is a StoppedWaitingError. */
export function stoppedWaiting(err: unknown): boolean {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) if (e instanceof StoppedWaitingError) return true;
  return false;
}
