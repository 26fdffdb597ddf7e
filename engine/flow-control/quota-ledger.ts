import type { Database } from '../db/connect.ts';
import type { Sql } from '../ledger/types.ts';
import type { Span } from './periods.ts';
import { countingSpans, lookbackStart, type QuotaUse } from './quota-policy.ts';
import type { QuotaRules } from './quota-spec.ts';

/** One effect (or gated call) counted against a quota and key. */
export interface QuotaEntry {
  quota: string;
  key: string;
  at: Date;
  runId: string;
  stepId: string;
  itemKey: string;
  effectKey?: string;
}

export interface QuotaPause {
  quota: string;
  key: string;
  reason: string;
  by: string;
  paused_at: Date;
  until: Date | null;
}

const date = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string));
const lockName = (quota: string, key: string) => `flows quota ${quota}\u001f${key}`;
/** A key's row of the ledger's counts as the policy reads it. */
function useOf(rules: QuotaRules, row: Record<string, unknown> | undefined): QuotaUse {
  const pause = parseJson(row?.pause ?? null) as { reason: string; until: string | null } | null;
  return {
    caps: rules.caps.map((_, i) => ({ count: Number(row?.[`c${i}`] ?? 0), oldest: date(row?.[`o${i}`]) })),
    last: date(row?.last),
    pause: pause ? { reason: pause.reason, until: date(pause.until) } : undefined,
  };
}

/** A json value as the driver gives it: parsed already, or as text. */
const parseJson = (v: unknown): unknown => (typeof v === 'string' ? JSON.parse(v) : v);

/**
 * The quota ledger: what each quota and key has spent, and who paused what. Caps are counted
 * here under an advisory lock per quota and key (in the transaction that also reserves the
 * effect), so they hold across items, runs, processes and machines on one Postgres.
 */
export class QuotaLedger {
  constructor(private readonly db: Database) {}

  /** Serialises reservations under one quota and key until the transaction ends. */
  async lock(sql: Sql, quota: string, key: string): Promise<void> {
    await sql.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockName(quota, key)]);
  }

  /**
   * The locks of several keys of a quota, taken one after the other in the order given (callers
   * that lock more than one key give them sorted, so two of them never wait on each other), in
   * one statement.
   */
  async lockAll(sql: Sql, quota: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 1) return this.lock(sql, quota, keys[0]!);
    await sql.query(
      'SELECT count(pg_advisory_xact_lock(hashtext(n))) FROM (SELECT n FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i) AS ordered',
      [keys.map((k) => lockName(quota, k))],
    );
  }

  /** What the caps count at `now`, the latest effect and any pause in force: one statement. */
  async use(sql: Sql, rules: QuotaRules, now: Date): Promise<QuotaUse> {
    const spans = countingSpans(rules, now);
    const filters = spans.map((_, i) => `at >= $${5 + 2 * i} AND at < $${6 + 2 * i}`);
    const columns = filters.map((f, i) => `count(*) FILTER (WHERE ${f})::int AS c${i}, min(at) FILTER (WHERE ${f}) AS o${i}`);
    const [row] = await sql.query<Record<string, unknown>>(
      `SELECT ${[...columns, 'max(at) AS last'].join(', ')},
              (SELECT json_build_object('reason', p.reason, 'until', p.until) FROM flow_quota_pauses p
                WHERE p.quota = $1 AND p.quota_key IN ($2, '') AND (p.until IS NULL OR p.until > $4)
                ORDER BY p.until IS NULL DESC, p.until DESC LIMIT 1) AS pause
         FROM flow_quota_ledger WHERE quota = $1 AND quota_key = $2 AND at >= $3`,
      [rules.quota, rules.key, lookbackStart(rules, now), now, ...spans.flatMap((s) => [s.start, s.end])],
    );
    return useOf(rules, row);
  }

  /**
   * use() for several keys at once (each with its own rules), in one statement; in the order
   * given. Keys that count over the same spans (the same caps in the same timezone) are read
   * together, in one pass over the ledger.
   */
  async useAll(sql: Sql, keys: readonly QuotaRules[], now: Date): Promise<QuotaUse[]> {
    if (keys.length === 1) return [await this.use(sql, keys[0]!, now)];
    const groups = new Map<string, { quota: string; lookback: Date; spans: Span[]; members: { rules: QuotaRules; index: number }[] }>();
    keys.forEach((rules, index) => {
      const spans = countingSpans(rules, now);
      const lookback = lookbackStart(rules, now);
      const signature = JSON.stringify([rules.quota, lookback, spans]);
      const group = groups.get(signature) ?? { quota: rules.quota, lookback, spans, members: [] };
      group.members.push({ rules, index });
      groups.set(signature, group);
    });
    const params: unknown[] = [now];
    const selects = [...groups.values()].map((g) => {
      const at = params.length;
      params.push(g.quota, g.members.map((m) => m.rules.key), g.members.map((m) => m.index), g.lookback, ...g.spans.flatMap((s) => [s.start, s.end]));
      const filters = g.spans.map((_, i) => `l.at >= $${at + 5 + 2 * i} AND l.at < $${at + 6 + 2 * i}`);
      const columns = filters.map((f, i) => `count(l.at) FILTER (WHERE ${f})::int AS c${i}, min(l.at) FILTER (WHERE ${f}) AS o${i}`);
      return `SELECT k.i AS k, ${[...columns, 'max(l.at) AS last'].join(', ')},
              (SELECT json_build_object('reason', p.reason, 'until', p.until) FROM flow_quota_pauses p
                WHERE p.quota = $${at + 1} AND p.quota_key IN (k.key, '') AND (p.until IS NULL OR p.until > $1)
                ORDER BY p.until IS NULL DESC, p.until DESC LIMIT 1) AS pause
         FROM unnest($${at + 2}::text[], $${at + 3}::int[]) AS k(key, i)
         LEFT JOIN flow_quota_ledger l ON l.quota = $${at + 1} AND l.quota_key = k.key AND l.at >= $${at + 4}
        GROUP BY k.i, k.key`;
    });
    // Groups count different caps, so different columns: with several, each row goes as one JSON value.
    const text = selects.length === 1 ? selects[0]! : selects.map((s) => `SELECT row_to_json(x) AS r FROM (${s}) AS x`).join('\nUNION ALL ');
    const result = await sql.query<Record<string, unknown>>(text, params);
    const rows = new Map((selects.length === 1 ? result : result.map((r) => parseJson(r.r) as Record<string, unknown>)).map((r) => [Number(r.k), r]));
    return keys.map((rules, k) => useOf(rules, rows.get(k)));
  }

  async record(sql: Sql, entry: QuotaEntry): Promise<string> {
    return (await this.recordAll(sql, [entry]))[0]!;
  }

  /** Several entries in one statement; their ids in the order given. */
  async recordAll(sql: Sql, entries: readonly QuotaEntry[]): Promise<string[]> {
    if (!entries.length) return [];
    const values = entries.map((_, i) => `(${Array.from({ length: 7 }, (_, j) => `$${1 + i * 7 + j}`).join(', ')})`).join(', ');
    const rows = await sql.query<{ id: string }>(
      `INSERT INTO flow_quota_ledger (quota, quota_key, at, run_id, step_id, item_key, effect_key) VALUES ${values} RETURNING id`,
      entries.flatMap((e) => [e.quota, e.key, e.at, e.runId, e.stepId, e.itemKey, e.effectKey ?? null]),
    );
    // A statement's rows take the sequence's values in the order of its VALUES.
    return rows.map((r) => BigInt(r.id)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map(String);
  }

  async remove(sql: Sql, id: string): Promise<void> {
    await sql.query('DELETE FROM flow_quota_ledger WHERE id = $1', [id]);
  }

  /** The times a dry run starts its simulation from: every entry since lookbackStart. */
  async history(rules: QuotaRules, now: Date): Promise<Date[]> {
    const rows = await this.db.query<{ at: unknown }>('SELECT at FROM flow_quota_ledger WHERE quota = $1 AND quota_key = $2 AND at >= $3 ORDER BY at', [
      rules.quota,
      rules.key,
      lookbackStart(rules, now),
    ]);
    return rows.map((r) => new Date(r.at as string));
  }

  /** The pause in force for this quota and key at `now` (the key's or the whole quota's). */
  async pauseAt(quota: string, key: string, now: Date): Promise<QuotaUse['pause']> {
    const [row] = await this.db.query<{ reason: string; until: unknown }>(
      `SELECT reason, until FROM flow_quota_pauses WHERE quota = $1 AND quota_key IN ($2, '') AND (until IS NULL OR until > $3)
        ORDER BY until IS NULL DESC, until DESC LIMIT 1`,
      [quota, key, now],
    );
    return row ? { reason: row.reason, until: date(row.until) } : undefined;
  }

  /** Keys with entries since `from` (for `flows quotas` on quotas whose keys are not declared). */
  async keysSince(quota: string, from: Date): Promise<string[]> {
    const rows = await this.db.query<{ k: string }>('SELECT DISTINCT quota_key AS k FROM flow_quota_ledger WHERE quota = $1 AND at >= $2 ORDER BY 1', [quota, from]);
    return rows.map((r) => r.k);
  }

  /** Pauses a quota (key '') or one key, until `until` or until resumed. A later pause replaces an earlier one. */
  async pause(p: { quota: string; key: string; reason: string; by: string; until: Date | null; now: Date }): Promise<void> {
    await this.db.query(
      `INSERT INTO flow_quota_pauses (quota, quota_key, reason, paused_by, paused_at, until) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (quota, quota_key) DO UPDATE SET reason = EXCLUDED.reason, paused_by = EXCLUDED.paused_by, paused_at = EXCLUDED.paused_at, until = EXCLUDED.until`,
      [p.quota, p.key, p.reason, p.by, p.now, p.until],
    );
  }

  /**
   * Lifts a pause; returns whether there was one. The pause's row goes, and a quota.resumed
   * event keeps what it was (reason, who paused it and when) and when and by whom it was
   * lifted, in the same statement: the one record of a resume (a LinkedIn account's volume
   * ramps back up from its reconnection).
   */
  async resume(quota: string, key: string, how: { by: string; now: Date }): Promise<boolean> {
    const rows = await this.db.query(
      `WITH lifted AS (DELETE FROM flow_quota_pauses WHERE quota = $1 AND quota_key = $2 RETURNING quota, quota_key, reason, paused_by, paused_at, until)
       INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
       SELECT 'quota.resumed', CASE WHEN quota_key = '' THEN quota ELSE quota || ':' || quota_key END,
              jsonb_build_object('quota', quota, 'key', quota_key, 'reason', reason, 'paused_by', paused_by, 'paused_at', paused_at, 'until', until, 'resumed_by', $3::text),
              NULL, $4
         FROM lifted RETURNING id`,
      [quota, key, how.by, how.now],
    );
    return rows.length > 0;
  }

  async pauses(now: Date): Promise<QuotaPause[]> {
    const rows = await this.db.query<{ quota: string; quota_key: string; reason: string; paused_by: string; paused_at: unknown; until: unknown }>(
      'SELECT quota, quota_key, reason, paused_by, paused_at, until FROM flow_quota_pauses WHERE until IS NULL OR until > $1 ORDER BY quota, quota_key',
      [now],
    );
    return rows.map((r) => ({ quota: r.quota, key: r.quota_key, reason: r.reason, by: r.paused_by, paused_at: new Date(r.paused_at as string), until: date(r.until) }));
  }
}
