import type { EngineConfig } from '../config.ts';
import type { RunStore } from '../store.ts';
import { QuotaCalendar } from './calendar.ts';
import { countedStretch } from './ledger.ts';

export interface QuotaReport {
  quota: string;
  key: string | null;
  cap: number;
  per: string;
  used: number;
  remaining: number;
  /** The period the numbers are for: the current one, or the next when outside every window. */
  period: { start: string; end: string; label: string; open: boolean };
}

/** Each quota's use in its current period (per key where it counts per key), from the ledger. */
export async function quotaReports(config: EngineConfig, store: RunStore, now: Date): Promise<QuotaReport[]> {
  const reports: QuotaReport[] = [];
  for (const [name, quota] of Object.entries(config.quotas ?? {})) {
    const calendar = new QuotaCalendar(quota, config.business?.timezone ?? 'UTC');
    const open = calendar.periodAt(now);
    const period = open ?? calendar.nextPeriodAfter(now);
    const stretch = countedStretch(quota, period, now);
    const usage = await store.quotaUsage(name, stretch.from, stretch.to);
    const rows = usage.length ? usage : [{ quota_key: quota.per_key ? null : '', used: 0 }];
    for (const u of rows) {
      const used = Number(u.used);
      reports.push({
        quota: name,
        key: quota.per_key ? (u.quota_key ?? null) : null,
        cap: quota.cap,
        per: quota.per,
        used,
        remaining: Math.max(0, quota.cap - used),
        period: { start: period.start.toISOString(), end: period.end.toISOString(), label: calendar.label(period.start, period.end), open: Boolean(open) },
      });
    }
  }
  return reports;
}
