import type { Command } from 'commander';
import { sandboxedConnectors } from '../../connector-open.ts';
import { RunEvents } from '../../events.ts';
import { executeRun, type RunResult } from '../../executor/run.ts';
import { parseInputPairs, resolveInputs } from '../../pipeline/inputs.ts';
import { RateLimits } from '../../flow-control/rate-limits.ts';
import { RunStore } from '../../store/index.ts';
import { renderRunSummary } from '../../summary.ts';
import { showProgress } from '../progress.ts';
import { type Project, UsageError } from '../project.ts';
import { stderrTerminal } from '../terminal.ts';
import { onStopSignals } from '../stop-signals.ts';
import type { Wrap } from './types.ts';

interface RunOptions {
  dryRun?: boolean;
  input: string[];
  json?: boolean;
  resume?: string;
  out?: string;
}

export function exitCodeOf(result: RunResult): number {
  if (result.status === 'completed') return 0;
  if (result.status === 'interrupted') return 130;
  // A spent budget stops a run cleanly: it waits for the next period (or --resume then).
  if (result.status === 'waiting') return 0;
  return 1;
}

export function runCommand(program: Command, project: () => Project, wrap: Wrap): void {
  program
    .command('run')
    .description('Run a pipeline (or plan it with --dry-run, or continue a stopped run with --resume)')
    .argument('<pipeline>', 'pipeline name (a file in --dir) or path to a pipeline file')
    .option('--dry-run', 'perform reads, plan every effect without performing it, and write what would happen to --out')
    .option('-i, --input <key=value>', 'a run input (repeatable); JSON values are parsed', (v: string, acc: string[]) => [...acc, v], [])
    .option('--json', 'print the run result as one JSON object on stdout')
    .option('--resume <run-id>', 'continue this run: finished steps and items are skipped, no effect is repeated')
    .option('--out <folder>', 'dry-run artifacts folder (default .flows/dry-runs/<run id>)')
    .addHelpText(
      'after',
      '\nExit codes: 0 completed, 1 failed or completed with item errors, 2 invalid pipeline or usage, 130 interrupted (resume it with --resume).\nCtrl-C once: in-flight items finish and the run is recorded as interrupted. Twice: in-flight attempts are aborted.',
    )
    .action(
      wrap(async (name: string, opts: RunOptions) => {
        const p = project();
        const pipeline = p.pipeline(name);
        const inputs = opts.resume ? {} : resolveInputs(pipeline, parseInputPairs(opts.input));
        const db = await p.openDb();
        if (opts.resume) {
          const run = await new RunStore(db).runs.get(opts.resume);
          // A run the daemon owns is resumed by the daemon; two executors would race.
          if (run && (run.status === 'queued' || run.status === 'waiting' || (run.claimed_by && run.lease_until && new Date(run.lease_until) > new Date()))) {
            await db.close();
            throw new UsageError(
              run.claimed_by
                ? `run ${run.id} is being executed by daemon ${run.claimed_by}; see flows show ${run.id}`
                : `run ${run.id} is ${run.status} in the daemon's queue; a daemon resumes it (see flows show ${run.id})`,
            );
          }
        }
        const events = new RunEvents();
        const stopProgress = opts.json ? () => {} : showProgress(events, p.log);
        const stop = new AbortController();
        const abort = new AbortController();
        const onSigint = () => {
          if (!stop.signal.aborted) {
            stderrTerminal.print('stopping: letting in-flight items finish (Ctrl-C again to abort them)');
            stop.abort();
          } else {
            stderrTerminal.print('aborting in-flight items');
            abort.abort(new Error('aborted by Ctrl-C'));
          }
        };
        const stopListening = onStopSignals(onSigint, p.env);
        // Shared through Redis when REDIS_URL is set, so several processes keep one API limit.
        const rateLimits = new RateLimits(p.config, { redisUrl: p.env.REDIS_URL || undefined });
        try {
          const result = await executeRun({
            rateLimits,
            pipeline,
            config: p.config,
            store: new RunStore(db, p.scrub),
            inputs,
            dryRun: opts.dryRun,
            outDir: opts.out,
            resume: opts.resume,
            env: p.env,
            projectDir: p.dir,
            log: p.log,
            events,
            scrub: p.scrub,
            stop: stop.signal,
            abort: abort.signal,
            sandboxes: sandboxedConnectors(p.registry.connectors.values(), p.config).map((s) => s.name),
          });
          stopProgress();
          if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
          else {
            process.stdout.write(`${renderRunSummary(result)}\n`);
            if (result.status === 'interrupted') process.stdout.write(`\nResume with: flows run ${name} --resume ${result.run_id}\n`);
          }
          return exitCodeOf(result);
        } finally {
          stopProgress();
          stopListening();
          await rateLimits.close();
          await db.close();
        }
      }),
    );
}
