import { type Static, Type } from '@sinclair/typebox';
import { normaliseProfileUrl } from '../../connectors/phantombuster/profile-url.ts';
import { defineStep, type Queryable, SkipItemError, type StepContext } from '../../engine/sdk.ts';
import { launchInputs, launchOnce, launchTimes } from './launch.ts';
import { noteTemplatesResource } from './plan_invitations.ts';

/**
 * `linkedin.message`: one message to a connection through the account's Message Sender
 * phantom: the report link on acceptance (sequence_step "report-link") or a step of the
 * follow-up sequence. The text comes from a Liquid template in templates/linkedin/; the row
 * (linkedin_messages, one per invitation and sequence step, ever) is written before the
 * launch and holds the idempotency key the launch runs under, so a rerun, a resumed run or a
 * second machine sends it once. The launch goes through launchOnce, as every LinkedIn launch
 * does. Marked sent with its linkedin.messaged event in one statement.
 *
 * At the moment it goes, the stop rules are read again (stopReasons, the same the follow-up
 * plan uses): a prospect who replied on any channel gets nothing more, and a follow-up that
 * stops on a view is not sent once the report has been opened. Its row is then stopped.
 */

/** LinkedIn's limit on one message. */
export const MESSAGE_LIMIT = 8000;

export const MessageSchema = Type.Object({
  invitation_id: Type.String(),
  prospect_id: Type.String(),
  account: Type.String(),
  campaign: Type.String(),
  variant: Type.String(),
  profile_url: Type.String(),
  company: Type.String(),
  first_name: Type.String(),
});
export type MessageTarget = Static<typeof MessageSchema>;

const STEP = '^[a-z0-9][a-z0-9_-]*$';

const Input = Type.Object(
  {
    to: MessageSchema,
    sequence_step: Type.String({ pattern: STEP, description: 'report-link, or the name of the follow-up step: one message per invitation and step, ever.' }),
    template: Type.String({ pattern: STEP, description: 'The Liquid template in templates/linkedin (without .liquid).' }),
    report_url: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: "The prospect's report page, given to the template as report_url." })),
    report_id: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'The report the link opens: a view of it stops the follow-ups that ask so.' })),
    stop_on_view: Type.Optional(Type.Boolean({ default: false, description: 'Not sent once the report has been viewed (a follow-up).' })),
    ...launchInputs,
  },
  { additionalProperties: false },
);
type MessageInput = Static<typeof Input>;

export const messageKey = (invitationId: string, step: string) => `linkedin-message:${invitationId}:${step}`;

export interface StopCandidate {
  prospect_id: string;
  report_id?: string | null;
  stop_on_view?: boolean;
}

/**
 * Why each candidate gets no more messages, by prospect: a reply on any channel, else (when it
 * stops on a view) a view of its report. The one rule the follow-up plan and the send share.
 */
export async function stopReasons(db: Queryable, candidates: readonly StopCandidate[]): Promise<Map<string, string>> {
  const reasons = new Map<string, string>();
  if (!candidates.length) return reasons;
  const rows = await db.query<{ prospect_id: string; reason: string | null }>(
    `SELECT c.prospect_id,
            CASE WHEN p.replied_at IS NOT NULL THEN 'replied (' || coalesce(p.reply_channel, 'unknown channel') || ')'
                 WHEN c.stop_on_view AND c.report_id IS NOT NULL AND EXISTS (SELECT 1 FROM flow_events e WHERE e.type = 'report.viewed' AND e.key = c.report_id) THEN 'viewed the report'
            END AS reason
       FROM unnest($1::text[], $2::text[], $3::boolean[]) AS c(prospect_id, report_id, stop_on_view)
       JOIN prospects p ON p.id::text = c.prospect_id`,
    [candidates.map((c) => c.prospect_id), candidates.map((c) => c.report_id ?? null), candidates.map((c) => c.stop_on_view ?? false)],
  );
  for (const r of rows) if (r.reason) reasons.set(r.prospect_id, r.reason);
  return reasons;
}

async function render(ctx: StepContext, input: MessageInput): Promise<string> {
  const templates = await ctx.use(noteTemplatesResource);
  const { to } = input;
  const text = await templates.render(input.template, { prospect: { company_name: to.company, first_name: to.first_name }, report_url: input.report_url ?? '' }, { lines: true });
  if (!text) throw new SkipItemError(`the ${input.template} template made an empty message`);
  if (text.length > MESSAGE_LIMIT) throw new SkipItemError(`the message is ${text.length} characters, over LinkedIn's ${MESSAGE_LIMIT}`);
  return text;
}

interface Row {
  id: string;
  state: string;
  text: string;
  container_id: string | null;
  sent_at: Date | string | null;
  reason: string | null;
}

const outputOf = (to: MessageTarget, step: string, row: { state: string; text: string; container_id: string | null }, sentAt: string) => ({
  sequence_step: step,
  account: to.account,
  profile_url: to.profile_url,
  state: row.state,
  container_id: row.container_id ?? '',
  sent_at: sentAt,
  text: row.text,
});

export const linkedinMessage = defineStep({
  type: 'linkedin.message',
  description: "Sends one LinkedIn message to a connection (the report link, or a follow-up) through the account's Message Sender phantom, once per invitation and sequence step.",
  input: Input,
  output: Type.Object({
    sequence_step: Type.String(),
    account: Type.String(),
    profile_url: Type.String(),
    state: Type.String(),
    container_id: Type.String(),
    sent_at: Type.String(),
    text: Type.String(),
  }),
  effect: {
    kind: () => 'linkedin',
    describe: ({ to, sequence_step }) => ({
      summary: `LinkedIn message ${sequence_step} to ${to.profile_url} from ${to.account}`,
      identity: { profile: to.profile_url, account: to.account, key: messageKey(to.invitation_id, sequence_step) },
    }),
    // The message's row deduplicates: a recorded container is waited for, a lost one found again.
    providerIdempotent: () => true,
    async plan(ctx, input) {
      const text = await render(ctx, input);
      return {
        summary: `LinkedIn message ${input.sequence_step} to ${input.to.profile_url} from ${input.to.account} [${input.to.variant}]: ${text.replace(/\s+/g, ' ').slice(0, 160)}`,
        output: outputOf(input.to, input.sequence_step, { state: 'planned', text, container_id: '(dry run)' }, '(dry run)'),
        artifacts: [{ name: 'message.txt', content: `${text}\n` }],
      };
    },
  },
  async run(ctx, input) {
    const { to, sequence_step: step } = input;
    const key = messageKey(to.invitation_id, step);
    const now = ctx.clock.now();
    const text = await render(ctx, input);
    await ctx.db.query(
      `INSERT INTO linkedin_messages (invitation_id, prospect_id, account, campaign, variant, sequence_step, text, report_id, idempotency_key, planned_at, run_id)
       VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8::uuid, $9, $10, $11) ON CONFLICT (idempotency_key) DO NOTHING`,
      [to.invitation_id, to.prospect_id, to.account, to.campaign, to.variant, step, text, input.report_id ?? null, key, now, ctx.run.id],
    );
    const [row] = await ctx.db.query<Row>('SELECT id::text, state, text, container_id, sent_at, reason FROM linkedin_messages WHERE idempotency_key = $1', [key]);
    if (!row) throw new SkipItemError('its message row is gone');
    if (row.state === 'sent') return outputOf(to, step, row, new Date(row.sent_at!).toISOString());
    if (row.state !== 'planned') throw new SkipItemError(`${row.state}${row.reason ? ` (${row.reason})` : ''}`);
    const stop = (await stopReasons(ctx.db, [{ prospect_id: to.prospect_id, report_id: input.report_id ?? null, stop_on_view: input.stop_on_view ?? false }])).get(to.prospect_id);
    if (stop) {
      await ctx.db.query("UPDATE linkedin_messages SET state = 'stopped', reason = $2 WHERE id = $1 AND state = 'planned'", [row.id, stop]);
      throw new SkipItemError(`not sent: the prospect ${stop}`);
    }
    const run = await launchOnce(ctx, {
      account: to.account,
      kind: 'message',
      key,
      // The text stored with the row: a retry sends what was planned, whatever the template says now.
      bonusArgument: { spreadsheetUrl: to.profile_url, message: row.text, profilesPerLaunch: 1 },
      ...launchTimes(input),
    });
    const outcome = run.outcome;
    if (outcome.kind !== 'ok') throw new Error(`the message agent of account "${to.account}" did not message ${to.profile_url}: ${outcome.message}`);
    const rows = Array.isArray(run.result) ? (run.result as Record<string, unknown>[]) : [];
    const mine = rows.find((r) => normaliseProfileUrl(String(r.profileUrl ?? '')) === to.profile_url);
    const refused = mine && typeof mine.error === 'string' && mine.error ? mine.error : undefined;
    if (!mine || refused) {
      const reason = refused ? `LinkedIn refused it: ${refused}` : 'the run finished without this profile in its result';
      await ctx.db.query("UPDATE linkedin_messages SET state = 'failed', reason = $2, container_id = $3 WHERE id = $1", [row.id, reason, run.containerId]);
      throw new SkipItemError(`${to.profile_url}: ${reason}`);
    }
    const sentAt = ctx.clock.now();
    await ctx.db.query(
      `WITH sent AS (
         UPDATE linkedin_messages SET state = 'sent', sent_at = $2, container_id = $3, reason = NULL WHERE id = $1 AND state = 'planned'
         RETURNING prospect_id, account, campaign, variant, sequence_step, report_id, invitation_id
       )
       INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
       SELECT 'linkedin.messaged', sent.prospect_id::text,
              jsonb_build_object('prospect_id', sent.prospect_id::text, 'channel', 'linkedin', 'account', sent.account, 'campaign', sent.campaign, 'variant', sent.variant,
                                 'sequence_step', sent.sequence_step, 'report_id', sent.report_id::text, 'invitation_id', sent.invitation_id::text, 'container_id', $3::text),
              $4, $2 FROM sent`,
      [row.id, sentAt, run.containerId, ctx.run.id],
    );
    return outputOf(to, step, { state: 'sent', text: row.text, container_id: run.containerId }, sentAt.toISOString());
  },
});
