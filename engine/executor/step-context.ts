import { evaluate, parseExpression } from '../expr/index.ts';
import type { CallStep } from '../pipeline/types.ts';
import type { Queryable, StepContext } from '../types.ts';
import { addStepCost, type RunContext } from './context.ts';

/** Who is calling: the step, the item, and the effect's key when the call is an effect. */
export interface CallSite {
  step: CallStep;
  scope: Record<string, unknown>;
  itemKey?: string;
  effectKey?: string;
}

/**
 * The context a step's code runs with for one attempt. Usage it reports (ctx.spend) goes to
 * the run's cost and to `spent`, which the call's budget settles to.
 */
export function stepContext(rc: RunContext, site: CallSite, attempt: { signal: AbortSignal; number: number; db: Queryable; spent?: Record<string, number> }): StepContext {
  const { step, scope, itemKey, effectKey } = site;
  const now = () => rc.clock.now();
  let log: RunContext['log'] | undefined;
  return {
    run: { id: rc.runId, pipeline: rc.pipeline, dryRun: rc.dryRun },
    step: { id: step.id },
    itemKey,
    effectKey,
    attempt: attempt.number,
    signal: attempt.signal,
    get log() {
      return (log ??= rc.log.child(itemKey === undefined ? { step: step.id } : { step: step.id, item: itemKey }));
    },
    db: attempt.db,
    clock: rc.clock,
    config: rc.config,
    evaluate: (source, extra = {}) => evaluate(parseExpression(source), { ...scope, ...extra }, { now }),
    use: (resource) => rc.resources.use(resource),
    limit: (name, call) => (rc.config.rate_limits?.[name] ? rc.rateLimits.schedule(name, call) : call()),
    note: (text) => {
      rc.state.notes.push({ step: step.id, text });
    },
    spend: (units) => {
      addStepCost(rc, step.id, units);
      if (attempt.spent) for (const [unit, n] of Object.entries(units)) attempt.spent[unit] = (attempt.spent[unit] ?? 0) + n;
    },
    pauseQuota: async ({ quota, key = '', reason, forMs }) => {
      rc.flow.quota(quota); // an unknown quota is an error here, not a silent row
      if (rc.dryRun) {
        rc.state.notes.push({ step: step.id, text: `would pause quota ${key ? `${quota}:${key}` : quota}: ${reason}` });
        return;
      }
      const until = forMs === undefined ? null : new Date(now().getTime() + forMs);
      await rc.store.quotas.pause({ quota, key, reason, by: `run ${rc.runId} step ${step.id}`, until, now: now() });
      rc.log.warn({ quota, key, until: until?.toISOString() }, `quota paused: ${reason}`);
    },
  };
}
