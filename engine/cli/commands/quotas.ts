import type { Command } from 'commander';
import { type Clock, systemClock } from '../../clock.ts';
import { quotaReports } from '../../quota/report.ts';
import { RunStore } from '../../store.ts';
import { table } from '../../format.ts';
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
