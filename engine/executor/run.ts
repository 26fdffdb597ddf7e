import { systemClock, type Clock } from '../clock.ts';
import type { EngineConfig } from '../config.ts';
import { addCost, type Cost, zeroCost } from '../cost.ts';
import type { RunStatus, StepStatus } from '../db/tables.ts';
import { DryRunSink, type PlannedEffectRecord } from '../dry-run.ts';
import { errorMessage, findCause, NeedsAttentionError } from '../errors.ts';
import { RunEvents } from '../events.ts';
import { newRunId } from '../ids.ts';
import { type Logger, silentLogger } from '../log.ts';
import { isCallStep, type Pipeline } from '../pipeline/types.ts';
import { resolveInputs } from '../pipeline/inputs.ts';
import type { Scrubber } from '../secrets.ts';
import type { RunRow, RunStore } from '../store.ts';
import { type RunContext, readOnlyQueryable, writableQueryable } from './context.ts';
import { runForeach } from './foreach.ts';
import { DatabaseEffects } from './write-batch.ts';
import { RateLimits } from '../rate-limits.ts';
import { Resources } from '../resources.ts';
import { invokeStep } from './invoke.ts';
import { whenHolds } from './when.ts';
import { stoppedWaiting } from '../quota/ledger.ts';
import { renderRunSummary } from '../summary.ts';

export interface ExecuteOptions {
  pipeline: Pipeline;
  config: EngineConfig;
  store: RunStore;
  /** Checked against the pipeline's declared inputs; defaults are filled in. */
  inputs?: Record<string, unknown>;
  dryRun?: boolean;
  /** Folder for a dry run's artifacts (default .flows/dry-runs/<run id>). */
  outDir?: string;
  /** Continue this run: finished steps and items are not executed again. */
  resume?: string;
  /** The run's row as the daemon just claimed it (status already running): saves reading it again. */
  claimed?: RunRow;
  env?: Record<string, string | undefined>;
  clock?: Clock;
  log?: Logger;
  events?: RunEvents;
  scrub?: Scrubber;
  /** Graceful stop: no new items; in-flight items finish; the run ends "interrupted". */
  stop?: AbortSignal;
  /** Hard stop: in-flight attempts are aborted too. */
  abort?: AbortSignal;
  /** Named rate limits (shared through Redis when built with a URL); by default in-process, closed at the end. */
  rateLimits?: RateLimits;
  /** Clients, browser and sandboxes shared by the process's runs; by default made for this run and closed at its end. */
  resources?: Resources;
  /** The pipelines folder, for resources made by this run (default ./pipelines). */
  projectDir?: string;
  /**
   * A quota wait longer than this ends the run "waiting" (its waiting_until says when to go
   * on) rather than sleeping; the daemon sets it so a worker is not held for hours.
   */
  parkAfterMs?: number;
}

export interface StepSummary {
  id: string;
  uses: string;
  status: StepStatus | 'not_run';
  items?: { total: number; succeeded: number; failed: number; skipped: number };
  effects: number;
  cost: Cost;
  error?: string;
}

export interface RunResult {
  run_id: string;
  pipeline: string;
  dry_run: boolean;
  status: RunStatus;
  error?: string;
  steps: StepSummary[];
  failures: { step: string; item: string; error: string | null }[];
  /** Items skipped with a reason, counted. */
  skipped: { step: string; reason: string; n: number }[];
  /** Lines the steps wrote for the summary. */
  notes: { step: string; text: string }[];
  /** Planned effects of a dry run (empty for a real run). */
  effects: PlannedEffectRecord[];
  cost: Cost;
  artifacts?: string;
}

const never = new AbortController().signal;

/** Runs (or resumes, or dry-runs) a pipeline to its end, recording every step and item. */
export async function executeRun(options: ExecuteOptions): Promise<RunResult> {
  const { pipeline, store } = options;
  const clock = options.clock ?? systemClock;
  const events = options.events ?? new RunEvents();
  const scrub = options.scrub ?? ((v) => v);
  // A plain copy: expressions read only plain data (process.env is an exotic object).
  const env: Record<string, string | undefined> = { ...options.env };

  let runId: string;
  let inputs = options.resume ? {} : resolveInputs(pipeline, options.inputs ?? {});
  let dryRun = options.dryRun ?? false;
  const completed = new Map<string, unknown>();
  let changedSinceStart = false;
  if (options.resume) {
    const run = options.claimed?.id === options.resume ? options.claimed : await store.getRun(options.resume);
    if (!run) throw new Error(`no run "${options.resume}" (see flows runs)`);
    if (run.pipeline !== pipeline.name) throw new Error(`run ${run.id} belongs to pipeline "${run.pipeline}", not "${pipeline.name}"`);
    if (run.dry_run) throw new Error(`run ${run.id} was a dry run; start a new one instead of resuming it`);
    if (run.status === 'completed') throw new Error(`run ${run.id} already completed; nothing to resume`);
    runId = run.id;
    inputs = run.inputs;
    changedSinceStart = run.pipeline_hash !== pipeline.hash;
    dryRun = false;
    for (const s of await store.getSteps(runId)) if (s.status === 'completed' || s.status === 'skipped') completed.set(s.step_id, s.output);
    if (run.status !== 'running' || options.claimed?.id !== run.id) await store.setRunStatus(runId, 'running', clock.now());
  } else {
    runId = newRunId(clock.now());
    await store.createRun({ id: runId, pipeline: pipeline.name, file: pipeline.file, hash: pipeline.hash, dryRun, inputs, now: clock.now() });
  }
  const log = (options.log ?? silentLogger).child({ run: runId, pipeline: pipeline.name });
  if (changedSinceStart) log.warn('the pipeline file changed since this run started; resuming with the current file');

  const park: RunContext['park'] = options.parkAfterMs !== undefined && !dryRun ? { afterMs: options.parkAfterMs, controller: new AbortController() } : undefined;
  const halt: RunContext['halt'] = { controller: new AbortController() };
  const stop = options.stop ?? never;
  const sink = dryRun ? new DryRunSink(options.outDir ?? `.flows/dry-runs/${runId}`, scrub) : undefined;
  const rc: RunContext = {
    runId,
    pipeline: pipeline.name,
    dryRun,
    resumed: Boolean(options.resume),
    config: options.config,
    clock,
    log,
    events,
    store,
    scrub,
    stop: AbortSignal.any([stop, halt.controller.signal, ...(park ? [park.controller.signal] : [])]),
    park,
    halt,
    abort: options.abort ?? never,
    scope: {
      inputs,
      steps: {},
      config: options.config,
      env,
      run: { id: runId, pipeline: pipeline.name, dry_run: dryRun, started_at: clock.now().toISOString() },
    },
    db: dryRun ? readOnlyQueryable(store.db) : writableQueryable(store.db),
    sink,
    slots: new Map(),
    costByStep: new Map(),
    notes: [],
    writes: new DatabaseEffects(store, () => clock.now()),
    calendars: new Map(),
    rateLimits: options.rateLimits ?? new RateLimits(options.config),
    resources:
      options.resources ??
      new Resources({ config: options.config, env, log, clock, projectDir: options.projectDir ?? 'pipelines', stateDir: '.flows' }),
  };

  events.emit('run:start', { runId, pipeline: pipeline.name, dryRun, resumed: Boolean(options.resume) });
  log.info({ dryRun, resumed: Boolean(options.resume) }, 'run started');

  const summaries: StepSummary[] = [];
  let status: RunStatus = 'completed';
  let runError: string | undefined;
  let attention: string | undefined;
  for (const step of pipeline.steps) {
    const summary: StepSummary = { id: step.id, uses: step.uses, status: 'not_run', effects: 0, cost: zeroCost() };
    summaries.push(summary);
    if (status === 'failed' || status === 'interrupted' || status === 'needs_attention') continue;
    if (completed.has(step.id)) {
      rc.scope.steps[step.id] = { output: completed.get(step.id) };
      summary.status = 'completed';
      continue;
    }
    if (rc.stop.aborted) {
      status = 'interrupted';
      continue;
    }
    await store.startStep(runId, step.id, step.position, clock.now());
    let stepStatus: StepStatus;
    let output: unknown = null;
    let error: string | undefined;
    try {
      if (step.foreach) {
        const outcome = await runForeach(rc, step);
        output = outcome.output;
        summary.items = { total: outcome.output.total, succeeded: outcome.output.succeeded, failed: outcome.output.failed, skipped: outcome.output.skipped };
        stepStatus = !outcome.finished ? 'running' : outcome.output.failed > 0 ? 'completed_with_errors' : 'completed';
      } else {
        events.emit('step:start', { runId, stepId: step.id });
        if (!whenHolds(step.when, rc.scope, clock)) stepStatus = 'skipped';
        else {
          if (!isCallStep(step)) throw new Error(`step ${step.id} is a group without foreach`);
          output = (await invokeStep(rc, step, rc.scope)).output;
          stepStatus = 'completed';
        }
      }
    } catch (err) {
      if (stoppedWaiting(err)) stepStatus = 'running';
      else if (needsAttention(err)) {
        stepStatus = 'failed';
        error = errorMessage(needsAttention(err));
        attention = error;
        log.warn({ step: step.id, reason: error }, 'run needs attention');
      } else {
        stepStatus = 'failed';
        error = errorMessage(err);
        log.error({ step: step.id, err: error }, 'step failed');
      }
    }
    summary.status = stepStatus;
    summary.error = error && scrub(error);
    summary.cost = rc.costByStep.get(step.id) ?? zeroCost();
    if (stepStatus === 'running') {
      status = 'interrupted';
      continue;
    }
    await store.finishStep(runId, step.id, { status: stepStatus, output, error, counts: summary.items, now: clock.now() });
    events.emit('step:finish', { runId, stepId: step.id, status: stepStatus });
    rc.scope.steps[step.id] = { output };
    if (attention !== undefined) {
      status = 'needs_attention';
      runError = `step ${step.id}: ${attention}`;
    } else if (stepStatus === 'failed') {
      status = 'failed';
      runError = `step ${step.id} failed: ${error}`;
    } else if (stepStatus === 'completed_with_errors') status = 'completed_with_errors';
  }

  // Effects and costs of a group's steps count for the group.
  const owner = new Map<string, StepSummary>();
  for (const step of pipeline.steps) {
    const summary = summaries.find((s) => s.id === step.id)!;
    owner.set(step.id, summary);
    for (const sub of step.steps ?? []) owner.set(sub.id, summary);
  }
  for (const [stepId, cost] of rc.costByStep) {
    const s = owner.get(stepId);
    if (s && s.id !== stepId) addCost(s.cost, cost.units, options.config.prices);
  }
  if (!dryRun) {
    for (const c of await store.effectCounts(runId)) {
      const s = owner.get(c.step_id);
      if (s && c.status === 'done') s.effects += c.n;
    }
  } else {
    for (const e of sink!.effects) {
      const s = owner.get(e.step);
      if (s && !e.skipped) s.effects += 1;
    }
  }
  // Parked for a quota window (and not stopped for another reason): the run waits.
  if (status === 'interrupted' && (park?.until || halt.until) && !stop.aborted) status = 'waiting';
  const failures = (await store.failedItems(runId)).map((f) => ({ step: f.step_id, item: f.item_key, error: f.error }));
  if (halt.until) {
    await store.setRunWaiting(runId, halt.until, halt.reason ?? 'budget');
    runError = halt.reason;
  } else if (park?.until) await store.setRunWaiting(runId, park.until, rc.waiting?.reason ?? 'quota');
  else if (rc.waiting && status !== 'interrupted') await store.setRunWaiting(runId, null, null);
  await store.setRunStatus(runId, status, clock.now(), runError ?? null);
  events.emit('run:finish', { runId, status });
  log.info({ status }, 'run finished');

  const cost = zeroCost();
  for (const s of summaries) {
    cost.usd += s.cost.usd;
    for (const [unit, n] of Object.entries(s.cost.units)) cost.units[unit] = (cost.units[unit] ?? 0) + n;
  }
  const result: RunResult = {
    run_id: runId,
    pipeline: pipeline.name,
    dry_run: dryRun,
    status,
    error: runError && scrub(runError),
    steps: summaries,
    failures,
    skipped: (await store.skipReasons(runId)).map((r) => ({ step: r.step_id, reason: r.reason, n: r.n })),
    notes: rc.notes,
    effects: sink?.effects ?? [],
    cost,
    artifacts: sink?.dir,
  };
  sink?.finish(renderRunSummary(result));
  if (!options.rateLimits) await rc.rateLimits.close();
  if (!options.resources) await rc.resources.close();
  return result;
}

/** The NeedsAttentionError a step threw, through the executor's wrapping of the last attempt. */
const needsAttention = (err: unknown) => findCause(err, NeedsAttentionError);
