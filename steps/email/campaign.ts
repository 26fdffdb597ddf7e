import { type Static, Type } from '@sinclair/typebox';
import {
  DURATION_PATTERN,
  defineStep,
  NonRetriableError,
  parseDuration,
  parseExpression,
  evaluate,
  periodAt,
  type Queryable,
  type StepContext,
} from '../../engine/sdk.ts';
import { chooseVariant } from './compose.ts';

/**
 * `email.campaign`: the day's emails of a campaign, written to the outbox. A campaign is a
 * sequence the pipeline's YAML declares: the teaser, then follow-ups some days after it, each
 * with its own templates and A/B variants. Each day:
 *
 * - follow-ups that fall due today (their time after the teaser comes today or came, the step
 *   before went, and nothing stops them: a click or a reply unless the step says otherwise; an
 *   unsubscribe, a bounce or a complaint always) get their outbox row, from the teaser's
 *   mailbox and in its thread, due no sooner than that time; each mailbox takes as many as its
 *   room today, longest due first, and the rest wait for the next day;
 * - new prospects get their teaser, best score first, as many as `daily` less those already
 *   planned today, and never more than the mailboxes have room for after the follow-ups;
 * - planned rows of prospects who replied, clicked, unsubscribed or bounced since are stopped.
 *
 * One outbox row per (campaign, prospect, sequence step), holding the idempotency key its send
 * is reserved under: a rerun, a resumed run or a second machine plans nobody twice. The
 * output lists every email to send, with what its send needs, so a resumed run keeps the
 * sequence it started with even when the YAML has changed since. A dry run writes nothing
 * and lists the same emails.
 */

const NAME = '^[a-z][a-z0-9_-]*$';
const nameHint = { 'x-hint': 'a name is lower-case letters, digits, dashes and underscores, starting with a letter' };

const Variant = Type.Object(
  {
    name: Type.String({ pattern: NAME, ...nameHint, description: 'The variant as reports count it: a, b, short-subject ...' }),
    weight: Type.Optional(Type.Number({ minimum: 0, description: 'Share of prospects that get it, against the other weights (default 1).' })),
    template: Type.String({
      pattern: '^[a-z0-9{][a-z0-9_{}-]*$',
      'x-hint': 'a template is a file name in templates/emails without .mjml, where {category} stands for the prospect\'s category, e.g. teaser-{category}-a',
      description: 'The MJML template in templates/emails (without .mjml); {category} is replaced by the prospect\'s category, e.g. teaser-{category}-a.',
    }),
    subject: Type.String({ minLength: 1, maxLength: 200, description: 'Liquid over prospect, insight and thread_subject, e.g. "{{ prospect.company_name }}\'s search traffic" or "Re: {{ thread_subject }}".' }),
  },
  { additionalProperties: false },
);

const SequenceStep = Type.Object(
  {
    name: Type.String({ pattern: NAME, ...nameHint, description: 'The step as the outbox and reports name it: teaser, follow-up-1 ...' }),
    after: Type.Optional(
      Type.String({ pattern: DURATION_PATTERN, 'x-hint': 'a duration, like "3d" or "72h"', description: 'For a follow-up: how long after the teaser went, e.g. "3d". The first step has none.' }),
    ),
    unless: Type.Optional(
      Type.Array(Type.Union([Type.Literal('clicked'), Type.Literal('replied')]), {
        uniqueItems: true,
        description: 'What stops this follow-up besides an unsubscribe, a bounce or a complaint (default: clicked and replied).',
      }),
    ),
    variants: Type.Array(Variant, { minItems: 1, description: 'Its A/B variants; a prospect\'s variant is chosen from its id, the same on every run.' }),
  },
  { additionalProperties: false },
);

const Input = Type.Object(
  {
    campaign: Type.String({ pattern: NAME, ...nameHint, description: 'The campaign\'s name: attribution, and one sequence per prospect per campaign.' }),
    daily: Type.Integer({ minimum: 0, description: 'New teasers a day (follow-ups due come on top, within the mailboxes\' room).' }),
    quota: Type.Optional(Type.String({ default: 'mailbox', description: 'The quota the mailboxes send under: the day\'s emails never exceed its room today.' })),
    not_emailed_within: Type.Optional(Type.String({ pattern: DURATION_PATTERN, default: '90d', 'x-hint': 'a duration, like "90d"', description: 'A prospect emailed by any campaign this recently gets no teaser.' })),
    score: Type.Optional(
      Type.String({
        default: 'metrics.organic_traffic ?? 0',
        description: 'Bare expression over metrics and prospect (company_name, has_email): higher goes first.',
      }),
    ),
    sequence: Type.Array(SequenceStep, { minItems: 1, description: 'The teaser, then the follow-ups in order.' }),
  },
  { additionalProperties: false },
);

export const CampaignEmailSchema = Type.Object({
  outbox_id: Type.String(),
  idempotency_key: Type.String(),
  prospect_id: Type.String(),
  address: Type.String(),
  sequence_step: Type.String(),
  step_index: Type.Integer(),
  variant: Type.String(),
  template: Type.String(),
  subject: Type.String({ description: 'The subject\'s Liquid, rendered at the send.' }),
  /** The teaser's mailbox for a follow-up; '' for a teaser (the rotation picks). */
  mailbox: Type.String(),
  thread_message_id: Type.Union([Type.String(), Type.Null()]),
  thread_subject: Type.Union([Type.String(), Type.Null()]),
  campaign: Type.String(),
  timezone: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: "The recipient's IANA timezone when known: the pipeline's quota_timezone reads the sending window there." })),
});

export type CampaignEmail = Static<typeof CampaignEmailSchema>;
type CampaignInput = Static<typeof Input>;

const Output = Type.Object({
  emails: Type.Array(CampaignEmailSchema),
  counts: Type.Object({ follow_ups: Type.Integer(), teasers: Type.Integer(), stopped: Type.Integer(), room: Type.Integer(), audience: Type.Integer() }),
});

interface Prospect {
  id: string;
  email: string;
  domain: string | null;
  company_name: string | null;
  category: string;
  metrics: Record<string, unknown> | null;
  timezone: string | null;
}

interface DueFollowUp {
  prospect_id: string;
  address: string;
  mailbox: string;
  domain: string;
  thread_message_id: string;
  thread_subject: string | null;
  category: string | null;
  timezone: string | null;
  /** When the teaser went: the follow-up is due its step's `after` later. */
  sent_at: Date;
}

function checkSequence(input: CampaignInput): void {
  const [first, ...rest] = input.sequence;
  if (first!.after !== undefined) throw new NonRetriableError(`sequence step ${first!.name}: the first step is the teaser and has no "after"`);
  const names = new Set<string>();
  let last = 0;
  for (const step of input.sequence) {
    if (names.has(step.name)) throw new NonRetriableError(`sequence step ${step.name} is named twice`);
    names.add(step.name);
  }
  for (const step of rest) {
    const after = step.after === undefined ? undefined : parseDuration(step.after);
    if (after === undefined) throw new NonRetriableError(`sequence step ${step.name}: a follow-up says how long after the teaser it goes (after: "3d")`);
    if (after <= last) throw new NonRetriableError(`sequence step ${step.name}: after ${step.after} comes no later than the step before it`);
    last = after;
  }
}

/**
 * The step_index of an email written by email.follow_up: an answer to a prospect's request,
 * not a step of the sequence. The daily plan neither stops it (the prospect clicked: that is
 * why it exists) nor takes it to send; the run that wrote it sends it.
 */
export const REPLY_STEP_INDEX = -1;

/** The template file a variant names for a prospect's category. */
export const templateFor = (template: string, category: string | null): string => template.replaceAll('{category}', category ?? 'growth');

/** A prospect's variant of a sequence step: the same on every run (from its id, the campaign and the step). */
function variantOf(input: CampaignInput, stepIndex: number, prospectId: string) {
  const step = input.sequence[stepIndex]!;
  return chooseVariant(`${input.campaign}\u001f${step.name}\u001f${prospectId}`, step.variants);
}

/** Planned rows of prospects who have since replied, clicked, unsubscribed or bounced: stopped, with the reason. */
async function stopSequences(db: Queryable, input: CampaignInput, dryRun: boolean): Promise<number> {
  const stops = `CASE
      WHEN p.replied_at IS NOT NULL THEN 'replied'
      WHEN s.reason IS NOT NULL THEN s.reason
      WHEN EXISTS (SELECT 1 FROM email_outbox b WHERE b.prospect_id = o.prospect_id AND b.state = 'bounced') THEN 'bounced'
      WHEN o.step_index > 0 AND EXISTS (SELECT 1 FROM flow_events e WHERE e.type = 'email.clicked' AND e.key = o.prospect_id::text) THEN 'clicked'
    END`;
  const from = `FROM email_outbox o JOIN prospects p ON p.id = o.prospect_id LEFT JOIN email_suppressions s ON s.address = o.address
    WHERE o.campaign = $1 AND o.state = 'planned' AND o.step_index >= 0`;
  if (dryRun) {
    const [row] = await db.query<{ n: number }>(`SELECT count(*)::int AS n ${from} AND ${stops} IS NOT NULL`, [input.campaign]);
    return row?.n ?? 0;
  }
  const rows = await db.query(
    `UPDATE email_outbox u SET state = 'stopped', reason = x.why FROM (SELECT o.id, ${stops} AS why ${from}) x
      WHERE u.id = x.id AND x.why IS NOT NULL RETURNING u.id`,
    [input.campaign],
  );
  return rows.length;
}

/** Follow-ups of step `index` whose time has come by `until`, and that nothing stops. */
async function dueFollowUps(db: Queryable, input: CampaignInput, index: number, until: Date): Promise<DueFollowUp[]> {
  const step = input.sequence[index]!;
  const unless = step.unless ?? ['clicked', 'replied'];
  const afterMs = parseDuration(step.after!)!;
  const previous = input.sequence[index - 1]!.name;
  return db.query<DueFollowUp>(
    `SELECT t.prospect_id, t.address, t.mailbox, t.domain, t.message_id AS thread_message_id, t.subject AS thread_subject, p.category, p.timezone, t.sent_at
       FROM email_outbox t JOIN prospects p ON p.id = t.prospect_id
      WHERE t.campaign = $1 AND t.step_index = 0 AND t.state = 'sent' AND t.sent_at <= $2
        AND EXISTS (SELECT 1 FROM email_outbox b WHERE b.campaign = $1 AND b.prospect_id = t.prospect_id AND b.sequence_step = $3 AND b.state = 'sent')
        AND NOT EXISTS (SELECT 1 FROM email_outbox f WHERE f.campaign = $1 AND f.prospect_id = t.prospect_id AND f.sequence_step = $4)
        AND NOT EXISTS (SELECT 1 FROM email_outbox x WHERE x.prospect_id = t.prospect_id AND x.state IN ('bounced', 'stopped'))
        AND NOT EXISTS (SELECT 1 FROM email_suppressions s WHERE s.address = t.address)
        AND ($5::boolean IS FALSE OR p.replied_at IS NULL)
        AND ($6::boolean IS FALSE OR NOT EXISTS (SELECT 1 FROM flow_events e WHERE e.type = 'email.clicked' AND e.key = t.prospect_id::text))
      ORDER BY t.sent_at, t.prospect_id`,
    [input.campaign, new Date(until.getTime() - afterMs), previous, step.name, unless.includes('replied'), unless.includes('clicked')],
  );
}

/** Prospects who may get a teaser: a valid email and a category; not suppressed, customers, replied, bounced, nor emailed lately. */
async function audience(db: Queryable, input: CampaignInput, now: Date): Promise<Prospect[]> {
  const within = parseDuration(input.not_emailed_within ?? '90d')!;
  return db.query<Prospect>(
    `SELECT p.id, lower(p.email) AS email, p.domain, p.company_name, p.category, p.metrics, p.timezone
       FROM prospects p
      WHERE p.email IS NOT NULL AND p.category IS NOT NULL AND p.replied_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM email_suppressions s WHERE s.address = lower(p.email))
        AND NOT EXISTS (SELECT 1 FROM payments pay WHERE pay.prospect_id = p.id OR lower(pay.email) = lower(p.email))
        AND NOT EXISTS (SELECT 1 FROM email_outbox o WHERE o.campaign = $1 AND o.prospect_id = p.id)
        AND NOT EXISTS (SELECT 1 FROM email_outbox o WHERE o.address = lower(p.email) AND (o.created_at >= $2 OR o.state = 'bounced'))`,
    [input.campaign, new Date(now.getTime() - within)],
  );
}

function ranked(ctx: StepContext, input: CampaignInput, prospects: Prospect[]): Prospect[] {
  let expression: ReturnType<typeof parseExpression>;
  try {
    expression = parseExpression(input.score ?? 'metrics.organic_traffic ?? 0');
  } catch (err) {
    throw new NonRetriableError(`score: ${(err as Error).message}`);
  }
  // A prospect whose metrics the expression cannot read scores 0 (it goes last): one record never fails the day.
  const scored = prospects.map((p) => {
    let value: unknown;
    try {
      value = evaluate(expression, { metrics: p.metrics ?? {}, prospect: { company_name: p.company_name, has_email: true } }, { now: () => ctx.clock.now() });
    } catch {
      value = 0;
    }
    return { p, score: typeof value === 'number' && Number.isFinite(value) ? value : 0 };
  });
  return scored.sort((a, b) => b.score - a.score || (a.p.domain ?? '').localeCompare(b.p.domain ?? '') || a.p.id.localeCompare(b.p.id)).map((s) => s.p);
}

/** Teasers of this campaign already planned today (a second run the same day adds only the rest). */
async function plannedToday(db: Queryable, campaign: string, dayStart: Date): Promise<number> {
  const [row] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM email_outbox WHERE campaign = $1 AND step_index = 0 AND created_at >= $2", [campaign, dayStart]);
  return row?.n ?? 0;
}

const keyOf = (campaign: string, prospectId: string, step: string) => `${campaign}:${prospectId}:${step}`;

interface NewRow extends Omit<CampaignEmail, 'outbox_id'> {
  due_at: Date;
  domain: string | null;
}

/** Today in the business's timezone. */
function today(ctx: StepContext) {
  return periodAt('day', ctx.config.business?.timezone ?? 'UTC', ctx.clock.now());
}

/** The day's plan, read only: what the run writes and what the dry run shows are this. */
async function planDay(ctx: StepContext, input: CampaignInput, dryRun: boolean) {
  checkSequence(input);
  const now = ctx.clock.now();
  const { start: dayStart, end: until } = today(ctx);
  const stopped = await stopSequences(ctx.db, input, dryRun);
  const due: NewRow[] = [];
  for (let i = 1; i < input.sequence.length; i++) {
    const step = input.sequence[i]!;
    const afterMs = parseDuration(step.after!)!;
    for (const f of await dueFollowUps(ctx.db, input, i, until)) {
      const variant = variantOf(input, i, f.prospect_id);
      due.push({
        campaign: input.campaign,
        idempotency_key: keyOf(input.campaign, f.prospect_id, step.name),
        prospect_id: f.prospect_id,
        address: f.address,
        sequence_step: step.name,
        step_index: i,
        variant: variant.name,
        template: templateFor(variant.template, f.category),
        subject: variant.subject,
        mailbox: f.mailbox,
        domain: f.domain,
        thread_message_id: f.thread_message_id,
        thread_subject: f.thread_subject,
        timezone: f.timezone,
        // Not before its delay: a teaser sent at 17:00 on Monday has its 3-day follow-up at 17:00 on Thursday.
        due_at: new Date(Math.max(now.getTime(), new Date(f.sent_at).getTime() + afterMs)),
      });
    }
  }
  // Each mailbox takes the follow-ups it has room for today, longest due first; the rest stay
  // due for tomorrow, so a day never plans more than it can send (and spills into the next).
  const room = new Map((await ctx.quotaRoom(input.quota ?? 'mailbox')).map((k) => [k.key, k.remaining]));
  const totalRoom = [...room.values()].reduce((n, r) => n + r, 0);
  const rows: NewRow[] = [];
  for (const row of due.sort((a, b) => a.due_at.getTime() - b.due_at.getTime() || b.step_index - a.step_index)) {
    const left = room.get(row.mailbox);
    if (left !== undefined && left <= 0) continue;
    if (left !== undefined) room.set(row.mailbox, left - 1);
    rows.push(row);
  }
  const free = [...room.values()].reduce((n, r) => n + r, 0);
  const left = Math.max(0, Math.min(input.daily - (await plannedToday(ctx.db, input.campaign, dayStart)), free));
  const candidates = await audience(ctx.db, input, now);
  const teasers = ranked(ctx, input, candidates).slice(0, left);
  for (const p of teasers) {
    const variant = variantOf(input, 0, p.id);
    rows.push({
      campaign: input.campaign,
      idempotency_key: keyOf(input.campaign, p.id, input.sequence[0]!.name),
      prospect_id: p.id,
      address: p.email,
      sequence_step: input.sequence[0]!.name,
      step_index: 0,
      variant: variant.name,
      template: templateFor(variant.template, p.category),
      subject: variant.subject,
      mailbox: '',
      domain: null,
      thread_message_id: null,
      thread_subject: null,
      timezone: p.timezone,
      due_at: now,
    });
  }
  const counts = { follow_ups: rows.length - teasers.length, teasers: teasers.length, stopped, room: totalRoom, audience: candidates.length };
  return { rows, counts };
}

/**
 * Writes the day's rows (a row already there stays as it is) and takes for this run every
 * planned email of the campaign due by `until` that no live run holds: today's, and those an
 * earlier run left unsent (stopped or cancelled). Their templates come from the sequence;
 * a row whose step or variant the YAML no longer has is stopped, with that reason.
 */
async function writeDay(db: Queryable, input: CampaignInput, rows: NewRow[], runId: string, until: Date): Promise<CampaignEmail[]> {
  const columns = ['campaign', 'prospect_id', 'sequence_step', 'step_index', 'address', 'mailbox', 'domain', 'variant', 'subject', 'thread_message_id', 'idempotency_key', 'due_at', 'run_id'];
  for (let i = 0; i < rows.length; i += 500) {
    const params: unknown[] = [];
    const values = rows.slice(i, i + 500).map((r) => {
      const v = [r.campaign, r.prospect_id, r.sequence_step, r.step_index, r.address, r.mailbox || null, r.domain, r.variant, r.subject, r.thread_message_id, r.idempotency_key, r.due_at, runId];
      params.push(...v);
      return `(${v.map((_, j) => `$${params.length - v.length + j + 1}`).join(', ')})`;
    });
    await db.query(`INSERT INTO email_outbox (${columns.join(', ')}) VALUES ${values.join(', ')} ON CONFLICT DO NOTHING`, params);
  }
  const taken = await db.query<{ id: string; prospect_id: string; category: string | null; thread_subject: string | null } & Record<string, unknown>>(
    `WITH mine AS (
       UPDATE email_outbox o SET run_id = $3
        WHERE o.campaign = $1 AND o.state = 'planned' AND o.due_at < $2 AND o.step_index >= 0
          AND (o.run_id = $3 OR o.run_id IS NULL OR NOT EXISTS (SELECT 1 FROM flow_runs r WHERE r.id = o.run_id AND r.status IN ('queued', 'running', 'waiting')))
       RETURNING o.*)
     SELECT m.id, m.idempotency_key, m.prospect_id::text AS prospect_id, m.address, m.sequence_step, m.step_index, m.variant, m.subject, coalesce(m.mailbox, '') AS mailbox,
            m.thread_message_id, t.subject AS thread_subject, m.campaign, p.category, p.timezone, m.created_at, m.due_at
       FROM mine m JOIN prospects p ON p.id = m.prospect_id
       LEFT JOIN email_outbox t ON t.campaign = m.campaign AND t.prospect_id = m.prospect_id AND t.step_index = 0`,
    [input.campaign, until, runId],
  );
  const emails: CampaignEmail[] = [];
  const dueAt = new Map<string, number>();
  const gone: string[] = [];
  for (const r of taken) {
    const step = input.sequence.find((s) => s.name === r.sequence_step);
    const variant = step?.variants.find((v) => v.name === r.variant);
    if (!variant) {
      gone.push(String(r.id));
      continue;
    }
    dueAt.set(String(r.idempotency_key), new Date(r.due_at as string).getTime());
    emails.push({
      outbox_id: String(r.id),
      idempotency_key: String(r.idempotency_key),
      prospect_id: r.prospect_id,
      address: String(r.address),
      sequence_step: String(r.sequence_step),
      step_index: Number(r.step_index),
      variant: String(r.variant),
      template: templateFor(variant.template, r.category),
      subject: String(r.subject),
      mailbox: String(r.mailbox),
      thread_message_id: (r.thread_message_id as string | null) ?? null,
      thread_subject: r.thread_subject,
      campaign: String(r.campaign),
      timezone: (r.timezone as string | null) ?? null,
    });
  }
  if (gone.length) await db.query("UPDATE email_outbox SET state = 'stopped', reason = 'its sequence step or variant was removed from the YAML' WHERE id = ANY($1::uuid[])", [gone]);
  // Follow-ups first (a thread already started) in the order they fall due, then left-overs of
  // earlier runs, then teasers best score first.
  const rank = new Map(rows.map((r, i) => [r.idempotency_key, i]));
  const place = (e: CampaignEmail) => rank.get(e.idempotency_key) ?? -1;
  const due = (e: CampaignEmail) => (e.step_index > 0 ? dueAt.get(e.idempotency_key)! : 0);
  return emails.sort((a, b) => Number(b.step_index > 0) - Number(a.step_index > 0) || due(a) - due(b) || b.step_index - a.step_index || place(a) - place(b) || a.idempotency_key.localeCompare(b.idempotency_key));
}

/** "human 3, network 41, burst 12": what fetched the campaign's links lately (only human ones ask for reports). */
async function clicksSince(db: Queryable, campaign: string, since: Date): Promise<string> {
  const rows = await db.query<{ class: string; n: number }>(
    `SELECT c.class, count(*)::int AS n FROM email_click_observations c JOIN email_outbox o ON o.id = c.outbox_id
      WHERE o.campaign = $1 AND c.observed_at >= $2 GROUP BY c.class ORDER BY c.class`,
    [campaign, since],
  );
  return rows.map((r) => `${r.class} ${r.n}`).join(', ');
}

export const emailCampaign = defineStep({
  type: 'email.campaign',
  description: "Plans a campaign's emails of the day into the outbox: follow-ups that fell due, then new teasers by score within the mailboxes' room.",
  input: Input,
  output: Output,
  effect: {
    kind: () => 'db.write',
    transactional: true,
    async plan(ctx, input) {
      const { rows, counts } = await planDay(ctx, input, true);
      const emails = rows.map(({ due_at: _, domain: __, ...r }) => ({ ...r, outbox_id: `(planned ${r.idempotency_key})` }));
      return {
        summary: `plan ${counts.teasers} teasers and ${counts.follow_ups} follow-ups of campaign ${input.campaign} (room today: ${counts.room}; audience ${counts.audience}; ${counts.stopped} sequences stopped)`,
        output: { emails, counts },
      };
    },
  },
  async run(ctx, input) {
    const { rows, counts } = await planDay(ctx, input, false);
    // Sends a person confirmed after a crash are recorded, not sent again (nor left planned).
    // Imported here: email.deliver's module imports this one for its input schema.
    const { settleConfirmedSends } = await import('./deliver.ts');
    const emails = await settleConfirmedSends(ctx, await writeDay(ctx.db, input, rows, ctx.run.id, today(ctx).end));
    ctx.note(`${counts.teasers} teasers and ${counts.follow_ups} follow-ups planned (room today ${counts.room}, audience ${counts.audience}); ${counts.stopped} sequences stopped`);
    const clicks = await clicksSince(ctx.db, input.campaign, new Date(ctx.clock.now().getTime() - 86_400_000));
    if (clicks) ctx.note(`link fetches of this campaign's emails in the last 24 hours, by class: ${clicks}`);
    return { emails, counts };
  },
});
