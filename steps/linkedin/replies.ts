import { Type } from '@sinclair/typebox';
import { phantombusterConnector } from '../../connectors/phantombuster/connector.ts';
import { defineStep, type Queryable, type StepContext } from '../../engine/sdk.ts';
import { accountInput, launchInputs, readOnce } from './launch.ts';
import { accountFor } from './plan_invitations.ts';
import { type InboundMessage, inboundOf } from './rows.ts';

/**
 * `linkedin.replies`: who answered on LinkedIn. Launches the account's inbox scraper and,
 * for each thread whose last message came from someone we invited, records the reply once
 * (linkedin_replies, by account, profile and the message's time) and, in the same statement,
 * marks the prospect replied (the first reply on any channel wins the channel), stops every
 * planned message of theirs on both channels (LinkedIn follow-ups and email sequence steps)
 * and records linkedin.replied. The email channel's reply detection marks the same
 * prospects.replied_at, which the LinkedIn messages read before they go: a reply on either
 * channel stops both.
 *
 * The dry run launches nothing: it reads the agent's last scrape (its result file) and lists
 * the replies the run would record.
 */

const Input = Type.Object(
  {
    account: accountInput(),
    threads: Type.Optional(Type.Integer({ minimum: 1, default: 100, description: 'How many of the most recent threads the scraper reads (numberOfThreadsToScrape).' })),
    ...launchInputs,
  },
  { additionalProperties: false },
);

const Reply = Type.Object({ prospect_id: Type.String(), profile_url: Type.String(), at: Type.String(), text: Type.String() });

const Output = Type.Object({
  account: Type.String(),
  replies: Type.Array(Reply),
  counts: Type.Object({ threads: Type.Integer(), recorded: Type.Integer(), stopped: Type.Integer(), unreadable: Type.Integer() }),
});

/** The inbound messages from people the account invited, not recorded before, with their prospect. */
async function fromInvited(db: Queryable, account: string, messages: InboundMessage[]): Promise<{ prospect_id: string; profile_url: string; at: string; text: string }[]> {
  if (!messages.length) return [];
  const rows = await db.query<{ prospect_id: string; profile_url: string; at: Date | string; text: string }>(
    `SELECT i.prospect_id::text AS prospect_id, m.profile_url, m.at, m.text
       FROM unnest($2::text[], $3::timestamptz[], $4::text[]) AS m(profile_url, at, text)
       JOIN linkedin_invitations i ON i.profile_url = m.profile_url AND i.account = $1 AND i.state IN ('sent', 'accepted', 'withdrawn')
      WHERE NOT EXISTS (SELECT 1 FROM linkedin_replies r WHERE r.account = $1 AND r.profile_url = m.profile_url AND r.message_at = m.at)
      ORDER BY m.at`,
    [account, messages.map((m) => m.profileUrl), messages.map((m) => m.at), messages.map((m) => m.text)],
  );
  return rows.map((r) => ({ ...r, at: new Date(r.at).toISOString() }));
}

// One statement: every data-modifying WITH runs; each joins `reply`, so a reply recorded before changes nothing.
const RECORD = `
WITH m AS (
  SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::uuid[]) AS m(profile_url, at, text, prospect_id)
), reply AS (
  INSERT INTO linkedin_replies (account, profile_url, message_at, prospect_id, text, recorded_at)
  SELECT $1, m.profile_url, m.at, m.prospect_id, m.text, $6 FROM m
  ON CONFLICT DO NOTHING
  RETURNING profile_url, message_at, prospect_id
), replied AS (
  UPDATE prospects p SET replied_at = least(reply.message_at, $6), reply_channel = 'linkedin', updated_at = $6
    FROM reply WHERE p.id = reply.prospect_id AND p.replied_at IS NULL
  RETURNING p.id
), stopped_linkedin AS (
  UPDATE linkedin_messages s SET state = 'stopped', reason = 'replied on LinkedIn'
    FROM reply WHERE s.prospect_id = reply.prospect_id AND s.state = 'planned'
  RETURNING s.id
), stopped_email AS (
  UPDATE email_outbox o SET state = 'stopped', reason = 'replied on LinkedIn'
    FROM reply WHERE o.prospect_id = reply.prospect_id AND o.state = 'planned'
  RETURNING o.id
), events AS (
  INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
  SELECT 'linkedin.replied', reply.prospect_id::text,
         jsonb_build_object('prospect_id', reply.prospect_id::text, 'channel', 'linkedin', 'account', $1::text, 'campaign', i.campaign, 'variant', i.variant, 'profile_url', reply.profile_url, 'message_at', reply.message_at),
         $7, $6
    FROM reply JOIN linkedin_invitations i ON i.prospect_id = reply.prospect_id
  RETURNING id
)
SELECT (SELECT count(*) FROM reply)::int AS recorded, ((SELECT count(*) FROM stopped_linkedin) + (SELECT count(*) FROM stopped_email))::int AS stopped`;

async function record(ctx: StepContext, account: string, replies: { prospect_id: string; profile_url: string; at: string; text: string }[]): Promise<{ recorded: number; stopped: number }> {
  if (!replies.length) return { recorded: 0, stopped: 0 };
  const [row] = await ctx.db.query<{ recorded: number; stopped: number }>(RECORD, [
    account,
    replies.map((r) => r.profile_url),
    replies.map((r) => r.at),
    replies.map((r) => r.text.replaceAll('\u0000', '')),
    replies.map((r) => r.prospect_id),
    ctx.clock.now(),
    ctx.run.id,
  ]);
  return { recorded: row?.recorded ?? 0, stopped: row?.stopped ?? 0 };
}

export const linkedinReplies = defineStep({
  type: 'linkedin.replies',
  description: "Reads the account's LinkedIn inbox (Inbox Scraper) and records each reply from someone invited: the prospect is marked replied and every sequence for them stops, on both channels.",
  input: Input,
  output: Output,
  effect: {
    kind: () => 'linkedin',
    describe: (input) => ({ summary: `LinkedIn inbox of ${input.account ?? 'the account'}`, identity: { account: input.account ?? '' } }),
    providerIdempotent: () => true,
    async plan(ctx, input) {
      const account = await accountFor(ctx, input.account);
      const client = await ctx.use(phantombusterConnector);
      const rows = await client.resultFile(client.agentFor(account, 'inbox').id, { signal: ctx.signal });
      const { messages, unreadable } = inboundOf(rows);
      const replies = await fromInvited(ctx.db, account, messages);
      return {
        summary: `LinkedIn inbox of ${account}: from its last scrape, ${replies.length} new replies would stop their sequences`,
        output: { account, replies, counts: { threads: rows.length, recorded: replies.length, stopped: 0, unreadable } },
      };
    },
  },
  async run(ctx, input) {
    const account = await accountFor(ctx, input.account);
    const rows = await readOnce(ctx, account, 'inbox', { numberOfThreadsToScrape: input.threads ?? 100 }, input);
    const { messages, unreadable } = inboundOf(rows);
    const replies = await fromInvited(ctx.db, account, messages);
    const { recorded, stopped } = await record(ctx, account, replies);
    ctx.note(`${rows.length} threads read${unreadable ? ` (${unreadable} unreadable left out)` : ''}; ${recorded} new replies recorded; ${stopped} planned messages stopped`);
    return { account, replies, counts: { threads: rows.length, recorded, stopped, unreadable } };
  },
});
