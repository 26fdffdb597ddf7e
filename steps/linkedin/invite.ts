import { Type } from '@sinclair/typebox';
import type { RunResult } from '../../connectors/phantombuster/client.ts';
import { normaliseProfileUrl } from '../../connectors/phantombuster/profile-url.ts';
import { defineStep, SkipItemError, type StepContext } from '../../engine/sdk.ts';
import { holdForHealth } from './health.ts';
import { launchInputs, launchOnce, launchTimes } from './launch.ts';
import { type Invitation, InvitationSchema } from './plan_invitations.ts';

/**
 * `linkedin.invite`: sends one planned invitation (an item of linkedin.plan_invitations'
 * output): launches the account's connect agent (LinkedIn Auto Connect) for that one profile
 * with the note as its message, waits, and marks the row sent with its linkedin.invited
 * event in one statement.
 *
 * The launch goes through launchOnce (launch.ts), as every LinkedIn launch does: one at a
 * time per account, never twice for one invitation (a lost container is found again), and a
 * paused account launches nothing. So the engine may repeat an effect in doubt
 * (providerIdempotent).
 *
 * The account's health (health.ts) caps the day's launches too, whenever the invitation was
 * planned: past it the invitation waits for the next day.
 *
 * What the run ends with: an expired session or a disconnected account stops the run
 * (needs_attention, the account's quotas paused) for a person to renew the cookie; LinkedIn's
 * rate limit waits `rate_limited_wait`; the weekly invitation limit waits for the next day; a
 * run that did nothing is an error (retried), not a success; a profile LinkedIn refuses
 * (already connected, invitation pending) fails its row.
 */

const Input = Type.Object(
  {
    invitation: InvitationSchema,
    ...launchInputs,
  },
  { additionalProperties: false },
);

interface Row {
  id: string;
  state: string;
  account: string;
  container_id: string | null;
  sent_at: Date | string | null;
  reason: string | null;
}


async function rowOf(ctx: StepContext, key: string): Promise<Row> {
  const [row] = await ctx.db.query<Row>('SELECT id::text, state, account, container_id, sent_at, reason FROM linkedin_invitations WHERE idempotency_key = $1', [key]);
  if (!row) throw new SkipItemError('its invitation row is gone');
  return row;
}

/** A launch that did nothing: the reason stays on the row, which stays planned. */
const noteWhy = (ctx: StepContext, id: string, reason: string) => ctx.db.query('UPDATE linkedin_invitations SET reason = $2 WHERE id = $1', [id, reason]);

/** This profile's row in the run's result (the phantom writes one per profile it handled). */
function resultRow(result: unknown, profileUrl: string): Record<string, unknown> | undefined {
  const rows = Array.isArray(result) ? (result as Record<string, unknown>[]) : [];
  return rows.find((r) => normaliseProfileUrl(String(r.profileUrl ?? '')) === profileUrl);
}

async function settle(ctx: StepContext, invitation: Invitation, row: Row, run: RunResult) {
  const outcome = run.outcome;
  const now = ctx.clock.now();
  if (outcome.kind === 'ok') {
    const mine = resultRow(run.result, invitation.profile_url);
    const refused = mine && typeof mine.error === 'string' && mine.error ? mine.error : undefined;
    if (refused || !mine) {
      const reason = refused ? `LinkedIn refused it: ${refused}` : 'the run finished without this profile in its result';
      await ctx.db.query("UPDATE linkedin_invitations SET state = 'failed', reason = $2, container_id = $3 WHERE id = $1", [row.id, reason, run.containerId]);
      throw new SkipItemError(`${invitation.profile_url}: ${reason}`);
    }
    await ctx.db.query(
      `WITH sent AS (
         UPDATE linkedin_invitations SET state = 'sent', sent_at = $2, container_id = $3, reason = NULL WHERE id = $1 AND state = 'planned' RETURNING prospect_id, account, campaign, variant
       )
       INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
       SELECT 'linkedin.invited', sent.prospect_id::text,
              jsonb_build_object('prospect_id', sent.prospect_id::text, 'channel', 'linkedin', 'account', sent.account, 'campaign', sent.campaign, 'variant', sent.variant, 'container_id', $3::text),
              $4, $2 FROM sent`,
      [row.id, now, run.containerId, ctx.run.id],
    );
    return { container_id: run.containerId, account: invitation.account, profile_url: invitation.profile_url, sent_at: now.toISOString() };
  }
  await noteWhy(ctx, row.id, outcome.message);
  if (outcome.kind === 'empty') throw new Error(`the connect agent of account "${invitation.account}" finished without inviting ${invitation.profile_url}: ${outcome.message}`);
  throw new Error(`the connect agent of account "${invitation.account}" failed for ${invitation.profile_url}: ${outcome.message}`);
}

export const linkedinInvite = defineStep({
  type: 'linkedin.invite',
  description: "Sends one planned LinkedIn connection request (an item of linkedin.plan_invitations' output) through the account's Phantombuster connect agent, one launch at a time per account.",
  input: Input,
  output: Type.Object({ container_id: Type.String(), account: Type.String(), profile_url: Type.String(), sent_at: Type.String() }),
  effect: {
    kind: () => 'linkedin',
    describe: ({ invitation }) => ({
      summary: `LinkedIn invitation to ${invitation.profile_url} from ${invitation.account}`,
      identity: { profile: invitation.profile_url, account: invitation.account, key: invitation.idempotency_key },
    }),
    // The invitation's row deduplicates: a recorded container is waited for, a lost one found again.
    providerIdempotent: () => true,
    plan(_ctx, { invitation }) {
      return {
        summary: `LinkedIn invitation to ${invitation.profile_url} from ${invitation.account} [${invitation.variant}]: ${invitation.note}`,
        output: { container_id: '(dry run)', account: invitation.account, profile_url: invitation.profile_url, sent_at: '(dry run)' },
        artifacts: [{ name: 'note.txt', content: `${invitation.note}\n` }],
      };
    },
  },
  async run(ctx, input) {
    const { invitation } = input;
    const row = await rowOf(ctx, invitation.idempotency_key);
    if (row.state === 'sent') return { container_id: row.container_id ?? '', account: row.account, profile_url: invitation.profile_url, sent_at: new Date(row.sent_at!).toISOString() };
    if (row.state !== 'planned') throw new SkipItemError(`${row.state}${row.reason ? ` (${row.reason})` : ''}`);
    // A launch made before (in doubt after a crash) is waited for whatever the health says.
    const [reserved] = await ctx.db.query('SELECT 1 FROM linkedin_launches WHERE key = $1', [invitation.idempotency_key]);
    if (!reserved) await holdForHealth(ctx, row.account);
    const run = await launchOnce(ctx, {
      account: row.account,
      kind: 'connect',
      key: invitation.idempotency_key,
      bonusArgument: { spreadsheetUrl: invitation.profile_url, message: invitation.note, numberOfAddsPerLaunch: 1 },
      ...launchTimes(input),
    });
    return settle(ctx, invitation, row, run);
  },
});
