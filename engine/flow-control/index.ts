import type { EngineConfig } from '../config.ts';
import { NonRetriableError } from '../errors.ts';
import type { Gate } from '../ledger/types.ts';
import type { BudgetLedger } from './budget-ledger.ts';
import type { BudgetConfig } from './budget-spec.ts';
import { BudgetGate, type CallRef, PickGate, QuotaGate } from './gates.ts';
import type { QuotaLedger } from './quota-ledger.ts';
import { gapFor } from './quota-policy.ts';
import { CompiledQuota, type QuotaRules } from './quota-spec.ts';

/**
 * Flow control: the named quotas, budgets and rate limits of the config, compiled once, and
 * the gates a call passes through. Every execution path asks here, the run and the dry run
 * alike; a step names its gates (`quota:`, `budget:`, `rate_limit:`) and the loader checks
 * that its type can take them.
 */
export class FlowControl {
  private readonly quotas = new Map<string, CompiledQuota>();
  readonly timezone: string;

  constructor(readonly config: EngineConfig) {
    this.timezone = config.business?.timezone ?? 'UTC';
    for (const [name, quota] of Object.entries(config.quotas ?? {})) this.quotas.set(name, new CompiledQuota(name, quota, this.timezone));
  }

  quota(name: string): CompiledQuota {
    const quota = this.quotas.get(name);
    if (!quota) throw new Error(`no quota "${name}" in the config`);
    return quota;
  }

  quotaNames(): string[] {
    return [...this.quotas.keys()];
  }

  budget(name: string): BudgetConfig {
    const budget = this.config.budgets?.[name];
    if (!budget) throw new Error(`no budget "${name}" in the config`);
    return budget;
  }

  /** The rules a gated call follows under its quota: the key's, or the quota's own. */
  rules(quota: string, key: string | undefined, windowTimezone?: string): QuotaRules {
    const compiled = this.quota(quota);
    if (compiled.perKey && !key) throw new NonRetriableError(`quota ${quota} counts per ${compiled.config.per_key ?? 'key'}, and quota_key gave an empty value`);
    return compiled.rulesFor(compiled.perKey ? key! : '', windowTimezone);
  }

  /** The keys the engine picks from for a call that gives none (a quota with pick), with their rules; undefined when the call names its key. */
  pool(quota: string, key: string | undefined, windowTimezone?: string): QuotaRules[] | undefined {
    const compiled = this.quota(quota);
    if (key || !compiled.picks) return undefined;
    return compiled.declaredKeys.map((k) => compiled.rulesFor(k, windowTimezone));
  }
}

const compiled = new WeakMap<EngineConfig, FlowControl>();

/** The flow control of a checked config, compiled on first use. */
export function flowControlOf(config: EngineConfig): FlowControl {
  let flow = compiled.get(config);
  if (!flow) compiled.set(config, (flow = new FlowControl(config)));
  return flow;
}

/** What a call asks of flow control. */
export interface GatedCall {
  quota?: string;
  quotaKey?: string;
  /** quota_timezone's value: the window and days are read in it (the recipient's). */
  windowTimezone?: string;
  budget?: string;
  /** The most the call can spend (its plan's estimate), for the budget. */
  estimate?: Record<string, number>;
  ref: CallRef;
}

/** The spacing seed of a call: the same in a dry run and in the run it predicts. */
export const spacingSeed = (call: GatedCall) => `${call.quota}\u001f${call.ref.stepId}\u001f${call.ref.itemKey}`;

/** The reservation gates of a call, in the order they lock (quota, then budget). */
export function gatesOf(flow: FlowControl, ledgers: { quotas: QuotaLedger; budgets: BudgetLedger }, call: GatedCall): Gate[] {
  const gates: Gate[] = [];
  if (call.quota) {
    const pool = flow.pool(call.quota, call.quotaKey, call.windowTimezone);
    if (pool) gates.push(new PickGate(ledgers.quotas, pool, gapFor(pool[0]!.spacing, spacingSeed(call)), call.ref));
    else {
      const rules = flow.rules(call.quota, call.quotaKey, call.windowTimezone);
      gates.push(new QuotaGate(ledgers.quotas, rules, gapFor(rules.spacing, spacingSeed(call)), call.ref));
    }
  }
  if (call.budget) {
    gates.push(new BudgetGate(ledgers.budgets, call.budget, flow.budget(call.budget), flow.timezone, flow.config.prices, call.estimate ?? {}, call.ref));
  }
  return gates;
}
