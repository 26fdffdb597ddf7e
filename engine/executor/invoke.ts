import { NonRetriableError } from '../errors.ts';
import type { GatedCall } from '../flow-control/index.ts';
import type { Lane } from '../flow-control/planner.ts';
import type { EffectRecord } from '../ledger/types.ts';
import type { CallStep } from '../pipeline/types.ts';
import { runtimeValidatorFor, schemaErrors } from '../schema-check.ts';
import type { RunContext } from './context.ts';
import { performCall } from './perform.ts';
import { planCall } from './plan.ts';
import { type CallSite, stepContext } from './step-context.ts';

export interface InvokeResult {
  output: unknown;
  attempts: number;
}

/** One call of a step, described once: what it is, what it affects, which gates it passes. */
export interface Call extends CallSite {
  readonly input: Record<string, unknown>;
  /** The kind of effect, or null for a call with none (a read). */
  readonly kind: string | null;
  /** The effect's ledger record, when the call is an effect. */
  readonly effect?: EffectRecord;
  /** What flow control the call passes through beyond its rate limit (a quota, a budget). */
  readonly gated?: GatedCall;
}

const idle = new AbortController().signal;

/**
 * One execution of a step for one item (or for the step itself): render its inputs, check
 * them, describe the call, then plan it (a dry run) or perform it. Both go through the same
 * description and the same flow-control decisions.
 */
export async function invokeStep(rc: RunContext, step: CallStep, scope: Record<string, unknown>, item: { key?: string; lane?: Lane } = {}): Promise<InvokeResult> {
  const call = describeCall(rc, step, renderInput(rc, step, scope), scope, item.key);
  if (rc.dryRun) return { output: await planCall(rc, call, item.lane), attempts: 1 };
  return performCall(rc, call);
}

function renderInput(rc: RunContext, step: CallStep, scope: Record<string, unknown>): Record<string, unknown> {
  const input = step.input.render(scope, { now: () => rc.clock.now() }) as Record<string, unknown>;
  const validate = runtimeValidatorFor(step.type.input);
  if (!validate(input)) throw new NonRetriableError(`invalid input for ${step.uses}: ${schemaErrors(validate, input).join('; ')}`);
  return input;
}

function describeCall(rc: RunContext, step: CallStep, input: Record<string, unknown>, scope: Record<string, unknown>, itemKey: string | undefined): Call {
  const spec = step.type.effect;
  const kind = spec?.kind(input) ?? null;
  const effectKey = kind ? effectKeyOf(rc, step, scope, itemKey) : undefined;
  const quotaKey = step.quota && step.quotaKey !== undefined ? String(step.quotaKey.render(scope, { now: () => rc.clock.now() }) ?? '') : undefined;
  const zone = step.quota && step.quotaTimezone !== undefined ? step.quotaTimezone.render(scope, { now: () => rc.clock.now() }) : undefined;
  const windowTimezone = typeof zone === 'string' && zone.trim() ? zone.trim() : undefined;
  const site: CallSite = { step, scope, itemKey, effectKey, quotaKey: quotaKey || undefined };
  let effect: EffectRecord | undefined;
  if (kind) {
    const described = spec!.describe?.(input, stepContext(rc, site, { attempt: { number: 0, signal: idle }, db: rc.db }));
    effect = { key: effectKey!, runId: rc.runId, stepId: step.id, itemKey: itemKey ?? '', kind, summary: described?.summary ?? `${step.uses} ${kind}`, identity: described?.identity };
  }
  const gated: GatedCall | undefined =
    step.quota || step.budget
      ? {
          quota: step.quota,
          quotaKey,
          ...(windowTimezone ? { windowTimezone } : {}),
          budget: step.budget,
          estimate: step.budget ? (spec?.cost?.(input, rc.config) ?? {}) : undefined,
          ref: { runId: rc.runId, stepId: step.id, itemKey: itemKey ?? '' },
        }
      : undefined;
  return { step, scope, itemKey, effectKey, quotaKey: site.quotaKey, input, kind, effect, gated };
}

function effectKeyOf(rc: RunContext, step: CallStep, scope: Record<string, unknown>, itemKey?: string): string {
  if (step.key === undefined) return `${rc.runId}:${step.id}:${itemKey ?? '-'}`;
  const key = step.key.render(scope, { now: () => rc.clock.now() });
  if (key === undefined || key === null || key === '') throw new NonRetriableError(`the idempotency key expression gave an empty value`);
  return `${step.id}:${String(key)}`;
}
