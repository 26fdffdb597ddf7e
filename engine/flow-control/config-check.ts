import type { Diagnostic } from '../errors.ts';
import { formatPath, type Path, type SourceDoc } from '../yaml.ts';
import { parseSpacing } from './quota-spec.ts';

type Raw = Record<string, any>;

export function isValidTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const OLD_PERIOD: Record<string, string> = {
  hour: 'caps: { hour: N }',
  day: 'caps: { day: N }',
  week: 'caps: { rolling_7d: N } (any 7 days) or caps: { calendar_week: N } (Monday to Monday)',
};

/**
 * The flow-control checks that need more than the schema: timezones, windows, spacing, ramps,
 * and the files written before periods were named explicitly (`cap: 17, per: day`, a budget
 * `per: week`), which get one message saying what to write instead of the schema's several.
 * Returns the schema's diagnostics with those replaced, plus these.
 */
export function reviseFlowControl(raw: Raw, doc: SourceDoc, diagnostics: readonly Diagnostic[]): Diagnostic[] {
  const replaced: string[] = [];
  const out: Diagnostic[] = [];
  const defaultTz = raw.business?.timezone;
  for (const [name, quota] of Object.entries<Raw>(raw.quotas ?? {})) {
    if (!quota || typeof quota !== 'object') continue;
    const base = ['quotas', name];
    if ('cap' in quota || 'per' in quota) {
      replaced.push(formatPath(base));
      const how = OLD_PERIOD[String(quota.per)]?.replaceAll('N', String(quota.cap ?? 'N')) ?? 'caps: { day: N } (periods: hour, day, rolling_24h, rolling_7d, calendar_week)';
      out.push(doc.at(base, `caps are named by period now: write ${how} instead of cap and per`));
      continue;
    }
    out.push(...checkQuota(doc, base, quota, defaultTz));
  }
  for (const [name, budget] of Object.entries<Raw>(raw.budgets ?? {})) {
    if (budget?.per === 'week' || budget?.per === 'month') {
      const path = ['budgets', name, 'per'];
      replaced.push(formatPath(path));
      const how = budget.per === 'week' ? 'calendar_week (Monday 00:00 to Monday 00:00)' : 'calendar_month';
      out.push(doc.at(path, `periods are named explicitly now: write per: ${how}`));
    }
  }
  const kept = diagnostics.filter((d) => !replaced.some((p) => d.path === p || d.path.startsWith(`${p}.`)));
  return [...kept, ...out];
}

function checkQuota(doc: SourceDoc, base: Path, quota: Raw, defaultTz: string | undefined): Diagnostic[] {
  const out: Diagnostic[] = [];
  const at = (path: Path, message: string) => out.push(doc.at([...base, ...path], message));
  const badTz = (tz: unknown) => typeof tz === 'string' && !isValidTimezone(tz);
  if (badTz(quota.timezone)) at(['timezone'], `unknown timezone "${quota.timezone}" (write an IANA name like "Europe/London")`);
  else if ((quota.window || quota.days) && !quota.timezone && !defaultTz) at([], 'a quota with days or a window needs a timezone (set timezone here or business.timezone)');
  if (typeof quota.window === 'string' && /^\d\d:\d\d-\d\d:\d\d$/.test(quota.window)) {
    const [from, to] = quota.window.split('-');
    if (from && to && from >= to) at(['window'], `window "${quota.window}" ends before it starts`);
  }
  if (typeof quota.spacing === 'string' && !parseSpacing(quota.spacing)) at(['spacing'], `"${quota.spacing}" is not a spacing (write "60s" or "600s..900s")`);
  const keys = quota.keys && typeof quota.keys === 'object' ? (quota.keys as Record<string, Raw | null>) : {};
  for (const [key, settings] of Object.entries(keys)) {
    if (badTz(settings?.timezone)) at(['keys', key, 'timezone'], `unknown timezone "${settings!.timezone}" (write an IANA name like "Europe/London")`);
    if (settings?.ramp_from !== undefined && !quota.ramp) at(['keys', key, 'ramp_from'], 'ramp_from goes with a ramp: add ramp: { start: 10, step: 5 } to the quota');
  }
  // With keys_from, each key's own start comes from where the keys are declared (a mailbox's ramp_from).
  if (quota.ramp && typeof quota.ramp === 'object' && quota.ramp.from === undefined && quota.keys_from === undefined) {
    const without = Object.entries(keys).filter(([, s]) => !s?.ramp_from).map(([k]) => k);
    if (!Object.keys(keys).length || without.length) {
      at(['ramp'], `a ramp starts on a date: write ramp.from: "2026-12-01"${without.length ? `, or ramp_from on each key (missing on ${without.join(', ')})` : ''}`);
    }
  }
  return out;
}
