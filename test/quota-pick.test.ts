import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { EngineConfig } from '../engine/config.ts';
import { type Database, openDatabase } from '../engine/db/connect.ts';
import { PickGate, QuotaGate } from '../engine/flow-control/gates.ts';
import { flowControlOf } from '../engine/flow-control/index.ts';
import { QuotaLedger } from '../engine/flow-control/quota-ledger.ts';
import { inTransaction } from '../engine/ledger/sql.ts';
import type { Sql } from '../engine/ledger/types.ts';
import { RunStore } from '../engine/store/index.ts';
import { businessMigrations } from '../steps/tables.ts';
import { createPostgresDatabase, testDatabases } from './helpers/db.ts';

/**
 * A quota that picks its key (rotation across mailboxes) decides under every key's lock from
 * what each key has spent: the key with room that is idle longest. However many keys it has,
 * one reservation reads them all at once: the locks in one statement, in key order, and the
 * ledger of every key in one more.
 */
const KEYS = Array.from({ length: 18 }, (_, i) => `box${String(i).padStart(2, '0')}@one.example`);
const config: EngineConfig = {
  business: { name: 'T', timezone: 'Europe/London' },
  quotas: {
    rotation: {
      caps: { day: 3, rolling_24h: 3 },
      window: '08:00-18:00',
      pick: 'idle_longest',
      // The last key has caps of its own: one a day, and one an hour (a cap the others do not count).
      keys: Object.fromEntries(KEYS.map((k, i) => [k, i === KEYS.length - 1 ? { caps: { day: 1, hour: 1 } } : null])),
    },
  },
};
const MONDAY_NOON = new Date('2026-11-23T12:00:00Z');
const ref = { runId: '00000000-0000-0000-0000-000000000000', stepId: 'send', itemKey: 'x' };

/** Raw SQL that counts what it sends. */
function counting(sql: Sql): Sql & { sent: string[] } {
  const sent: string[] = [];
  return {
    sent,
    query: (text, params) => {
      sent.push(text);
      return sql.query(text, params);
    },
  };
}

describe.each(testDatabases)('a picking quota on $name', ({ open }) => {
  let db: Database;
  let ledger: QuotaLedger;
  const flow = flowControlOf(config);
  const pool = () => flow.pool('rotation', undefined)!;
  beforeAll(async () => {
    db = await open();
    ledger = new QuotaLedger(db);
  });
  afterAll(() => db?.close());
  beforeEach(async () => {
    await db.query('DELETE FROM flow_quota_ledger');
    await db.query('DELETE FROM flow_quota_pauses');
  });

  /** Ledger rows: `spent[key]` is the times (minutes before noon) the key sent at. */
  async function spent(rows: Record<string, number[]>) {
    for (const [key, minutes] of Object.entries(rows)) {
      for (const m of minutes) {
        await ledger.record(db, { quota: 'rotation', key, at: new Date(MONDAY_NOON.getTime() - m * 60_000), ...ref, itemKey: `${key}-${m}` });
      }
    }
  }

  const reserve = (now = MONDAY_NOON) =>
    inTransaction(db, async (sql) => {
      const seen = counting(sql);
      const verdict = await new PickGate(ledger, pool(), 0, ref).reserve(seen, now, 'effect-1');
      return { verdict, sent: seen.sent };
    });

  it('picks the key idle longest among those with room, in three statements for 18 keys', async () => {
    // Every key sent once; box03 longest ago, but it is full (3 today); box05 is next longest idle.
    await spent(Object.fromEntries(KEYS.map((k, i) => [k, i === 3 ? [300, 200, 100] : [i === 5 ? 250 : 10 + i]])));
    const { verdict, sent } = await reserve();
    expect(verdict.ok && verdict.hold?.picked).toBe('box05@one.example');
    expect(sent).toHaveLength(3);
    expect(sent.filter((s) => s.includes('pg_advisory_xact_lock'))).toHaveLength(1);
  });

  it('reads each key with its own caps, and a pause of one key or of the whole quota', async () => {
    // The last key sent longest ago but is full at its own cap of 1; of the others box16 is idle longest.
    await spent(Object.fromEntries(KEYS.map((k, i) => [k, [i === KEYS.length - 1 ? 300 : 10 + i]])));
    expect((await reserve()).verdict).toMatchObject({ ok: true, hold: { picked: 'box16@one.example' } });
    await db.query('DELETE FROM flow_quota_ledger WHERE at = $1', [MONDAY_NOON]);
    await ledger.pause({ quota: 'rotation', key: 'box16@one.example', reason: 'bounces', by: 'test', until: null, now: MONDAY_NOON });
    expect((await reserve()).verdict).toMatchObject({ ok: true, hold: { picked: 'box15@one.example' } });
    await db.query('DELETE FROM flow_quota_ledger WHERE at = $1', [MONDAY_NOON]);
    await ledger.pause({ quota: 'rotation', key: '', reason: 'complaints', by: 'test', until: null, now: MONDAY_NOON });
    const paused = await reserve();
    expect(paused.verdict).toMatchObject({ ok: false, scope: 'item' });
    expect(paused.verdict.ok ? '' : paused.verdict.reason).toMatch(/^no key of quota rotation has room now \(18 keys\); the first to free: quota rotation:box\d\d@one\.example is paused: complaints/);
  });

  it('waits for the first key to free when every key is full', async () => {
    await spent(Object.fromEntries(KEYS.map((k, i) => [k, i === KEYS.length - 1 ? [30] : [60, 50, 40 - i]])));
    const { verdict } = await reserve();
    expect(verdict).toMatchObject({ ok: false, until: new Date('2026-11-24T08:00:00Z') });
  });

  it('decides concurrent calls together exactly as one after the other would be: one lock, one read, one insert', async () => {
    // Some keys sent already; calls of several items, some with a spacing gap of their own.
    const history = Object.fromEntries(KEYS.map((k, i) => [k, i % 4 === 0 ? [200, 100] : i % 4 === 1 ? [30 + i] : []]));
    const gates = Array.from({ length: 40 }, (_, i) => new PickGate(ledger, pool(), i % 3 === 0 ? 0 : 600_000, { ...ref, itemKey: `item-${i}` }));
    const picks = (verdicts: { ok: boolean; hold?: { picked?: string }; until?: Date }[]) => verdicts.map((v) => (v.ok ? v.hold!.picked : `wait ${v.until!.toISOString()}`));
    await spent(history);
    const oneByOne = [];
    for (const [i, gate] of gates.entries()) oneByOne.push(await inTransaction(db, (sql) => gate.reserve(sql, MONDAY_NOON, `effect-${i}`)));
    await db.query('DELETE FROM flow_quota_ledger');
    await spent(history);
    const together = await inTransaction(db, async (sql) => {
      const seen = counting(sql);
      const verdicts = await gates[0]!.reserveGroup(seen, MONDAY_NOON, gates.map((gate, i) => ({ gate, effectKey: `effect-${i}` })));
      return { verdicts, sent: seen.sent };
    });
    expect(picks(together.verdicts)).toEqual(picks(oneByOne));
    // The first 18 calls take a key each (idle longest first); of the rest, those with a gap
    // wait for it, those without take a key's next slot while its day cap has room.
    expect(new Set(picks(together.verdicts).slice(0, 18)).size).toBe(18);
    const rest = picks(together.verdicts).slice(18);
    expect(rest.filter((p) => p!.startsWith('wait')).length).toBeGreaterThan(0);
    expect(rest.filter((p) => !p!.startsWith('wait')).length).toBeGreaterThan(0);
    expect(together.sent).toHaveLength(3);
    const rows = await db.query<{ effect_key: string; quota_key: string }>("SELECT effect_key, quota_key FROM flow_quota_ledger WHERE at = $1 ORDER BY id", [MONDAY_NOON]);
    const admitted = together.verdicts.flatMap((v, i) => (v.ok ? [{ effect_key: `effect-${i}`, quota_key: v.hold!.picked }] : []));
    expect(rows).toEqual(admitted);
    // A hold frees its own entry.
    const last = together.verdicts.findLast((v) => v.ok)!;
    if (last.ok) await last.hold!.release(db, {});
    expect(await db.query('SELECT effect_key FROM flow_quota_ledger WHERE at = $1 ORDER BY id', [MONDAY_NOON])).toEqual(admitted.slice(0, -1).map(({ effect_key }) => ({ effect_key })));
  });

  it('holds every key\'s lock until its transaction ends: a send from one of its keys waits for it', async () => {
    if (db.kind === 'pglite') return; // one connection: transactions take turns anyway
    let release!: () => void;
    const holding = new Promise<void>((resolve) => (release = resolve));
    const order: string[] = [];
    const pick = inTransaction(db, async (sql) => {
      await new PickGate(ledger, pool(), 0, ref).reserve(sql, MONDAY_NOON, 'effect-1');
      order.push('picked');
      await holding;
      order.push('pick committed');
    });
    await new Promise((r) => setTimeout(r, 100));
    const one = inTransaction(db, async (sql) => {
      await new QuotaGate(ledger, flow.rules('rotation', KEYS[17]), 0, ref).reserve(sql, MONDAY_NOON, 'effect-2');
      order.push('one key');
    });
    await new Promise((r) => setTimeout(r, 200));
    release();
    await Promise.all([pick, one]);
    expect(order).toEqual(['picked', 'pick committed', 'one key']);
  });
});

/**
 * Several processes (or machines) on one Postgres, each grouping its own concurrent
 * reservations: the groups of one take the keys' locks like a single call does, so the caps
 * hold across all of them.
 */
describe.runIf(process.env.TEST_DATABASE_URL)('a picking quota shared by processes on Postgres', () => {
  const flow = flowControlOf(config);
  let created: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let processes: { db: Database; store: RunStore }[];
  beforeAll(async () => {
    created = await createPostgresDatabase(process.env.TEST_DATABASE_URL!);
    processes = [];
    for (let i = 0; i < 3; i++) {
      const db = await openDatabase({ url: created.url, migrations: businessMigrations });
      processes.push({ db, store: new RunStore(db) });
    }
  });
  afterAll(async () => {
    for (const p of processes ?? []) await p.db.close();
    await created?.drop();
  });

  it('never passes a cap when the groups of three processes reserve at once', async () => {
    // 17 keys with room for 3 today and one for 1: 52 sends, asked for 90 times.
    const calls = Array.from({ length: 90 }, (_, i) => ({ i, at: processes[i % 3]! }));
    const outcomes = await Promise.all(
      calls.map(({ i, at }) => {
        const e = { key: `send-${i}`, runId: ref.runId, stepId: 'send', itemKey: `item-${i}`, kind: 'email', summary: `email ${i}` };
        return at.store.effects.reserve(e, [new PickGate(at.store.quotas, flow.pool('rotation', undefined)!, 0, { ...ref, itemKey: e.itemKey })], MONDAY_NOON);
      }),
    );
    expect(outcomes.filter((o) => o.state === 'reserved')).toHaveLength(52);
    expect(outcomes.filter((o) => o.state === 'wait')).toHaveLength(38);
    const perKey = await processes[0]!.db.query<{ quota_key: string; n: number }>('SELECT quota_key, count(*)::int AS n FROM flow_quota_ledger GROUP BY 1');
    expect(perKey).toHaveLength(18);
    for (const { quota_key, n } of perKey) expect(n).toBe(quota_key === KEYS[17] ? 1 : 3);
    expect(await processes[0]!.db.query("SELECT count(*)::int AS n FROM flow_effects WHERE status = 'reserved'")).toEqual([{ n: 52 }]);
  });
});
