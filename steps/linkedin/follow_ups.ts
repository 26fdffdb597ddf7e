import { Type } from '@sinclair/typebox';
import { DURATION_PATTERN, defineStep, NonRetriableError, parseDuration, type StepContext } from '../../engine/sdk.ts';
import { firstName } from '../prospects/insight.ts';
import { reportLinks } from '../report/publish.ts';
import { MessageSchema, type MessageTarget, stopReasons } from './message.ts';
import { accountInput } from './launch.ts';
import { accountFor } from './plan_invitations.ts';

/**
 * `linkedin.follow_ups`: the follow-up messages due now, from the sequence the pipeline's
 * YAML declares (each step some time after the acceptance, with its own template). A step is
 * due for an accepted connection once its report-link message and every step before it have
 * gone, its time since the acceptance has passed, and it has no row yet; one step per
 * connection per run, the earliest. The stop rules (a reply on either channel, a view of the
 * report for steps that stop on one) are the ones linkedin.message reads again when it sends
 * (stopReasons). A read: the dry run lists the same messages; linkedin.message writes each
 * row, so a run in progress sends the templates it listed.
 */

const STEP = '^[a-z0-9][a-z0-9_-]*$';

const SequenceStep = Type.Object(
  {
    name: Type.String({ pattern: STEP, description: 'The step as reports count it, e.g. day-3; one message per connection and step, ever.' }),
    after: Type.String({ pattern: DURATION_PATTERN, 'x-hint': 'a duration after the acceptance, like "3d"', description: 'How long after the acceptance it goes, like "3d".' }),
    template: Type.String({ pattern: STEP, description: 'The Liquid template in templates/linkedin (without .liquid).' }),
    stop_on_view: Type.Optional(Type.Boolean({ default: true, description: 'Not sent once the prospect has opened the report (default true).' })),
  },
  { additionalProperties: false },
);

const Due = Type.Object({
  to: MessageSchema,
  sequence_step: Type.String(),
  template: Type.String(),
  report_id: Type.Union([Type.String(), Type.Null()]),
  report_url: Type.Union([Type.String(), Type.Null()]),
  stop_on_view: Type.Boolean(),
  idempotency_key: Type.String(),
});

type Sequence = { name: string; after: string; template: string; stop_on_view?: boolean }[];

function checkSequence(sequence: Sequence): number[] {
  const names = new Set<string>(['report-link']);
  let last = 0;
  return sequence.map((step) => {
    if (names.has(step.name)) throw new NonRetriableError(`follow-up ${step.name}: ${step.name === 'report-link' ? 'report-link is the message sent on acceptance' : 'named twice'}; give each step its own name`);
    names.add(step.name);
    const after = parseDuration(step.after)!;
    if (after <= last) throw new NonRetriableError(`follow-up ${step.name}: after ${step.after} comes no later than the step before it`);
    last = after;
    return after;
  });
}

async function due(ctx: StepContext, account: string, sequence: Sequence) {
  const afters = checkSequence(sequence);
  const now = ctx.clock.now();
  const seen = new Set<string>();
  const out: { to: MessageTarget; step: Sequence[number]; report_id: string | null; token: string | null }[] = [];
  for (const [k, step] of sequence.entries()) {
    const previous = k === 0 ? 'report-link' : sequence[k - 1]!.name;
    const rows = await ctx.db.query<Omit<MessageTarget, 'first_name'> & { contact_name: string | null; report_id: string | null; token: string | null }>(
      `SELECT i.id::text AS invitation_id, i.prospect_id::text AS prospect_id, i.account, i.campaign, i.variant, i.profile_url,
              coalesce(nullif(trim(p.company_name), ''), p.domain) AS company, p.contact_name, r.report_id::text AS report_id, g.token
         FROM linkedin_invitations i
         JOIN prospects p ON p.id = i.prospect_id
         JOIN linkedin_messages r ON r.invitation_id = i.id AND r.sequence_step = 'report-link' AND r.state = 'sent'
         JOIN linkedin_messages b ON b.invitation_id = i.id AND b.sequence_step = $2 AND b.state = 'sent'
         LEFT JOIN generated_reports g ON g.id = r.report_id
        WHERE i.account = $1 AND i.state = 'accepted' AND i.accepted_at <= $4
          AND NOT EXISTS (SELECT 1 FROM linkedin_messages m WHERE m.invitation_id = i.id AND m.sequence_step = $3)
        ORDER BY i.accepted_at, i.id`,
      [account, previous, step.name, new Date(now.getTime() - afters[k]!)],
    );
    for (const { contact_name, report_id, token, ...r } of rows) {
      if (seen.has(r.invitation_id)) continue;
      seen.add(r.invitation_id);
      out.push({ to: { ...r, first_name: firstName(contact_name) }, step, report_id, token });
    }
  }
  const stops = await stopReasons(
    ctx.db,
    out.map((d) => ({ prospect_id: d.to.prospect_id, report_id: d.report_id, stop_on_view: d.step.stop_on_view ?? true })),
  );
  const messages = out
    .filter((d) => !stops.has(d.to.prospect_id))
    .map((d) => ({
      to: d.to,
      sequence_step: d.step.name,
      template: d.step.template,
      report_id: d.report_id,
      report_url: d.token ? reportLinks(ctx.config, d.token).url : null,
      stop_on_view: d.step.stop_on_view ?? true,
      idempotency_key: `linkedin-message:${d.to.invitation_id}:${d.step.name}`,
    }));
  return { messages, stopped: out.length - messages.length };
}

export const linkedinFollowUps = defineStep({
  type: 'linkedin.follow_ups',
  description: 'Lists the LinkedIn follow-up messages due now from the sequence in the YAML (each some time after the acceptance), without those who replied or viewed the report.',
  input: Type.Object(
    {
      account: accountInput(),
      sequence: Type.Array(SequenceStep, { description: 'The follow-ups in order, after the report-link message.' }),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({ messages: Type.Array(Due), counts: Type.Object({ due: Type.Integer(), stopped: Type.Integer() }) }),
  async run(ctx, input) {
    const account = await accountFor(ctx, input.account);
    const { messages, stopped } = await due(ctx, account, input.sequence);
    ctx.note(`${messages.length} LinkedIn follow-ups due${stopped ? `; ${stopped} not sent: replied or viewed the report` : ''}`);
    return { messages, counts: { due: messages.length, stopped } };
  },
});
