import { Cron } from 'croner';
import type { QuotaConfig } from '../config.ts';

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

const DAY_NUMBER: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const min = (a: Date, b: Date) => (a < b ? a : b);

/**
 * Plans slots for effects under one quota, purely: from `now`, fill the current window up to
 * the cap, then the next allowed window, and so on. `used` is what the period already spent.
 * Windows are found with croner in the quota's timezone, so they stay right across DST.
 */
export class SlotPlanner {
  private readonly windowStart: Cron;
  private readonly windowMs: number;
  private readonly tz: string;
  private current: { start: Date; end: Date; windowEnd: Date; count: number } | undefined;
  private readonly recent: number[] = [];

  constructor(
    private readonly quota: QuotaConfig,
    defaultTimezone: string,
    now: Date,
    used = 0,
  ) {
    this.tz = quota.timezone ?? defaultTimezone;
    const [from = '00:00', to = '24:00'] = (quota.window ?? '00:00-24:00').split('-');
    const [fh, fm] = from.split(':').map(Number) as [number, number];
    const [th, tm] = to.split(':').map(Number) as [number, number];
    this.windowMs = (th * 60 + tm - (fh * 60 + fm)) * 60_000;
    const days = quota.days?.length ? quota.days.map((d) => DAY_NUMBER[d]).join(',') : '*';
    this.windowStart = new Cron(`${fm} ${fh} * * ${days}`, { timezone: this.tz, paused: true });
    const inside = this.windowContaining(now);
    const first = inside ?? this.nextWindowAfter(now);
    this.current = this.periodIn(first.start, first.end, inside ? now : first.start);
    if (used > 0) this.advanceBy(used);
  }

  /** The slot of the next effect. */
  next(): Slot {
    const period = this.period();
    period.count += 1;
    this.recent.push(period.start.getTime());
    return {
      window_start: period.start.toISOString(),
      window_end: period.end.toISOString(),
      position: period.count,
      label: this.label(period.start, period.end),
    };
  }

  private advanceBy(n: number): void {
    for (let i = 0; i < n; i++) this.next();
  }

  /** The period with room left, moving forward as caps fill. */
  private period(): { start: Date; end: Date; count: number } {
    for (let guard = 0; guard < 100_000; guard++) {
      const p = this.current!;
      if (this.hasRoom(p)) return p;
      // An hourly cap moves to the next hour of the same window while there is one.
      const nextHour = new Date(Math.floor(p.start.getTime() / HOUR) * HOUR + HOUR);
      if (this.quota.per === 'hour' && nextHour < p.windowEnd) {
        this.current = { start: nextHour, end: min(new Date(nextHour.getTime() + HOUR), p.windowEnd), windowEnd: p.windowEnd, count: 0 };
        continue;
      }
      const next = this.nextWindowAfter(new Date(p.windowEnd.getTime() - 1));
      this.current = this.periodIn(next.start, next.end, next.start);
    }
    throw new Error('quota planning found no window with room (is the window empty?)');
  }

  private hasRoom(p: { start: Date; count: number }): boolean {
    if (this.quota.per === 'week') {
      const since = p.start.getTime() - 7 * DAY + 1;
      return this.recent.filter((t) => t >= since).length < this.quota.cap;
    }
    return p.count < this.quota.cap;
  }

  /** The period of a window that holds `at`: the window itself, or its clock hour for an hourly cap. */
  private periodIn(start: Date, end: Date, at: Date): { start: Date; end: Date; windowEnd: Date; count: number } {
    if (this.quota.per !== 'hour') return { start, end, windowEnd: end, count: 0 };
    const hour = new Date(Math.max(start.getTime(), Math.floor(at.getTime() / HOUR) * HOUR));
    return { start: hour, end: min(new Date(Math.floor(hour.getTime() / HOUR) * HOUR + HOUR), end), windowEnd: end, count: 0 };
  }

  private windowContaining(t: Date): { start: Date; end: Date } | undefined {
    const probe = this.nextWindowAfter(new Date(t.getTime() - DAY - 1));
    for (let start = probe.start; start.getTime() <= t.getTime(); ) {
      const end = new Date(start.getTime() + this.windowMs);
      if (t < end) return { start, end };
      const n = this.windowStart.nextRun(start);
      if (!n) break;
      start = n;
    }
    return undefined;
  }

  private nextWindowAfter(t: Date): { start: Date; end: Date } {
    const start = this.windowStart.nextRun(t);
    if (!start) throw new Error('the quota has no future window');
    return { start, end: new Date(start.getTime() + this.windowMs) };
  }

  private label(start: Date, end: Date): string {
    const day = new Intl.DateTimeFormat('en-GB', { timeZone: this.tz, weekday: 'short', day: '2-digit', month: 'short' }).format(start);
    const hm = (d: Date) => new Intl.DateTimeFormat('en-GB', { timeZone: this.tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(d);
    return `${day} ${hm(start)}-${hm(end)} ${this.tz}`;
  }
}
