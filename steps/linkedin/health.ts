import { configSection, daysSince, type EngineConfig, localDate, parseDuration, periodAt, type Queryable, type QuotaRemarkSource, SkipItemError, type StepContext } from '../../engine/sdk.ts';
import { accountKeyOf, accountQuotasOf, sessionPausePrefix } from './launch.ts';
import type { LinkedinConfig } from './select.ts';

/**
 * A LinkedIn account's health and what it does to the day's invitations: the one rule, used
 * by linkedin.plan_invitations (its run and its dry run alike) and by `flows quotas`.
 *
 * - **Acceptance rate.** Of the account's invitations sent in the 7 days that end
 *   `count_after` ago (5 days by default), the share accepted. The recent ones are left out:
 *   people answer over days, and counting invitations a day old would read a healthy account
 *   as failing. Five days, not three: the sandbox's acceptances come 1 to 6 days after the
 *   invitation (LinkedIn's mostly within the week), so with 3 days a 35% account reads about
 *   30%, at the floor; with 5 days about 34%. The rate counts from `min_sample` invitations
 *   (20): a new account is not throttled on two. Below `acceptance_floor` (30%) the day's
 *   volume is `throttle_to` (50%) of the daily count.
 * - **Reconnection.** When a pause that needed a person (an expired session, a disconnection:
 *   launch.ts pauses the account's quotas with a reason naming the account) is resumed, the
 *   quota.resumed event that `flows quotas resume` records is the reconnection. From that day
 *   the volume is `reconnect_start` (60%) and gains `reconnect_step` (10%) each calendar day
 *   in business.timezone, like a quota's ramp, until it is full (the fifth day).
 *
 * Both at once: the smaller share holds (each is a limit on its own; multiplied they would
 * punish twice). The day's volume is the daily count times the share, rounded down.
 *
 * The plan plans that many; linkedin.invite checks it again before each launch against the
 * quota's day cap (holdForHealth), because a run parked on a session-expiry pause holds
 * invitations planned before it, which would all go out on the day of the reconnection.
 */

const DAY = 86_400_000;
/** The span of sending the rate is over. */
export const RATE_WINDOW_DAYS = 7;
/** The quota linkedin.plan_invitations goes under by default: `flows quotas` shows the health under it. */
const INVITATION_QUOTA = 'linkedin-connect';

export const HEALTH_DEFAULTS = { acceptance_floor: 0.3, count_after: '5d', min_sample: 20, throttle_to: 0.5, reconnect_start: 0.6, reconnect_step: 0.1, withdraw_after: '21d' } as const;

export interface HealthSettings {
  acceptanceFloor: number;
  countAfterMs: number;
  minSample: number;
  throttleTo: number;
  reconnectStart: number;
  reconnectStep: number;
  withdrawAfterMs: number;
}

/** `linkedin.health` with its defaults (the schema checked the values and their forms). */
export function healthSettings(config: EngineConfig): HealthSettings {
  const h = { ...HEALTH_DEFAULTS, ...configSection<LinkedinConfig>(config, 'linkedin')?.health };
  return {
    acceptanceFloor: h.acceptance_floor,
    countAfterMs: parseDuration(h.count_after)!,
    minSample: h.min_sample,
    throttleTo: h.throttle_to,
    reconnectStart: h.reconnect_start,
    reconnectStep: h.reconnect_step,
    withdrawAfterMs: parseDuration(h.withdraw_after)!,
  };
}

/** What the database says of an account: its invitations in the rate's window, and its last reconnection. */
export interface HealthFacts {
  account: string;
  sent: number;
  accepted: number;
  reconnectedAt: Date | null;
}

export interface AccountHealth extends HealthFacts {
  /** The share accepted; null while under the minimum sample. */
  rate: number | null;
  /** Days since the reconnection while the volume ramps back (0 on its day); null otherwise. */
  rampDay: number | null;
  /** The share of the daily volume the account sends today: 1 when healthy. */
  share: number;
  /** Why the share is less than 1, for the plan's note; undefined at full volume. */
  reason?: string;
  /** One line whatever the state, for `flows quotas`. */
  summary: string;
}

/**
 * The invitations the rate is over: sent after `from`, up to `to`, counted back from the start
 * of today (in the business's timezone). So the rate, and the volume it allows, hold for the
 * whole day: the plan in the morning and each launch later that day read the same, and a dry
 * run agrees with the run whatever the hour.
 */
export function rateWindow(now: Date, settings: HealthSettings, timezone: string): { from: Date; to: Date } {
  const to = new Date(periodAt('day', timezone, now).start.getTime() - settings.countAfterMs);
  return { from: new Date(to.getTime() - RATE_WINDOW_DAYS * DAY), to };
}

/** 0.6 + 0.1 * 3 is 0.8999...: shares are kept to a tenth of a percent. */
const tidy = (share: number) => Math.round(share * 1000) / 1000;
const percent = (share: number) => `${Math.round(share * 100)}%`;
const span = (ms: number) => (ms % DAY === 0 ? `${ms / DAY}d` : `${Math.round(ms / 3_600_000)}h`);

/** The account's health from its facts: the pure rule. */
export function healthOf(facts: HealthFacts, settings: HealthSettings, now: Date, timezone: string): AccountHealth {
  const ago = `sent ${span(settings.countAfterMs)}-${span(settings.countAfterMs + RATE_WINDOW_DAYS * DAY)} ago`;
  const counted = facts.sent >= settings.minSample;
  const rate = counted ? facts.accepted / facts.sent : null;
  const rateText = counted
    ? `acceptance ${percent(rate!)} (${facts.accepted} of ${facts.sent} invitations ${ago})`
    : `acceptance not counted yet (${facts.sent} invitations ${ago}, counted from ${settings.minSample})`;
  const low = rate !== null && rate < settings.acceptanceFloor;
  const limits: { share: number; why: string }[] = [];
  if (low) limits.push({ share: settings.throttleTo, why: `${rateText}, below the ${percent(settings.acceptanceFloor)} floor` });
  let rampDay: number | null = null;
  if (facts.reconnectedAt) {
    const day = Math.max(0, daysSince(localDate(facts.reconnectedAt, timezone), now, timezone));
    const share = tidy(Math.min(1, settings.reconnectStart + settings.reconnectStep * day));
    if (share < 1) {
      rampDay = day;
      const days = Math.ceil((1 - settings.reconnectStart) / settings.reconnectStep - 1e-9);
      limits.push({ share, why: `reconnected ${localDate(facts.reconnectedAt, timezone)}, ramp day ${day + 1} of ${days} (${percent(share)})` });
    }
  }
  const share = Math.min(1, ...limits.map((l) => l.share));
  const volume = share < 1 ? `${percent(share)} of the daily volume` : 'full daily volume';
  const reason = limits.length ? `${limits.map((l) => l.why).join('; ')}: ${volume}` : undefined;
  const summary = reason ?? `${rateText}${rate !== null ? `, at or above the ${percent(settings.acceptanceFloor)} floor` : ''}: ${volume}`;
  return { ...facts, rate, rampDay, share, ...(reason ? { reason } : {}), summary };
}

/** The day's invitations at this health: the daily count times the share, rounded down. */
export const dailyVolume = (daily: number, health: AccountHealth): number => Math.floor(daily * health.share + 1e-9);

/** The account's facts at `now`: one statement. */
export async function healthFacts(db: Pick<Queryable, 'query'>, config: EngineConfig, account: string, now: Date): Promise<HealthFacts> {
  const { from, to } = rateWindow(now, healthSettings(config), config.business?.timezone ?? 'UTC');
  const prefix = sessionPausePrefix(account);
  const [row] = await db.query<{ sent: number; accepted: number; reconnected_at: Date | string | null }>(
    `SELECT count(*)::int AS sent,
            count(*) FILTER (WHERE i.accepted_at IS NOT NULL OR i.state = 'accepted')::int AS accepted,
            (SELECT max(e.occurred_at) FROM flow_events e
              WHERE e.type = 'quota.resumed' AND e.occurred_at <= $4
                AND e.payload->>'quota' = ANY($5::text[]) AND e.payload->>'key' IN ($1, '')
                AND left(e.payload->>'reason', length($6)) = $6) AS reconnected_at
       FROM linkedin_invitations i
      WHERE i.account = $1 AND i.sent_at > $2 AND i.sent_at <= $3`,
    [account, from, to, now, accountQuotasOf(config), prefix],
  );
  return { account, sent: Number(row?.sent ?? 0), accepted: Number(row?.accepted ?? 0), reconnectedAt: row?.reconnected_at ? new Date(row.reconnected_at) : null };
}

/** The account's health at `now`. */
export async function accountHealth(db: Pick<Queryable, 'query'>, config: EngineConfig, account: string, now: Date): Promise<AccountHealth> {
  return healthOf(await healthFacts(db, config, account, now), healthSettings(config), now, config.business?.timezone ?? 'UTC');
}

const dayCapOf = (config: EngineConfig, quota: string) => (config.quotas?.[quota] as { caps?: { day?: number } } | undefined)?.caps?.day;

/**
 * Before an invitation's launch: when the account's health allows less than the quota's day
 * cap and the account has sent that many today, the invitation waits for the next day.
 */
export async function holdForHealth(ctx: StepContext, account: string): Promise<void> {
  const cap = dayCapOf(ctx.config, ctx.quota ?? INVITATION_QUOTA);
  if (cap === undefined) return;
  const now = ctx.clock.now();
  const health = await accountHealth(ctx.db, ctx.config, account, now);
  if (health.share >= 1) return;
  const day = periodAt('day', ctx.config.business?.timezone ?? 'UTC', now);
  const [sent] = await ctx.db.query<{ n: number }>("SELECT count(*)::int AS n FROM linkedin_invitations WHERE account = $1 AND state <> 'planned' AND sent_at >= $2", [account, day.start]);
  const volume = dailyVolume(cap, health);
  if (Number(sent?.n ?? 0) >= volume) {
    // Skipped, not waited for: the row stays planned for tomorrow's plan, and the run ends (a
    // run waiting for tomorrow would hold up the hourly runs that read replies and acceptances).
    throw new SkipItemError(`held for tomorrow: LinkedIn account "${account}" has sent ${volume} today, all its health allows (${health.reason})`);
  }
}

/** The accounts configured, and those that sent invitations (the sandbox's own "sandbox" when none is configured). */
async function knownAccounts(db: Pick<Queryable, 'query'>, config: EngineConfig): Promise<string[]> {
  const configured = Object.keys((config.connectors?.phantombuster as { accounts?: Record<string, unknown> } | undefined)?.accounts ?? {});
  const seen = await db.query<{ account: string }>('SELECT DISTINCT account FROM linkedin_invitations ORDER BY account');
  return [...new Set([...configured, ...seen.map((r) => r.account)])];
}

/** Each account's health under the invitation quota in `flows quotas`, with the day's count its daily cap then allows. */
export const linkedinHealthRemarks: QuotaRemarkSource = async (db, config, now) => {
  const daily = dayCapOf(config, INVITATION_QUOTA);
  const remarks = [];
  for (const account of await knownAccounts(db, config)) {
    const health = await accountHealth(db, config, account, now);
    const count = daily !== undefined && health.share < 1 ? ` (${dailyVolume(daily, health)} a day instead of ${daily})` : '';
    const key = accountKeyOf(config, INVITATION_QUOTA, account);
    remarks.push({ quota: INVITATION_QUOTA, ...(key ? { key } : {}), text: `LinkedIn account ${account}: ${health.summary}${count}` });
  }
  return remarks;
};
