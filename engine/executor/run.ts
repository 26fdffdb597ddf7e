import { setMaxListeners } from 'node:events';
import { systemClock, type Clock } from '../clock.ts';
import type { EngineConfig } from '../config.ts';
import { addCost, type Cost, zeroCost } from '../cost.ts';
import type { RunStatus, StepStatus } from '../db/tables.ts';
import { DryRunSink, type PlannedEffectRecord } from '../dry-run.ts';
import { errorMessage, findCause, NeedsAttentionError } from '../errors.ts';
import { RunEvents } from '../events.ts';
import { flowControlOf } from '../flow-control/index.ts';
import { DryRunPlanner } from '../flow-control/planner.ts';
import { RateLimits } from '../flow-control/rate-limits.ts';
import { newRunId } from '../ids.ts';
import { type Logger, silentLogger } from '../log.ts';
import { resolveInputs } from '../pipeline/inputs.ts';
import { isCallStep, type Pipeline, type PipelineStep } from '../pipeline/types.ts';
import { Resources } from '../resources.ts';
import type { Scrubber } from '../secrets.ts';
import type { RunStore } from '../store/index.ts';
import type { RunRow } from '../store/records.ts';
import { renderRunSummary } from '../summary.ts';
import { type RunContext, readOnlyQueryable, writableQueryable } from './context.ts';
import { runForeach } from './foreach.ts';
import { invokeStep } from './invoke.ts';
import { RunState } from './state.ts';
import { stoppedWaiting } from './wait.ts';
import { whenHolds } from './when.ts';

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
  /** Connectors that answer from their sandboxes in this process (sample data): `run.sandboxes` in expressions. */
  sandboxes?: readonly string[];
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
  /** Effects in doubt after a crash that were performed again (their steps allow it). */
  repeated: { step: string; key: string }[];
  /** Planned effects of a dry run (empty for a real run). */
  effects: PlannedEffectRecord[];
  cost: Cost;
  artifacts?: string;
}

const never = new AbortController().signal;

interface Opened {
  runId: string;
  inputs: Record<string, unknown>;
  dryRun: boolean;
  /** Whether an earlier execution got as far as a step: a queued run the daemon starts is not resumed. */
  resumed: boolean;
  /** Outputs of the steps that finished before (a resumed run). */
  completed: Map<string, unknown>;
  changed: boolean;
}

/** Runs (or resumes, or dry-runs) a pipeline to its end, recording every step and item. */
export async function executeRun(options: ExecuteOptions): Promise<RunResult> {
  const opened = await openRun(options);
  const rc = buildContext(options, opened);
  rc.events.emit('run:start', { runId: rc.runId, pipeline: rc.pipeline, dryRun: rc.dryRun, resumed: rc.resumed });
  rc.log.info({ dryRun: rc.dryRun, resumed: rc.resumed }, 'run started');
  if (opened.changed) rc.log.warn('the pipeline file changed since this run started; resuming with the current file');
  const summaries: StepSummary[] = [];
  for (const step of options.pipeline.steps) summaries.push(await runTopStep(rc, step, opened.completed));
  try {
    return await finishRun(rc, options, summaries);
  } finally {
    if (!options.rateLimits) await rc.rateLimits.close();
    if (!options.resources) await rc.resources.close();
  }
}

async function openRun(options: ExecuteOptions): Promise<Opened> {
  const { pipeline, store } = options;
  const clock = options.clock ?? systemClock;
  if (!options.resume) {
    const runId = newRunId(clock.now());
    const inputs = resolveInputs(pipeline, options.inputs ?? {});
    const dryRun = options.dryRun ?? false;
    await store.runs.create({ id: runId, pipeline: pipeline.name, file: pipeline.file, hash: pipeline.hash, dryRun, inputs, now: clock.now() });
    return { runId, inputs, dryRun, resumed: false, completed: new Map(), changed: false };
  }
  const run = options.claimed?.id === options.resume ? options.claimed : await store.runs.get(options.resume);
  if (!run) throw new Error(`no run "${options.resume}" (see flows runs)`);
  if (run.pipeline !== pipeline.name) throw new Error(`run ${run.id} belongs to pipeline "${run.pipeline}", not "${pipeline.name}"`);
  if (run.dry_run) throw new Error(`run ${run.id} was a dry run; start a new one instead of resuming it`);
  if (run.status === 'completed') throw new Error(`run ${run.id} already completed; nothing to resume`);
  const steps = await store.runs.steps(run.id);
  const completed = new Map<string, unknown>();
  for (const s of steps) if (s.status === 'completed' || s.status === 'skipped') completed.set(s.step_id, s.output);
  if (run.status !== 'running' || options.claimed?.id !== run.id) await store.runs.setStatus(run.id, 'running', clock.now());
  return { runId: run.id, inputs: run.inputs, dryRun: false, resumed: steps.length > 0, completed, changed: run.pipeline_hash !== pipeline.hash };
}

function buildContext(options: ExecuteOptions, opened: Opened): RunContext {
  const { pipeline, store, config } = options;
  const clock = options.clock ?? systemClock;
  const { runId, dryRun } = opened;
  // A plain copy: expressions read only plain data (process.env is an exotic object).
  const env: Record<string, string | undefined> = { ...options.env };
  const log = (options.log ?? silentLogger).child({ run: runId, pipeline: pipeline.name });
  const stop = options.stop ?? never;
  const abort = options.abort ?? never;
  // Every call in flight listens to the hard stop (attempts without a timeout share it).
  setMaxListeners(0, abort);
  const scrub = options.scrub ?? ((v) => v);
  const flow = flowControlOf(config);
  return {
    runId,
    pipeline: pipeline.name,
    dryRun,
    resumed: opened.resumed,
    config,
    flow,
    clock,
    log,
    events: options.events ?? new RunEvents(),
    store,
    scrub,
    db: dryRun ? readOnlyQueryable(store.db) : writableQueryable(store.db),
    rateLimits: options.rateLimits ?? new RateLimits(config),
    resources: options.resources ?? new Resources({ config, env, log, clock, projectDir: options.projectDir ?? 'pipelines', stateDir: '.flows' }),
    stop,
    abort,
    parkAfterMs: dryRun ? undefined : options.parkAfterMs,
    sink: dryRun ? new DryRunSink(options.outDir ?? `.flows/dry-runs/${runId}`, scrub) : undefined,
    planner: dryRun ? new DryRunPlanner(flow, store, clock.now()) : undefined,
    state: new RunState(stop),
    scope: { inputs: opened.inputs, steps: {}, config, env, run: { id: runId, pipeline: pipeline.name, dry_run: dryRun, started_at: clock.now().toISOString(), sandboxes: [...(options.sandboxes ?? [])] } },
  };
}

/** One top-level step: skipped when an earlier one stopped the run, restored when it finished before. */
async function runTopStep(rc: RunContext, step: PipelineStep, completed: Map<string, unknown>): Promise<StepSummary> {
  const summary: StepSummary = { id: step.id, uses: step.uses, status: 'not_run', effects: 0, cost: zeroCost() };
  if (!rc.state.going) return summary;
  if (completed.has(step.id)) {
    rc.scope.steps[step.id] = { output: completed.get(step.id) };
    summary.status = 'completed';
    return summary;
  }
  if (rc.state.noNewWork.aborted) {
    rc.state.interrupted();
    return summary;
  }
  await rc.store.runs.startStep(rc.runId, step.id, step.position, rc.clock.now());
  const ended = await executeStep(rc, step);
  summary.status = ended.status;
  summary.items = ended.items;
  summary.error = ended.error && rc.scrub(ended.error);
  rc.state.stepEnded(step.id, ended.status, ended.error, ended.attention);
  if (ended.status === 'running') return summary;
  await rc.store.runs.finishStep(rc.runId, step.id, { status: ended.status, output: ended.output, error: ended.error, counts: ended.items, now: rc.clock.now() });
  rc.events.emit('step:finish', { runId: rc.runId, stepId: step.id, status: ended.status });
  rc.scope.steps[step.id] = { output: ended.output };
  return summary;
}

interface StepEnd {
  status: StepStatus | 'running';
  output: unknown;
  items?: StepSummary['items'];
  error?: string;
  attention?: boolean;
}

async function executeStep(rc: RunContext, step: PipelineStep): Promise<StepEnd> {
  try {
    if (step.foreach) {
      const { output, finished } = await runForeach(rc, step);
      const items = { total: output.total, succeeded: output.succeeded, failed: output.failed, skipped: output.skipped };
      return { status: !finished ? 'running' : output.failed > 0 ? 'completed_with_errors' : 'completed', output, items };
    }
    rc.events.emit('step:start', { runId: rc.runId, stepId: step.id });
    if (!whenHolds(step.when, rc.scope, rc.clock)) return { status: 'skipped', output: null };
    if (!isCallStep(step)) throw new Error(`step ${step.id} is a group without foreach`);
    const lanes = rc.planner?.lanes(1);
    const lane = lanes?.acquire();
    const { output } = await invokeStep(rc, step, rc.scope, { lane });
    if (lanes) rc.planner!.finished(lanes);
    return { status: 'completed', output };
  } catch (err) {
    if (stoppedWaiting(err)) return { status: 'running', output: null };
    const attention = findCause(err, NeedsAttentionError);
    if (attention) {
      rc.log.warn({ step: step.id, reason: errorMessage(attention) }, 'run needs attention');
      return { status: 'failed', output: null, error: errorMessage(attention), attention: true };
    }
    rc.log.error({ step: step.id, err: errorMessage(err) }, 'step failed');
    return { status: 'failed', output: null, error: errorMessage(err) };
  }
}

async function finishRun(rc: RunContext, options: ExecuteOptions, summaries: StepSummary[]): Promise<RunResult> {
  const { state, store } = rc;
  await countEffects(rc, options.pipeline, summaries);
  const status = state.status;
  const wait = state.wait;
  if (wait) await store.runs.setWaiting(rc.runId, wait.until, wait.reason);
  else if (state.waiting && status !== 'interrupted') await store.runs.setWaiting(rc.runId, null, null);
  if (state.repeated.length) {
    state.notes.push({ step: state.repeated[0]!.step, text: `${state.repeated.length} effect${state.repeated.length === 1 ? '' : 's'} in doubt after a crash performed again (in_doubt: repeat): ${state.repeated.map((r) => r.key).slice(0, 5).join(', ')}` });
  }
  if (status === 'completed' && !rc.dryRun) await store.effects.forgetRun(rc.runId);
  const cost = zeroCost();
  for (const s of summaries) addCost(cost, s.cost.units, options.config.prices);
  await store.runs.addCost(rc.runId, cost);
  await store.runs.setStatus(rc.runId, status, rc.clock.now(), state.message ?? null);
  rc.events.emit('run:finish', { runId: rc.runId, status });
  rc.log.info({ status }, 'run finished');
  const result: RunResult = {
    run_id: rc.runId,
    pipeline: rc.pipeline,
    dry_run: rc.dryRun,
    status,
    error: state.message && rc.scrub(state.message),
    steps: summaries,
    failures: (await store.items.failed(rc.runId)).map((f) => ({ step: f.step_id, item: f.item_key, error: f.error })),
    skipped: (await store.items.skipReasons(rc.runId)).map((r) => ({ step: r.step_id, reason: r.reason, n: r.n })),
    notes: state.notes,
    repeated: state.repeated,
    effects: rc.sink?.effects ?? [],
    cost,
    artifacts: rc.sink?.dir,
  };
  rc.sink?.finish(renderRunSummary(result));
  return result;
}

/** Effects and costs of a group's steps count for the group. */
async function countEffects(rc: RunContext, pipeline: Pipeline, summaries: StepSummary[]): Promise<void> {
  const owner = new Map<string, StepSummary>();
  pipeline.steps.forEach((step, i) => {
    owner.set(step.id, summaries[i]!);
    for (const sub of step.steps ?? []) owner.set(sub.id, summaries[i]!);
  });
  for (const [stepId, cost] of rc.state.costByStep) {
    const s = owner.get(stepId);
    if (s) addCost(s.cost, cost.units, rc.config.prices);
  }
  if (rc.sink) {
    for (const e of rc.sink.effects) if (!e.skipped) owner.get(e.step)!.effects += 1;
    return;
  }
  for (const c of await rc.store.effects.counts(rc.runId)) {
    const s = owner.get(c.step_id);
    if (s && c.status === 'done') s.effects += c.n;
  }
}
