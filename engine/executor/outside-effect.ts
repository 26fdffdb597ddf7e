import { BudgetExhaustedError, reserveBudget, settleBudget } from '../budget.ts';
import { NonRetriableError } from '../errors.ts';
import type { CallStep } from '../pipeline/types.ts';
import type { Reservation } from '../store.ts';
import type { Queryable, StepContext } from '../types.ts';
import { haltForBudget, type RunContext } from './context.ts';

/**
 * An outside effect whose key was reserved (or found): performs it unless it was done, or
 * is in doubt and cannot be safely repeated; records it as done.
 */
export async function performOutside(
  rc: RunContext,
  step: CallStep,
  kind: string,
  key: string,
  input: Record<string, unknown>,
  context: (db: Queryable) => StepContext,
  reservation: Reservation,
): Promise<unknown> {
  const { store } = rc;
  const spec = step.type.effect!;
  // An effect whose output was not kept is done again (it is safe to: providerIdempotent).
  const again = reservation.state === 'done' && spec.keepOutput === false && spec.providerIdempotent?.(input);
  if (reservation.state === 'done' && !again) return repeated(rc, step, kind, key, reservation.row.output);
  if (reservation.state === 'in-doubt' && !step.type.effect!.providerIdempotent?.(input)) {
    throw new NonRetriableError(
      `effect ${key} was started by run ${reservation.row.run_id} but never confirmed (the process stopped in the middle); ` +
        `it may have happened, so it is not repeated. Check the outside system, then run: flows effects resolve ${key} --happened (or --did-not-happen)`,
    );
  }
  let output: unknown;
  try {
    output = step.budget ? await runWithinBudget(rc, step, step.budget, key, input, context(rc.db)) : await step.type.run(context(rc.db), input);
  } catch (err) {
    await store.releaseEffect(key);
    throw err;
  }
  await store.completeEffect(store.kysely, key, spec.keepOutput === false ? null : output, rc.clock.now());
  rc.events.emit('effect:done', { runId: rc.runId, stepId: step.id, key, kind, repeated: false });
  return output;
}

/**
 * Reserves the call's planned (most expensive) cost against the budget, makes the call, and
 * settles the reservation to what the step reported spending (ctx.spend), whatever happened.
 */
async function runWithinBudget(rc: RunContext, step: CallStep, budget: string, key: string, input: Record<string, unknown>, ctx: StepContext): Promise<unknown> {
  const planned = await step.type.effect!.plan(ctx, input);
  let id: string;
  try {
    id = await reserveBudget(rc.store.db, rc.config, budget, planned.cost ?? {}, { runId: rc.runId, stepId: step.id, itemKey: key }, rc.clock.now());
  } catch (err) {
    // The run takes no more work; the item stays pending (a StoppedWaitingError) for the resume.
    if (err instanceof BudgetExhaustedError) haltForBudget(rc, err);
    throw err;
  }
  const spent: Record<string, number> = {};
  const counted: StepContext = Object.create(ctx, {
    spend: {
      value: (units: Record<string, number>) => {
        for (const [unit, n] of Object.entries(units)) spent[unit] = (spent[unit] ?? 0) + n;
        ctx.spend(units);
      },
    },
  });
  try {
    return await step.type.run(counted, input);
  } finally {
    await settleBudget(rc.store.db, rc.config, id, spent);
  }
}

export function repeated(rc: RunContext, step: CallStep, kind: string, key: string, output: unknown): unknown {
  rc.log.info({ step: step.id, key }, 'effect already done; not repeating it');
  rc.events.emit('effect:done', { runId: rc.runId, stepId: step.id, key, kind, repeated: true });
  return output;
}
