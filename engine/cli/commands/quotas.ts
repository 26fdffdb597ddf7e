import type { Command } from 'commander';
import { type Clock, systemClock } from '../../clock.ts';
import { QuotaCalendar } from '../../quota/calendar.ts';
import { countedStretch } from '../../quota/ledger.ts';
import { RunStore } from '../../store.ts';
import { table } from '../../format.ts';
import type { Project } from '../project.ts';
import type { Wrap } from './types.ts';

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

export function quotasCommand(program: Command, project: () => Project, wrap: Wrap, clock: Clock = systemClock): void {
  program
    .command('quotas')
    .description("Show each quota's use and what remains in its current window (per key where it counts per key)")
    .option('--json', 'print the quotas as JSON on stdout')
    .action(
      wrap(async (opts: { json?: boolean }) => {
        const p = project();
        const quotas = Object.entries(p.config.quotas ?? {});
        const db = await p.openDb();
        try {
          const store = new RunStore(db);
          const now = clock.now();
          const reports: QuotaReport[] = [];
          for (const [name, quota] of quotas) {
            const calendar = new QuotaCalendar(quota, p.config.business?.timezone ?? 'UTC');
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
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(reports)}\n`);
            return 0;
          }
          if (!reports.length) {
            process.stdout.write(`no quotas in ${p.display(p.configFile)}\n`);
            return 0;
          }
          process.stdout.write(
            `${table(
              ['quota', 'key', 'used', 'cap', 'remaining', 'window'],
              reports.map((r) => [r.quota, r.key ?? '-', r.used, `${r.cap}/${r.per}`, r.remaining, `${r.period.label}${r.period.open ? ' (open)' : ' (next)'}`]),
            )}\n`,
          );
          return 0;
        } finally {
          await db.close();
        }
      }),
    );
}
