import { Type } from '@sinclair/typebox';
import type { EmailMessage, EmailSender } from '../../connectors/smtp/client.ts';
import { smtpConnector } from '../../connectors/smtp/connector.ts';
import { Batcher, DeferredError, defineStep, type EngineConfig, errorMessage, NonRetriableError, type Queryable, SkipItemError, type StepContext } from '../../engine/sdk.ts';
import { firstName, insightOf } from '../prospects/insight.ts';
import { publicBase } from '../report/publish.ts';
import type { SuppressionReason } from '../tables.ts';
import { type CampaignEmail, CampaignEmailSchema } from './campaign.ts';
import { emailComposerResource } from './compose.ts';
import { hardBounceOf, normalAddress, recordHardBounce, suppressionOf, unsubscribeHeaders } from './consent.ts';
import { checkLinkTargets, landingPageUrl, type LinkRow, type LinkTarget, linkRowsInsert, linkRowsParams, linkUrls } from './links.ts';
import { mailersResource } from './mailers.ts';
import { messageIdFor } from './message-id.ts';
import { type Mailbox, mailboxOf } from './settings.ts';

/**
 * `email.deliver`: sends one planned email of a campaign (an item of email.campaign's output)
 * from its mailbox: the teaser's for a follow-up, in the teaser's thread; for a teaser, the
 * one the quota's rotation picked. The email is composed from its MJML template with signed
 * links (the report offer, a honeypot, the unsubscribe page), carries List-Unsubscribe with
 * one-click, a Message-ID derived from its idempotency key and a DKIM signature of its
 * domain, and is checked against the suppression list at the moment it goes. A follow-up
 * due later today (its delay after the teaser) waits for that time, holding no slot.
 *
 * What the receiving server answers decides the rest: 5xx for the recipient is a hard bounce
 * (suppressed, the sequence stopped); 4xx is a soft bounce, tried again later (a few times
 * over about a day: the mailbox's slot is given back meanwhile) and then given up. A sent
 * email and its `email.sent` event are recorded in one transaction.
 *
 * An answer to a request (email.follow_up's report-ready) gives `report_url`: its report link
 * is then the report itself, not the landing page; and `sent_event`, recorded with email.sent
 * in the same transaction (email.follow_up_sent).
 */

/** Waits after the 1st, 2nd and 3rd soft bounce; a 4th gives up (about 14 hours in all). */
export const SOFT_BOUNCE_WAITS_MS = [30 * 60_000, 2 * 3_600_000, 12 * 3_600_000];

const Input = Type.Object(
  {
    email: CampaignEmailSchema,
    tracking_pixel: Type.Optional(Type.Boolean({ default: false, description: 'Adds an open-tracking image. Off by default: remote images hurt cold deliverability.' })),
    report_url: Type.Optional(
      Type.String({ pattern: '^https?://', 'x-hint': 'an http(s) URL, like report.render\'s output.url', description: 'The report itself as links.report (an email that delivers a report asked for), instead of the landing page.' }),
    ),
    sent_event: Type.Optional(
      Type.String({ pattern: '^[a-z][a-z0-9_.-]*$', description: 'An event recorded besides email.sent, in the same transaction and with the same payload (e.g. email.follow_up_sent).' }),
    ),
  },
  { additionalProperties: false },
);

interface DeliverOptions {
  tracking_pixel?: boolean;
  report_url?: string;
  sent_event?: string;
}

type DeliverInput = CampaignEmail & DeliverOptions;

const flat = ({ email, ...options }: { email: CampaignEmail } & DeliverOptions): DeliverInput => ({ ...email, ...options });

interface ProspectRow {
  state: string;
  /** Not sent before this: a follow-up waits for its delay after the teaser. */
  due_at: Date | string;
  reason: string | null;
  soft_bounces: number;
  company_name: string | null;
  contact_name: string | null;
  domain: string | null;
  category: string | null;
  category_reason: string | null;
  metrics: Record<string, unknown> | null;
}

/** The mailbox this email goes from: the thread's, or the one the rotation picked. */
function mailboxFor(ctx: StepContext, input: DeliverInput): Mailbox {
  const address = input.mailbox || ctx.quotaKey;
  if (!address) throw new NonRetriableError('no mailbox to send from: give the step quota: mailbox (a quota with keys_from: email.mailboxes and pick: idle_longest)');
  return mailboxOf(ctx.config, address);
}


async function prospectOf(db: Queryable, input: DeliverInput): Promise<ProspectRow> {
  const [row] = await db.query<ProspectRow>(
    `SELECT o.state, o.due_at, o.reason, o.soft_bounces, p.company_name, p.contact_name, p.domain, p.category, p.category_reason, p.metrics
       FROM email_outbox o JOIN prospects p ON p.id = o.prospect_id WHERE o.id = $1`,
    [input.outbox_id],
  );
  if (!row) throw new SkipItemError('its outbox row is gone');
  return row;
}

interface SendRow extends ProspectRow {
  /** Why the address must not get email, when it is on the suppression list. */
  suppressed: SuppressionReason | null;
  /** The address's row id (its unsubscribe links carry it); null when the email does not go. */
  address_id: string | number | null;
  /** The email's link rows, made by this statement on the first try; none when it does not go. */
  links: LinkRow[];
}

/** What prepareSend reads and makes for one email. */
interface SendRequest {
  outboxId: string;
  address: string;
  targets: LinkTarget[];
  now: Date;
}

type PreparedRow = Omit<SendRow, 'links'> & { n: number; link_purposes: string[] | null; link_ids: (string | number)[] | null; link_times: (Date | string)[] | null };

/**
 * Everything a send reads and makes before it goes, in one statement for the emails of
 * concurrent sends: each outbox row and its prospect, whether the address is suppressed and,
 * only when the email is planned, due by its send's `now` and not suppressed, the address's id
 * and the email's link rows (made on first use).
 */
const PREPARE = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS i(outbox_id, address, now, n)
), email AS (
  SELECT i.n, i.address AS to_address, i.now, o.id, o.state, o.due_at, o.reason, o.soft_bounces,
         p.company_name, p.contact_name, p.domain, p.category, p.category_reason, p.metrics,
         (SELECT reason FROM email_suppressions s WHERE s.address = i.address) AS suppressed
    FROM input i JOIN email_outbox o ON o.id = i.outbox_id JOIN prospects p ON p.id = o.prospect_id
), sendable AS (
  SELECT id, n, now, to_address FROM email WHERE state = 'planned' AND suppressed IS NULL AND due_at <= now
), address AS (
  INSERT INTO email_addresses (address) SELECT DISTINCT to_address FROM sendable
  ON CONFLICT (address) DO UPDATE SET address = EXCLUDED.address RETURNING id, address
), links AS (${linkRowsInsert('sendable', 4)})
SELECT e.n, e.id, e.state, e.due_at, e.reason, e.soft_bounces, e.company_name, e.contact_name, e.domain, e.category, e.category_reason, e.metrics, e.suppressed,
       (SELECT a.id FROM address a JOIN sendable s ON s.to_address = a.address WHERE s.n = e.n) AS address_id,
       (SELECT array_agg(l.purpose ORDER BY l.purpose) FROM links l WHERE l.outbox_id = e.id) AS link_purposes,
       (SELECT array_agg(l.id ORDER BY l.purpose) FROM links l WHERE l.outbox_id = e.id) AS link_ids,
       (SELECT array_agg(l.created_at ORDER BY l.purpose) FROM links l WHERE l.outbox_id = e.id) AS link_times
  FROM email e`;

async function prepareTogether(db: Queryable, batch: readonly SendRequest[]): Promise<(SendRow | undefined)[]> {
  const rows = await db.query<PreparedRow>(PREPARE, [
    batch.map((r) => r.outboxId),
    batch.map((r) => normalAddress(r.address)),
    batch.map((r) => r.now.toISOString()),
    ...linkRowsParams(batch.map((r) => r.targets)),
  ]);
  const byNumber = new Map(rows.map((row) => [Number(row.n), row]));
  return batch.map((_, i) => {
    const row = byNumber.get(i + 1);
    if (!row) return undefined;
    const { n: _n, link_purposes, link_ids, link_times, ...rest } = row;
    return { ...rest, links: (link_purposes ?? []).map((purpose, j) => ({ purpose, id: link_ids![j]!, created_at: link_times![j]! })) };
  });
}

/** A batcher per database, for statements concurrent sends share. */
function batcherOn<P, R>(cache: WeakMap<Queryable, Batcher<P, R>>, db: Queryable, commit: (db: Queryable, batch: readonly P[]) => Promise<R[]>, keyOf?: (item: P) => string): Batcher<P, R> {
  let batcher = cache.get(db);
  if (!batcher) cache.set(db, (batcher = new Batcher({ commit: (batch) => commit(db, batch), parallel: 1, keyOf })));
  return batcher;
}

const preparers = new WeakMap<Queryable, Batcher<SendRequest, SendRow | undefined>>();

async function prepareSend(db: Queryable, input: DeliverInput, targets: LinkTarget[], now: Date): Promise<SendRow> {
  checkLinkTargets(targets);
  const row = await batcherOn(preparers, db, prepareTogether, (r) => r.outboxId).submit({ outboxId: input.outbox_id, address: input.address, targets, now });
  if (!row) throw new SkipItemError('its outbox row is gone');
  return row;
}

interface Composed {
  mailbox: Mailbox;
  message: EmailMessage;
}

async function compose(ctx: StepContext, input: DeliverInput, prospect: ProspectRow, links: { report: string; honeypot: string; unsubscribe: string }, unsubscribe: Record<string, string>): Promise<Composed> {
  const business = ctx.config.business;
  if (!business?.address) throw new NonRetriableError('every email carries a physical address: set business.address in the config');
  const mailbox = mailboxFor(ctx, input);
  const composer = await ctx.use(emailComposerResource);
  const data = {
    prospect: {
      company_name: prospect.company_name ?? prospect.domain ?? '',
      contact_name: prospect.contact_name ?? '',
      first_name: firstName(prospect.contact_name),
      domain: prospect.domain ?? '',
      category: prospect.category ?? '',
      category_reason: prospect.category_reason ?? '',
      metrics: prospect.metrics ?? {},
    },
    insight: insightOf(prospect.category, prospect.metrics),
    links,
    business: { name: business.name, address: business.address },
    sender: { name: mailbox.name, email: mailbox.address },
    thread_subject: input.thread_subject ?? '',
    tracking_pixel: input.tracking_pixel ? `${publicBase(ctx.config)}/o/${links.report.split('/').pop()}.gif` : '',
  };
  const content = await composer.render(input.template, input.subject, data);
  const messageId = messageIdFor(input.idempotency_key, mailbox.domain);
  return {
    mailbox,
    message: {
      from: { name: mailbox.name, email: mailbox.address },
      to: prospect.contact_name ? { name: prospect.contact_name, email: input.address } : input.address,
      subject: content.subject,
      html: content.html,
      text: content.text,
      headers: unsubscribe,
      messageId,
      ...(input.thread_message_id ? { inReplyTo: input.thread_message_id, references: [input.thread_message_id] } : {}),
    },
  };
}

/** A sent email as recordSent writes it. */
interface SentRecord {
  outboxId: string;
  mailbox: string;
  domain: string;
  messageId: string;
  subject: string;
  at: string;
  prospectId: string;
  payload: string;
  runId: string;
  types: string[];
}

/**
 * The sent emails of concurrent sends, recorded together: each email's outbox row and its
 * events in one statement (so neither is ever recorded without the other), one statement for
 * all that arrive while the last one runs.
 */
const SENT = `
WITH v AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], $9::text[])
    WITH ORDINALITY AS v(id, mailbox, domain, message_id, subject, at, key, payload, run_id, n)
), sent AS (
  UPDATE email_outbox o SET state = 'sent', mailbox = v.mailbox, domain = v.domain, message_id = v.message_id, subject = v.subject, sent_at = v.at, reason = NULL
    FROM v WHERE o.id = v.id RETURNING o.id
)
INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
SELECT t.type, v.key, v.payload::jsonb, v.run_id, v.at
  FROM unnest($10::int[], $11::text[]) WITH ORDINALITY AS t(n, type, m) JOIN v ON v.n = t.n JOIN sent ON sent.id = v.id
 ORDER BY t.m`;

const sentRecorders = new WeakMap<Queryable, Batcher<SentRecord, void>>();

function recordSentTogether(db: Queryable, batch: readonly SentRecord[]): Promise<void[]> {
  const col = <K extends keyof SentRecord>(k: K) => batch.map((r) => r[k]);
  const types = batch.flatMap((r, i) => r.types.map((type) => ({ n: i + 1, type })));
  const params = [col('outboxId'), col('mailbox'), col('domain'), col('messageId'), col('subject'), col('at'), col('prospectId'), col('payload'), col('runId')];
  return db.query(SENT, [...params, types.map((t) => t.n), types.map((t) => t.type)]).then(() => batch.map(() => undefined));
}

/** The sent email and its events (email.sent, and sent_event when given). */
async function recordSent(ctx: StepContext, input: DeliverInput, mailbox: Mailbox, messageId: string, subject: string): Promise<void> {
  const now = ctx.clock.now();
  const payload = {
    prospect_id: input.prospect_id,
    channel: 'email',
    campaign: input.campaign,
    variant: input.variant,
    sequence_step: input.sequence_step,
    mailbox: mailbox.address,
    domain: mailbox.domain,
    outbox_id: input.outbox_id,
    message_id: messageId,
    ...(input.report_url ? { report_url: input.report_url } : {}),
  };
  await batcherOn(sentRecorders, ctx.db, recordSentTogether).submit({
    outboxId: input.outbox_id,
    mailbox: mailbox.address,
    domain: mailbox.domain,
    messageId,
    subject,
    at: now.toISOString(),
    prospectId: input.prospect_id,
    payload: JSON.stringify(payload),
    runId: ctx.run.id,
    types: ['email.sent', ...(input.sent_event ? [input.sent_event] : [])],
  });
}

/** A refusal for now (4xx): tried again later, a bounded number of times; the last gives up. */
// One statement: the count, the row given up once the waits are used up, and the event that
// says which attempt it was, so a crash between them cannot count a bounce without its event.
const SOFT_BOUNCE = `
WITH counted AS (
  UPDATE email_outbox SET soft_bounces = soft_bounces + 1,
         state = CASE WHEN soft_bounces + 1 > $3 THEN 'bounced' ELSE state END,
         reason = CASE WHEN soft_bounces + 1 > $3 THEN 'soft bounce ' || $2 || ', ' || (soft_bounces + 1) || ' times' ELSE 'soft bounce ' || $2 END
   WHERE id = $1 RETURNING soft_bounces
)
INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
SELECT 'email.bounced', $4, $5::jsonb || jsonb_build_object('attempt', c.soft_bounces, 'final', c.soft_bounces > $3), $6, $7 FROM counted c
RETURNING (payload->>'attempt')::int AS attempt`;

async function softBounce(ctx: StepContext, input: DeliverInput, mailbox: Mailbox, err: unknown, code: number): Promise<never> {
  const now = ctx.clock.now();
  const payload = { prospect_id: input.prospect_id, channel: 'email', campaign: input.campaign, variant: input.variant, mailbox: mailbox.address, domain: mailbox.domain, outbox_id: input.outbox_id, kind: 'soft', code };
  const [row] = await ctx.db.query<{ attempt: number }>(SOFT_BOUNCE, [input.outbox_id, String(code), SOFT_BOUNCE_WAITS_MS.length, input.prospect_id, JSON.stringify(payload), ctx.run.id, now]);
  const n = row?.attempt ?? 1;
  if (n > SOFT_BOUNCE_WAITS_MS.length) throw new SkipItemError(`soft bounce (${code}) ${n} times: given up`, { cause: err });
  const until = new Date(now.getTime() + SOFT_BOUNCE_WAITS_MS[n - 1]!);
  throw new DeferredError(`soft bounce (${code}) from the receiving server: tried again at ${until.toISOString()}`, until, { cause: err });
}

const temporaryCode = (err: unknown): number | undefined => {
  for (let e = err as { cause?: unknown; responseCode?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.responseCode === 'number' && e.responseCode >= 400 && e.responseCode < 500) return e.responseCode;
  }
  return undefined;
};

async function senderFor(ctx: StepContext, mailbox: Mailbox): Promise<EmailSender> {
  const mailers = await ctx.use(mailersResource);
  return mailers.ownServer(mailbox) ?? (await ctx.use(smtpConnector));
}

const placeholderLinks = (config: EngineConfig) => {
  const base = publicBase(config);
  return { report: `${base}/c/(signed-at-send)`, honeypot: `${base}/c/(signed-at-send)`, unsubscribe: `${base}/u/(signed-at-send)` };
};

/** The headers a dry run shows: every one the send sets, with the signed parts named. */
function headerText(message: EmailMessage, mailbox: Mailbox, dkim: string): string {
  const to = typeof message.to === 'string' ? message.to : Array.isArray(message.to) ? '' : `${message.to.name ?? ''} <${message.to.email}>`;
  const lines = [
    `From: ${message.from.name} <${message.from.email}>`,
    `To: ${to}`,
    `Subject: ${message.subject}`,
    `Message-ID: ${message.messageId}`,
    ...(message.inReplyTo ? [`In-Reply-To: ${message.inReplyTo}`, `References: ${(message.references ?? []).join(' ')}`] : []),
    ...Object.entries(message.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    `DKIM-Signature: ${dkim}`,
    `X-Mailbox: ${mailbox.address} (${mailbox.domain})`,
  ];
  return `${lines.join('\n')}\n`;
}

export const emailDeliver = defineStep({
  type: 'email.deliver',
  description: "Sends one planned campaign email (an item of email.campaign's output) from its mailbox, with signed links, one-click unsubscribe and DKIM; hard and soft bounces handled.",
  input: Input,
  output: Type.Object({
    message_id: Type.String(),
    mailbox: Type.String(),
    domain: Type.String(),
    response: Type.String(),
  }),
  effect: {
    kind: () => 'email',
    describe: ({ email: input }) => ({
      summary: `${input.sequence_step} of ${input.campaign} to ${input.address}`,
      identity: { to: input.address, outbox: input.outbox_id, message_id: messageIdFor(input.idempotency_key, "(its mailbox's domain)") },
    }),
    async plan(ctx, given) {
      const input = flat(given);
      const suppressed = await suppressionOf(ctx.db, input.address);
      if (suppressed) throw new SkipItemError(`suppressed (${suppressed})`);
      const prospect = input.outbox_id.startsWith('(planned')
        ? await plannedProspect(ctx.db, input)
        : await prospectOf(ctx.db, input);
      const links = { ...placeholderLinks(ctx.config), ...(input.report_url ? { report: input.report_url } : {}) };
      const domain = mailboxFor(ctx, input).domain;
      const headers = { 'List-Unsubscribe': `<${links.unsubscribe}>, <mailto:unsubscribe@${domain}?subject=unsubscribe%20(token)>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' };
      const { message, mailbox } = await compose(ctx, input, prospect, links, headers);
      const dkim = mailbox.dkim ? `d=${mailbox.domain}; s=${mailbox.dkim.selector}; h=From:To:Subject:Date:Message-ID:...:List-Unsubscribe:List-Unsubscribe-Post (signed at send)` : '(none: the domain has no dkim)';
      return {
        summary: `${input.sequence_step} of ${input.campaign} to ${input.address} from ${mailbox.address}: ${message.subject}`,
        output: { message_id: message.messageId!, mailbox: mailbox.address, domain: mailbox.domain, response: '(dry run)' },
        artifacts: [
          { name: 'email.html', content: message.html },
          { name: 'email.txt', content: `${headerText(message, mailbox, dkim)}\n${message.text}` },
        ],
      };
    },
  },
  async run(ctx, given) {
    const input = flat(given);
    const now = ctx.clock.now();
    const landing = landingPageUrl(ctx.config, input.outbox_id, now);
    // An email delivering the report links to it directly; any other offers it through the landing page.
    const targets = [...(input.report_url ? [] : [{ purpose: 'report', target: landing }]), { purpose: 'honeypot', target: landing }];
    const prospect = await prepareSend(ctx.db, input, targets, now);
    if (prospect.state !== 'planned') throw new SkipItemError(`${prospect.state}${prospect.reason ? ` (${prospect.reason})` : ''}`);
    if (prospect.suppressed) {
      await ctx.db.query("UPDATE email_outbox SET state = 'stopped', reason = $2 WHERE id = $1", [input.outbox_id, prospect.suppressed]);
      throw new SkipItemError(`suppressed (${prospect.suppressed})`);
    }
    const due = new Date(prospect.due_at);
    if (due > now) throw new DeferredError(`${input.sequence_step} is due at ${due.toISOString()}, its delay after the teaser`, due);
    const mailbox = mailboxFor(ctx, input);
    const signed = linkUrls(ctx.config, prospect.links);
    const unsubscribe = unsubscribeHeaders(ctx.config, mailbox.domain, String(prospect.address_id), now);
    const unsubscribeUrl = /<(https?:[^>]+)>/.exec(unsubscribe['List-Unsubscribe']!)![1]!;
    const { message } = await compose(ctx, input, prospect, { report: input.report_url ?? signed.report!, honeypot: signed.honeypot!, unsubscribe: unsubscribeUrl }, unsubscribe);
    const mailers = await ctx.use(mailersResource);
    const dkim = mailers.dkim(mailbox);
    if (dkim) message.dkim = dkim;
    const sender = await senderFor(ctx, mailbox);
    let result;
    try {
      result = await sender.send(message, { signal: ctx.signal });
    } catch (err) {
      const bounce = hardBounceOf(err, input.address);
      if (bounce) {
        await recordHardBounce(ctx.db, input.address, bounce, ctx.run.id, ctx.clock.now());
        await ctx.db.query("UPDATE email_outbox SET state = 'bounced', reason = $2, mailbox = $3, domain = $4 WHERE id = $1", [input.outbox_id, `hard bounce ${bounce.code}`, mailbox.address, mailbox.domain]);
        throw new SkipItemError(`hard bounce (${bounce.code}): the address is suppressed`, { cause: err });
      }
      const code = temporaryCode(err);
      if (code !== undefined) await softBounce(ctx, input, mailbox, err, code);
      throw err;
    }
    await recordSent(ctx, input, mailbox, result.messageId, message.subject);
    return { message_id: result.messageId, mailbox: mailbox.address, domain: mailbox.domain, response: result.response };
  },
});

/**
 * Sends a person confirmed (`flows effects resolve <key> --happened` after a crash mid-send):
 * the engine will never perform them again, so their outbox rows would stay planned and their
 * threads would never go on. Each is recorded as its send would have: from the mailbox its
 * reservation took, with the subject rendered as then, its Message-ID, at the time it was
 * reserved, with email.sent (marked `confirmed`). Returns the emails that still need a send.
 */
export async function settleConfirmedSends(ctx: StepContext, emails: CampaignEmail[]): Promise<CampaignEmail[]> {
  if (!emails.length) return emails;
  const confirmed = await ctx.db.query<{ idempotency_key: string; reserved_at: Date | string; quota_key: string | null }>(
    `SELECT k.key AS idempotency_key, f.reserved_at, (SELECT q.quota_key FROM flow_quota_ledger q WHERE q.effect_key = f.key LIMIT 1) AS quota_key
       FROM unnest($1::text[]) AS k(key)
       JOIN flow_effects f ON f.status = 'done' AND f.output->>'resolved' = 'happened' AND right(f.key, length(k.key) + 1) = ':' || k.key`,
    [emails.map((e) => e.idempotency_key)],
  );
  if (!confirmed.length) return emails;
  const byKey = new Map(confirmed.map((c) => [c.idempotency_key, c]));
  for (const email of emails.filter((e) => byKey.has(e.idempotency_key))) {
    const c = byKey.get(email.idempotency_key)!;
    const input: DeliverInput = { ...email, mailbox: email.mailbox || c.quota_key || '' };
    if (!input.mailbox) {
      ctx.log.warn({ key: email.idempotency_key }, 'a send confirmed by a person has no mailbox on record: left planned');
      continue;
    }
    let composed: Composed;
    try {
      composed = await compose(ctx, input, await prospectOf(ctx.db, input), placeholderLinks(ctx.config), {});
    } catch (err) {
      // One record never fails the day: it stays planned, listed in the log for a person.
      ctx.log.warn({ key: email.idempotency_key, err: errorMessage(err) }, 'a send confirmed by a person could not be recorded: left planned');
      continue;
    }
    const { message, mailbox } = composed;
    const at = new Date(c.reserved_at);
    const payload = { prospect_id: input.prospect_id, channel: 'email', campaign: input.campaign, variant: input.variant, sequence_step: input.sequence_step, mailbox: mailbox.address, domain: mailbox.domain, outbox_id: input.outbox_id, message_id: message.messageId, confirmed: 'flows effects resolve --happened' };
    await ctx.db.query(
      `WITH sent AS (
         UPDATE email_outbox SET state = 'sent', mailbox = $2, domain = $3, message_id = $4, subject = $5, sent_at = $6, reason = 'a person confirmed it was sent' WHERE id = $1 AND state = 'planned' RETURNING id
       )
       INSERT INTO flow_events (type, key, payload, run_id, occurred_at) SELECT 'email.sent', $7, $8, $9, $6 FROM sent`,
      [input.outbox_id, mailbox.address, mailbox.domain, message.messageId, message.subject, at, input.prospect_id, JSON.stringify(payload), ctx.run.id],
    );
  }
  ctx.note(`${byKey.size} emails a person confirmed as sent (flows effects resolve --happened) recorded as sent`);
  return emails.filter((e) => !byKey.has(e.idempotency_key));
}

/** A dry run's email for a row not written yet: the prospect's data as the run would read it. */
async function plannedProspect(db: Queryable, input: DeliverInput): Promise<ProspectRow> {
  const [row] = await db.query<ProspectRow>(
    "SELECT 'planned' AS state, now() AS due_at, NULL AS reason, 0 AS soft_bounces, company_name, contact_name, domain, category, category_reason, metrics FROM prospects WHERE id = $1",
    [input.prospect_id],
  );
  if (!row) throw new SkipItemError('the prospect is gone');
  return row;
}
