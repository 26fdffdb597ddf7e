import type { QuotaConfig } from '../config.ts';
import { DAY, type Period, QuotaCalendar } from './calendar.ts';

/** Where a planned effect would fall under its quota: which sending window, and its place in it. */
export interface Slot {
  /** Start and end (UTC, ISO) of the period the effect counts against. */
  window_start: string;
  window_end: string;
  /** 1-based position of the effect within its period's cap. */
  position: number;
  /** Local reading, e.g. "Mon 30 Nov 09:00-17:00 Europe/London". */
  label: string;
}

/**
 * Plans slots for effects under one quota, purely: from `now`, fill the current period up
 * to the cap, then the next allowed one, and so on. `used` is what the period already spent.
 */
export class SlotPlanner {
  private readonly calendar: QuotaCalendar;
  private current: Period & { count: number };
  private readonly recent: number[] = [];

  constructor(
    private readonly quota: QuotaConfig,
    defaultTimezone: string,
    now: Date,
    used = 0,
  ) {
    this.calendar = new QuotaCalendar(quota, defaultTimezone);
    this.current = { ...this.calendar.periodFrom(now), count: 0 };
    for (let i = 0; i < used; i++) this.next();
  }

  /** The slot of the next effect. */
  next(): Slot {
    for (let guard = 0; !this.hasRoom(this.current); guard++) {
      if (guard > 100_000) throw new Error('quota planning found no window with room (is the window empty?)');
      this.current = { ...this.calendar.nextPeriodAfter(new Date(this.current.end.getTime() - 1)), count: 0 };
    }
    const period = this.current;
    period.count += 1;
    this.recent.push(period.start.getTime());
    return {
      window_start: period.start.toISOString(),
      window_end: period.end.toISOString(),
      position: period.count,
      label: this.calendar.label(period.start, period.end),
    };
  }

  private hasRoom(p: Period & { count: number }): boolean {
    if (this.quota.per === 'week') {
      const since = p.start.getTime() - 7 * DAY + 1;
      return this.recent.filter((t) => t >= since).length < this.quota.cap;
    }
    return p.count < this.quota.cap;
  }
}
