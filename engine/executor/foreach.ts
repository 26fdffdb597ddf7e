import { errorMessage, findCause, SkipItemError } from '../errors.ts';
import type { CompiledValue } from '../expr/index.ts';
import type { ForeachSource, PipelineStep } from '../pipeline/types.ts';
import { FOREACH_RESULTS_LIMIT, isCallStep } from '../pipeline/types.ts';
import type { RunContext } from './context.ts';
import { invokeStep } from './invoke.ts';
import { ItemRecorder } from './recorder.ts';
import { whenHolds } from './when.ts';
import { stoppedWaiting } from './wait.ts';
import type { Lane, LanePool } from '../flow-control/planner.ts';

export interface ForeachOutcome {
  output: { total: number; succeeded: number; failed: number; skipped: number; results: unknown[]; results_truncated: boolean };
  /** False when a stop request left items untouched. */
  finished: boolean;
}

interface Item {
  key: string;
  value: unknown;
}

/**
 * Runs a step once per item with bounded concurrency. Items come from a list or from a
 * query paged by key, and are fed to the queue only as it drains, so memory holds a few
 * pages, never the whole set. Finished items (from an earlier attempt of this run) are
 * skipped; one failing item never stops the others.
 */
export async function runForeach(rc: RunContext, step: PipelineStep): Promise<ForeachOutcome> {
  const items = new ItemRunner(rc, step);

  // A list is rendered once, here; a query is counted here and paged below.
  const list = step.foreach!.kind === 'expression' ? renderList(rc, step) : undefined;
  const total = list ? list.length : await countQuery(rc, step);
  rc.events.emit('step:start', { runId: rc.runId, stepId: step.id, total });

  // As many workers as the step's concurrency, each taking the next item when it is free: an
  // async generator hands out one item per call, in order, and pages only as they are needed.
  const pending = pendingItems(rc, step, list, items);
  const worker = async () => {
    for (let next = await pending.next(); !next.done; next = await pending.next()) await items.run(next.value);
  };
  await Promise.all(Array.from({ length: step.concurrency }, worker));
  await items.done();

  const counts = await rc.store.items.counts(rc.runId, step.id);
  const results = await rc.store.items.outputs(rc.runId, step.id, step.keepResults ?? FOREACH_RESULTS_LIMIT);
  return {
    output: { total: counts.succeeded + counts.failed + counts.skipped, ...counts, results, results_truncated: counts.succeeded > results.length },
    finished: items.finished,
  };
}

/** The items still to do, page by page; a stop request ends them (the step is then not finished). */
async function* pendingItems(rc: RunContext, step: PipelineStep, list: unknown[] | undefined, items: ItemRunner): AsyncGenerator<Item> {
  const none = new Set<string>();
  for await (const page of list ? listPages(rc, step, list) : queryPages(rc, step)) {
    const done = rc.resumed ? await rc.store.items.finished(rc.runId, step.id, page.map((i) => i.key)) : none;
    for (const item of page) {
      if (rc.state.noNewWork.aborted) {
        items.finished = false;
        return;
      }
      if (done.has(item.key)) rc.events.emit('item:done', { runId: rc.runId, stepId: step.id, itemKey: item.key, status: 'succeeded' });
      else yield item;
    }
  }
}

/** Runs the items of one foreach step and records how each ended. */
class ItemRunner {
  /** False when an item stayed pending (a stop, a park or a halt): the step is not done. */
  finished = true;
  private readonly recorder: ItemRecorder;
  private readonly lanes?: LanePool;
  private outputsKept = 0;

  constructor(
    private readonly rc: RunContext,
    private readonly step: PipelineStep,
  ) {
    // Outputs kept only until their item is recorded are dropped once it is.
    const transient = [step, ...(step.steps ?? [])].some((s) => s.type?.effect?.transientOutput);
    this.recorder = new ItemRecorder(rc.store.items, transient ? (keys) => rc.store.effects.forget(rc.runId, keys) : undefined);
    this.lanes = rc.planner?.lanes(step.concurrency);
  }

  async run(item: Item): Promise<void> {
    const { rc, step } = this;
    const scope = { ...rc.scope, item: item.value };
    const lane = this.lanes?.acquire();
    rc.events.emit('item:start', { runId: rc.runId, stepId: step.id, itemKey: item.key });
    try {
      if (!whenHolds(step.when, scope, rc.clock)) return this.record(item.key, 'skipped', 0, null, null);
      const site = { key: item.key, lane };
      const { output, attempts } = isCallStep(step) ? await invokeStep(rc, step, scope, site) : await runGroupItem(rc, step, scope, site);
      this.record(item.key, 'succeeded', attempts, output, null);
    } catch (err) {
      if (stoppedWaiting(err)) {
        this.finished = false; // the item waits for its quota window or budget: it stays pending for a resume
        return;
      }
      const skip = findCause(err, SkipItemError);
      if (skip) return this.record(item.key, 'skipped', 0, null, skip.message);
      rc.log.warn({ step: step.id, item: item.key, err: errorMessage(err) }, 'item failed');
      this.record(item.key, 'failed', (err as { attempts?: number }).attempts ?? 1, null, errorMessage(err));
    } finally {
      if (lane) this.lanes!.release(lane);
    }
  }

  /** Writes what is buffered; the dry run's lanes tell the planner where the step ended. */
  async done(): Promise<void> {
    await this.recorder.flush();
    if (this.lanes) this.rc.planner!.finished(this.lanes);
  }

  /**
   * Outputs are kept for the step's `results` only (the first FOREACH_RESULTS_LIMIT): 50,000
   * item outputs would be megabytes of JSON written for nobody.
   */
  private record(key: string, status: 'succeeded' | 'failed' | 'skipped', attempts: number, output: unknown, error: string | null): void {
    const { rc, step } = this;
    const keep = status === 'succeeded' && this.outputsKept < (step.keepResults ?? FOREACH_RESULTS_LIMIT);
    if (keep) this.outputsKept++;
    this.recorder.add({ runId: rc.runId, stepId: step.id, itemKey: key, status, attempts, output: keep ? output : null, error, finishedAt: rc.clock.now() });
    rc.events.emit('item:done', { runId: rc.runId, stepId: step.id, itemKey: key, status, error: error ?? undefined });
  }
}

/**
 * One item of a foreach group: its steps in order, each seeing the outputs of the ones
 * before it (for this item) as steps.<id>.output. The item's output holds every step's.
 */
async function runGroupItem(rc: RunContext, group: PipelineStep, scope: Record<string, unknown>, site: { key: string; lane?: Lane }): Promise<{ output: unknown; attempts: number }> {
  const outputs: Record<string, unknown> = {};
  const steps: Record<string, { output: unknown }> = { ...rc.scope.steps };
  const itemScope = { ...scope, steps };
  let attempts = 0;
  for (const sub of group.steps!) {
    if (!isCallStep(sub)) continue;
    if (!whenHolds(sub.when, itemScope, rc.clock)) {
      outputs[sub.id] = null;
      steps[sub.id] = { output: null };
      continue;
    }
    try {
      const result = await invokeStep(rc, sub, itemScope, site);
      attempts += result.attempts;
      outputs[sub.id] = result.output;
      steps[sub.id] = { output: result.output };
    } catch (err) {
      throw Object.assign(new Error(`${sub.id}: ${errorMessage(err)}`, { cause: err }), { attempts: attempts + ((err as { attempts?: number }).attempts ?? 1) });
    }
  }
  return { output: outputs, attempts };
}

function renderList(rc: RunContext, step: PipelineStep): unknown[] {
  const source = step.foreach as Extract<ForeachSource, { kind: 'expression' }>;
  const list = source.list.render(rc.scope, { now: () => rc.clock.now() });
  if (!Array.isArray(list)) throw new Error(`foreach of step "${step.id}" gave ${list === null ? 'null' : typeof list}, not a list`);
  return list;
}

async function countQuery(rc: RunContext, step: PipelineStep): Promise<number> {
  const source = step.foreach as Extract<ForeachSource, { kind: 'query' }>;
  const rows = await rc.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${source.query}) AS q`, queryParams(rc, source.params));
  return Number(rows[0]?.n ?? 0);
}

/** A list in pages of 500, each item with its key (a repeated key gets its position appended). */
function* listPages(rc: RunContext, step: PipelineStep, list: unknown[]): Generator<Item[]> {
  const seen = new Set<string>();
  for (let start = 0; start < list.length; start += 500) {
    const page: Item[] = [];
    list.slice(start, start + 500).forEach((value, i) => {
      let key = itemKeyOf(rc, step, value, start + i);
      if (seen.has(key)) key = `${key}#${start + i}`;
      seen.add(key);
      page.push({ key, value });
    });
    yield page;
  }
}

/** A query's rows in pages, by its key column: never the whole result in memory. */
async function* queryPages(rc: RunContext, step: PipelineStep): AsyncGenerator<Item[]> {
  const source = step.foreach as Extract<ForeachSource, { kind: 'query' }>;
  const keyColumn = quoteIdent(source.key);
  const params = queryParams(rc, source.params);
  const last = params.length + 1;
  let after: unknown;
  for (;;) {
    const text =
      after === undefined
        ? `SELECT * FROM (${source.query}) AS q ORDER BY ${keyColumn} LIMIT ${source.pageSize}`
        : `SELECT * FROM (${source.query}) AS q WHERE ${keyColumn} > $${last} ORDER BY ${keyColumn} LIMIT ${source.pageSize}`;
    const rows = await rc.db.query<Record<string, unknown>>(text, after === undefined ? params : [...params, after]);
    if (!rows.length) return;
    if (!(source.key in rows[0]!)) throw new Error(`foreach query of step "${step.id}" has no column "${source.key}" to page by (set foreach.key)`);
    yield rows.map((row) => ({ key: String(row[source.key]), value: row }));
    if (rows.length < source.pageSize) return;
    after = rows.at(-1)![source.key];
  }
}

function itemKeyOf(rc: RunContext, step: PipelineStep, value: unknown, index: number): string {
  if (step.itemKey !== undefined) {
    const key = step.itemKey.render({ ...rc.scope, item: value }, { now: () => rc.clock.now() });
    if (key !== null && key !== undefined && key !== '' && key !== false) return String(key);
  }
  if (value && typeof value === 'object' && 'id' in value) {
    const id = (value as { id: unknown }).id;
    if (typeof id === 'string' || typeof id === 'number') return String(id);
  }
  return String(index);
}

function queryParams(rc: RunContext, params: CompiledValue): unknown[] {
  return params.render(rc.scope, { now: () => rc.clock.now() }) as unknown[];
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
