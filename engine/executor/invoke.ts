import { addCost, priceOf, zeroCost } from '../cost.ts';
import { NonRetriableError } from '../errors.ts';
import { evaluate, parseExpression, renderDeep } from '../expr/index.ts';
import type { CallStep } from '../pipeline/types.ts';
import { countedStretch } from '../quota/ledger.ts';
import { SlotPlanner } from '../quota/slots.ts';
import { runtimeValidatorFor, schemaErrors } from '../schema-check.ts';
import type { Queryable, StepContext } from '../types.ts';
import { withRetries } from './attempt.ts';
import type { RunContext } from './context.ts';
import { performOutside, repeated } from './outside-effect.ts';
import { calendarOf, performUnderQuota } from './quota-effect.ts';
import { statementOutput } from './write-batch.ts';

export interface InvokeResult {
  output: unknown;
  attempts: number;
}

/**
 * One execution of a step for one item (or for the step itself): render its inputs, check
 * them, then run it with retries. An effect goes through its idempotency key: reserved
 * first, never performed twice; in a dry run it is planned and never performed.
 */
export async function invokeStep(rc: RunContext, step: CallStep, scope: Record<string, unknown>, itemKey?: string): Promise<InvokeResult> {
  const now = () => rc.clock.now();
  const input = renderDeep(step.with, scope, { now }) as Record<string, unknown>;
  const validate = runtimeValidatorFor(step.type.input);
  if (!validate(input)) {
    throw new NonRetriableError(`invalid input for ${step.uses}: ${schemaErrors(validate, input).join('; ')}`);
  }
  const kind = step.type.effect?.kind(input) ?? null;
  const effectKey = kind ? effectKeyOf(rc, step, scope, itemKey) : undefined;
  const quotaKey = kind && step.quotaKey !== undefined ? String(renderDeep(step.quotaKey, scope, { now }) ?? '') : undefined;
  let log: RunContext['log'] | undefined;
  const logger = () => (log ??= rc.log.child(itemKey === undefined ? { step: step.id } : { step: step.id, item: itemKey }));

  const context = (signal: AbortSignal, attempt: number, db: Queryable): StepContext => ({
    run: { id: rc.runId, pipeline: rc.pipeline, dryRun: rc.dryRun },
    step: { id: step.id },
    itemKey,
    effectKey,
    attempt,
    signal,
    get log() {
      return logger();
    },
    db,
    clock: rc.clock,
    config: rc.config,
    evaluate: (source, extra = {}) => evaluate(parseExpression(source), { ...scope, ...extra }, { now }),
    use: (resource) => rc.resources.use(resource),
    limit: (name, call) => (rc.config.rate_limits?.[name] ? rc.rateLimits.schedule(name, call) : call()),
    note: (text) => {
      rc.notes.push({ step: step.id, text });
    },
    spend: (units) => {
      const stepCost = rc.costByStep.get(step.id) ?? zeroCost();
      addCost(stepCost, units, rc.config.prices);
      rc.costByStep.set(step.id, stepCost);
    },
  });

  const result = await withRetries(
    async (signal, attempt) => {
      if (!kind) return step.type.run(context(signal, attempt, rc.db), input);
      if (rc.dryRun) return plan(rc, step, kind, effectKey!, itemKey, quotaKey, context(signal, attempt, rc.db), input);
      return perform(rc, step, kind, effectKey!, itemKey ?? '', quotaKey, input, (db) => context(signal, attempt, db));
    },
    {
      policy: step.retry,
      timeoutMs: step.timeoutMs,
      abort: rc.abort,
      clock: rc.clock,
      gate: step.rateLimit ? (attempt) => rc.rateLimits.schedule(step.rateLimit!, attempt) : undefined,
      onRetry: (err, attempt, delayMs) => logger().warn({ err, attempt, delayMs: Math.round(delayMs) }, 'attempt failed, retrying'),
    },
  );
  return { output: result.value, attempts: result.attempts };
}

function effectKeyOf(rc: RunContext, step: CallStep, scope: Record<string, unknown>, itemKey?: string): string {
  if (step.key === undefined) return `${rc.runId}:${step.id}:${itemKey ?? '-'}`;
  const key = renderDeep(step.key, scope, { now: () => rc.clock.now() });
  if (key === undefined || key === null || key === '') throw new NonRetriableError(`the idempotency key expression gave an empty value`);
  return `${step.id}:${String(key)}`;
}

async function plan(
  rc: RunContext,
  step: CallStep,
  kind: string,
  key: string,
  itemKey: string | undefined,
  quotaKey: string | undefined,
  ctx: StepContext,
  input: Record<string, unknown>,
): Promise<unknown> {
  const planned = await step.type.effect!.plan(ctx, input);
  const earlier = await rc.store.findEffect(key);
  if (earlier?.status === 'done') {
    rc.sink!.add({ step: step.id, item: itemKey, kind, key, summary: `${planned.summary} (already done by run ${earlier.run_id}: would be skipped)`, skipped: true, cost: {}, usd: 0 });
    return earlier.output;
  }
  let slot;
  if (step.quota) {
    // One planner per quota and key, starting from what the ledger has spent already.
    const name = step.quota;
    const slotKey = `${name}\u001f${quotaKey ?? ''}`;
    let planner = rc.slots.get(slotKey);
    if (!planner) {
      planner = (async () => {
        const quota = rc.config.quotas![name]!;
        const now = rc.clock.now();
        const stretch = countedStretch(quota, calendarOf(rc, name).periodFrom(now), now);
        const used = await rc.store.quotaUse(rc.store.kysely, name, quotaKey ?? '', stretch.from, stretch.to);
        return new SlotPlanner(quota, rc.config.business?.timezone ?? 'UTC', now, used.count);
      })();
      rc.slots.set(slotKey, planner);
    }
    slot = (await planner).next();
  }
  const cost = planned.cost ?? {};
  const stepCost = rc.costByStep.get(step.id) ?? zeroCost();
  addCost(stepCost, cost, rc.config.prices);
  rc.costByStep.set(step.id, stepCost);
  rc.sink!.add(
    { step: step.id, item: itemKey, kind, key, summary: planned.summary, quota: step.quota, slot, cost, usd: priceOf(cost, rc.config.prices) },
    planned.artifacts,
  );
  return planned.output;
}

async function perform(
  rc: RunContext,
  step: CallStep,
  kind: string,
  key: string,
  itemKey: string,
  quotaKey: string | undefined,
  input: Record<string, unknown>,
  context: (db: Queryable) => StepContext,
): Promise<unknown> {
  const { store } = rc;
  const effect = { key, runId: rc.runId, stepId: step.id, itemKey, kind, summary: `${step.uses} ${kind}`, now: rc.clock.now() };
  const spec = step.type.effect!;
  if (step.quota) return performUnderQuota(rc, step, kind, { ...effect, quota: step.quota, quotaKey: quotaKey ?? '' }, input, context);

  if (spec.statement && store.db.kind === 'postgres') {
    // One statement performs the write and records its key: exactly once, one round trip,
    // and writes of concurrent items run in parallel on the pool's connections. (The
    // embedded database has one connection: there, grouped transactions below cost less.)
    const statement = spec.statement(input, context(rc.db));
    const result = await store.performStatement(effect, statement);
    const output = statement.output(result.rows);
    if (result.repeated) return repeated(rc, step, kind, key, output);
    rc.events.emit('effect:done', { runId: rc.runId, stepId: step.id, key, kind, repeated: false });
    return output;
  }

  if (spec.transactional) {
    // The write and its idempotency record commit together (shared with other ready writes).
    // A statement's returned rows are what is recorded, as on the single-statement path.
    const statement = spec.statement?.(input, context(rc.db));
    const write = statement
      ? async (db: Queryable) => ({ rows: await db.query(statement.sql, statement.params) })
      : (db: Queryable) => step.type.run(context(db), input);
    const result = await rc.writes.perform({ ...effect, write, statement });
    const output = statementOutput(statement, result.output);
    if (result.repeated) return repeated(rc, step, kind, key, output);
    rc.events.emit('effect:done', { runId: rc.runId, stepId: step.id, key, kind, repeated: false });
    return output;
  }

  return performOutside(rc, step, kind, key, input, context, await store.reserveEffect(store.kysely, effect));
}
