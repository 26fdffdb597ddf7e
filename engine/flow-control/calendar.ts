import { Cron } from 'croner';
import { DAY_MS, periodAt, type Span } from './periods.ts';

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];
const DAY_NUMBER: Record<Weekday, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 };

/** "09:00-17:00": the pattern config files are checked against. */
const MAX_CACHED_WINDOW_MS = 22 * 3_600_000;

export const WINDOW_PATTERN = '^([01]\\d|2[0-3]):[0-5]\\d-([01]\\d|2[0-4]):[0-5]\\d$';

/**
 * When effects may happen: allowed days of the week and a daily window, in a timezone. Pure:
 * time comes in as arguments. Windows are found with croner, so they stay right across
 * daylight-saving changes; a quota without a window is open all day on its days.
 */
export class SendingCalendar {
  private readonly starts?: Cron;
  private readonly windowMs: number;
  private readonly allowed: Set<number>;
  /** The window found last: a quota asks about the same window for every effect in it. */
  private lastWindow: Span | undefined;

  constructor(
    readonly timezone: string,
    days: readonly Weekday[] | undefined,
    readonly window: string | undefined,
  ) {
    this.allowed = new Set((days?.length ? days : WEEKDAYS).map((d) => DAY_NUMBER[d]));
    const [from = '00:00', to = '24:00'] = (window ?? '00:00-24:00').split('-');
    const [fh, fm] = from.split(':').map(Number) as [number, number];
    const [th, tm] = to.split(':').map(Number) as [number, number];
    this.windowMs = (th * 60 + tm - (fh * 60 + fm)) * 60_000;
    if (this.windowMs < DAY_MS) {
      const dayList = days?.length ? days.map((d) => DAY_NUMBER[d]).join(',') : '*';
      this.starts = new Cron(`${fm} ${fh} * * ${dayList}`, { timezone, paused: true });
    }
  }

  /** The window holding `at`, if `at` is inside one. */
  windowAt(at: Date): Span | undefined {
    if (!this.starts) {
      const day = periodAt('day', this.timezone, at);
      return this.allowed.has(this.weekday(day.start)) ? day : undefined;
    }
    const last = this.lastWindow;
    if (last && last.start <= at && at < last.end) return { start: new Date(last.start), end: new Date(last.end) };
    for (let start = this.starts.nextRun(new Date(at.getTime() - DAY_MS - 1)); start && start <= at; start = this.starts.nextRun(start)) {
      const end = new Date(start.getTime() + this.windowMs);
      if (at < end) {
        // Windows of 22 hours or less never overlap (a day is at least 22 hours long), so the one found holds every time in it.
        if (this.windowMs <= MAX_CACHED_WINDOW_MS) this.lastWindow = { start: new Date(start), end: new Date(end) };
        return { start, end };
      }
    }
    return undefined;
  }

  /** `at` itself when a window is open then, else the start of the next window. */
  openAt(at: Date): Date {
    return this.windowAt(at) ? at : this.nextWindowAfter(at).start;
  }

  /** The first window that starts after `at`. */
  nextWindowAfter(at: Date): Span {
    if (!this.starts) {
      let day = periodAt('day', this.timezone, at);
      for (let i = 0; i < 8; i++) {
        day = periodAt('day', this.timezone, day.end);
        if (this.allowed.has(this.weekday(day.start))) return day;
      }
      throw new Error('the calendar allows no day');
    }
    const start = this.starts.nextRun(at);
    if (!start) throw new Error('the calendar has no future window');
    return { start, end: new Date(start.getTime() + this.windowMs) };
  }

  /** "Mon 30 Nov 09:00-17:00 Europe/London" */
  label(span: Span): string {
    this.dayFormat ??= new Intl.DateTimeFormat('en-GB', { timeZone: this.timezone, weekday: 'short', day: '2-digit', month: 'short' });
    const day = this.dayFormat.format(span.start);
    return `${day} ${this.windowMs >= DAY_MS ? 'all day' : this.window} ${this.timezone}`;
  }

  private dayFormat?: Intl.DateTimeFormat;
  private weekdayFormat?: Intl.DateTimeFormat;

  private weekday(at: Date): number {
    this.weekdayFormat ??= new Intl.DateTimeFormat('en-US', { timeZone: this.timezone, weekday: 'short' });
    const name = this.weekdayFormat.format(at).toLowerCase().slice(0, 3);
    return DAY_NUMBER[name as Weekday];
  }
}
