import { type Command, Option } from 'commander';
import { formatDuration } from '../../duration.ts';
import { RUN_STATUSES, type RunStatus } from '../../db/tables.ts';
import { type RunRow, RunStore } from '../../store/index.ts';
import { formatUnits, table, usd, when } from '../../format.ts';
import type { Project } from '../project.ts';
import { UsageError } from '../project.ts';
import { integerOption } from '../options.ts';
import type { Wrap } from './types.ts';

export function runsCommand(program: Command, project: () => Project, wrap: Wrap): void {
  program
    .command('runs')
    .description('List recent runs, newest first')
    .option('--pipeline <name>', 'only runs of this pipeline')
    .addOption(new Option('--status <status>', 'only runs in this status').choices(RUN_STATUSES))
    .option('--limit <n>', 'how many', integerOption({ min: 1, example: 20 }), 20)
    .option('--json', 'print the runs as JSON on stdout')
    .action(
      wrap(async (opts: { pipeline?: string; status?: RunStatus; limit: number; json?: boolean }) => {
        const p = project();
        const db = await p.openDb();
        try {
          const runs = await new RunStore(db).runs.list({ pipeline: opts.pipeline, status: opts.status, limit: opts.limit });
          if (opts.json) {
            process.stdout.write(`${JSON.stringify(runs)}\n`);
            return 0;
          }
          if (!runs.length) {
            process.stdout.write('no runs yet (start one with: flows run <pipeline>)\n');
            return 0;
          }
          const rows = runs.map((r) => [
            r.id,
            r.pipeline,
            `${r.status}${r.dry_run ? ' (dry run)' : ''}${r.status === 'waiting' && r.waiting_until ? ` until ${when(r.waiting_until)}` : ''}`,
            r.trigger,
            when(r.started_at),
            r.finished_at ? formatDuration(new Date(r.finished_at).getTime() - new Date(r.started_at).getTime()) : '',
            r.cost ? usd(r.cost.usd) : '',
            reasonOf(r),
          ]);
          // The reason column only when a run has one (a run that needs attention says what to do).
          const withReasons = rows.some((r) => r[7]);
          const headers = ['run', 'pipeline', 'status', 'trigger', 'started', 'took', 'cost', ...(withReasons ? ['reason'] : [])];
          process.stdout.write(`${table(headers, withReasons ? rows : rows.map((r) => r.slice(0, 7)))}\n`);
          return 0;
        } finally {
          await db.close();
        }
      }),
    );
}

/** Why a run stopped or waits: what needs attention, the error it failed with, or the wait. */
function reasonOf(run: RunRow): string {
  if (run.status === 'waiting') return run.waiting_reason ?? '';
  return run.status === 'needs_attention' || run.status === 'failed' ? (run.error ?? '') : '';
}

export function showCommand(program: Command, project: () => Project, wrap: Wrap): void {
  program
    .command('show')
    .description('Show one run: its steps, item counts, failures by reason and effects')
    .argument('<run-id>', 'the run (see flows runs)')
    .option('--json', 'print the run as JSON on stdout')
    .action(
      wrap(async (runId: string, opts: { json?: boolean }) => {
        const p = project();
        const db = await p.openDb();
        try {
          const store = new RunStore(db);
          const run = await store.runs.get(runId);
          if (!run) throw new UsageError(`no run "${runId}" (see flows runs)`);
          const steps = await store.runs.steps(runId);
          const failures = await store.items.failed(runId, 1000);
          const effects = await store.effects.counts(runId);
          const skipped = await store.items.skipReasons(runId);
          const repeated = await store.effects.repeatsOf(runId);
          if (opts.json) {
            process.stdout.write(`${JSON.stringify({ run, steps, failures, skipped, effects, repeated })}\n`);
            return 0;
          }
          const out: string[] = [];
          out.push(`run       ${run.id}${run.dry_run ? ' (dry run)' : ''}`);
          out.push(`pipeline  ${run.pipeline} (${run.pipeline_file})`);
          out.push(`status    ${run.status}${run.error ? `: ${run.error}` : ''}`);
          out.push(`trigger   ${run.trigger}${run.trigger_ref ? ` (${run.trigger_ref})` : ''}`);
          out.push(`started   ${when(run.started_at)}`);
          if (run.waiting_until) {
            const who = run.status === 'waiting' ? ' (a daemon resumes it then)' : '';
            out.push(`waiting   until ${when(run.waiting_until)}${who}: ${run.waiting_reason ?? 'quota'}`);
          }
          if (run.claimed_by) out.push(`worker    ${run.claimed_by}${run.lease_until ? `, lease until ${when(run.lease_until)}` : ''}`);
          if (run.finished_at) out.push(`finished  ${when(run.finished_at)} (${formatDuration(new Date(run.finished_at).getTime() - new Date(run.started_at).getTime())})`);
          if (Object.keys(run.inputs ?? {}).length) out.push(`inputs    ${JSON.stringify(run.inputs)}`);
          if (run.cost) out.push(`cost      ${costLine(run.cost)}${run.dry_run ? ' (estimated)' : ''}`);
          out.push('');
          out.push(
            table(
              ['step', 'status', 'succeeded', 'failed', 'skipped', 'error'],
              // A step without foreach has no items to count.
              steps.map((s) => (s.items_total ? [s.step_id, s.status, s.items_succeeded, s.items_failed, s.items_skipped, s.error ?? ''] : [s.step_id, s.status, '', '', '', s.error ?? ''])),
            ),
          );
          if (effects.length) {
            out.push('', table(['effects of step', 'kind', 'status', 'count'], effects.map((e) => [e.step_id, e.kind, e.status, e.n])));
          }
          if (repeated.length) {
            out.push('', 'Performed again after a crash left them in doubt (in_doubt: repeat, or the provider deduplicates by key):');
            for (const r of repeated) out.push(`  ${r.step_id}: ${r.n} effect${r.n === 1 ? '' : 's'}, ${r.repeats} repeat${r.repeats === 1 ? '' : 's'}`);
          }
          if (skipped.length) {
            out.push('', 'Skipped items by reason:');
            for (const r of skipped) out.push(`  ${r.n} × ${r.step_id}: ${r.reason}`);
          }
          if (failures.length) {
            const byReason = new Map<string, string[]>();
            for (const f of failures) {
              const k = `${f.step_id}: ${f.error ?? 'unknown error'}`;
              byReason.set(k, [...(byReason.get(k) ?? []), f.item_key]);
            }
            out.push('', 'Failed items by reason:');
            for (const [reason, keys] of byReason) out.push(`  ${keys.length} × ${reason}${keys.length <= 3 ? ` [${keys.join(', ')}]` : ''}`);
          }
          if (run.status === 'interrupted' || run.status === 'failed' || run.status === 'completed_with_errors') {
            if (!run.dry_run) out.push('', `Resume with: flows run ${run.pipeline} --resume ${run.id}`);
          }
          process.stdout.write(`${out.join('\n')}\n`);
          return 0;
        } finally {
          await db.close();
        }
      }),
    );
}

/** "120 semrush_units, 3000 claude_batch_input_tokens ($1.39)", or "nothing ($0.00)". */
function costLine(cost: { units: Record<string, number>; usd: number }): string {
  return `${formatUnits(cost.units) || 'nothing'} (${usd(cost.usd)})`;
}
