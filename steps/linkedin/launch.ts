import type { AgentKind, PhantombusterClient, RunResult } from '../../connectors/phantombuster/client.ts';
import { phantombusterConnector } from '../../connectors/phantombuster/connector.ts';
import { Type } from '@sinclair/typebox';
import { configSection, DeferredError, DURATION_PATTERN, parseDuration, type EngineConfig, NeedsAttentionError, periodAt, type StepContext } from '../../engine/sdk.ts';
import type { LinkedinConfig } from './select.ts';

/**
 * Every Phantombuster launch on a LinkedIn account goes through `launchOnce`: invitations,
 * messages, the connections export, the inbox scraper and the withdrawer alike. So the rules
 * that keep an account safe exist once:
 *
 * - One launch at a time per account, across runs and machines: a lease row per account
 *   (linkedin_account_leases) is taken in one statement before the launch (ON CONFLICT DO
 *   UPDATE locks the account's row and re-reads it, so two takers never both win) and given
 *   back after the wait. A step cannot hold an advisory lock over an HTTP call: each statement
 *   of ctx.db is its own transaction. A lease left by a crash expires after `leaseMs`.
 * - Nothing is launched twice for one key: the launch is reserved (linkedin_launches) before
 *   it is made and its container recorded as soon as Phantombuster answers; a recorded
 *   container is waited for, never launched again; a reservation whose container id was lost
 *   in a crash is looked for among the agent's containers created since then that no launch
 *   holds, before anything is launched again.
 * - A paused account launches nothing: an expired session cookie or a disconnection pauses
 *   every quota of `linkedin.account_quotas` for the account (a person renews the cookie and
 *   resumes them), and while any of them is paused every launch on the account stops with
 *   the reason, whatever step asks.
 * - LinkedIn's rate limit waits `rateLimitedMs`; the weekly invitation limit waits for the
 *   next day. A launch that did nothing (those, an empty run, a failure) gives up its key so
 *   the next attempt launches again; its container stays recorded, so no lost launch is
 *   ever taken for it.
 *
 * What the caller gets is a finished run whose outcome is ok, empty or failed.
 */

/** The inputs every launching step takes: how long LinkedIn's rate limit holds the account, and how long one launch holds it. */
export const launchInputs = {
  rate_limited_wait: Type.Optional(Type.String({ pattern: DURATION_PATTERN, default: '6h', description: 'How long to wait when LinkedIn rate-limits the account, like "6h".' })),
  lease: Type.Optional(
    Type.String({ pattern: DURATION_PATTERN, default: '40m', description: "How long one launch holds its account at most (longer than the connector's timeout): a lease left by a crash expires then." }),
  ),
};

/** The `account` input of a LinkedIn step: a configured account, default the only one. */
export const accountInput = (description = 'The Phantombuster account (connectors.phantombuster.accounts); default: the only one configured.') =>
  Type.Optional(Type.String({ pattern: '^[a-z0-9_-]+$', 'x-hint': 'an account name is lower-case letters, digits, dashes and underscores', description }));

/** launchInputs as milliseconds (their patterns and defaults are checked and filled before a step runs). */
export const launchTimes = (input: { rate_limited_wait?: string; lease?: string }) => ({ leaseMs: parseDuration(input.lease!)!, rateLimitedMs: parseDuration(input.rate_limited_wait!)! });

export interface LaunchSpec {
  account: string;
  kind: AgentKind;
  /** What the launch does, unique forever: the same key is never launched twice. */
  key: string;
  /** This launch's own argument, over the agent's configured one. */
  bonusArgument: Record<string, unknown>;
  /** How long one launch holds its account at most (longer than the connector's timeout). */
  leaseMs: number;
  /** How long LinkedIn's rate limit holds the account. */
  rateLimitedMs: number;
}

interface LaunchRow {
  container_id: string | null;
  launched_at: Date | string;
  outcome: string | null;
}

const DEFAULT_ACCOUNT_QUOTAS = ['linkedin-connect', 'linkedin-message'];

/** The quotas the account's launches go under, of those configured. */
export function accountQuotasOf(config: EngineConfig): string[] {
  const named = configSection<LinkedinConfig>(config, 'linkedin')?.account_quotas ?? DEFAULT_ACCOUNT_QUOTAS;
  const configured = new Set(Object.keys(config.quotas ?? {}));
  return named.filter((q) => configured.has(q));
}

export const accountQuotas = (ctx: Pick<StepContext, 'config'>) => accountQuotasOf(ctx.config);

/**
 * How the reason of a pause that needs a person (an expired session, a disconnection) begins:
 * the account named first. A resumed pause whose reason begins so is the account's
 * reconnection (health.ts ramps its volume back up from then).
 */
export const sessionPausePrefix = (account: string) => `LinkedIn account "${account}": `;

/** The key of a quota that stands for this account: the account itself when the quota is per key. */
export const accountKeyOf = (config: EngineConfig, quota: string, account: string) => ((config.quotas?.[quota] as { per_key?: string } | undefined)?.per_key ? account : '');
export const keyFor = (ctx: Pick<StepContext, 'config'>, quota: string, account: string) => accountKeyOf(ctx.config, quota, account);

/** Why the account is paused, or undefined: a pause on any of its quotas, for it or for all. */
export async function accountPause(ctx: StepContext, account: string): Promise<{ quota: string; reason: string } | undefined> {
  for (const quota of accountQuotas(ctx)) {
    const key = keyFor(ctx, quota, account);
    const paused = (await ctx.quotaRoom(quota)).find((r) => r.paused && (r.key === key || r.key === ''));
    if (paused?.paused) return { quota, reason: paused.paused };
  }
  return undefined;
}

async function takeLease(ctx: StepContext, account: string, holder: string, leaseMs: number): Promise<boolean> {
  const now = ctx.clock.now();
  const rows = await ctx.db.query(
    `INSERT INTO linkedin_account_leases (account, holder, until) VALUES ($1, $2, $3)
     ON CONFLICT (account) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
      WHERE linkedin_account_leases.holder IS NULL OR linkedin_account_leases.holder = EXCLUDED.holder OR linkedin_account_leases.until < $4
     RETURNING holder`,
    [account, holder, new Date(now.getTime() + leaseMs), now],
  );
  return rows.length > 0;
}

const releaseLease = (ctx: StepContext, account: string, holder: string) =>
  ctx.db.query('UPDATE linkedin_account_leases SET holder = NULL, until = NULL WHERE account = $1 AND holder = $2', [account, holder]);

/** The container of a launch reserved at `since` whose id was never recorded: the oldest since then that no launch holds. */
async function lostLaunch(ctx: StepContext, client: PhantombusterClient, agentId: string, since: Date): Promise<string | undefined> {
  // A minute of slack for the difference between our clock and Phantombuster's.
  const newer = await client.launchedSince(agentId, new Date(since.getTime() - 60_000), { signal: ctx.signal });
  if (!newer.length) return undefined;
  const recorded = new Set(
    (await ctx.db.query<{ container_id: string }>('SELECT container_id FROM linkedin_launches WHERE container_id = ANY($1::text[])', [newer.map((c) => c.id)])).map((r) => r.container_id),
  );
  return newer.find((c) => !recorded.has(c.id))?.id;
}

/**
 * A launch that did nothing: its key is given up, so the next attempt launches again, but its
 * container stays recorded (the row kept under "<key>#<container id>", with its outcome). A
 * dropped row would leave the container held by no launch, and the next lost launch on the
 * agent within the minute of slack (this key's retry above all) would take it for its own:
 * the lost one, which did happen, would then be launched again.
 */
async function forget(ctx: StepContext, key: string, outcome: string): Promise<void> {
  await ctx.db.query("UPDATE linkedin_launches SET key = key || '#' || container_id, finished_at = $2, outcome = $3 WHERE key = $1 AND container_id IS NOT NULL", [key, ctx.clock.now(), outcome]);
  await ctx.db.query('DELETE FROM linkedin_launches WHERE key = $1', [key]);
}

/**
 * The pause of a LinkedIn account as common table expressions, `paused` and `paused_event`,
 * for a statement that writes it with what else it records (a launch's alone, the webhook's
 * with the run it heard of), so that the pauses and their linkedin.account_paused event
 * commit together. Each value is a placeholder or SQL expression of that statement; `after`
 * names an expression the pauses join, so that they are written only when it holds a row
 * (the webhook's newly recorded run). A pause without an end, a person's or an earlier one,
 * is kept as it is; a timed one becomes indefinite, since only a person renews a cookie.
 */
export function accountPauseCtes(v: { account: string; reason: string; by: string; at: string; quotas: string; keys: string; runId: string; payload?: string; after?: string }): string {
  const from = v.after ? `${v.after}, ` : '';
  const payload = `jsonb_build_object('channel', 'linkedin', 'account', ${v.account}::text, 'reason', ${v.reason}::text, 'quotas', to_jsonb(array_agg(quota ORDER BY quota)))${v.payload ? ` || ${v.payload}` : ''}`;
  return `paused AS (
  INSERT INTO flow_quota_pauses (quota, quota_key, reason, paused_by, paused_at, until)
  SELECT p.quota, p.quota_key, ${v.reason}, ${v.by}, ${v.at}, NULL FROM ${from}unnest(${v.quotas}::text[], ${v.keys}::text[]) AS p(quota, quota_key)
  ON CONFLICT (quota, quota_key) DO UPDATE SET reason = EXCLUDED.reason, paused_by = EXCLUDED.paused_by, paused_at = EXCLUDED.paused_at, until = NULL
    WHERE flow_quota_pauses.until IS NOT NULL
  RETURNING quota, quota_key
), paused_event AS (
  INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
  SELECT 'linkedin.account_paused', ${v.account}, ${payload}, ${v.runId}, ${v.at}
    FROM paused HAVING count(*) > 0
  RETURNING id
)`;
}

const PAUSE_ACCOUNT = `WITH ${accountPauseCtes({ account: '$1', reason: '$2', by: '$3', at: '$4', quotas: '$5', keys: '$6', runId: '$7' })}
SELECT (SELECT count(*) FROM paused)::int AS paused`;

/** Pauses the account's quotas for a person and stops the step. */
async function needsPerson(ctx: StepContext, account: string, kind: 'session_expired' | 'disconnected', message: string): Promise<never> {
  const quotas = accountQuotas(ctx);
  const why = `${sessionPausePrefix(account)}${kind === 'disconnected' ? 'disconnected by LinkedIn' : 'the session cookie is expired or invalid'} (${message})`;
  const reason = `${why}; a person must renew the session cookie`;
  await ctx.db.query(PAUSE_ACCOUNT, [account, reason, `run ${ctx.run.id} (LinkedIn launch)`, ctx.clock.now(), quotas, quotas.map((q) => keyFor(ctx, q, account)), ctx.run.id]);
  ctx.log.warn({ account, quotas }, `LinkedIn account paused: ${reason}`);
  throw new NeedsAttentionError(
    `${why}. A person must renew the session cookie: log in to LinkedIn as that account, copy its li_at cookie into connectors.phantombuster.accounts.${account}.session_cookie ` +
      `(or reconnect the Phantombuster agent's identity), then ${quotas.length ? `run: ${quotas.map((q) => `flows quotas resume ${q}`).join(' and ')}. Nothing more is launched on the account meanwhile.` : 'run the pipeline again.'}`,
  );
}

/** Launches the account's agent of `kind` once for `key` (or finds the launch made before) and waits for its end. */
export async function launchOnce(ctx: StepContext, spec: LaunchSpec): Promise<RunResult> {
  const { account, kind, key } = spec;
  const paused = await accountPause(ctx, account);
  if (paused) {
    throw new NeedsAttentionError(`LinkedIn account "${account}" is paused (quota ${paused.quota}): ${paused.reason}. Nothing is launched on it until a person runs: flows quotas resume ${paused.quota}`);
  }
  const client = await ctx.use(phantombusterConnector);
  const agent = client.agentFor(account, kind);
  if (!(await takeLease(ctx, account, key, spec.leaseMs))) {
    throw new DeferredError(`another launch holds LinkedIn account "${account}": tried again in a minute`, new Date(ctx.clock.now().getTime() + 60_000));
  }
  let run: RunResult;
  try {
    const now = ctx.clock.now();
    const [before] = await ctx.db.query<LaunchRow>('SELECT container_id, launched_at, outcome FROM linkedin_launches WHERE key = $1', [key]);
    let containerId = before?.container_id ?? (before ? await lostLaunch(ctx, client, agent.id, new Date(before.launched_at)) : undefined);
    if (containerId) {
      if (!before?.container_id) await ctx.db.query('UPDATE linkedin_launches SET container_id = $2 WHERE key = $1', [key, containerId]);
      ctx.log.info({ container: containerId, key }, 'waiting for the launch an earlier attempt made');
      run = await client.wait(containerId, { signal: ctx.signal });
    } else {
      if (await client.isRunning(agent.id, { signal: ctx.signal })) {
        throw new DeferredError(`the ${kind} agent of account "${account}" is running already (launched elsewhere): tried again in ten minutes`, new Date(ctx.clock.now().getTime() + 600_000));
      }
      await ctx.db.query(
        `INSERT INTO linkedin_launches (key, account, kind, launched_at, run_id) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key) DO UPDATE SET launched_at = EXCLUDED.launched_at, container_id = NULL`,
        [key, account, kind, now, ctx.run.id],
      );
      run = await client.run(
        agent.id,
        { ...(Object.keys(agent.argument).length ? { argument: agent.argument } : {}), bonusArgument: spec.bonusArgument },
        { signal: ctx.signal, onLaunched: (id) => ctx.db.query('UPDATE linkedin_launches SET container_id = $2 WHERE key = $1', [key, id]).then(() => undefined) },
      );
    }
    const outcome = run.outcome;
    if (outcome.kind === 'ok') await ctx.db.query("UPDATE linkedin_launches SET finished_at = $2, outcome = 'ok' WHERE key = $1", [key, ctx.clock.now()]);
    else await forget(ctx, key, outcome.kind);
  } finally {
    await releaseLease(ctx, account, key);
  }
  const outcome = run.outcome;
  const now = ctx.clock.now();
  switch (outcome.kind) {
    case 'session_expired':
    case 'disconnected':
      return needsPerson(ctx, account, outcome.kind, outcome.message);
    case 'rate_limited': {
      const until = new Date(now.getTime() + spec.rateLimitedMs);
      throw new DeferredError(`LinkedIn rate-limits account "${account}" (${outcome.message}): tried again at ${until.toISOString()}`, until);
    }
    case 'weekly_invitation_limit': {
      const until = periodAt('day', ctx.config.business?.timezone ?? 'UTC', now).end;
      throw new DeferredError(`LinkedIn's weekly invitation limit on account "${account}" (${outcome.message}): tried again at ${until.toISOString()}`, until);
    }
    default:
      return run;
  }
}

/**
 * A read of the account's own LinkedIn (the connections export, the inbox scraper), once per
 * run: launched through launchOnce under a key of this run, its rows returned. A read that
 * finds nothing is an empty list, not a failure; a failed one is an error (retried). The dry
 * run reads the agent's last result file instead (`client.resultFile`), launching nothing.
 */
export async function readOnce(
  ctx: StepContext,
  account: string,
  kind: 'connections' | 'inbox',
  bonusArgument: Record<string, unknown>,
  input: { rate_limited_wait?: string; lease?: string },
): Promise<Record<string, unknown>[]> {
  const run = await launchOnce(ctx, { account, kind, key: `linkedin-${kind}:${account}:${ctx.run.id}`, bonusArgument, ...launchTimes(input) });
  if (run.outcome.kind === 'failed') throw new Error(`the ${kind} agent of account "${account}" failed: ${run.outcome.message}`);
  return Array.isArray(run.result) ? (run.result as Record<string, unknown>[]) : [];
}
