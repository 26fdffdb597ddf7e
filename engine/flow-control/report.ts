import type { Sql } from '../ledger/types.ts';
import type { FlowControl } from './index.ts';
import type { QuotaLedger } from './quota-ledger.ts';
import { capAt, decide, lookbackStart } from './quota-policy.ts';
import type { QuotaPeriod } from './quota-spec.ts';

export interface CapReport {
  period: QuotaPeriod;
  /** The configured cap, and the cap at this moment (less on a ramp day). */
  cap: number;
  today: number;
  used: number;
  remaining: number;
}

/** One quota and key as `flows quotas` and /metrics show it. */
export interface QuotaReport {
  quota: string;
  key: string | null;
  /** What the key belongs to (a mailbox's sending domain). */
  group?: string;
  caps: CapReport[];
  /** The least room left under any cap. */
  remaining: number;
  /** The sending window now open, or the next one. */
  window: { start: string; end: string; label: string; open: boolean };
  /** Set while a person or a rule has paused it. */
  paused?: { reason: string; until: string | null };
  /** When the next effect may happen: now (null) or later, and why. */
  next: { at: string; reason: string } | null;
}

/** Each quota's use now, per key (every declared key, and keys the ledger has seen lately), from the ledger. */
export async function quotaReports(flow: FlowControl, ledger: QuotaLedger, db: Sql, now: Date, only?: string): Promise<QuotaReport[]> {
  const reports: QuotaReport[] = [];
  for (const name of flow.quotaNames()) {
    if (only !== undefined && name !== only) continue;
    const quota = flow.quota(name);
    let keys = [''];
    if (quota.perKey) {
      const probe = quota.declaredKeys[0] ?? 'x';
      const seen = quota.declaredKeys.length ? [] : await ledger.keysSince(name, lookbackStart(quota.rulesFor(probe), now));
      keys = [...new Set([...quota.declaredKeys, ...seen])];
    }
    for (const key of keys) {
      const rules = quota.rulesFor(key);
      const use = await ledger.use(db, rules, now);
      const caps = rules.caps.map(({ period, cap }, i): CapReport => {
        const today = capAt(rules, period, cap, now);
        const used = use.caps[i]?.count ?? 0;
        return { period, cap, today, used, remaining: Math.max(0, today - used) };
      });
      const open = rules.calendar.windowAt(now);
      const window = open ?? rules.calendar.nextWindowAfter(now);
      const decision = decide(rules, use, now, 0);
      reports.push({
        quota: name,
        key: quota.perKey ? key : null,
        ...(quota.groupOf(key) ? { group: quota.groupOf(key) } : {}),
        caps,
        remaining: Math.min(...caps.map((c) => c.remaining)),
        window: { start: window.start.toISOString(), end: window.end.toISOString(), label: rules.calendar.label(window), open: Boolean(open) },
        paused: use.pause ? { reason: use.pause.reason, until: use.pause.until?.toISOString() ?? null } : undefined,
        next: decision.ok ? null : { at: decision.until.toISOString(), reason: decision.reason },
      });
    }
  }
  return reports;
}

/**
 * Each key's room over the sending window open at `now`, or the next one: what the caps
 * allow by the window's end, counting what has happened since. A rolling cap frees during
 * the window what went a span before, so a morning plan after a full day is not told "none"
 * (at 07:30 the last 24 hours still hold yesterday's 50, which leave before each slot today).
 * Paused keys have none. What a day's plan may take; spacing may still make it less.
 */
export async function windowRoom(flow: FlowControl, ledger: QuotaLedger, db: Sql, now: Date, quota: string): Promise<{ key: string; remaining: number; paused?: string }[]> {
  const compiled = flow.quota(quota);
  const keys = compiled.perKey ? compiled.declaredKeys : [''];
  const room = [];
  for (const key of keys) {
    const rules = compiled.rulesFor(key);
    const window = rules.calendar.windowAt(now) ?? rules.calendar.nextWindowAfter(now);
    const last = new Date(Math.max(now.getTime(), window.end.getTime() - 1));
    const pause = (await ledger.use(db, rules, now)).pause;
    const use = await ledger.use(db, rules, last);
    const remaining = Math.min(...rules.caps.map(({ period, cap }, i) => Math.max(0, capAt(rules, period, cap, last) - (use.caps[i]?.count ?? 0))));
    room.push({ key, remaining: pause ? 0 : remaining, ...(pause ? { paused: pause.reason } : {}) });
  }
  return room;
}

/**
 * The keys of one quota and group added up (a sending domain's mailboxes): used and today's
 * caps per period, what remains, and how many of its keys are paused.
 */
export function groupTotals(reports: readonly QuotaReport[]): { quota: string; group: string; keys: number; paused: number; caps: CapReport[]; remaining: number }[] {
  const groups = new Map<string, QuotaReport[]>();
  for (const r of reports) if (r.group) groups.set(`${r.quota}\u001f${r.group}`, [...(groups.get(`${r.quota}\u001f${r.group}`) ?? []), r]);
  return [...groups.values()].map((members) => ({
    quota: members[0]!.quota,
    group: members[0]!.group!,
    keys: members.length,
    paused: members.filter((m) => m.paused).length,
    caps: members[0]!.caps.map((c, i) => ({
      period: c.period,
      cap: members.reduce((n, m) => n + (m.caps[i]?.cap ?? 0), 0),
      today: members.reduce((n, m) => n + (m.caps[i]?.today ?? 0), 0),
      used: members.reduce((n, m) => n + (m.caps[i]?.used ?? 0), 0),
      remaining: members.reduce((n, m) => n + (m.paused ? 0 : (m.caps[i]?.remaining ?? 0)), 0),
    })),
    remaining: members.reduce((n, m) => n + (m.paused ? 0 : m.remaining), 0),
  }));
}

/** "12/17 day, 40/85 rolling_7d (ramp: 15 today)" */
export function capsText(caps: readonly CapReport[]): string {
  return caps.map((c) => `${c.used}/${c.today} ${c.period}${c.today < c.cap ? ` (ramp; cap ${c.cap})` : ''}`).join(', ');
}
