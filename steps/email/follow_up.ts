import { type Static, Type } from '@sinclair/typebox';
import { defineStep, NonRetriableError, type Queryable } from '../../engine/sdk.ts';
import { type CampaignEmail, CampaignEmailSchema, REPLY_STEP_INDEX, templateFor } from './campaign.ts';

/**
 * `email.follow_up`: an answer to something a prospect asked for from one of a campaign's
 * emails (the report, from its landing page), written to the outbox as the step
 * `sequence_step` of that campaign: from the teaser's mailbox, in the teaser's thread (its
 * Message-ID as In-Reply-To and References), to the teaser's address, with the teaser's
 * variant for attribution. Its output is the email for email.deliver, like an item of
 * email.campaign's, so it goes out through the one sender every cold email uses.
 *
 * The row's idempotency key is campaign:prospect:step, as the campaign's own steps have: one
 * such email per campaign and prospect, whatever reruns. It is not a step of the campaign's
 * sequence (step_index REPLY_STEP_INDEX): the daily plan neither stops it, because the
 * prospect clicked, nor sends it.
 */

const NAME = '^[a-z][a-z0-9_-]*$';

const Input = Type.Object(
  {
    outbox_id: Type.String({ description: 'The email the prospect asked from (email.clicked\'s payload.outbox_id): any email of the campaign to them.' }),
    sequence_step: Type.Optional(Type.String({ pattern: NAME, default: 'report-ready', 'x-hint': 'a name is lower-case letters, digits, dashes and underscores', description: 'What the outbox and reports call this email.' })),
    template: Type.String({
      pattern: '^[a-z0-9{][a-z0-9_{}-]*$',
      'x-hint': 'a template is a file name in templates/emails without .mjml, e.g. report-ready',
      description: 'The MJML template in templates/emails (without .mjml); {category} is replaced by the prospect\'s category.',
    }),
    subject: Type.Optional(Type.String({ minLength: 1, maxLength: 200, default: 'Re: {{ thread_subject }}', description: 'Liquid over prospect, insight and thread_subject (the teaser\'s subject).' })),
  },
  { additionalProperties: false },
);

type FollowUpInput = Static<typeof Input>;

interface TeaserRow {
  campaign: string;
  prospect_id: string;
  address: string;
  mailbox: string | null;
  domain: string | null;
  variant: string | null;
  message_id: string | null;
  subject: string | null;
  category: string | null;
}

/** The teaser of the campaign the email `outboxId` belongs to (the email itself when it is the teaser). */
async function teaserOf(db: Queryable, outboxId: string): Promise<TeaserRow> {
  const [row] = await db.query<TeaserRow>(
    `SELECT t.campaign, t.prospect_id::text AS prospect_id, t.address, t.mailbox, t.domain, t.variant, t.message_id, t.subject, p.category
       FROM email_outbox c
       JOIN email_outbox t ON t.campaign = c.campaign AND t.prospect_id = c.prospect_id AND t.step_index = 0
       JOIN prospects p ON p.id = t.prospect_id
      WHERE c.id::text = $1`,
    [outboxId],
  );
  if (!row) throw new NonRetriableError(`no email ${outboxId} with a teaser in the outbox: nothing to answer in`);
  if (!row.message_id || !row.mailbox) throw new NonRetriableError(`the teaser of ${row.campaign} to ${row.address} was never sent: there is no thread to answer in`);
  return row;
}

function emailOf(input: FollowUpInput, teaser: TeaserRow, outboxId: string): CampaignEmail {
  const step = input.sequence_step ?? 'report-ready';
  return {
    outbox_id: outboxId,
    idempotency_key: `${teaser.campaign}:${teaser.prospect_id}:${step}`,
    prospect_id: teaser.prospect_id,
    address: teaser.address,
    sequence_step: step,
    step_index: REPLY_STEP_INDEX,
    variant: teaser.variant ?? 'a',
    template: templateFor(input.template, teaser.category),
    subject: input.subject ?? 'Re: {{ thread_subject }}',
    mailbox: teaser.mailbox!,
    thread_message_id: teaser.message_id,
    thread_subject: teaser.subject,
    campaign: teaser.campaign,
  };
}

export const emailFollowUp = defineStep({
  type: 'email.follow_up',
  description: "Writes the answer to a prospect's request (the report they asked for) to the outbox, from the teaser's mailbox and in its thread, for email.deliver to send.",
  input: Input,
  output: Type.Object({ emails: Type.Array(CampaignEmailSchema, { description: 'The one email to send (a list, for email.deliver\'s foreach).' }) }),
  effect: {
    kind: () => 'db.write',
    transactional: true,
    async plan(ctx, input) {
      const teaser = await teaserOf(ctx.db, input.outbox_id);
      const email = emailOf(input, teaser, '');
      return {
        summary: `plan ${email.sequence_step} of ${teaser.campaign} to ${teaser.address} from ${teaser.mailbox}, in the teaser's thread`,
        output: { emails: [{ ...email, outbox_id: `(planned ${email.idempotency_key})` }] },
      };
    },
  },
  async run(ctx, input) {
    const teaser = await teaserOf(ctx.db, input.outbox_id);
    const email = emailOf(input, teaser, '');
    // A row already there (a rerun) stays as it is: email.deliver sends it only while it is planned.
    await ctx.db.query(
      `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, variant, subject, thread_message_id, idempotency_key, due_at, run_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING`,
      [email.campaign, email.prospect_id, email.sequence_step, email.step_index, email.address, email.mailbox, teaser.domain, email.variant, email.subject, email.thread_message_id, email.idempotency_key, ctx.clock.now(), ctx.run.id],
    );
    const [row] = await ctx.db.query<{ id: string }>('SELECT id::text AS id FROM email_outbox WHERE idempotency_key = $1', [email.idempotency_key]);
    return { emails: [{ ...email, outbox_id: row!.id }] };
  },
});
