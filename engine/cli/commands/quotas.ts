import type { Command } from 'commander';
import { type Clock, systemClock } from '../../clock.ts';
import { quotaReports } from '../../quota/report.ts';
import { RunStore } from '../../store.ts';
import { table, when } from '../../format.ts';
import { budgetUse } from '../../budget.ts';
import type { Project } from '../project.ts';
import type { Wrap } from './types.ts';

export function quotasCommand(program: Command, project: () => Project, wrap: Wrap, clock: Clock = systemClock): void {
  program
    .command('quotas')
    .description("Show each quota's use and what remains in its current window (per key where it counts per key)")
    .option('--json', 'print the quotas as JSON on stdout')
    .action(
      wrap(async (opts: { json?: boolean }) => {
        const p = project();
        const db = await p.openDb();
        try {
          const store = new RunStore(db);
          const reports = await quotaReports(p.config, store, clock.now());
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

export function budgetsCommand(program: Command, project: () => Project, wrap: Wrap, clock: Clock = systemClock): void {
  program
    .command('budgets')
    .description('Show what each budget has spent (and reserved) in its current period, by unit, and what remains')
    .option('--json', 'print the budgets as JSON on stdout')
    .action(
      wrap(async (opts: { json?: boolean }) => {
        const p = project();
        const db = await p.openDb();
        try {
          const rows: { budget: string; unit: string; spent: number; limit: number; remaining: number; period: { start: string; end: string } }[] = [];
          for (const [name, budget] of Object.entries(p.config.budgets ?? {})) {
            const use = await budgetUse(db, p.config, name, clock.now());
            for (const [unit, limit] of Object.entries(budget.limits)) {
              const spent = Math.round((unit === 'usd' ? use.usd : (use.units[unit] ?? 0)) * 100) / 100;
              rows.push({ budget: name, unit, spent, limit, remaining: Math.max(0, Math.round((limit - spent) * 100) / 100), period: { start: use.start.toISOString(), end: use.end.toISOString() } });
            }
          }
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(rows)}\n`);
            return 0;
          }
          if (!rows.length) {
            process.stdout.write(`no budgets in ${p.display(p.configFile)}\n`);
            return 0;
          }
          process.stdout.write(
            `${table(
              ['budget', 'unit', 'spent', 'limit', 'remaining', 'period'],
              rows.map((r) => [r.budget, r.unit, r.spent, r.limit, r.remaining, `${when(r.period.start)} to ${when(r.period.end)}`]),
            )}\n`,
          );
          return 0;
        } finally {
          await db.close();
        }
      }),
    );
}
