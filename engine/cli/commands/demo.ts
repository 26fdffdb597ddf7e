import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { openDatabase } from '../../db/connect.ts';
import { RunEvents } from '../../events.ts';
import { executeRun } from '../../executor/run.ts';
import { resolveInputs } from '../../pipeline/inputs.ts';
import { RunStore } from '../../store.ts';
import { renderRunSummary } from '../../summary.ts';
import { table } from '../../format.ts';
import { showProgress } from '../progress.ts';
import type { Project } from '../project.ts';
import { exitCodeOf } from './run.ts';
import type { Wrap } from './types.ts';

/** The sandboxes the demo starts; given by the composition root so the engine names no connector. */
export interface DemoDeps {
  startApi(): Promise<{ url: string; close(): Promise<void> }>;
}

export function demoCommand(program: Command, project: (defaults?: { logLevel?: string }) => Project, wrap: Wrap, deps?: DemoDeps): void {
  program
    .command('demo')
    .description('Run the sample pipeline end to end on the embedded database and local sandboxes (no keys needed)')
    .option('--data <folder>', 'embedded database folder for the demo', join('.flows', 'demo', 'db'))
    .action(
      wrap(async (opts: { data: string }) => {
        if (!deps) throw new Error('this build has no demo sandboxes');
        // The demo tells its own story on stdout; logs only for what went wrong (or --log-level).
        const p = project({ logLevel: 'warn' });
        const say = (s = '') => process.stdout.write(`${s}\n`);
        const pipeline = p.pipeline('demo');
        say(`1. Validated ${p.display(pipeline.file)} and ${p.display(p.configFile)}: ${pipeline.steps.length} steps, all expressions and references resolve.`);
        const api = await deps.startApi();
        const db = await openDatabase({ dataDir: resolve(opts.data) });
        say(`2. Started the search-visibility sandbox at ${api.url}; database: ${db.description}.`);
        try {
          const store = new RunStore(db, p.scrub);
          const inputs = resolveInputs(pipeline, { api_url: api.url });
          const base = { pipeline, config: p.config, store, inputs, env: p.env, log: p.log, scrub: p.scrub };

          say('3. The run:\n');
          const events = new RunEvents();
          const stopProgress = showProgress(events, p.log);
          const real = await executeRun({ ...base, events });
          stopProgress();
          say(indent(renderRunSummary(real)));

          say('\n4. A dry run of the next run: reads happen, effects are planned, not performed;');
          say('   effects already done (their keys span runs) are shown as skipped, quota slots as windows.\n');
          const dry = await executeRun({ ...base, dryRun: true, outDir: join('.flows', 'demo', 'dry-run') });
          say(indent(renderRunSummary(dry)));

          const rows = await db.query<{ domain: string; company_name: string; category: string; visibility: number; trend: string }>(
            `SELECT p.domain, p.company_name, p.category, (i.data->>'visibility')::float AS visibility, i.data->>'trend' AS trend
               FROM prospects p JOIN prospect_intelligence i ON i.domain = p.domain AND i.source = 'demo_api'
              WHERE p.source = 'demo' ORDER BY p.domain`,
          );
          say('\n5. What the run stored (prospects joined with prospect_intelligence):\n');
          say(indent(table(['domain', 'company', 'visibility', 'trend', 'category'], rows.map((r) => [r.domain, r.company_name, r.visibility, r.trend, r.category]))));
          say('\n6. Run it again: the upserts converge and the events are not emitted twice (their keys span runs).');
          const again = await executeRun({ ...base });
          const notify = again.steps.find((s) => s.id === 'notify');
          say(`   second run ${again.run_id}: ${again.status}; notify effects performed this time: ${notify?.effects ?? 0}`);
          say(`\nInspect: npx flows runs --db ${opts.data}    npx flows show ${real.run_id} --db ${opts.data}`);
          say(`Dry-run artifacts: ${dry.artifacts}/`);
          return exitCodeOf(real);
        } finally {
          await api.close();
          await db.close();
        }
      }),
    );
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `   ${l}` : l))
    .join('\n');
}
