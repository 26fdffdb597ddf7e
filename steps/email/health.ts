import type { EngineConfig, Queryable, QuotaRemarkSource } from '../../engine/sdk.ts';
import { eventStatement } from '../event/emit.ts';
import { normalAddress } from './consent.ts';
import { mailboxesOf } from './settings.ts';

/**
 * The health of a sending mailbox and of its domain, as receiving servers judge it: the
 * bounce rate and the complaint rate over the last 7 days. Past 5% bounces or 0.1%
 * complaints a mailbox (or every mailbox of a domain, when the domain as a whole is past
 * it) is paused in the mailbox quota, the same pause `flows quotas pause` makes: indefinite,
 * until a person has looked and runs `flows quotas resume`. A rate counts only once 50
 * emails went out in the window; before that one bounce says little.
 *
 * `flows quotas` shows the rates (emailHealthRemarks) with the limits.
 *
 * Bounces are outbox rows marked bounced (at SMTP time or by a delivery report) plus
 * delivery reports that matched no row; sends are outbox rows sent in the window.
 */

export const HEALTH_WINDOW_DAYS = 7;
export const MIN_SENDS = 50;
export const BOUNCE_LIMIT = 0.05;
export const COMPLAINT_LIMIT = 0.001;

export interface SendingCounts {
  sent: number;
  bounces: number;
  complaints: number;
}

export interface SendingHealth extends SendingCounts {
  scope: 'mailbox' | 'domain';
  /** The mailbox address or the domain. */
  name: string;
  /** The domain of a mailbox (the domain itself for a domain). */
  domain: string;
  bounceRate: number;
  complaintRate: number;
  /** At least MIN_SENDS in the window: the rates count. */
  counted: boolean;
  /** Why it is to be paused, like "bounce rate 6.0% over 7 days (3 of 50 sent)"; undefined while healthy. */
  breach?: string;
}

/** Sends, bounces and complaints of each mailbox over the window ending at `now`. */
export async function mailboxCounts(db: Queryable, mailboxes: readonly string[], now: Date): Promise<Map<string, SendingCounts>> {
  const since = new Date(now.getTime() - HEALTH_WINDOW_DAYS * 86_400_000);
  const rows = await db.query<{ mailbox: string; sent: number; bounced: number; reported: number; complaints: number }>(
    `SELECT m.mailbox,
            (SELECT count(*) FROM email_outbox o WHERE o.mailbox = m.mailbox AND o.state IN ('sent', 'bounced', 'in_doubt')
                AND COALESCE(o.sent_at, o.due_at) >= $2 AND COALESCE(o.sent_at, o.due_at) <= $3)::int AS sent,
            (SELECT count(*) FROM email_outbox o WHERE o.mailbox = m.mailbox AND o.state = 'bounced'
                AND COALESCE(o.sent_at, o.due_at) >= $2 AND COALESCE(o.sent_at, o.due_at) <= $3)::int AS bounced,
            (SELECT count(*) FROM email_inbound i WHERE i.mailbox = m.mailbox AND i.kind = 'bounce' AND i.outbox_id IS NULL
                AND i.received_at >= $2 AND i.received_at <= $3)::int AS reported,
            (SELECT count(*) FROM email_inbound i LEFT JOIN email_outbox o ON o.id = i.outbox_id
              WHERE COALESCE(o.mailbox, i.mailbox) = m.mailbox AND i.kind = 'complaint' AND i.received_at >= $2 AND i.received_at <= $3)::int AS complaints
       FROM unnest($1::text[]) AS m(mailbox)`,
    [mailboxes.map(normalAddress), since, now],
  );
  return new Map(rows.map((r) => [r.mailbox, { sent: Number(r.sent), bounces: Number(r.bounced) + Number(r.reported), complaints: Number(r.complaints) }]));
}

/** The rates of some counts, and the breach they make, if any. */
export function healthOf(scope: 'mailbox' | 'domain', name: string, domain: string, counts: SendingCounts): SendingHealth {
  const bounceRate = counts.sent ? counts.bounces / counts.sent : 0;
  const complaintRate = counts.sent ? counts.complaints / counts.sent : 0;
  const counted = counts.sent >= MIN_SENDS;
  const over = (what: string, n: number, rate: number) => `${scope === 'domain' ? `domain ${name}: ` : ''}${what} rate ${percent(rate)} over ${HEALTH_WINDOW_DAYS} days (${n} of ${counts.sent} sent)`;
  const breach = !counted
    ? undefined
    : bounceRate >= BOUNCE_LIMIT
      ? over('bounce', counts.bounces, bounceRate)
      : complaintRate >= COMPLAINT_LIMIT
        ? over('complaint', counts.complaints, complaintRate)
        : undefined;
  return { scope, name, domain, ...counts, bounceRate, complaintRate, counted, ...(breach ? { breach } : {}) };
}

/** 0.06 → "6.0%", 0.0012 → "0.12%": enough digits to compare with the 0.1% line. */
const percent = (rate: number): string => `${(rate * 100).toFixed(rate < 0.01 ? 2 : 1)}%`;

/** Every mailbox of the config and every domain, with its rates now: what `flows quotas` can show beside the quota. */
export async function sendingHealth(db: Queryable, config: EngineConfig, now: Date): Promise<SendingHealth[]> {
  const mailboxes = mailboxesOf(config);
  const counts = await mailboxCounts(db, mailboxes.map((m) => m.address), now);
  const out: SendingHealth[] = [];
  for (const domain of [...new Set(mailboxes.map((m) => m.domain))]) {
    const own = mailboxes.filter((m) => m.domain === domain);
    const sum = own.reduce((s, m) => add(s, counts.get(m.address)), { sent: 0, bounces: 0, complaints: 0 });
    out.push(healthOf('domain', domain, domain, sum), ...own.map((m) => healthOf('mailbox', m.address, domain, counts.get(m.address) ?? { sent: 0, bounces: 0, complaints: 0 })));
  }
  return out;
}

const add = (a: SendingCounts, b: SendingCounts | undefined): SendingCounts => ({ sent: a.sent + (b?.sent ?? 0), bounces: a.bounces + (b?.bounces ?? 0), complaints: a.complaints + (b?.complaints ?? 0) });

/** The quota whose keys are the mailboxes (keys_from: email.mailboxes), else one named mailbox; undefined when the config has neither. */
export function mailboxQuota(config: EngineConfig): string | undefined {
  const quotas = config.quotas ?? {};
  return Object.entries(quotas).find(([, q]) => q.keys_from === 'email.mailboxes')?.[0] ?? ('mailbox' in quotas ? 'mailbox' : undefined);
}

/**
 * After a bounce or a complaint at `mailbox`: pauses it past a line, and every mailbox of its
 * domain when the domain is. A key already paused keeps its pause (and its reason); each new
 * pause comes with an email.mailbox_paused event in its statement. Returns the keys paused.
 */
export async function pauseUnhealthy(db: Queryable, config: EngineConfig, mailbox: string, now: Date, runId: string | null = null): Promise<string[]> {
  const quota = mailboxQuota(config);
  if (!quota) return [];
  const address = normalAddress(mailbox);
  const mailboxes = mailboxesOf(config);
  const domain = mailboxes.find((m) => m.address === address)?.domain ?? address.split('@')[1] ?? '';
  const ofDomain = mailboxes.filter((m) => m.domain === domain).map((m) => m.address);
  const counts = await mailboxCounts(db, [...new Set([address, ...ofDomain])], now);
  const own = healthOf('mailbox', address, domain, counts.get(address) ?? { sent: 0, bounces: 0, complaints: 0 });
  const whole = healthOf('domain', domain, domain, ofDomain.reduce((s, m) => add(s, counts.get(m)), { sent: 0, bounces: 0, complaints: 0 }));
  const pauses: [string, SendingHealth][] = [...(own.breach ? [[address, own] as [string, SendingHealth]] : []), ...(whole.breach ? ofDomain.map((m): [string, SendingHealth] => [m, whole]) : [])];
  const paused: string[] = [];
  for (const [key, health] of pauses) if (await pauseKey(db, quota, key, health, now, runId)) paused.push(key);
  return paused;
}

/** The pause and its event in one statement; nothing when the key is paused already (an expired pause is replaced). */
async function pauseKey(db: Queryable, quota: string, key: string, health: SendingHealth, now: Date, runId: string | null): Promise<boolean> {
  const event = eventStatement(
    {
      type: 'email.mailbox_paused',
      key,
      payload: { mailbox: key, domain: health.domain, quota, scope: health.scope, reason: health.breach, sent: health.sent, bounces: health.bounces, complaints: health.complaints },
    },
    runId,
    now,
  );
  const rows = await db.query(
    `WITH paused AS (
       INSERT INTO flow_quota_pauses (quota, quota_key, reason, paused_by, paused_at, until) VALUES ($1, $2, $3, $4, $5, NULL)
       ON CONFLICT (quota, quota_key) DO UPDATE SET reason = EXCLUDED.reason, paused_by = EXCLUDED.paused_by, paused_at = EXCLUDED.paused_at, until = NULL
         WHERE flow_quota_pauses.until IS NOT NULL AND flow_quota_pauses.until <= EXCLUDED.paused_at
       RETURNING quota_key
     )
     INSERT INTO flow_events (type, key, payload, run_id, occurred_at) SELECT $6, $7, $8, $9, $10 FROM paused RETURNING id`,
    [quota, key, health.breach, `email health (${health.scope} ${health.name})`, now, ...event.params],
  );
  return rows.length > 0;
}

/**
 * `flows quotas` under the mailbox quota: each domain's bounce and complaint rates over the
 * window, and each mailbox that had a bounce or a complaint, with the limits that pause them.
 * The rates the automatic pause reads, from the same counts.
 */
export const emailHealthRemarks: QuotaRemarkSource = async (db, config, now) => {
  const quota = mailboxQuota(config);
  if (!quota || !mailboxesOf(config).length) return [];
  const line = (h: SendingHealth) =>
    `${h.scope === 'domain' ? `domain ${h.name}` : h.name}: bounces ${percent(h.bounceRate)} (${h.bounces} of ${h.sent} sent), complaints ${percent(h.complaintRate)} (${h.complaints}) over ${HEALTH_WINDOW_DAYS} days` +
    (h.breach ? `: past the limit, ${h.breach}` : h.counted ? '' : ` (counted from ${MIN_SENDS} sent)`);
  return (await sendingHealth(db as Queryable, config, now))
    .filter((h) => h.scope === 'domain' || h.bounces > 0 || h.complaints > 0)
    .map((h) => ({ quota, ...(h.scope === 'mailbox' ? { key: h.name } : {}), text: line(h) }));
};
