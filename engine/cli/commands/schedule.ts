import type { Command } from 'commander';
import { type Clock, systemClock } from '../../clock.ts';
import { nextFires } from '../../schedule.ts';
import { table } from '../../format.ts';
import type { Project } from '../project.ts';
import { integerOption } from '../options.ts';
import type { Wrap } from './types.ts';

export function scheduleCommand(program: Command, project: () => Project, wrap: Wrap, clock: Clock = systemClock): void {
  program
    .command('schedule')
    .description('Show the next fire times of every scheduled pipeline, in its timezone and in UTC')
    .option('--next <n>', 'how many fire times per pipeline', integerOption({ min: 1, example: 3 }), 3)
    .option('--json', 'print the fire times as JSON on stdout')
    .action(
      wrap(async (opts: { next: number; json?: boolean }) => {
        const p = project();
        const now = clock.now();
        const scheduled = p
          .pipelineFiles()
          .map((file) => p.pipeline(file))
          .filter((pl) => pl.trigger.kind === 'schedule');
        const rows = scheduled.flatMap((pl) =>
          nextFires(pl, now, Math.max(1, opts.next)).map((f) => ({
            pipeline: pl.name,
            cron: pl.trigger.kind === 'schedule' ? pl.trigger.cron : '',
            timezone: pl.trigger.kind === 'schedule' ? pl.trigger.timezone : '',
            local: f.local,
            utc: f.at.toISOString(),
          })),
        );
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(rows)}\n`);
          return 0;
        }
        if (!rows.length) {
          process.stdout.write(`no scheduled pipelines in ${p.display(p.dir)} (a pipeline with trigger.schedule runs on a cron)\n`);
          return 0;
        }
        process.stdout.write(`${table(['pipeline', 'cron', 'local time', 'UTC'], rows.map((r) => [r.pipeline, `${r.cron} (${r.timezone})`, r.local, r.utc.replace('.000Z', 'Z')]))}\n`);
        return 0;
      }),
    );
}
