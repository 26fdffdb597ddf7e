import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../engine/clock.ts';
import type { EngineConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { executeRun, type ExecuteOptions, type RunResult } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { testDatabases } from './helpers/db.ts';
import { calls, pipelineFrom, testRegistry } from './helpers/pipeline.ts';

/**
 * Plan equals reality: a dry run says when and in which window every effect would happen;
 * the run, on the same clock, puts every effect exactly there. The dry run decides with the
 * same pure policy as the run's gates, over a simulated ledger, so the two cannot drift.
 */
const weekdays = ['mon', 'tue', 'wed', 'thu', 'fri'] as ('mon' | 'tue' | 'wed' | 'thu' | 'fri')[];
const config: EngineConfig = {
  business: { name: 'T', timezone: 'Europe/London' },
  quotas: {
    weekdays: { caps: { day: 2 }, days: weekdays, window: '09:00-17:00' },
    boxes: { caps: { day: 2 }, window: '09:00-17:00', keys: { 'a@one.example': null, 'b@two.example': { caps: { day: 1 } } } },
    jitter: { caps: { day: 10 }, days: weekdays, window: '09:00-09:05', spacing: '40s..80s' },
    weekly: { caps: { day: 3, rolling_7d: 7 }, days: weekdays, window: '09:00-17:00' },
    ramped: { caps: { day: 6 }, ramp: { start: 2, step: 2, from: '2026-11-23' }, window: '09:00-17:00' },
    shared: { caps: { day: 3 }, window: '09:00-17:00', spacing: '5m' },
    open: { caps: { day: 100 } },
    local: { caps: { day: 10 }, days: weekdays, window: '09:00-17:00' },
    rotation: {
      caps: { day: 4, rolling_24h: 4 },
      days: weekdays,
      window: '09:00-10:00',
      spacing: '600s..720s',
      pick: 'idle_longest',
      keys: { 'a@one.example': null, 'b@one.example': null, 'c@two.example': { caps: { day: 2 } } },
    },
  },
  budgets: { api: { per: 'day', limits: { widget_units: 10 } } },
};

const sends = (quota: string, options: { n?: number; concurrency?: number; key?: string; extra?: string } = {}) => `
name: plan-${quota}
trigger: { manual: {} }
inputs: { tag: { type: string, default: x } }
steps:
  - id: send
    uses: test.send
    foreach: "\${{ range(0, ${options.n ?? 6}) }}"
    item_key: "\${{ inputs.tag + item }}"
    concurrency: ${options.concurrency ?? 1}
    quota: ${quota}
    ${options.key ? `quota_key: "${options.key}"` : ''}
    ${options.extra ?? ''}
    with: { to: "\${{ inputs.tag }}\${{ item }}", units: 3, spent: 3 }
`;

describe.each(testDatabases)('plan equals reality on $name', ({ open }) => {
  let db: Database;
  let store: RunStore;
  beforeAll(async () => {
    db = await open();
    store = new RunStore(db);
  });
  afterAll(() => db?.close());
  beforeEach(async () => {
    calls.reset();
    for (const table of ['flow_effects', 'flow_quota_ledger', 'flow_quota_pauses', 'flow_budget_ledger', 'flow_budget_totals']) await db.query(`DELETE FROM ${table}`);
  });

  const start = (iso: string) => new ManualClock(new Date(iso));
  const run = (yaml: string, clock: ManualClock, options: Partial<ExecuteOptions> = {}) =>
    executeRun({ pipeline: pipelineFrom(yaml, testRegistry(), config), config, store, clock, ...options });
  const dryRun = (yaml: string, at: string, options: Partial<ExecuteOptions> = {}) =>
    run(yaml, start(at), { dryRun: true, outDir: `/tmp/flows-plan-${process.pid}`, ...options });
  /** Item -> when (the plan's slot, or the run's ledger row) and which window. */
  const planned = (dry: RunResult): Record<string, string> => Object.fromEntries(dry.effects.map((e) => [e.item, e.slot ? `${e.slot.at} ${e.slot.label}` : `waits: ${e.waits}`]));
  async function happened(runId: string, quota: string): Promise<Record<string, string>> {
    const rows = await db.query<{ item_key: string; at: Date }>('SELECT item_key, at FROM flow_quota_ledger WHERE run_id = $1 ORDER BY at, id', [runId]);
    const rules = (await import('../engine/flow-control/index.ts')).flowControlOf(config).quota(quota);
    return Object.fromEntries(
      rows.map((r) => {
        const at = new Date(r.at);
        const key = rules.perKey ? (Number(r.item_key.slice(1)) % 2 ? 'b@two.example' : 'a@one.example') : '';
        const calendar = rules.rulesFor(key).calendar;
        return [r.item_key, `${at.toISOString()} ${calendar.label(calendar.windowAt(at)!)}`];
      }),
    );
  }
  /** Dry run, then the run on the same clock: every effect where the plan put it. */
  async function expectPlanKept(yaml: string, at: string, quota: string, options: Partial<ExecuteOptions> = {}) {
    const plan = planned(await dryRun(yaml, at, options));
    const real = await run(yaml, start(at), options);
    expect(real.status).toBe('completed');
    expect(await happened(real.run_id, quota)).toEqual(plan);
    return plan;
  }

  it('over a quota that picks its key: the mailbox idle longest, each within its caps and gaps', async () => {
    const yaml = sends('rotation', { n: 14 }); // one at a time: the manual clock moves with each wait
    const dry = await dryRun(yaml, '2026-11-23T09:00:00Z');
    const plan = Object.fromEntries(dry.effects.map((e) => [e.item, `${e.slot!.at} ${e.slot!.key}`]));
    const real = await run(yaml, start('2026-11-23T09:00:00Z'));
    expect(real.status).toBe('completed');
    const rows = await db.query<{ item_key: string; at: Date; quota_key: string }>('SELECT item_key, at, quota_key FROM flow_quota_ledger WHERE run_id = $1', [real.run_id]);
    const realPlaces = Object.fromEntries(rows.map((r) => [r.item_key, `${new Date(r.at).toISOString()} ${r.quota_key}`]));
    expect(realPlaces).toEqual(plan);
    // The step sent from the key the gate picked.
    expect(calls.sent.map((c) => c.quotaKey).sort()).toEqual(rows.map((r) => r.quota_key).sort());
    // Rotation: the first three go one from each mailbox; then every gap and cap holds per mailbox.
    const byKey = new Map<string, number[]>();
    for (const r of rows) byKey.set(r.quota_key, [...(byKey.get(r.quota_key) ?? []), new Date(r.at).getTime()]);
    expect([...byKey.keys()].sort()).toEqual(['a@one.example', 'b@one.example', 'c@two.example']);
    for (const [key, times] of byKey) {
      times.sort((a, b) => a - b);
      const perDay = new Map<string, number>();
      for (const t of times) perDay.set(new Date(t).toISOString().slice(0, 10), (perDay.get(new Date(t).toISOString().slice(0, 10)) ?? 0) + 1);
      expect(Math.max(...perDay.values())).toBeLessThanOrEqual(key === 'c@two.example' ? 2 : 4);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(600_000);
    }
    const firstThree = rows.sort((a, b) => new Date(a.at).getTime() - new Date(b.at).getTime()).slice(0, 3).map((r) => r.quota_key);
    expect(new Set(firstThree).size).toBe(3);
  });

  it('where some effects are done already: the plan skips them without taking a slot, as the run does', async () => {
    // Keys that span runs (as email-daily's do): x0-x2 done by the first run, x3-x5 to send.
    const key = 'key: "send-${{ item }}"';
    const first = await run(sends('rotation', { n: 3, extra: key }), start('2026-11-23T09:00:00Z'));
    expect(first.status).toBe('completed');
    const yaml = sends('rotation', { n: 6, extra: key });
    const dry = await dryRun(yaml, '2026-11-23T09:05:00Z');
    expect(dry.effects.filter((e) => e.skipped).map((e) => e.item).sort()).toEqual(['x0', 'x1', 'x2']);
    const plan = Object.fromEntries(dry.effects.filter((e) => !e.skipped).map((e) => [e.item, `${e.slot!.at} ${e.slot!.key}`]));
    const real = await run(yaml, start('2026-11-23T09:05:00Z'));
    expect(real.status).toBe('completed');
    const rows = await db.query<{ item_key: string; at: Date; quota_key: string }>('SELECT item_key, at, quota_key FROM flow_quota_ledger WHERE run_id = $1', [real.run_id]);
    expect(Object.fromEntries(rows.map((r) => [r.item_key, `${new Date(r.at).toISOString()} ${r.quota_key}`]))).toEqual(plan);
  });

  it("over windows read in each recipient's timezone: New York's 09:00 is 14:00 in London; no timezone, or a wrong one, keeps the quota's", async () => {
    const zone = "\${{ ['America/New_York', '', 'Not/A_Zone'][item % 3] }}";
    const yaml = sends('local', { n: 6, extra: `quota_timezone: "${zone}"` });
    const at = '2026-11-23T08:00:00Z'; // Monday, before either window
    const dry = await dryRun(yaml, at);
    const plan = Object.fromEntries(dry.effects.map((e) => [e.item, `${e.slot!.at} ${e.slot!.label}`]));
    const real = await run(yaml, start(at));
    expect(real.status).toBe('completed');
    const rows = await db.query<{ item_key: string; at: Date }>('SELECT item_key, at FROM flow_quota_ledger WHERE run_id = $1', [real.run_id]);
    expect(Object.fromEntries(rows.map((r) => [r.item_key, new Date(r.at).toISOString()]))).toEqual(Object.fromEntries(Object.entries(plan).map(([k, v]) => [k, String(v).slice(0, 24)])));
    // One at a time: x0 waits for New York's window, and the others, in London's window by then, go at once after it.
    expect(plan).toEqual({
      x0: '2026-11-23T14:00:00.000Z Mon 23 Nov 09:00-17:00 America/New_York',
      x1: '2026-11-23T14:00:00.000Z Mon 23 Nov 09:00-17:00 Europe/London',
      x2: '2026-11-23T14:00:00.000Z Mon 23 Nov 09:00-17:00 Europe/London',
      x3: '2026-11-23T14:00:00.000Z Mon 23 Nov 09:00-17:00 America/New_York',
      x4: '2026-11-23T14:00:00.000Z Mon 23 Nov 09:00-17:00 Europe/London',
      x5: '2026-11-23T14:00:00.000Z Mon 23 Nov 09:00-17:00 Europe/London',
    });
    // At 17:30 in London its window is closed; it is 12:30 in New York, whose window is open.
    const late = await dryRun(sends('local', { n: 2, extra: `quota_timezone: "${zone}"` }).replace('plan-local', 'plan-local-late'), '2026-11-23T17:30:00Z');
    expect(late.effects.map((e) => `${e.slot!.at} ${e.slot!.label}`)).toEqual([
      '2026-11-23T17:30:00.000Z Mon 23 Nov 09:00-17:00 America/New_York',
      '2026-11-24T09:00:00.000Z Tue 24 Nov 09:00-17:00 Europe/London',
    ]);
  });

  it('over caps, windows and allowed days', async () => {
    const plan = await expectPlanKept(sends('weekdays', { n: 7 }), '2026-11-27T16:00:00Z', 'weekdays'); // Friday 16:00
    expect(Object.values(plan)).toEqual([
      '2026-11-27T16:00:00.000Z Fri 27 Nov 09:00-17:00 Europe/London',
      '2026-11-27T16:00:00.000Z Fri 27 Nov 09:00-17:00 Europe/London',
      '2026-11-30T09:00:00.000Z Mon 30 Nov 09:00-17:00 Europe/London',
      '2026-11-30T09:00:00.000Z Mon 30 Nov 09:00-17:00 Europe/London',
      '2026-12-01T09:00:00.000Z Tue 01 Dec 09:00-17:00 Europe/London',
      '2026-12-01T09:00:00.000Z Tue 01 Dec 09:00-17:00 Europe/London',
      '2026-12-02T09:00:00.000Z Wed 02 Dec 09:00-17:00 Europe/London',
    ]);
  });

  it('over per-key caps whose keys come from the config', async () => {
    const key = "\${{ item % 2 == 1 ? 'b@two.example' : 'a@one.example' }}";
    await expectPlanKept(sends('boxes', { n: 8, key }), '2026-11-23T10:00:00Z', 'boxes');
  });

  it('over spacing with jitter: five fit in a five-minute window, the rest on the next weekdays', async () => {
    const plan = await expectPlanKept(sends('jitter', { n: 14 }), '2026-11-23T09:00:00Z', 'jitter');
    const days = Object.values(plan).map((v) => v.slice(0, 10));
    expect(days.filter((d) => d === '2026-11-23').length).toBeLessThan(10);
    const gaps = Object.values(plan)
      .map((v) => Date.parse(v.slice(0, 24)))
      .map((t, i, all) => (i ? t - all[i - 1]! : 0))
      .filter((g) => g > 0 && g < 3_600_000);
    expect(gaps.every((g) => g >= 40_000 && g <= 80_000)).toBe(true);
    expect(new Set(gaps).size).toBeGreaterThan(1);
  });

  it('over a day cap and a rolling 7-day cap at once', async () => {
    await expectPlanKept(sends('weekly', { n: 12 }), '2026-11-23T09:00:00Z', 'weekly');
  });

  it('over a ramp', async () => {
    await expectPlanKept(sends('ramped', { n: 12 }), '2026-11-23T09:00:00Z', 'ramped');
  });

  it('over a pause until a time', async () => {
    await store.quotas.pause({ quota: 'weekdays', key: '', reason: 'bounces', by: 'test', until: new Date('2026-11-24T12:00:00Z'), now: new Date('2026-11-23T09:00:00Z') });
    const plan = await expectPlanKept(sends('weekdays', { n: 3 }), '2026-11-23T10:00:00Z', 'weekdays');
    expect(Object.values(plan)[0]).toBe('2026-11-24T12:00:00.000Z Tue 24 Nov 09:00-17:00 Europe/London');
  });

  it('with several runs sharing a quota: the second plan counts what the first did', async () => {
    const first = await run(sends('shared', { n: 4 }), start('2026-11-23T16:30:00Z'), { inputs: { tag: 'a' } });
    expect(first.status).toBe('completed');
    await expectPlanKept(sends('shared', { n: 5 }), '2026-11-24T09:20:00Z', 'shared', { inputs: { tag: 'b' } });
  });

  it('with items in flight at once under one quota', async () => {
    const yaml = sends('shared', { n: 7, concurrency: 3 });
    const plan = await dryRun(yaml, '2026-11-23T09:00:00Z');
    const real = await run(yaml, start('2026-11-23T09:00:00Z'));
    const times = (m: Record<string, string>) => Object.values(m).sort();
    expect(times(await happened(real.run_id, 'shared'))).toEqual(times(planned(plan)));
  });

  it('across a stop and a restart in the middle', async () => {
    const yaml = sends('weekdays', { n: 6 });
    const plan = planned(await dryRun(yaml, '2026-11-27T16:00:00Z'));
    const stop = new AbortController();
    const events = new RunEvents();
    events.on('quota:wait', () => stop.abort());
    const clock = start('2026-11-27T16:00:00Z');
    const first = await run(yaml, clock, { stop: stop.signal, events });
    expect(first.status).toBe('interrupted');
    const resumed = await run(yaml, clock, { resume: first.run_id });
    expect(resumed.status).toBe('completed');
    expect(await happened(first.run_id, 'weekdays')).toEqual(plan);
  });

  it('across the daemon parking the run for each long wait', async () => {
    const yaml = sends('weekdays', { n: 5 });
    const plan = planned(await dryRun(yaml, '2026-11-27T16:00:00Z'));
    const clock = start('2026-11-27T16:00:00Z');
    let result = await run(yaml, clock, { parkAfterMs: 60_000 });
    for (let parks = 0; result.status === 'waiting'; parks++) {
      expect(parks).toBeLessThan(5);
      const row = await store.runs.get(result.run_id);
      clock.advance(new Date(row!.waiting_until!).getTime() - clock.now().getTime());
      result = await run(yaml, clock, { parkAfterMs: 60_000, resume: result.run_id });
    }
    expect(result.status).toBe('completed');
    expect(await happened(result.run_id, 'weekdays')).toEqual(plan);
  });

  it('where a budget stops the run: the plan says which call would stop it', async () => {
    const yaml = sends('open', { n: 5, extra: 'budget: api' });
    const dry = await dryRun(yaml, '2026-11-23T10:00:00Z');
    expect(dry.effects.map((e) => Boolean(e.waits))).toEqual([false, false, false, true, true]);
    expect(dry.effects[3]!.waits).toMatch(/^the run would stop here: budget api reached: 9 of 10 widget_units/);
    const real = await run(yaml, start('2026-11-23T10:00:00Z'));
    expect(real.status).toBe('waiting');
    expect(calls.performed).toEqual(['x0', 'x1', 'x2']);
  });
});
