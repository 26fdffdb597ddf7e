import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../engine/db/connect.ts';
import { QuotaGate } from '../engine/flow-control/gates.ts';
import { CompiledQuota } from '../engine/flow-control/quota-spec.ts';
import type { EffectRecord, Gate, Hold } from '../engine/ledger/types.ts';
import { createScrubber } from '../engine/secrets.ts';
import { RunStore } from '../engine/store/index.ts';
import { testDatabases } from './helpers/db.ts';

/**
 * One conformance suite for the effect ledger: the same cases against the Postgres and the
 * embedded implementation (they differ in how a database write commits with its key).
 */
const SECRET = 'sk-live-0123456789';
const scrub = createScrubber({ PARTNER_API_KEY: SECRET });
const now = new Date('2026-11-23T10:00:00Z');
let n = 0;
const effect = (over: Partial<EffectRecord> = {}): EffectRecord => ({
  key: `k-${process.pid}-${++n}`,
  runId: 'r-1',
  stepId: 'send',
  itemKey: `i${n}`,
  kind: 'email',
  summary: 'email to ana@example.com: Hello',
  identity: { to: 'ana@example.com', subject: 'Hello', message_id: '<abc@one.example>' },
  ...over,
});

/** A gate that says no, or yes and remembers what was settled. */
function fakeGate(label: string, verdict: 'yes' | 'no', settled: string[] = []): Gate {
  return {
    label,
    async reserve(sql) {
      await sql.query('SELECT 1');
      if (verdict === 'no') return { ok: false, until: new Date('2026-11-24T09:00:00Z'), reason: `${label} says wait`, scope: 'item' };
      const hold: Hold = {
        confirm: async (_sql, spent) => void settled.push(`${label} confirm ${JSON.stringify(spent)}`),
        release: async (_sql, spent) => void settled.push(`${label} release ${JSON.stringify(spent)}`),
      };
      return { ok: true, hold };
    },
  };
}

describe.each(testDatabases)('the effect ledger on $name', ({ open }) => {
  let db: Database;
  let store: RunStore;
  beforeAll(async () => {
    db = await open();
    store = new RunStore(db, scrub);
  });
  afterAll(() => db?.close());
  beforeEach(async () => {
    await db.query('DELETE FROM flow_effects');
    await db.query('DELETE FROM flow_quota_ledger');
  });
  const ledger = () => store.effects;

  it('reserves a key once: a second reservation finds it in doubt, a confirmed one done with its output', async () => {
    const e = effect();
    const first = await ledger().reserve(e, [], now);
    expect(first.state).toBe('reserved');
    const again = await ledger().reserve(e, [], now);
    expect(again).toMatchObject({ state: 'in-doubt', row: { key: e.key, status: 'reserved', identity: e.identity, summary: e.summary } });
    await ledger().confirm(e, first as never, { message_id: '<abc@one.example>' }, now);
    expect(await ledger().reserve(e, [], now)).toMatchObject({ state: 'done', row: { output: { message_id: '<abc@one.example>' } } });
  });

  it('gives exactly one of many concurrent reservations of a key', async () => {
    const e = effect();
    const results = await Promise.all(Array.from({ length: 8 }, () => ledger().reserve(e, [], now)));
    expect(results.filter((r) => r.state === 'reserved')).toHaveLength(1);
  });

  it('frees a released key for the next attempt', async () => {
    const e = effect();
    await ledger().release(e, (await ledger().reserve(e, [], now)) as never);
    expect((await ledger().reserve(e, [], now)).state).toBe('reserved');
  });

  it('reserves the gates and the key in one transaction: a gate that says no leaves nothing behind', async () => {
    const e = effect();
    const quota = new CompiledQuota('tiny', { caps: { day: 5 } }, 'Europe/London');
    const gate = new QuotaGate(store.quotas, quota.rulesFor(''), 0, { runId: 'r-1', stepId: 'send', itemKey: e.itemKey });
    const outcome = await ledger().reserve(e, [gate, fakeGate('z-last', 'no')], now);
    expect(outcome).toEqual({ state: 'wait', until: new Date('2026-11-24T09:00:00Z'), reason: 'z-last says wait', scope: 'item' });
    expect(await ledger().find(e.key)).toBeUndefined();
    expect(await db.query('SELECT 1 FROM flow_quota_ledger')).toEqual([]);
    const settled: string[] = [];
    const ok = await ledger().reserve(e, [gate, fakeGate('z-last', 'yes', settled)], now);
    expect(ok.state).toBe('reserved');
    expect(await db.query('SELECT effect_key FROM flow_quota_ledger')).toEqual([{ effect_key: e.key }]);
    await ledger().confirm(e, ok as never, 'sent', now, { spent: { widget_units: 2 } });
    expect(settled).toEqual(['z-last confirm {"widget_units":2}']);
  });

  it('reserves concurrent calls of one quota together: the cap holds, a call turned away keeps no key', async () => {
    const quota = new CompiledQuota('tiny', { caps: { day: 20 } }, 'Europe/London');
    const effects = Array.from({ length: 30 }, () => effect());
    // Two are repeats: one done already, one in doubt (reserved by a run that stopped).
    await ledger().confirm(effects[3]!, (await ledger().reserve(effects[3]!, [], now)) as never, 'sent', now);
    await ledger().reserve(effects[7]!, [], now);
    const gate = (e: EffectRecord) => new QuotaGate(store.quotas, quota.rulesFor(''), 0, { runId: 'r-1', stepId: 'send', itemKey: e.itemKey });
    const outcomes = await Promise.all(effects.map((e) => ledger().reserve(e, [gate(e)], now)));
    expect(outcomes.map((o) => o.state).filter((s) => s === 'reserved')).toHaveLength(20);
    expect(outcomes[3]!.state).toBe('done');
    expect(outcomes[7]!.state).toBe('in-doubt');
    expect(outcomes.filter((o) => o.state === 'wait')).toHaveLength(8);
    const slots = await db.query<{ effect_key: string }>('SELECT effect_key FROM flow_quota_ledger');
    const reserved = effects.filter((_, i) => outcomes[i]!.state === 'reserved').map((e) => e.key);
    expect(slots.map((r) => r.effect_key).sort()).toEqual([...reserved].sort());
    const keys = await db.query<{ key: string }>('SELECT key FROM flow_effects');
    expect(keys.map((r) => r.key).sort()).toEqual([...reserved, effects[3]!.key, effects[7]!.key].sort());
    // Confirmed together, each with its own output.
    await Promise.all(effects.map((e, i) => (outcomes[i]!.state === 'reserved' ? ledger().confirm(e, outcomes[i] as never, { n: i }, now) : undefined)));
    for (const [i, e] of effects.entries()) if (outcomes[i]!.state === 'reserved') expect((await ledger().find(e.key))).toMatchObject({ status: 'done', output: { n: i } });
  });

  it('decides concurrent calls of one group in few transactions, and one alone at once', async () => {
    const sizes: number[] = [];
    const groupable = (): Gate => ({
      label: 'g',
      group: 'g',
      reserve: async () => ({ ok: true }),
      async reserveGroup(sql, _now, calls) {
        await sql.query('SELECT 1');
        sizes.push(calls.length);
        return calls.map(() => ({ ok: true }));
      },
    });
    expect((await ledger().reserve(effect(), [groupable()], now)).state).toBe('reserved');
    expect(sizes).toEqual([1]);
    sizes.length = 0;
    const outcomes = await Promise.all(Array.from({ length: 40 }, () => ledger().reserve(effect(), [groupable()], now)));
    expect(outcomes.every((o) => o.state === 'reserved')).toBe(true);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(40);
    expect(sizes.length).toBeLessThan(10);
  });

  it('fails only the call a database refuses when reservations share a transaction', async () => {
    const quota = new CompiledQuota('tiny', { caps: { day: 50 } }, 'Europe/London');
    // Text with a NUL character: the database refuses to store it.
    const effects = Array.from({ length: 12 }, (_, i) => effect(i === 5 ? { summary: 'email to \u0000' } : {}));
    const gate = (e: EffectRecord) => new QuotaGate(store.quotas, quota.rulesFor(''), 0, { runId: 'r-1', stepId: 'send', itemKey: e.itemKey });
    const outcomes = await Promise.allSettled(effects.map((e) => ledger().reserve(e, [gate(e)], now)));
    expect(outcomes.map((o) => o.status)).toEqual(effects.map((_, i) => (i === 5 ? 'rejected' : 'fulfilled')));
    expect(await db.query('SELECT count(*)::int AS n FROM flow_quota_ledger')).toEqual([{ n: 11 }]);
    expect(await ledger().find(effects[5]!.key)).toBeUndefined();
  });

  it('does not ask the gates about a key that exists: nothing is counted twice', async () => {
    const e = effect();
    await ledger().confirm(e, (await ledger().reserve(e, [], now)) as never, 'sent', now);
    const settled: string[] = [];
    expect((await ledger().reserve(e, [fakeGate('a', 'yes', settled)], now)).state).toBe('done');
    expect((await ledger().reserve(e, [fakeGate('a', 'no')], now)).state).toBe('done');
  });

  it('gives a release back to the gates, with what the failed call spent', async () => {
    const e = effect();
    const settled: string[] = [];
    const r = await ledger().reserve(e, [fakeGate('a', 'yes', settled)], now);
    await ledger().release(e, r as never, { widget_units: 1 });
    expect(settled).toEqual(['a release {"widget_units":1}']);
    expect(await ledger().find(e.key)).toBeUndefined();
  });

  it('performs a database write exactly once, concurrent repeats included, and returns what it recorded', async () => {
    await db.query('CREATE TABLE IF NOT EXISTS ledger_rows (id serial PRIMARY KEY, v text)');
    await db.query('DELETE FROM ledger_rows');
    const e = effect({ kind: 'db.write' });
    const statement = { sql: 'INSERT INTO ledger_rows (v) VALUES ($1) RETURNING v', params: ['x'], output: (rows: Record<string, unknown>[]) => rows };
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => ledger().write(e, [], { statement }, now)));
    expect(outcomes.filter((o) => o.state === 'written')).toHaveLength(1);
    expect(outcomes.filter((o) => o.state === 'done').map((o) => (o as { row: { output: unknown } }).row.output)).toEqual(Array(4).fill({ rows: [{ v: 'x' }] }));
    expect(await db.query('SELECT v FROM ledger_rows')).toEqual([{ v: 'x' }]);
  });

  it('does not write when a gate says no, and writes with the gates otherwise', async () => {
    await db.query('CREATE TABLE IF NOT EXISTS ledger_rows (id serial PRIMARY KEY, v text)');
    await db.query('DELETE FROM ledger_rows');
    const e = effect({ kind: 'db.write' });
    const write = { run: (q: { query(t: string, p: unknown[]): Promise<unknown[]> }) => q.query('INSERT INTO ledger_rows (v) VALUES ($1) RETURNING v', ['y']) };
    expect((await ledger().write(e, [fakeGate('a', 'no')], write, now)).state).toBe('wait');
    expect(await db.query('SELECT v FROM ledger_rows')).toEqual([]);
    expect(await ledger().write(e, [fakeGate('a', 'yes')], write, now)).toEqual({ state: 'written', output: [{ v: 'y' }] });
    expect((await ledger().write(e, [fakeGate('a', 'yes')], write, now)).state).toBe('done');
  });

  it('scrubs secrets from everything it records, on every path', async () => {
    await db.query('CREATE TABLE IF NOT EXISTS ledger_rows (id serial PRIMARY KEY, v text)');
    const leak = `token ${SECRET}`;
    const outside = effect({ summary: leak, identity: { to: leak } });
    await ledger().confirm(outside, (await ledger().reserve(outside, [], now)) as never, { body: leak }, now);
    const statement = effect({ kind: 'db.write' });
    await ledger().write(statement, [], { statement: { sql: 'INSERT INTO ledger_rows (v) VALUES ($1) RETURNING v', params: [leak], output: (r: unknown) => r } }, now);
    const grouped = effect({ kind: 'db.write' });
    await ledger().write(grouped, [], { run: async () => ({ echo: leak }) }, now);
    const gated = effect({ kind: 'db.write' });
    await ledger().write(gated, [fakeGate('a', 'yes')], { run: async () => ({ echo: leak }) }, now);
    const all = JSON.stringify(await db.query('SELECT * FROM flow_effects'));
    expect(all).not.toContain(SECRET);
    expect(all.match(/\[redacted\]/g)?.length).toBeGreaterThanOrEqual(6);
  });

  it('keeps a transient output until its item is recorded, then drops it', async () => {
    const e = effect({ kind: 'api' });
    await ledger().confirm(e, (await ledger().reserve(e, [], now)) as never, { big: 'data' }, now, { transient: true });
    expect((await ledger().reserve(e, [], now)) as { row: { output: unknown } }).toMatchObject({ state: 'done', row: { output: { big: 'data' } } });
    await ledger().forget('r-1', [e.itemKey]);
    expect(await ledger().find(e.key)).toMatchObject({ status: 'done', output: null, transient: false });
  });

  it('counts the repeats of an effect left in doubt', async () => {
    const e = effect();
    await ledger().reserve(e, [], now);
    await ledger().repeat(e.key);
    await ledger().repeat(e.key);
    expect(await ledger().find(e.key)).toMatchObject({ status: 'reserved', repeats: 2 });
    expect(await ledger().repeatsOf('r-1')).toEqual([{ step_id: 'send', n: 1, repeats: 2 }]);
  });

  it('lists effects in doubt with what identifies them, and settles them as a person says', async () => {
    const a = effect();
    const b = effect();
    await ledger().reserve(a, [], now);
    await ledger().reserve(b, [], now);
    expect((await ledger().inDoubt('r-1')).map((r) => [r.key, r.identity])).toEqual([
      [a.key, a.identity],
      [b.key, b.identity],
    ]);
    await ledger().resolve(a.key, true, now);
    await ledger().resolve(b.key, false, now);
    expect(await ledger().inDoubt()).toEqual([]);
    expect((await ledger().reserve(a, [], now)).state).toBe('done');
    expect((await ledger().reserve(b, [], now)).state).toBe('reserved');
  });
});
