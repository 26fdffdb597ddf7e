import { NonRetriableError } from '../errors.ts';
import { evaluate, parseExpression } from '../expr/index.ts';
import { didYouMean } from '../suggest.ts';
import { windowRoom } from '../flow-control/report.ts';
import type { CallStep } from '../pipeline/types.ts';
import type { Resource } from '../resources.ts';
import type { Queryable, StepContext } from '../types.ts';
import { addStepCost, type RunContext } from './context.ts';

/** Who is calling: the step, the item, and the effect's key when the call is an effect. */
export interface CallSite {
  step: CallStep;
  scope: Record<string, unknown>;
  itemKey?: string;
  effectKey?: string;
  /** The key quota_key gave, if any. */
  quotaKey?: string;
}

export interface AttemptSite {
  /** The attempt's number and its signal (made when the step first asks for it). */
  attempt: { readonly number: number; readonly signal: AbortSignal };
  db: Queryable;
  /** What the call has spent so far, by unit: the call's budget settles to it. */
  spent?: Record<string, number>;
  /** The quota key the gate picked, when the quota picks it. */
  quotaKey?: string;
}

/**
 * The context a step's code runs with for one attempt. Usage it reports (ctx.spend) goes to
 * the run's cost and to the attempt's `spent`. A class, so that the one made for every call
 * of a foreach of 50,000 items is a few fields, its methods shared.
 */
class AttemptContext implements StepContext {
  readonly run: StepContext['run'];
  readonly step: StepContext['step'];
  readonly itemKey?: string;
  readonly effectKey?: string;
  readonly quota?: string;
  readonly quotaKey?: string;
  readonly attempt: number;
  readonly db: Queryable;
  private logger?: StepContext['log'];

  constructor(
    private readonly rc: RunContext,
    private readonly site: CallSite,
    private readonly at: AttemptSite,
  ) {
    this.run = { id: rc.runId, pipeline: rc.pipeline, dryRun: rc.dryRun };
    this.step = { id: site.step.id };
    this.itemKey = site.itemKey;
    this.effectKey = site.effectKey;
    this.quota = site.step.quota;
    this.quotaKey = at.quotaKey ?? site.quotaKey;
    this.attempt = at.attempt.number;
    this.db = at.db;
  }

  get signal(): AbortSignal {
    return this.at.attempt.signal;
  }

  get log(): StepContext['log'] {
    const { step, itemKey } = this.site;
    return (this.logger ??= this.rc.log.child(itemKey === undefined ? { step: step.id } : { step: step.id, item: itemKey }));
  }

  get clock() {
    return this.rc.clock;
  }

  get config() {
    return this.rc.config;
  }

  evaluate(source: string, extra: Record<string, unknown> = {}): unknown {
    return evaluate(parseExpression(source), { ...this.site.scope, ...extra }, { now: () => this.rc.clock.now() });
  }

  use<T>(resource: Resource<T>): Promise<T> {
    return this.rc.resources.use(resource);
  }

  limit<T>(name: string, call: () => Promise<T>): Promise<T> {
    return this.rc.config.rate_limits?.[name] ? this.rc.rateLimits.schedule(name, call) : call();
  }

  note(text: string): void {
    this.rc.state.notes.push({ step: this.site.step.id, text });
  }

  spend(units: Record<string, number>): void {
    addStepCost(this.rc, this.site.step.id, units);
    const spent = this.at.spent;
    if (spent) for (const [unit, n] of Object.entries(units)) spent[unit] = (spent[unit] ?? 0) + n;
  }

  async quotaRoom(quota: string): Promise<{ key: string; remaining: number; paused?: string }[]> {
    const { rc } = this;
    const names = rc.flow.quotaNames();
    if (!names.includes(quota)) throw new NonRetriableError(`unknown quota "${quota}"${didYouMean(quota, names) || `; quotas in the config: ${names.join(', ') || 'none'}`}`);
    // Through the attempt's own connection: inside a write's transaction (the embedded database has one connection).
    return windowRoom(rc.flow, rc.store.quotas, this.db, rc.clock.now(), quota);
  }

  async pauseQuota({ quota, key = '', reason, forMs }: { quota: string; key?: string; reason: string; forMs?: number }): Promise<void> {
    const { rc } = this;
    const stepId = this.site.step.id;
    const names = rc.flow.quotaNames();
    if (!names.includes(quota)) throw new NonRetriableError(`unknown quota "${quota}"${didYouMean(quota, names) || `; quotas in the config: ${names.join(', ') || 'none'}`}`);
    const declared = rc.flow.quota(quota).declaredKeys;
    if (key && declared.length && !declared.includes(key)) throw new NonRetriableError(`quota ${quota} has no key "${key}"${didYouMean(key, declared) || `; its keys: ${declared.join(', ')}`}`);
    if (rc.dryRun) {
      rc.state.notes.push({ step: stepId, text: `would pause quota ${key ? `${quota}:${key}` : quota}: ${reason}` });
      return;
    }
    const now = rc.clock.now();
    const until = forMs === undefined ? null : new Date(now.getTime() + forMs);
    await rc.store.quotas.pause({ quota, key, reason, by: `run ${rc.runId} step ${stepId}`, until, now });
    rc.log.warn({ quota, key, until: until?.toISOString() }, `quota paused: ${reason}`);
  }
}

export function stepContext(rc: RunContext, site: CallSite, attempt: AttemptSite): StepContext {
  return new AttemptContext(rc, site, attempt);
}
