import { daysSince, isRolling, periodAt, rollingSpanMs, type Span, startOfDate } from './periods.ts';
import { type QuotaPeriod, type QuotaRules, quotaLabel, type Spacing } from './quota-spec.ts';

/**
 * The pure decision of a quota: may one more effect happen at `now`, and if not, until
 * when to wait. The run decides with it inside the reservation transaction, from what the
 * ledger holds; the dry run decides with it over a simulated ledger (quota-simulator.ts).
 * One function, so the dry run's slots are the run's.
 */

/** What the ledger holds for one cap's counting span. */
export interface CapUse {
  count: number;
  /** The earliest effect in the span (when a rolling cap frees a slot). */
  oldest: Date | null;
}

export interface QuotaUse {
  /** One per cap, in the order of rules.caps, counted over countingSpans(rules, now). */
  caps: readonly CapUse[];
  /** The latest effect of this key (spacing counts from it). */
  last: Date | null;
  /** Set while a person or a rule has paused the quota or this key. */
  pause?: { reason: string; until: Date | null };
}

export type QuotaDecision = { ok: true } | { ok: false; until: Date; reason: string };

/**
 * The use after one more effect at `now`, as the ledger would count it at `now` (each cap's
 * span holds `now`): a group of calls decided in one pass sees its earlier members so.
 */
export function withEffectAt(use: QuotaUse, now: Date): QuotaUse {
  return {
    caps: use.caps.map((c) => ({ count: c.count + 1, oldest: c.oldest && c.oldest < now ? c.oldest : now })),
    last: use.last && use.last > now ? use.last : now,
    pause: use.pause,
  };
}

/** A paused quota without an end is looked at again this often. */
export const PAUSE_RECHECK_MS = 15 * 60_000;

/** The span each cap counts over at `now`, in the order of rules.caps. */
export function countingSpans(rules: QuotaRules, now: Date): Span[] {
  return rules.caps.map((c) => periodAt(c.period, rules.timezone, now));
}

/** Where counting may start: the earliest span start, and far enough back for spacing. */
export function lookbackStart(rules: QuotaRules, now: Date): Date {
  const starts = countingSpans(rules, now).map((s) => s.start.getTime());
  return new Date(Math.min(now.getTime() - (rules.spacing?.maxMs ?? 0) - 1, ...starts));
}

const DAILY: ReadonlySet<QuotaPeriod> = new Set(['day', 'rolling_24h']);

/** A cap at `now`: the configured one, or less on a ramp day (0 before the ramp starts). */
export function capAt(rules: QuotaRules, period: QuotaPeriod, configured: number, now: Date): number {
  if (!rules.ramp || !DAILY.has(period)) return configured;
  const days = daysSince(rules.ramp.from, now, rules.timezone);
  if (days < 0) return 0;
  return Math.min(configured, rules.ramp.start + rules.ramp.step * days);
}

/**
 * The spacing gap before one effect: within the configured range, the same for the same
 * seed (the quota, step and item), so a dry run and the run it predicts wait alike.
 */
export function gapFor(spacing: Spacing | undefined, seed: string): number {
  if (!spacing) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x01000193);
  const u = (h >>> 0) / 0x1_0000_0000;
  return Math.ceil(spacing.minMs + u * (spacing.maxMs - spacing.minMs));
}

const PER: Record<QuotaPeriod, string> = { hour: 'an hour', day: 'a day', rolling_24h: 'in 24 hours', rolling_7d: 'in 7 days', calendar_week: 'a calendar week' };

export function decide(rules: QuotaRules, use: QuotaUse, now: Date, gapMs: number): QuotaDecision {
  const name = quotaLabel(rules.quota, rules.key);
  const waits: { until: Date; reason: string }[] = [];
  if (use.pause) {
    const until = use.pause.until ?? new Date(now.getTime() + PAUSE_RECHECK_MS);
    const how = use.pause.until ? `until ${use.pause.until.toISOString()}` : `(flows quotas resume ${name})`;
    waits.push({ until, reason: `quota ${name} is paused: ${use.pause.reason} ${how}` });
  }
  if (!rules.calendar.windowAt(now)) {
    const next = rules.calendar.nextWindowAfter(now);
    waits.push({ until: next.start, reason: `outside the window of quota ${name}; it opens ${rules.calendar.label(next)}` });
  }
  rules.caps.forEach(({ period, cap }, i) => {
    const limit = capAt(rules, period, cap, now);
    const counted = use.caps[i] ?? { count: 0, oldest: null };
    if (counted.count < limit) return;
    waits.push({ until: capFrees(rules, period, limit, counted, now), reason: capReason(rules, name, period, cap, limit, now) });
  });
  if (gapMs > 0 && use.last && now.getTime() < use.last.getTime() + gapMs) {
    waits.push({ until: new Date(use.last.getTime() + gapMs), reason: `spacing of quota ${name} (${Math.round(gapMs / 1000)}s after the last)` });
  }
  if (!waits.length) return { ok: true };
  const latest = waits.reduce((a, b) => (b.until > a.until ? b : a));
  return { ok: false, until: rules.calendar.openAt(latest.until), reason: latest.reason };
}

/** One key a picking quota may choose, with what its ledger holds at the moment of choosing. */
export interface PickCandidate {
  rules: QuotaRules;
  use: QuotaUse;
}

export type PickDecision = { ok: true; index: number } | { ok: false; until: Date; reason: string };

/**
 * Rotation: of the keys with room at `now`, the one idle longest (no effect yet counts as
 * idlest; ties go to the key written first). When none has room, wait for the first that
 * will. The run picks with it under the keys' locks; the dry run picks by the same rule.
 */
export function pickKey(candidates: readonly PickCandidate[], now: Date, gapMs: number): PickDecision {
  let best = -1;
  let first: { until: Date; reason: string } | undefined;
  candidates.forEach((c, i) => {
    const decision = decide(c.rules, c.use, now, gapMs);
    if (!decision.ok) {
      if (!first || decision.until < first.until) first = decision;
      return;
    }
    if (best < 0 || idleSince(c.use) < idleSince(candidates[best]!.use)) best = i;
  });
  if (best >= 0) return { ok: true, index: best };
  if (!first) throw new Error('a picking quota needs at least one key');
  const quota = candidates[0]!.rules.quota;
  return { ok: false, until: first.until, reason: `no key of quota ${quota} has room now (${candidates.length} keys); the first to free: ${first.reason}` };
}

const idleSince = (use: QuotaUse) => use.last?.getTime() ?? Number.NEGATIVE_INFINITY;

/** When a full cap has room again (then the decision is made afresh). */
function capFrees(rules: QuotaRules, period: QuotaPeriod, limit: number, counted: CapUse, now: Date): Date {
  if (limit === 0 && rules.ramp && daysSince(rules.ramp.from, now, rules.timezone) < 0) return startOfDate(rules.ramp.from, rules.timezone);
  if (isRolling(period)) {
    const oldest = counted.oldest ?? now;
    return new Date(Math.max(now.getTime() + 1, oldest.getTime() + rollingSpanMs(period)));
  }
  return periodAt(period, rules.timezone, now).end;
}

function capReason(rules: QuotaRules, name: string, period: QuotaPeriod, cap: number, limit: number, now: Date): string {
  if (limit === 0 && rules.ramp && daysSince(rules.ramp.from, now, rules.timezone) < 0) return `quota ${name} starts its ramp on ${rules.ramp.from}`;
  const ramped = limit < cap ? ` (ramp day ${daysSince(rules.ramp!.from, now, rules.timezone) + 1}: ${limit} of ${cap})` : '';
  return `quota ${name} is full: ${limit} ${PER[period]}${ramped}`;
}
