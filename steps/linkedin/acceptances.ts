import { type Static, Type } from '@sinclair/typebox';
import { phantombusterConnector } from '../../connectors/phantombuster/connector.ts';
import { defineStep, type Queryable, type StepContext } from '../../engine/sdk.ts';
import { firstName } from '../prospects/insight.ts';
import { accountInput, launchInputs, readOnce } from './launch.ts';
import { MessageSchema } from './message.ts';
import { accountFor } from './plan_invitations.ts';
import { type Connection, connectionsOf } from './rows.ts';

/**
 * `linkedin.acceptances`: who accepted. Launches the account's connections export (LinkedIn
 * Connections Export, recently added first), diffs it against the invitations sent, by
 * canonical profile URL, and marks each one found accepted, with its linkedin.accepted event
 * in the same statement. Its output lists every accepted invitation whose report-link
 * message has not gone yet (this run's and any an earlier run left), for the steps that send
 * it.
 *
 * The dry run launches nothing: it diffs the export the agent made last (its result file)
 * and lists what the run would message, by the same code.
 */

const Input = Type.Object(
  {
    account: accountInput(),
    profiles: Type.Optional(Type.Integer({ minimum: 1, default: 200, description: 'How many of the most recent connections the export reads (numberOfProfiles).' })),
    ...launchInputs,
  },
  { additionalProperties: false },
);

/** A connection owed its report link: whom linkedin.message writes to, with what the report needs. */
export const AcceptedSchema = Type.Composite([MessageSchema, Type.Object({ domain: Type.String(), accepted_at: Type.String() })]);
export type Accepted = Static<typeof AcceptedSchema>;

const Output = Type.Object({
  account: Type.String(),
  /** Accepted and not yet sent their report link. */
  accepted: Type.Array(AcceptedSchema),
  counts: Type.Object({ connections: Type.Integer(), newly_accepted: Type.Integer(), unreadable: Type.Integer() }),
});

/**
 * The invitations of the account that the export shows accepted and that are not marked yet:
 * sent ones, and withdrawn ones too (a person who accepted before the withdrawal went is a
 * connection all the same: the withdrawer found nothing pending).
 */
async function newlyAccepted(db: Queryable, account: string, connections: Connection[]): Promise<{ id: string }[]> {
  if (!connections.length) return [];
  return db.query<{ id: string }>("SELECT id::text AS id FROM linkedin_invitations WHERE account = $1 AND state IN ('sent', 'withdrawn') AND profile_url = ANY($2::text[])", [
    account,
    connections.map((c) => c.profileUrl),
  ]);
}

/** Marks them accepted with their events, in one statement: when the export says, never before the invitation or after now. */
async function markAccepted(ctx: StepContext, account: string, connections: Connection[]): Promise<number> {
  if (!connections.length) return 0;
  const now = ctx.clock.now();
  const [row] = await ctx.db.query<{ n: number }>(
    `WITH c AS (
       SELECT * FROM unnest($2::text[], $3::timestamptz[]) AS c(profile_url, connected_at)
     ), accepted AS (
       UPDATE linkedin_invitations i SET state = 'accepted', accepted_at = least($4::timestamptz, greatest(i.sent_at, coalesce(c.connected_at, $4::timestamptz)))
         FROM c WHERE i.account = $1 AND i.state IN ('sent', 'withdrawn') AND i.profile_url = c.profile_url
       RETURNING i.id, i.prospect_id, i.account, i.campaign, i.variant, i.accepted_at
     ), events AS (
       INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
       SELECT 'linkedin.accepted', a.prospect_id::text,
              jsonb_build_object('prospect_id', a.prospect_id::text, 'channel', 'linkedin', 'account', a.account, 'campaign', a.campaign, 'variant', a.variant, 'invitation_id', a.id::text, 'accepted_at', a.accepted_at),
              $5, $4 FROM accepted a
       RETURNING id
     )
     SELECT (SELECT count(*) FROM events)::int AS n`,
    [account, connections.map((c) => c.profileUrl), connections.map((c) => c.connectedAt ?? null), now, ctx.run.id],
  );
  return row?.n ?? 0;
}

/** Accepted invitations of the account still without a sent report-link message; with `also`, those about to be accepted too. */
async function toMessage(db: Queryable, account: string, also: string[] = []): Promise<Accepted[]> {
  const rows = await db.query<Omit<Accepted, 'first_name' | 'accepted_at'> & { contact_name: string | null; accepted_at: Date | string | null }>(
    `SELECT i.id::text AS invitation_id, i.prospect_id::text AS prospect_id, i.account, i.campaign, i.variant, i.profile_url,
            p.domain, coalesce(nullif(trim(p.company_name), ''), p.domain) AS company, p.contact_name, i.accepted_at
       FROM linkedin_invitations i JOIN prospects p ON p.id = i.prospect_id
      WHERE i.account = $1 AND (i.state = 'accepted' OR i.id::text = ANY($2::text[])) AND p.replied_at IS NULL
        AND NOT EXISTS (SELECT 1 FROM linkedin_messages m WHERE m.invitation_id = i.id AND m.sequence_step = 'report-link' AND m.state IN ('sent', 'failed', 'stopped'))
      ORDER BY i.accepted_at NULLS LAST, i.id`,
    [account, also],
  );
  return rows.map(({ contact_name, accepted_at, ...r }) => ({ ...r, first_name: firstName(contact_name), accepted_at: accepted_at ? new Date(accepted_at).toISOString() : '(on the next export)' }));
}

export const linkedinAcceptances = defineStep({
  type: 'linkedin.acceptances',
  description: "Reads the account's connections export, marks the invitations accepted (with linkedin.accepted events) and lists those still owed their report-link message.",
  input: Input,
  output: Output,
  effect: {
    kind: () => 'linkedin',
    describe: (input) => ({ summary: `LinkedIn connections export of ${input.account ?? 'the account'}`, identity: { account: input.account ?? '' } }),
    // A read, and each run's launch has its own key: a launch in doubt is found again, and reading twice changes nothing.
    providerIdempotent: () => true,
    async plan(ctx, input) {
      const account = await accountFor(ctx, input.account);
      const client = await ctx.use(phantombusterConnector);
      const { connections, unreadable } = connectionsOf(await client.resultFile(client.agentFor(account, 'connections').id, { signal: ctx.signal }));
      const fresh = await newlyAccepted(ctx.db, account, connections);
      const accepted = await toMessage(ctx.db, account, fresh.map((r) => r.id));
      return {
        summary: `LinkedIn connections export of ${account}: from its last export, ${fresh.length} newly accepted; ${accepted.length} would get their report link`,
        output: { account, accepted, counts: { connections: connections.length, newly_accepted: fresh.length, unreadable } },
        artifacts: [{ name: 'linkedin-acceptances.txt', content: accepted.map((a) => `${a.profile_url} ${a.company} [${a.variant}] accepted ${a.accepted_at}`).join('\n') + '\n' }],
      };
    },
  },
  async run(ctx, input) {
    const account = await accountFor(ctx, input.account);
    const rows = await readOnce(ctx, account, 'connections', { numberOfProfiles: input.profiles ?? 200, sortBy: 'Recently added' }, input);
    const { connections, unreadable } = connectionsOf(rows);
    const newly = await markAccepted(ctx, account, connections);
    const accepted = await toMessage(ctx.db, account);
    ctx.note(`${connections.length} connections read${unreadable ? ` (${unreadable} rows without a profile left out)` : ''}; ${newly} newly accepted; ${accepted.length} owed their report link`);
    return { account, accepted, counts: { connections: connections.length, newly_accepted: newly, unreadable } };
  },
});
