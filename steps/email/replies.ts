import { createHash } from 'node:crypto';
import { type EngineConfig, errorMessage, type Queryable } from '../../engine/sdk.ts';
import { normalAddress } from './consent.ts';
import { pauseUnhealthy } from './health.ts';
import { type DsnRecipient, type InboundKind, type InboundMessage, parseInbound } from './inbound.ts';

/**
 * What mail that came back does: it is recorded once per mailbox and Message-ID
 * (email_inbound), matched to the email we sent, and then
 *
 * - a reply marks the prospect replied and stops every email of theirs still planned;
 * - an auto-reply counts for nothing: the sequence goes on;
 * - a bounce suppresses the address, marks the sent email bounced and stops the rest;
 * - a delay is a soft bounce: an event, nothing suppressed;
 * - a complaint suppresses the address and stops the rest.
 *
 * All of it is one SQL statement (data-modifying WITHs hanging off the insert), so it is
 * atomic on any connection, a step's or a page's, and a message read again does nothing.
 */

/** The sent email a message was matched to. */
export interface SentEmail {
  id: string;
  prospect_id: string;
  campaign: string;
  variant: string | null;
  mailbox: string | null;
  domain: string | null;
  address: string;
}

export type MatchedBy = 'in-reply-to' | 'references' | 'original-message-id' | 'sender';

export interface RecordedInbound {
  status: 'recorded';
  /** The email_inbound row. */
  id: string;
  kind: InboundKind;
  outbox?: SentEmail;
  matchedBy?: MatchedBy;
  /** Planned emails of the prospect stopped by it. */
  stopped: number;
  /** Addresses it put on the suppression list (not those already on it). */
  suppressed: string[];
}

const SENT_COLUMNS = 'id, prospect_id, campaign, variant, mailbox, domain, address';

/**
 * Our email this message answers or reports on: by In-Reply-To, then References (newest
 * first), then a report's original Message-ID; a reply or auto-reply that names none (some
 * clients drop them) falls back to the latest email sent to its sender, this mailbox's first.
 */
export async function sentEmailOf(db: Queryable, mailbox: string, msg: InboundMessage): Promise<{ row: SentEmail; by: MatchedBy } | undefined> {
  const wanted: [string, MatchedBy][] = [
    ...(msg.inReplyTo ? [[msg.inReplyTo, 'in-reply-to'] as [string, MatchedBy]] : []),
    ...[...msg.references].reverse().map((id): [string, MatchedBy] => [id, 'references']),
    ...(msg.originalMessageId ? [[msg.originalMessageId, 'original-message-id'] as [string, MatchedBy]] : []),
  ];
  if (wanted.length) {
    const rows = await db.query<SentEmail & { message_id: string }>(`SELECT ${SENT_COLUMNS}, message_id FROM email_outbox WHERE message_id = ANY($1::text[])`, [wanted.map(([id]) => id)]);
    for (const [id, by] of wanted) {
      const row = rows.find((r) => r.message_id === id);
      if (row) return { row: sentEmail(row), by };
    }
  }
  if ((msg.kind === 'reply' || msg.kind === 'auto_reply') && msg.from) {
    const [row] = await db.query<SentEmail>(
      `SELECT ${SENT_COLUMNS} FROM email_outbox WHERE address = $1 AND sent_at IS NOT NULL ORDER BY (mailbox = $2) DESC, sent_at DESC LIMIT 1`,
      [normalAddress(msg.from), normalAddress(mailbox)],
    );
    if (row) return { row: sentEmail(row), by: 'sender' };
  }
  return undefined;
}

const sentEmail = (r: SentEmail): SentEmail => ({ id: String(r.id), prospect_id: String(r.prospect_id), campaign: r.campaign, variant: r.variant, mailbox: r.mailbox, domain: r.domain, address: r.address });

/** Records one message that arrived at `mailbox` and does what its kind does, in one statement; 'seen' when it was recorded before. */
export async function recordInbound(db: Queryable, mailbox: string, msg: InboundMessage, now: Date, runId: string | null = null): Promise<RecordedInbound | 'seen'> {
  const at = normalAddress(mailbox);
  const match = await sentEmailOf(db, at, msg);
  const sent = match?.row;
  const effects = effectsOf(msg, sent, at);
  const [row] = await db.query<{ id: string; stopped: number; suppressed: string[] | null }>(RECORD, [
    at,
    msg.messageId,
    msg.kind,
    sent?.id ?? null,
    sent?.prospect_id ?? null,
    msg.from ?? null,
    msg.subject ? withoutNul(msg.subject) : null,
    withoutNul(JSON.stringify(detailOf(msg, match?.by))),
    now,
    JSON.stringify(effects.suppress),
    effects.replied ? sent!.prospect_id : null,
    effects.bounced ? sent!.id : null,
    effects.bounced ?? null,
    effects.stop && sent ? sent.prospect_id : null,
    effects.stop ?? null,
    withoutNul(JSON.stringify(effects.events)),
    runId,
  ]);
  if (!row) return 'seen';
  return { status: 'recorded', id: String(row.id), kind: msg.kind, ...(match ? { outbox: sent, matchedBy: match.by } : {}), stopped: Number(row.stopped), suppressed: row.suppressed ?? [] };
}

// Postgres runs every data-modifying WITH whether the final SELECT reads it or not; each joins
// `inbound`, so a message recorded before (no row inserted) changes nothing.
const RECORD = `
WITH inbound AS (
  INSERT INTO email_inbound (mailbox, message_id, kind, outbox_id, prospect_id, from_address, subject, detail, received_at)
  VALUES ($1, $2, $3, $4::uuid, $5::uuid, $6, $7, $8::jsonb, $9)
  ON CONFLICT (mailbox, message_id) DO NOTHING
  RETURNING id
), suppressed AS (
  INSERT INTO email_suppressions (address, reason, source, created_at)
  SELECT s.address, s.reason, s.source, $9 FROM inbound, jsonb_to_recordset($10::jsonb) AS s(address text, reason text, source text)
  ON CONFLICT (address) DO NOTHING
  RETURNING address
), replied AS (
  UPDATE prospects p SET replied_at = $9, reply_channel = 'email', updated_at = $9
    FROM inbound WHERE p.id = $11::uuid AND p.replied_at IS NULL
  RETURNING p.id
), bounced AS (
  UPDATE email_outbox o SET state = 'bounced', reason = $13
    FROM inbound WHERE o.id = $12::uuid AND o.state IN ('sent', 'in_doubt')
  RETURNING o.id
), stopped AS (
  UPDATE email_outbox o SET state = 'stopped', reason = $15
    FROM inbound WHERE o.prospect_id = $14::uuid AND o.state = 'planned' AND o.id IS DISTINCT FROM $12::uuid
  RETURNING o.id
), events AS (
  INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
  SELECT e.type, e.key, e.payload, $17, $9 FROM inbound, jsonb_to_recordset($16::jsonb) AS e(type text, key text, payload jsonb)
  RETURNING id
)
SELECT inbound.id, (SELECT count(*) FROM stopped)::int AS stopped,
       (SELECT array_agg(address ORDER BY address) FROM suppressed) AS suppressed
  FROM inbound`;

interface Effects {
  suppress: { address: string; reason: 'hard_bounce' | 'complaint'; source: string }[];
  replied?: boolean;
  /** The reason the sent email is marked bounced with. */
  bounced?: string;
  /** The reason the prospect's planned emails are stopped with. */
  stop?: 'replied' | 'bounced' | 'complained';
  events: { type: string; key: string | null; payload: Record<string, unknown> }[];
}

/** What a message of this kind changes, matched to `sent` (or to nothing). */
function effectsOf(msg: InboundMessage, sent: SentEmail | undefined, mailbox: string): Effects {
  const about = sent
    ? { outbox_id: sent.id, prospect_id: sent.prospect_id, campaign: sent.campaign, variant: sent.variant, mailbox: sent.mailbox ?? mailbox, domain: sent.domain ?? mailbox.split('@')[1] }
    : { outbox_id: null, prospect_id: null, mailbox, domain: mailbox.split('@')[1] };
  switch (msg.kind) {
    case 'reply':
      if (!sent) return { suppress: [], events: [] };
      return {
        suppress: [],
        replied: true,
        stop: 'replied',
        events: [{ type: 'email.replied', key: sent.prospect_id, payload: { prospect_id: sent.prospect_id, channel: 'email', campaign: sent.campaign, variant: sent.variant, mailbox: about.mailbox, domain: about.domain, outbox_id: sent.id } }],
      };
    case 'bounce': {
      const failed = msg.recipients.filter(isHardFailure);
      return {
        suppress: failed.map((r) => ({ address: r.address, reason: 'hard_bounce' as const, source: `dsn ${r.status ?? 'failed'}` })),
        bounced: sent ? `dsn ${failed[0]?.status ?? 'failed'}${failed[0]?.diagnostic ? `: ${failed[0].diagnostic}` : ''}`.slice(0, 500) : undefined,
        stop: sent ? 'bounced' : undefined,
        events: failed.map((r) => ({ type: 'email.bounced', key: r.address, payload: { kind: 'hard', address: r.address, status: r.status ?? null, diagnostic: r.diagnostic ?? null, remote_mta: r.remoteMta ?? null, ...about } })),
      };
    }
    case 'delay':
      return {
        suppress: [],
        events: msg.recipients
          .filter((r) => r.action === 'delayed' || r.action === 'failed')
          .map((r) => ({ type: 'email.bounced', key: r.address, payload: { kind: 'soft', address: r.address, action: r.action, status: r.status ?? null, diagnostic: r.diagnostic ?? null, ...about } })),
      };
    case 'complaint': {
      const address = msg.feedback?.recipient ?? sent?.address;
      return {
        suppress: address ? [{ address, reason: 'complaint', source: `feedback report (${msg.feedback?.type ?? 'abuse'})` }] : [],
        stop: sent ? 'complained' : undefined,
        events: [{ type: 'email.complained', key: address ?? null, payload: { address: address ?? null, feedback_type: msg.feedback?.type ?? null, ...about } }],
      };
    }
    default:
      return { suppress: [], events: [] };
  }
}

const isHardFailure = (r: DsnRecipient): boolean => r.action === 'failed' && !r.status?.startsWith('4');

function detailOf(msg: InboundMessage, matchedBy: MatchedBy | undefined): Record<string, unknown> {
  return {
    ...(msg.date ? { date: msg.date.toISOString() } : {}),
    ...(msg.inReplyTo ? { in_reply_to: msg.inReplyTo } : {}),
    ...(msg.references.length ? { references: msg.references } : {}),
    ...(msg.originalMessageId ? { original_message_id: msg.originalMessageId } : {}),
    ...(msg.recipients.length ? { recipients: msg.recipients } : {}),
    ...(msg.feedback ? { feedback: msg.feedback } : {}),
    ...(msg.reason ? { reason: msg.reason } : {}),
    ...(msg.problem ? { problem: msg.problem } : {}),
    ...(matchedBy ? { matched_by: matchedBy } : {}),
  };
}

/** Postgres text holds no NUL character; a header may. */
const withoutNul = (text: string): string => text.replace(/\u0000|\\u0000/g, '');

export interface ReceivedInbound {
  status: 'recorded' | 'seen';
  kind: InboundKind;
  messageId: string;
  recorded?: RecordedInbound;
  /** Quota keys (mailboxes) this message's bounce or complaint paused. */
  paused: string[];
}

/**
 * One raw message that arrived at `mailbox`, parsed and recorded; after a bounce or a
 * complaint, the mailbox's and its domain's rates are checked (and the mailboxes paused past
 * a line). A message no parser reads is recorded as kind other with its problem, so one bad
 * message never holds up the ones after it.
 */
export async function receiveInbound(db: Queryable, config: EngineConfig, mailbox: string, raw: Buffer, now: Date, runId: string | null = null): Promise<ReceivedInbound> {
  const msg = await parseInbound(raw).catch((err: unknown) => unreadable(raw, err));
  const recorded = await recordInbound(db, mailbox, msg, now, runId);
  if (recorded === 'seen') return { status: 'seen', kind: msg.kind, messageId: msg.messageId, paused: [] };
  const paused = msg.kind === 'bounce' || msg.kind === 'complaint' ? await pauseUnhealthy(db, config, recorded.outbox?.mailbox ?? mailbox, now, runId) : [];
  return { status: 'recorded', kind: msg.kind, messageId: msg.messageId, recorded, paused };
}

function unreadable(raw: Buffer, err: unknown): InboundMessage {
  return { kind: 'other', messageId: `sha256:${createHash('sha256').update(raw).digest('hex')}`, references: [], recipients: [], problem: `unreadable: ${errorMessage(err)}` };
}
