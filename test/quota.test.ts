import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../engine/clock.ts';
import type { EngineConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { executeRun, type ExecuteOptions } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { testDatabases } from './helpers/db.ts';
import { calls, pipelineFrom, testRegistry } from './helpers/pipeline.ts';

const config: EngineConfig = {
  business: { name: 'Test Co', timezone: 'Europe/London' },
  quotas: {
    weekdays: { caps: { day: 2 }, days: ['mon', 'tue', 'wed', 'thu', 'fri'], window: '09:00-17:00' },
    per_domain: { caps: { day: 1 }, per_key: 'sender_domain', window: '09:00-17:00' },
    spaced: { caps: { day: 100 }, spacing: '60s..120s' },
    shared: { caps: { day: 3 }, window: '09:00-17:00' },
  },
};

const sends = (quota: string, extra = '') => `
name: q-${quota}
trigger: { manual: {} }
inputs: { n: { type: integer, default: 5 }, tag: { type: string, default: a } }
steps:
  - id: send
    uses: test.send
    foreach: "\${{ range(0, inputs.n) }}"
    item_key: "\${{ inputs.tag + item }}"
    concurrency: 3
    quota: ${quota}
    ${extra}
    with: { to: "\${{ inputs.tag }}\${{ item }}" }
`;

describe.each(testDatabases)('quotas on $name', ({ open }) => {
  let db: Database;
  let store: RunStore;
  let clock: ManualClock;
  beforeAll(async () => {
    db = await open();
    store = new RunStore(db);
  });
  afterAll(() => db?.close());
  beforeEach(async () => {
    calls.reset();
    await db.query('DELETE FROM flow_effects');
    await db.query('DELETE FROM flow_quota_ledger');
  });

  const run = (yaml: string, options: Partial<ExecuteOptions> = {}) =>
    executeRun({ pipeline: pipelineFrom(yaml, testRegistry(), config), config, store, clock, ...options });
  const reservedAt = async (quota: string) =>
    (await db.query<{ at: Date; key: string | null }>('SELECT at, quota_key AS key FROM flow_quota_ledger WHERE quota = $1 ORDER BY at, id', [quota])).map((r) => ({
      at: new Date(r.at).toISOString(),
      key: r.key,
    }));

  it('spends the cap of each window, waits for the next weekday window, never drops work', async () => {
    clock = new ManualClock(new Date('2026-11-27T16:00:00Z')); // Friday 16:00 in London
    const result = await run(sends('weekdays'));
    expect(result.status).toBe('completed');
    expect(calls.performed).toHaveLength(5);
    const at = (await reservedAt('weekdays')).map((r) => r.at);
    expect(at).toEqual([
      '2026-11-27T16:00:00.000Z',
      '2026-11-27T16:00:00.000Z',
      '2026-11-30T09:00:00.000Z', // Monday: the weekend is not a sending day
      '2026-11-30T09:00:00.000Z',
      '2026-12-01T09:00:00.000Z',
    ]);
    expect((await store.runs.get(result.run_id))!.waiting_until).toBeNull();
  });

  it('does nothing before the window opens', async () => {
    clock = new ManualClock(new Date('2026-11-23T07:30:00Z')); // Monday 07:30
    await run(sends('weekdays'), { inputs: { n: 1 } });
    expect((await reservedAt('weekdays')).map((r) => r.at)).toEqual(['2026-11-23T09:00:00.000Z']);
  });

  it('counts a per-key quota separately for each key', async () => {
    clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    const yaml = sends('per_domain', 'quota_key: "${{ item % 2 == 0 ? \'one.example\' : \'two.example\' }}"');
    const result = await run(yaml, { inputs: { n: 4 } });
    expect(result.status).toBe('completed');
    expect(await reservedAt('per_domain')).toEqual([
      { at: '2026-11-23T10:00:00.000Z', key: expect.any(String) },
      { at: '2026-11-23T10:00:00.000Z', key: expect.any(String) },
      { at: '2026-11-24T09:00:00.000Z', key: expect.any(String) },
      { at: '2026-11-24T09:00:00.000Z', key: expect.any(String) },
    ]);
    const byDay = (await reservedAt('per_domain')).map((r) => `${r.at.slice(0, 10)} ${r.key}`).sort();
    expect(byDay).toEqual(['2026-11-23 one.example', '2026-11-23 two.example', '2026-11-24 one.example', '2026-11-24 two.example']);
  });

  it('spaces effects by at least the minimum spacing (the jitter makes gaps differ)', async () => {
    clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    await run(sends('spaced'), { inputs: { n: 4 } });
    const at = (await reservedAt('spaced')).map((r) => Date.parse(r.at));
    for (let i = 1; i < at.length; i++) {
      expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(60_000);
    }
  });

  it('a stop during a wait leaves the items pending, says when the run would go on, and a resume finishes', async () => {
    clock = new ManualClock(new Date('2026-11-27T16:00:00Z'));
    const stop = new AbortController();
    const events = new RunEvents();
    events.on('quota:wait', () => stop.abort());
    const first = await run(sends('weekdays'), { stop: stop.signal, events });
    expect(first.status).toBe('interrupted');
    expect(first.failures).toEqual([]);
    expect(calls.performed).toHaveLength(2);
    const waiting = await store.runs.get(first.run_id);
    expect(new Date(waiting!.waiting_until!).toISOString()).toBe('2026-11-30T09:00:00.000Z');
    expect(waiting!.waiting_reason).toBe('quota weekdays is full: 2 a day');

    const resumed = await run(sends('weekdays'), { resume: first.run_id });
    expect(resumed.status).toBe('completed');
    expect(calls.performed).toHaveLength(5);
    expect(new Set(calls.performed).size).toBe(5);
  });

  it('a database write under a quota happens once per slot and in its window', async () => {
    clock = new ManualClock(new Date('2026-11-23T16:59:00Z'));
    const yaml = `
name: q-events
trigger: { manual: {} }
steps:
  - id: note
    uses: event.emit
    foreach: "\${{ range(0, 3) }}"
    quota: weekdays
    with: { type: quota.test, key: "k\${{ item }}" }
`;
    const result = await run(yaml);
    expect(result.status).toBe('completed');
    expect((await reservedAt('weekdays')).map((r) => r.at)).toEqual(['2026-11-23T16:59:00.000Z', '2026-11-23T16:59:00.000Z', '2026-11-24T09:00:00.000Z']);
    const events = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_events WHERE type = 'quota.test'");
    expect(events[0]!.n).toBe(3);
  });

  it('holds the cap when two runs share a quota at the same time', async () => {
    clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    const [a, b] = await Promise.all([run(sends('shared'), { inputs: { n: 4, tag: 'a' } }), run(sends('shared'), { inputs: { n: 4, tag: 'b' } })]);
    expect([a.status, b.status]).toEqual(['completed', 'completed']);
    const perDay = new Map<string, number>();
    for (const r of await reservedAt('shared')) perDay.set(r.at.slice(0, 10), (perDay.get(r.at.slice(0, 10)) ?? 0) + 1);
    expect([...perDay.values()].every((n) => n <= 3)).toBe(true);
    expect([...perDay.values()].reduce((x, y) => x + y, 0)).toBe(8);
  });

  it('a dry run places planned effects after what the ledger has spent', async () => {
    clock = new ManualClock(new Date('2026-11-23T10:00:00Z'));
    await run(sends('weekdays'), { inputs: { n: 1, tag: 'x' } });
    const dry = await run(sends('weekdays'), { inputs: { n: 3, tag: 'y' }, dryRun: true, outDir: `/tmp/flows-quota-dry-${process.pid}` });
    expect(dry.effects.map((e) => [e.slot?.position, e.slot?.label])).toEqual([
      [2, 'Mon 23 Nov 09:00-17:00 Europe/London'],
      [1, 'Tue 24 Nov 09:00-17:00 Europe/London'],
      [2, 'Tue 24 Nov 09:00-17:00 Europe/London'],
    ]);
  });
});
