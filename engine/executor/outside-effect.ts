import { NonRetriableError } from '../errors.ts';
import type { CallStep } from '../pipeline/types.ts';
import type { Reservation } from '../store.ts';
import type { Queryable, StepContext } from '../types.ts';
import type { RunContext } from './context.ts';

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
  if (reservation.state === 'done') return repeated(rc, step, kind, key, reservation.row.output);
  if (reservation.state === 'in-doubt' && !step.type.effect!.providerIdempotent?.(input)) {
    throw new NonRetriableError(
      `effect ${key} was started by run ${reservation.row.run_id} but never confirmed (the process stopped in the middle); ` +
        `it may have happened, so it is not repeated. Check the outside system, then run: flows effects resolve ${key} --happened (or --did-not-happen)`,
    );
  }
  let output: unknown;
  try {
    output = await step.type.run(context(rc.db), input);
  } catch (err) {
    await store.releaseEffect(key);
    throw err;
  }
  await store.completeEffect(store.kysely, key, output, rc.clock.now());
  rc.events.emit('effect:done', { runId: rc.runId, stepId: step.id, key, kind, repeated: false });
  return output;
}

export function repeated(rc: RunContext, step: CallStep, kind: string, key: string, output: unknown): unknown {
  rc.log.info({ step: step.id, key }, 'effect already done; not repeating it');
  rc.events.emit('effect:done', { runId: rc.runId, stepId: step.id, key, kind, repeated: true });
  return output;
}
