import { Cron } from 'croner';
import { describe, expect, it, vi } from 'vitest';
import { budgetPeriod } from '../engine/flow-control/budget-spec.ts';
import { SendingCalendar } from '../engine/flow-control/calendar.ts';
import { HOUR_MS, periodAt } from '../engine/flow-control/periods.ts';
import { decide, gapFor } from '../engine/flow-control/quota-policy.ts';
import { QuotaSimulator } from '../engine/flow-control/quota-simulator.ts';
import { CompiledQuota, type QuotaConfig } from '../engine/flow-control/quota-spec.ts';

const weekdays = ['mon', 'tue', 'wed', 'thu', 'fri'] as ('mon' | 'tue' | 'wed' | 'thu' | 'fri')[];
const rules = (config: QuotaConfig, key = '', tz = 'Europe/London') => new CompiledQuota('q', config, tz).rulesFor(key);

/** Admits `n` effects one after the other (as a run with concurrency 1 does), from `from`. */
function admitAll(config: QuotaConfig, from: string, n: number, options: { history?: Date[]; gap?: number; tz?: string; key?: string; pause?: { reason: string; until: Date | null } } = {}) {
  const sim = new QuotaSimulator(rules(config, options.key, options.tz), options.history ?? [], options.pause);
  let at = new Date(from);
  return Array.from({ length: n }, () => {
    const slot = sim.admit(at, options.gap ?? 0);
    at = new Date(slot.at);
    return slot;
  });
}

describe('periods', () => {
  it('are named for what they are: a calendar week from Monday, a rolling 7 days from now', () => {
    const at = new Date('2026-11-25T10:00:00Z'); // Wednesday
    expect(periodAt('calendar_week', 'Europe/London', at)).toEqual({ start: new Date('2026-11-23T00:00:00Z'), end: new Date('2026-11-30T00:00:00Z') });
    expect(periodAt('rolling_7d', 'Europe/London', at)).toEqual({ start: new Date('2026-11-18T10:00:00.001Z'), end: new Date('2026-11-25T10:00:00.001Z') });
    expect(periodAt('day', 'America/New_York', at)).toEqual({ start: new Date('2026-11-25T05:00:00Z'), end: new Date('2026-11-26T05:00:00Z') });
    expect(periodAt('hour', 'Asia/Kolkata', at)).toEqual({ start: new Date('2026-11-25T09:30:00Z'), end: new Date('2026-11-25T10:30:00Z') });
  });

  it('are the same for budgets, right across a clock change', () => {
    const week = { per: 'calendar_week' as const, limits: {} };
    expect(budgetPeriod(week, 'Europe/London', new Date('2026-11-25T10:00:00Z'))).toEqual({ start: new Date('2026-11-23T00:00:00Z'), end: new Date('2026-11-30T00:00:00Z') });
    // The week of the spring change (Sunday 29 March): Monday 00:00 GMT to Monday 00:00 BST.
    expect(budgetPeriod(week, 'Europe/London', new Date('2026-03-28T12:00:00Z'))).toEqual({ start: new Date('2026-03-23T00:00:00Z'), end: new Date('2026-03-29T23:00:00Z') });
    expect(budgetPeriod({ per: 'calendar_month', limits: {} }, 'America/New_York', new Date('2026-12-01T03:00:00Z'))).toEqual({
      start: new Date('2026-11-01T04:00:00Z'),
      end: new Date('2026-12-01T05:00:00Z'),
    });
  });
});

describe('periods and windows asked for again and again', () => {
  /** Every 37 minutes over four days across the spring clock change, and the same times shuffled. */
  const times = Array.from({ length: Math.ceil((4 * 24 * 60) / 37) }, (_, i) => new Date(Date.parse('2026-03-27T06:00:00Z') + i * 37 * 60_000));
  const shuffled = [...times].sort((a, b) => ((a.getTime() * 2654435761) % 1000) - ((b.getTime() * 2654435761) % 1000));
  const key = (d: Date) => d.toISOString();

  it('give the same answer whatever was asked before, right across a clock change', () => {
    for (const period of ['hour', 'day', 'calendar_week'] as const) {
      for (const tz of ['Europe/London', 'America/New_York', 'Asia/Kolkata']) {
        const inOrder = new Map(times.map((t) => [key(t), periodAt(period, tz, t)]));
        for (const t of shuffled) expect(periodAt(period, tz, t), `${period} ${tz} ${key(t)}`).toEqual(inOrder.get(key(t)));
      }
    }
    const calendar = () => new SendingCalendar('Europe/London', ['mon', 'tue', 'wed', 'thu', 'fri', 'sun'], '08:00-18:00');
    const sorted = calendar();
    const inOrder = new Map(times.map((t) => [key(t), sorted.windowAt(t)]));
    const other = calendar();
    for (const t of shuffled) expect(other.windowAt(t), key(t)).toEqual(inOrder.get(key(t)));
    // Sunday 29 March, the day the clocks go forward: 08:00-18:00 BST.
    expect(other.windowAt(new Date('2026-03-29T12:00:00Z'))).toEqual({ start: new Date('2026-03-29T07:00:00Z'), end: new Date('2026-03-29T17:00:00Z') });
    expect(other.windowAt(new Date('2026-03-28T12:00:00Z'))).toBeUndefined();
  });

  it('are searched for once per period or window, not once per question', () => {
    const calendar = new SendingCalendar('Europe/London', ['mon', 'tue', 'wed', 'thu', 'fri'], '08:00-18:00');
    const monday = Date.parse('2026-11-23T08:00:00Z');
    periodAt('day', 'Europe/London', new Date(monday));
    calendar.windowAt(new Date(monday));
    const searches = vi.spyOn(Cron.prototype, 'nextRun');
    try {
      for (let i = 0; i < 1000; i++) {
        const at = new Date(monday + i * 30_000); // every 30 s from 08:00 to 16:20
        expect(periodAt('day', 'Europe/London', at)).toEqual({ start: new Date('2026-11-23T00:00:00Z'), end: new Date('2026-11-24T00:00:00Z') });
        expect(calendar.windowAt(at)).toEqual({ start: new Date(monday), end: new Date(monday + 10 * HOUR_MS) });
      }
      expect(searches.mock.calls.length).toBeLessThan(10);
    } finally {
      searches.mockRestore();
    }
  });
});

describe('the quota decision and its simulation', () => {
  const daily: QuotaConfig = { caps: { day: 17 }, days: weekdays, window: '09:00-17:00' };

  it('fills the current window, then the next weekday windows', () => {
    const slots = admitAll(daily, '2026-11-27T16:00:00Z', 40); // Friday 16:00 London
    expect(slots[0]).toEqual({ at: '2026-11-27T16:00:00.000Z', window_start: '2026-11-27T09:00:00.000Z', window_end: '2026-11-27T17:00:00.000Z', position: 1, label: 'Fri 27 Nov 09:00-17:00 Europe/London' });
    expect(slots[16]!.position).toBe(17);
    expect(slots[17]).toMatchObject({ at: '2026-11-30T09:00:00.000Z', label: 'Mon 30 Nov 09:00-17:00 Europe/London', position: 1 }); // the weekend is skipped
    expect(slots[17]!.waits).toMatch(/^quota q is full: 17 a day/);
    expect(slots[34]!.label).toBe('Tue 01 Dec 09:00-17:00 Europe/London');
    expect(slots[39]!.position).toBe(6);
  });

  it('starts with the next window when the window has closed, and keeps local hours across a clock change', () => {
    expect(admitAll(daily, '2026-11-23T18:30:00Z', 1)[0]).toMatchObject({ at: '2026-11-24T09:00:00.000Z', waits: 'outside the window of quota q; it opens Tue 24 Nov 09:00-17:00 Europe/London' });
    const [fri, mon] = admitAll({ ...daily, caps: { day: 1 } }, '2026-03-27T12:00:00Z', 2);
    expect(fri!.at).toBe('2026-03-27T12:00:00.000Z');
    expect(mon!.at).toBe('2026-03-30T08:00:00.000Z'); // 09:00 BST
  });

  it('counts what the ledger holds already', () => {
    const history = Array.from({ length: 16 }, () => new Date('2026-11-23T09:30:00Z'));
    const [a, b] = admitAll(daily, '2026-11-23T10:00:00Z', 2, { history });
    expect(a).toMatchObject({ at: '2026-11-23T10:00:00.000Z', position: 17 });
    expect(b!.label).toBe('Tue 24 Nov 09:00-17:00 Europe/London');
  });

  it('holds hourly and rolling caps', () => {
    const hourly = admitAll({ caps: { hour: 2 }, window: '09:00-17:00' }, '2026-11-23T09:30:00Z', 5, { tz: 'UTC' }).map((s) => s.at);
    expect(hourly).toEqual(['2026-11-23T09:30:00.000Z', '2026-11-23T09:30:00.000Z', '2026-11-23T10:00:00.000Z', '2026-11-23T10:00:00.000Z', '2026-11-23T11:00:00.000Z']);
    const rolling = admitAll({ caps: { rolling_7d: 3 } }, '2026-11-23T10:00:00Z', 4, { tz: 'UTC' }).map((s) => s.at);
    expect(rolling).toEqual(['2026-11-23T10:00:00.000Z', '2026-11-23T10:00:00.000Z', '2026-11-23T10:00:00.000Z', '2026-11-30T10:00:00.000Z']);
  });

  it('holds a day cap and a rolling 7-day cap at once', () => {
    // 17 a weekday, 12 in any 7 days... with a day cap of 5: Mon 5, Tue 5, Wed 2, then the next Monday.
    const both = admitAll({ caps: { day: 5, rolling_7d: 12 }, days: weekdays, window: '09:00-17:00' }, '2026-11-23T09:00:00Z', 13);
    const byDay = new Map<string, number>();
    for (const s of both) byDay.set(s.at.slice(0, 10), (byDay.get(s.at.slice(0, 10)) ?? 0) + 1);
    expect(Object.fromEntries(byDay)).toEqual({ '2026-11-23': 5, '2026-11-24': 5, '2026-11-25': 2, '2026-11-30': 1 });
    expect(both[12]!.waits).toMatch(/full: 12 in 7 days/);
  });

  it('ramps a new key up: start a day, plus step a day, up to the cap', () => {
    const config: QuotaConfig = { caps: { day: 20 }, ramp: { start: 10, step: 5 }, keys: { 'ana@one.example': { ramp_from: '2026-11-24' } } };
    const slots = admitAll(config, '2026-11-23T12:00:00Z', 60, { key: 'ana@one.example' });
    const perDay = new Map<string, number>();
    for (const s of slots) perDay.set(s.at.slice(0, 10), (perDay.get(s.at.slice(0, 10)) ?? 0) + 1);
    // Nothing before the first ramp day; then 10, 15, 20, 20 ...
    expect(Object.fromEntries(perDay)).toEqual({ '2026-11-24': 10, '2026-11-25': 15, '2026-11-26': 20, '2026-11-27': 15 });
    expect(slots[0]!.waits).toBe('quota q:ana@one.example starts its ramp on 2026-11-24');
    expect(slots[10]!.waits).toMatch(/full: 10 a day \(ramp day 1: 10 of 20\)/);
  });

  it('refuses a key the quota does not declare, saying which it knows', () => {
    expect(() => rules({ caps: { day: 1 }, keys: { 'ana@one.example': null } }, 'ann@one.example')).toThrow(/quota q has no key "ann@one.example" \(did you mean "ana@one.example"\?\)/);
  });

  it('waits out a pause, or says it waits for a person', () => {
    const until = new Date('2026-11-23T14:00:00Z');
    expect(admitAll({ caps: { day: 5 } }, '2026-11-23T10:00:00Z', 1, { pause: { reason: 'bounce rate 6%', until } })[0]).toMatchObject({
      at: '2026-11-23T14:00:00.000Z',
      waits: 'quota q is paused: bounce rate 6% until 2026-11-23T14:00:00.000Z',
    });
    expect(admitAll({ caps: { day: 5 } }, '2026-11-23T10:00:00Z', 1, { pause: { reason: 'session expired', until: null } })[0]!.waits).toBe(
      'quota q is paused: session expired (flows quotas resume q)',
    );
  });

  it('keeps the spacing, with a jitter that is the same for the same call', () => {
    // Cap 10 in a five-minute window, one a minute: five fit on Monday, five on Tuesday.
    const config: QuotaConfig = { caps: { day: 10 }, days: weekdays, window: '09:00-09:05', spacing: '60s' };
    const slots = admitAll(config, '2026-11-23T09:00:00Z', 10, { gap: 60_000 });
    expect(slots.map((s) => s.at)).toEqual([
      '2026-11-23T09:00:00.000Z',
      '2026-11-23T09:01:00.000Z',
      '2026-11-23T09:02:00.000Z',
      '2026-11-23T09:03:00.000Z',
      '2026-11-23T09:04:00.000Z',
      '2026-11-24T09:00:00.000Z',
      '2026-11-24T09:01:00.000Z',
      '2026-11-24T09:02:00.000Z',
      '2026-11-24T09:03:00.000Z',
      '2026-11-24T09:04:00.000Z',
    ]);
    const spacing = { minMs: 600_000, maxMs: 900_000 };
    const gaps = ['a', 'b', 'c', 'd'].map((seed) => gapFor(spacing, seed));
    expect(gaps.every((g) => g >= 600_000 && g <= 900_000)).toBe(true);
    expect(new Set(gaps).size).toBe(4);
    expect(gapFor(spacing, 'a')).toBe(gaps[0]);
  });

  it('is one decision: the simulation admits exactly when decide() says yes', () => {
    const r = rules(daily);
    const at = new Date('2026-11-23T10:00:00Z');
    const full = { caps: [{ count: 17, oldest: new Date('2026-11-23T09:00:00Z') }], last: null };
    expect(decide(r, full, at, 0)).toEqual({ ok: false, until: new Date('2026-11-24T09:00:00Z'), reason: 'quota q is full: 17 a day' });
    expect(decide(r, { caps: [{ count: 16, oldest: null }], last: null }, at, 0)).toEqual({ ok: true });
  });
});
