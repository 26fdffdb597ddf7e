import { Type } from '@sinclair/typebox';
import type { PhantombusterClient, RunResult } from '../../connectors/phantombuster/client.ts';
import { phantombusterConnector } from '../../connectors/phantombuster/connector.ts';
import { normaliseProfileUrl } from '../../connectors/phantombuster/profile-url.ts';
import { DeferredError, DURATION_PATTERN, defineStep, NeedsAttentionError, parseDuration, periodAt, SkipItemError, type StepContext } from '../../engine/sdk.ts';
import { type Invitation, InvitationSchema } from './plan_invitations.ts';

/**
 * `linkedin.invite`: sends one planned invitation (an item of linkedin.plan_invitations'
 * output): launches the account's connect agent (LinkedIn Auto Connect) for that one profile
 * with the note as its message, records the container before waiting for it, waits, and
 * marks the row sent.
 *
 * One launch at a time per account, across runs and machines: a lease row per account
 * (linkedin_account_leases) is taken in one statement before the launch (ON CONFLICT DO
 * UPDATE locks the account's row and re-reads it, so two takers never both win) and given
 * back after the wait. A step cannot hold an advisory lock over an HTTP call: each statement
 * of ctx.db is its own transaction. A lease left by a crash expires after `lease`.
 *
 * The row is the idempotency: a container recorded is waited for, never launched again; a
 * launch reserved (launched_at) whose container id was lost in a crash is looked for among
 * the agent's containers created since then, not recorded by another invitation, before
 * anything is launched again. So the engine may repeat an effect in doubt (providerIdempotent).
 *
 * What the run ends with: an expired session or a disconnected account stops the run
 * (needs_attention, nothing more launched) for a person to renew the cookie; LinkedIn's rate limit waits `rate_limited_wait`; the weekly
 * invitation limit waits for the next day; a run that did nothing is an error (retried), not
 * a success; a profile LinkedIn refuses (already connected, invitation pending) fails its row.
 */

const Input = Type.Object(
  {
    invitation: InvitationSchema,
    rate_limited_wait: Type.Optional(Type.String({ pattern: DURATION_PATTERN, default: '6h', description: 'How long to wait when LinkedIn rate-limits the account, like "6h".' })),
    lease: Type.Optional(Type.String({ pattern: DURATION_PATTERN, default: '40m', description: "How long one launch holds its account at most (longer than the connector's timeout): a lease left by a crash expires then." })),
  },
  { additionalProperties: false },
);

interface Row {
  id: string;
  state: string;
  account: string;
  container_id: string | null;
  launched_at: Date | string | null;
  sent_at: Date | string | null;
  reason: string | null;
}

/** A duration of the input: its pattern and default are checked and filled in before the step runs. */
const durationOf = (text: string | undefined) => parseDuration(text!)!;

async function rowOf(ctx: StepContext, key: string): Promise<Row> {
  const [row] = await ctx.db.query<Row>('SELECT id::text, state, account, container_id, launched_at, sent_at, reason FROM linkedin_invitations WHERE idempotency_key = $1', [key]);
  if (!row) throw new SkipItemError('its invitation row is gone');
  return row;
}

/** Takes the account's lease for this invitation and reserves the launch; false when another launch holds it. */
async function takeLease(ctx: StepContext, account: string, invitationId: string, leaseMs: number): Promise<boolean> {
  const now = ctx.clock.now();
  const rows = await ctx.db.query(
    `WITH lease AS (
       INSERT INTO linkedin_account_leases (account, invitation_id, until) VALUES ($1, $2, $3)
       ON CONFLICT (account) DO UPDATE SET invitation_id = EXCLUDED.invitation_id, until = EXCLUDED.until
        WHERE linkedin_account_leases.invitation_id IS NULL OR linkedin_account_leases.invitation_id = EXCLUDED.invitation_id OR linkedin_account_leases.until < $4
       RETURNING invitation_id
     )
     UPDATE linkedin_invitations SET launched_at = coalesce(launched_at, $4) WHERE id = $2 AND EXISTS (SELECT 1 FROM lease) RETURNING id`,
    [account, invitationId, new Date(now.getTime() + leaseMs), now],
  );
  return rows.length > 0;
}

const releaseLease = (ctx: StepContext, account: string, invitationId: string) =>
  ctx.db.query('UPDATE linkedin_account_leases SET invitation_id = NULL, until = NULL WHERE account = $1 AND invitation_id = $2', [account, invitationId]);

/** The container of a launch reserved at `since` whose id was never recorded: the oldest since then that no invitation holds. */
async function lostLaunch(ctx: StepContext, client: PhantombusterClient, agentId: string, since: Date): Promise<string | undefined> {
  // A minute of slack for the difference between our clock and Phantombuster's.
  const newer = await client.launchedSince(agentId, new Date(since.getTime() - 60_000), { signal: ctx.signal });
  if (!newer.length) return undefined;
  const recorded = new Set(
    (await ctx.db.query<{ container_id: string }>('SELECT container_id FROM linkedin_invitations WHERE container_id = ANY($1::text[])', [newer.map((c) => c.id)])).map((r) => r.container_id),
  );
  return newer.find((c) => !recorded.has(c.id))?.id;
}

const record = (ctx: StepContext, id: string, containerId: string) => ctx.db.query('UPDATE linkedin_invitations SET container_id = $2 WHERE id = $1', [id, containerId]);

/** A launch that did nothing: its container is forgotten, so the next attempt launches again. */
const forget = (ctx: StepContext, id: string, reason: string) => ctx.db.query('UPDATE linkedin_invitations SET container_id = NULL, launched_at = NULL, reason = $2 WHERE id = $1', [id, reason]);

/** This profile's row in the run's result (the phantom writes one per profile it handled). */
function resultRow(result: unknown, profileUrl: string): Record<string, unknown> | undefined {
  const rows = Array.isArray(result) ? (result as Record<string, unknown>[]) : [];
  return rows.find((r) => normaliseProfileUrl(String(r.profileUrl ?? '')) === profileUrl);
}

async function settle(ctx: StepContext, input: { invitation: Invitation; rate_limited_wait?: string }, row: Row, run: RunResult) {
  const { invitation } = input;
  const outcome = run.outcome;
  const now = ctx.clock.now();
  switch (outcome.kind) {
    case 'ok': {
      const mine = resultRow(run.result, invitation.profile_url);
      const refused = mine && typeof mine.error === 'string' && mine.error ? mine.error : undefined;
      if (refused || !mine) {
        const reason = refused ? `LinkedIn refused it: ${refused}` : 'the run finished without this profile in its result';
        await ctx.db.query("UPDATE linkedin_invitations SET state = 'failed', reason = $2 WHERE id = $1", [row.id, reason]);
        throw new SkipItemError(`${invitation.profile_url}: ${reason}`);
      }
      await ctx.db.query("UPDATE linkedin_invitations SET state = 'sent', sent_at = $2, container_id = $3, reason = NULL WHERE id = $1", [row.id, now, run.containerId]);
      return { container_id: run.containerId, account: invitation.account, profile_url: invitation.profile_url, sent_at: now.toISOString() };
    }
    case 'session_expired':
    case 'disconnected': {
      await forget(ctx, row.id, outcome.message);
      // The step's own quota (its `quota:` in the pipeline): the other invitations wait on it.
      const quota = ctx.quota;
      const why = `LinkedIn account "${invitation.account}": ${outcome.kind === 'disconnected' ? 'disconnected by LinkedIn' : 'the session cookie is expired or invalid'} (${outcome.message})`;
      if (quota) await ctx.pauseQuota({ quota, reason: `${why}; a person must renew the session cookie` });
      throw new NeedsAttentionError(
        `${why}. A person must renew the session cookie: log in to LinkedIn as that account, copy its li_at cookie into connectors.phantombuster.accounts.${invitation.account}.session_cookie ` +
          `(or reconnect the Phantombuster agent's identity), then ${quota ? `run: flows quotas resume ${quota}. Nothing more is launched meanwhile.` : 'run the pipeline again.'}`,
      );
    }
    case 'rate_limited': {
      await forget(ctx, row.id, outcome.message);
      const until = new Date(now.getTime() + durationOf(input.rate_limited_wait));
      throw new DeferredError(`LinkedIn rate-limits account "${invitation.account}" (${outcome.message}): tried again at ${until.toISOString()}`, until);
    }
    case 'weekly_invitation_limit': {
      await forget(ctx, row.id, outcome.message);
      const until = periodAt('day', ctx.config.business?.timezone ?? 'UTC', now).end;
      throw new DeferredError(`LinkedIn's weekly invitation limit on account "${invitation.account}" (${outcome.message}): tried again at ${until.toISOString()}`, until);
    }
    case 'empty':
      await forget(ctx, row.id, outcome.message);
      throw new Error(`the connect agent of account "${invitation.account}" finished without inviting ${invitation.profile_url}: ${outcome.message}`);
    case 'failed':
      await forget(ctx, row.id, outcome.message);
      throw new Error(`the connect agent of account "${invitation.account}" failed for ${invitation.profile_url}: ${outcome.message}`);
  }
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
    const client = await ctx.use(phantombusterConnector);
    const agent = client.agentFor(row.account, 'connect');
    const leaseMs = durationOf(input.lease);
    if (!(await takeLease(ctx, row.account, row.id, leaseMs))) {
      throw new DeferredError(`another launch holds LinkedIn account "${row.account}": tried again in a minute`, new Date(ctx.clock.now().getTime() + 60_000));
    }
    try {
      let containerId = row.container_id ?? (row.launched_at ? await lostLaunch(ctx, client, agent.id, new Date(row.launched_at)) : undefined);
      let run: RunResult;
      if (containerId) {
        if (!row.container_id) await record(ctx, row.id, containerId);
        ctx.log.info({ container: containerId }, 'waiting for the launch an earlier attempt made');
        run = await client.wait(containerId, { signal: ctx.signal });
      } else {
        if (await client.isRunning(agent.id, { signal: ctx.signal })) {
          throw new DeferredError(`the connect agent of account "${row.account}" is running already (launched elsewhere): tried again in ten minutes`, new Date(ctx.clock.now().getTime() + 600_000));
        }
        run = await client.run(
          agent.id,
          {
            ...(Object.keys(agent.argument).length ? { argument: agent.argument } : {}),
            bonusArgument: { spreadsheetUrl: invitation.profile_url, message: invitation.note, numberOfAddsPerLaunch: 1 },
          },
          {
            signal: ctx.signal,
            onLaunched: async (id) => {
              containerId = id;
              await record(ctx, row.id, id);
            },
          },
        );
      }
      return await settle(ctx, input, row, run);
    } finally {
      await releaseLease(ctx, row.account, row.id);
    }
  },
});
