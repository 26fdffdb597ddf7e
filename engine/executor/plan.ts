import { priceOf } from '../cost.ts';
import type { Lane } from '../flow-control/planner.ts';
import { addStepCost, type RunContext } from './context.ts';
import type { Call } from './invoke.ts';
import { stepContext } from './step-context.ts';

const idle = new AbortController().signal;

/**
 * A call in a dry run. Reads with no gate are performed (read-only); an effect, or any gated
 * call, is planned: the step's plan says what would happen, the planner places it under its
 * quota and budget by the same decisions the run makes, and the sink writes it down. An
 * effect whose key is already done is shown as skipped, as the run would skip it.
 */
export async function planCall(rc: RunContext, call: Call, lane: Lane | undefined): Promise<unknown> {
  const { step, input } = call;
  const at = lane ?? { at: rc.clock.now() };
  const from = at.at;
  // A picking quota's key first: the plan shows the mailbox the run would send from.
  const picked = call.gated ? await rc.planner!.pick(call.gated, at) : undefined;
  const ctx = stepContext(rc, call, { attempt: { number: 1, signal: idle }, db: rc.db, quotaKey: picked?.key });
  if (!call.kind && !call.gated) return step.type.run(ctx, input);
  let planned: Awaited<ReturnType<NonNullable<typeof step.type.effect>['plan']>>;
  try {
    planned = await step.type.effect!.plan(ctx, input);
  } catch (err) {
    if (picked) rc.planner!.unpick(picked); // as the run releases the reservation of a skipped item
    throw err;
  }
  const kind = call.kind ?? 'call';
  const key = call.effectKey ?? '-';
  if (call.effectKey) {
    const earlier = await rc.store.effects.find(call.effectKey);
    if (earlier?.status === 'done') {
      // The run answers a done key before any gate: it takes no slot and waits for none.
      if (picked) {
        rc.planner!.unpick(picked);
        at.at = from;
      }
      rc.sink!.add({ step: step.id, item: call.itemKey, kind, key, summary: `${planned.summary} (already done by run ${earlier.run_id}: would be skipped)`, skipped: true, cost: {}, usd: 0 });
      return earlier.output;
    }
  }
  const gates = call.gated ? await rc.planner!.plan(call.gated, at, picked) : {};
  const cost = planned.cost ?? step.type.effect!.cost?.(input, rc.config) ?? {};
  addStepCost(rc, step.id, cost);
  rc.sink!.add(
    {
      step: step.id,
      item: call.itemKey,
      kind,
      key,
      summary: gates.waits ? `${planned.summary} (${gates.waits})` : planned.summary,
      quota: call.gated?.quota,
      slot: gates.slot,
      waits: gates.waits,
      cost,
      usd: priceOf(cost, rc.config.prices),
    },
    planned.artifacts,
  );
  return planned.output;
}
