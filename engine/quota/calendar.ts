import { Cron } from 'croner';
import type { QuotaConfig } from '../config.ts';

const DAY_NUMBER: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
const min = (a: Date, b: Date) => (a < b ? a : b);

/** A stretch of time an effect counts against: a window, or one clock hour of it. */
export interface Period {
  start: Date;
  end: Date;
  /** End of the sending window the period lies in. */
  windowEnd: Date;
}

/**
 * The calendar of one quota: its allowed days and daily window in its timezone, and the
 * periods its cap counts over. Windows are found with croner, so they stay right across
 * daylight-saving changes. Pure: time comes in as arguments.
 */
export class QuotaCalendar {
  readonly tz: string;
  private readonly windowStart: Cron;
  private readonly windowMs: number;

  constructor(
    readonly quota: QuotaConfig,
    defaultTimezone: string,
  ) {
    this.tz = quota.timezone ?? defaultTimezone;
    const [from = '00:00', to = '24:00'] = (quota.window ?? '00:00-24:00').split('-');
    const [fh, fm] = from.split(':').map(Number) as [number, number];
    const [th, tm] = to.split(':').map(Number) as [number, number];
    this.windowMs = (th * 60 + tm - (fh * 60 + fm)) * 60_000;
    const days = quota.days?.length ? quota.days.map((d) => DAY_NUMBER[d]).join(',') : '*';
    this.windowStart = new Cron(`${fm} ${fh} * * ${days}`, { timezone: this.tz, paused: true });
  }

  /** The period holding `at`, when `at` is inside an allowed window. */
  periodAt(at: Date): Period | undefined {
    const window = this.windowContaining(at);
    return window && this.periodIn(window, at);
  }

  /** The first period that starts after `at`: the next hour of the window (hourly caps), else the next window. */
  nextPeriodAfter(at: Date): Period {
    const current = this.windowContaining(at);
    if (current && this.quota.per === 'hour') {
      const nextHour = new Date(Math.floor(at.getTime() / HOUR) * HOUR + HOUR);
      if (nextHour < current.end) return this.periodIn(current, nextHour);
    }
    const start = this.windowStart.nextRun(current ? new Date(current.end.getTime() - 1) : at);
    if (!start) throw new Error('the quota has no future window');
    const window = { start, end: new Date(start.getTime() + this.windowMs) };
    return this.periodIn(window, start);
  }

  /** The period holding `at`, or the next one when `at` is outside every window. */
  periodFrom(at: Date): Period {
    return this.periodAt(at) ?? this.nextPeriodAfter(at);
  }

  /** "Mon 30 Nov 09:00-17:00 Europe/London" */
  label(start: Date, end: Date): string {
    const day = new Intl.DateTimeFormat('en-GB', { timeZone: this.tz, weekday: 'short', day: '2-digit', month: 'short' }).format(start);
    const hm = (d: Date) => new Intl.DateTimeFormat('en-GB', { timeZone: this.tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(d);
    return `${day} ${hm(start)}-${hm(end)} ${this.tz}`;
  }

  private periodIn(window: { start: Date; end: Date }, at: Date): Period {
    if (this.quota.per !== 'hour') return { start: window.start, end: window.end, windowEnd: window.end };
    const hour = new Date(Math.max(window.start.getTime(), Math.floor(at.getTime() / HOUR) * HOUR));
    return { start: hour, end: min(new Date(Math.floor(hour.getTime() / HOUR) * HOUR + HOUR), window.end), windowEnd: window.end };
  }

  private windowContaining(t: Date): { start: Date; end: Date } | undefined {
    const probe = this.windowStart.nextRun(new Date(t.getTime() - DAY - 1));
    for (let start = probe; start && start.getTime() <= t.getTime(); start = this.windowStart.nextRun(start)) {
      const end = new Date(start.getTime() + this.windowMs);
      if (t < end) return { start, end };
    }
    return undefined;
  }
}
