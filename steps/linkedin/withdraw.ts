import { type Static, Type } from '@sinclair/typebox';
import { phantombusterConnector } from '../../connectors/phantombuster/connector.ts';
import { normaliseProfileUrl } from '../../connectors/phantombuster/profile-url.ts';
import { defineStep, localDate, type StepContext } from '../../engine/sdk.ts';
import { healthSettings } from './health.ts';
import { accountPause, launchInputs, launchOnce, launchTimes } from './launch.ts';
import { accountFor } from './plan_invitations.ts';

/**
 * `linkedin.withdraw`: withdraws the account's invitations still pending `linkedin.health.
 * withdraw_after` (21 days by default) after they were sent, oldest first, up to `limit`: an
 * invitation nobody answers counts against the account's pending total, which LinkedIn
 * watches. One launch of the account's withdraw agent (LinkedIn Auto Invitation Withdrawer)
 * with the profiles one a line in its bonusArgument's spreadsheetUrl, through launchOnce
 * under a key of the account and the day: at most one withdrawal launch per account a day,
 * and a run that crashed after launching finds that launch again (a second run the same day
 * too) instead of launching anew.
 *
 * Each profile of the result is marked withdrawn (state, withdrawn_at, the reason) with its
 * linkedin.withdrawn event, all in one statement. A profile the result says had no pending
 * invitation is marked withdrawn too, with `pending: false` in its event: it is not pending
 * any more (most often declined, which LinkedIn never tells the sender), and left as sent it
 * would be tried again every day. An invitation recorded accepted is never withdrawn. A row
 * of the result with another error stays sent (tried again the next day) and is named in
 * the note. Nothing due: no launch. A paused account or one without a withdraw agent: no
 * launch either, and the note says why (the rest of the pipeline goes on).
 *
 * A dry run lists the profiles it would withdraw (linkedin-withdrawals.txt).
 */

const Input = Type.Object(
  {
    account: Type.Optional(
      Type.String({
        pattern: '^[a-z0-9_-]+$',
        'x-hint': 'an account name is lower-case letters, digits, dashes and underscores',
        description: 'The Phantombuster account (connectors.phantombuster.accounts) whose invitations are withdrawn; default: the only one configured.',
      }),
    ),
    limit: Type.Optional(Type.Integer({ minimum: 1, default: 50, description: 'At most this many in one launch, the oldest first; the rest go the next day.' })),
    ...launchInputs,
  },
  { additionalProperties: false },
);
type WithdrawInput = Static<typeof Input>;

const Withdrawal = Type.Object({
  prospect_id: Type.String(),
  profile_url: Type.String(),
  sent_at: Type.String(),
  pending: Type.Boolean({ description: 'LinkedIn had the invitation pending (false: it was gone already, most often declined).' }),
});

const Output = Type.Object({
  account: Type.String(),
  due: Type.Integer({ description: 'Invitations pending longer than withdraw_after, this launch or not.' }),
  withdrawn: Type.Array(Withdrawal),
  reason: Type.Optional(Type.String({ description: 'Why nothing was launched, when something was due.' })),
});
type WithdrawOutput = Static<typeof Output>;

interface Due {
  prospect_id: string;
  profile_url: string;
  sent_at: Date | string;
  due: number;
}

const iso = (d: Date | string) => new Date(d).toISOString();
const days = (ms: number) => (ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${Math.round(ms / 3_600_000)}h`);

/** The account's invitations sent over withdraw_after ago and never answered, oldest first, and how many in all. */
async function dueOf(ctx: StepContext, account: string, limit: number): Promise<{ rows: Due[]; due: number; after: string }> {
  const afterMs = healthSettings(ctx.config).withdrawAfterMs;
  const rows = await ctx.db.query<Due>(
    `SELECT prospect_id::text AS prospect_id, profile_url, sent_at, (count(*) OVER ())::int AS due
       FROM linkedin_invitations
      WHERE account = $1 AND state = 'sent' AND accepted_at IS NULL AND sent_at <= $2
      ORDER BY sent_at, id LIMIT $3`,
    [account, new Date(ctx.clock.now().getTime() - afterMs), limit],
  );
  return { rows, due: Number(rows[0]?.due ?? 0), after: days(afterMs) };
}

/** Why nothing can be launched on the account now, or undefined. */
async function blocked(ctx: StepContext, account: string): Promise<string | undefined> {
  const paused = await accountPause(ctx, account);
  if (paused) return `account paused (quota ${paused.quota}): ${paused.reason}`;
  const client = await ctx.use(phantombusterConnector);
  if (!client.accounts[account]?.agents.withdraw) return `account "${account}" has no withdraw agent (set connectors.phantombuster.accounts.${account}.agents.withdraw.id)`;
  return undefined;
}

/** A result row saying LinkedIn had no pending invitation to that profile. */
const NOT_PENDING = /no pending invitation|invitation not found|not pending/i;

/** The result's rows: each profile with whether it was withdrawn (pending) or gone already; others are refusals. */
function readResult(result: unknown): { done: { profile_url: string; pending: boolean }[]; refused: string[] } {
  const done: { profile_url: string; pending: boolean }[] = [];
  const refused: string[] = [];
  for (const row of Array.isArray(result) ? (result as Record<string, unknown>[]) : []) {
    const profile = normaliseProfileUrl(String(row.profileUrl ?? ''));
    if (!profile) continue;
    const error = typeof row.error === 'string' && row.error ? row.error : undefined;
    if (!error) done.push({ profile_url: profile, pending: true });
    else if (NOT_PENDING.test(error)) done.push({ profile_url: profile, pending: false });
    else refused.push(`${profile} (${error})`);
  }
  return { done, refused };
}

/** Marks the result's profiles withdrawn, each with its linkedin.withdrawn event, in one statement. */
async function settle(ctx: StepContext, account: string, containerId: string, done: { profile_url: string; pending: boolean }[], after: string) {
  if (!done.length) return [];
  const now = ctx.clock.now();
  const rows = await ctx.db.query<{ payload: Record<string, unknown> | string }>(
    `WITH withdrawn AS (
       UPDATE linkedin_invitations i
          SET state = 'withdrawn', withdrawn_at = $3,
              reason = CASE WHEN r.pending THEN $4 ELSE 'LinkedIn had no pending invitation (declined, or answered or withdrawn there)' END
         FROM unnest($2::text[], $5::boolean[]) AS r(profile_url, pending)
        WHERE i.account = $1 AND i.profile_url = r.profile_url AND i.state = 'sent' AND i.accepted_at IS NULL
        RETURNING i.prospect_id, i.profile_url, i.campaign, i.variant, i.sent_at, r.pending
     )
     INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
     SELECT 'linkedin.withdrawn', w.prospect_id::text,
            jsonb_build_object('prospect_id', w.prospect_id::text, 'channel', 'linkedin', 'account', $1::text, 'campaign', w.campaign, 'variant', w.variant,
                               'profile_url', w.profile_url, 'sent_at', w.sent_at, 'pending', w.pending, 'container_id', $6::text),
            $7, $3
       FROM withdrawn w
     RETURNING payload`,
    [account, done.map((d) => d.profile_url), now, `pending over ${after}: withdrawn`, done.map((d) => d.pending), containerId, ctx.run.id],
  );
  return rows
    .map((r) => (typeof r.payload === 'string' ? (JSON.parse(r.payload) as Record<string, unknown>) : r.payload))
    .map((p) => ({ prospect_id: String(p.prospect_id), profile_url: String(p.profile_url), sent_at: iso(String(p.sent_at)), pending: p.pending === true }))
    .sort((a, b) => a.sent_at.localeCompare(b.sent_at) || a.profile_url.localeCompare(b.profile_url));
}

async function withdraw(ctx: StepContext, input: WithdrawInput): Promise<WithdrawOutput> {
  const account = await accountFor(ctx, input.account);
  const { rows, due, after } = await dueOf(ctx, account, input.limit!);
  if (!rows.length) {
    ctx.note(`no LinkedIn invitation of account ${account} pending over ${after}`);
    return { account, due, withdrawn: [] };
  }
  const reason = await blocked(ctx, account);
  if (reason) {
    ctx.note(`${due} LinkedIn invitations of account ${account} pending over ${after} stay: ${reason}`);
    return { account, due, withdrawn: [], reason };
  }
  const day = localDate(ctx.clock.now(), ctx.config.business?.timezone ?? 'UTC');
  const run = await launchOnce(ctx, {
    account,
    kind: 'withdraw',
    key: `linkedin-withdraw:${account}:${day}`,
    bonusArgument: { spreadsheetUrl: rows.map((r) => r.profile_url).join('\n') },
    ...launchTimes(input),
  });
  if (run.outcome.kind !== 'ok') {
    const what = run.outcome.kind === 'empty' ? 'finished without withdrawing anything' : 'failed';
    throw new Error(`the withdraw agent of account "${account}" ${what}: ${run.outcome.message}`);
  }
  const { done, refused } = readResult(run.result);
  const withdrawn = await settle(ctx, account, run.containerId, done, after);
  const gone = withdrawn.filter((w) => !w.pending).length;
  ctx.note(
    `${withdrawn.length} LinkedIn invitations of account ${account} pending over ${after} withdrawn${gone ? ` (${gone} had none pending on LinkedIn)` : ''}` +
      `${due > rows.length ? `; ${due - rows.length} more the next day` : ''}${refused.length ? `; refused, tried again the next day: ${refused.slice(0, 3).join(', ')}${refused.length > 3 ? ' ...' : ''}` : ''}`,
  );
  return { account, due, withdrawn };
}

export const linkedinWithdraw = defineStep({
  type: 'linkedin.withdraw',
  description: "Withdraws the account's LinkedIn invitations pending longer than linkedin.health.withdraw_after (21d), oldest first: one launch of its Phantombuster withdraw agent a day at most.",
  input: Input,
  output: Output,
  effect: {
    kind: () => 'linkedin',
    describe: ({ account }) => ({ summary: `LinkedIn withdrawals of old pending invitations${account ? ` from ${account}` : ''}`, ...(account ? { identity: { account } } : {}) }),
    // launchOnce deduplicates by the account and the day: a launch in doubt is found again.
    providerIdempotent: () => true,
    async plan(ctx, input) {
      const account = await accountFor(ctx, input.account);
      const { rows, due, after } = await dueOf(ctx, account, input.limit!);
      const reason = rows.length ? await blocked(ctx, account) : undefined;
      const withdrawn = reason ? [] : rows.map((r) => ({ prospect_id: r.prospect_id, profile_url: r.profile_url, sent_at: iso(r.sent_at), pending: true }));
      const more = due > rows.length ? ` (${due - rows.length} more the next day)` : '';
      return {
        summary: !rows.length
          ? `no LinkedIn invitation of account ${account} pending over ${after}: nothing to withdraw`
          : reason
            ? `${due} LinkedIn invitations of account ${account} pending over ${after} would stay: ${reason}`
            : `withdraw ${rows.length} LinkedIn invitations of account ${account} pending over ${after}${more}: ${rows.map((r) => r.profile_url).join(', ')}`,
        output: { account, due, withdrawn, ...(reason ? { reason } : {}) },
        artifacts: rows.length ? [{ name: 'linkedin-withdrawals.txt', content: `${rows.map((r) => `${r.profile_url} sent ${iso(r.sent_at)}`).join('\n')}\n` }] : [],
      };
    },
  },
  run: withdraw,
});
