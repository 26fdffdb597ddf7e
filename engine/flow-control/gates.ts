import { priceOf } from '../cost.ts';
import type { Gate, GateVerdict, Sql } from '../ledger/types.ts';
import type { BudgetLedger } from './budget-ledger.ts';
import { type BudgetConfig, budgetPeriod, budgetRefusal } from './budget-spec.ts';
import type { QuotaLedger } from './quota-ledger.ts';
import { decide, type PickCandidate, pickKey } from './quota-policy.ts';
import { type QuotaRules, quotaLabel } from './quota-spec.ts';

/** Which run, step and item a gated call belongs to (recorded with each reservation). */
export interface CallRef {
  runId: string;
  stepId: string;
  itemKey: string;
}

/**
 * A quota as a gate: under the quota's lock, count what the caps count, decide with the pure
 * policy, and record the call in the quota ledger. Work that does not fit waits (the item
 * only): never dropped, never done early.
 */
export class QuotaGate implements Gate {
  readonly label: string;

  constructor(
    private readonly ledger: QuotaLedger,
    private readonly rules: QuotaRules,
    private readonly gapMs: number,
    private readonly ref: CallRef,
  ) {
    this.label = `quota ${quotaLabel(rules.quota, rules.key)}`;
  }

  async reserve(sql: Sql, now: Date, effectKey: string | undefined): Promise<GateVerdict> {
    await this.ledger.lock(sql, this.rules.quota, this.rules.key);
    const decision = decide(this.rules, await this.ledger.use(sql, this.rules, now), now, this.gapMs);
    if (!decision.ok) return { ok: false, until: decision.until, reason: decision.reason, scope: 'item' };
    const id = await this.ledger.record(sql, { quota: this.rules.quota, key: this.rules.key, at: now, ...this.ref, effectKey });
    return {
      ok: true,
      hold: {
        confirm: async () => {},
        release: (on) => this.ledger.remove(on, id),
      },
    };
  }
}

/**
 * A quota whose key the engine picks (rotation across mailboxes): under every key's lock, in
 * key order, each key decides as a QuotaGate would, and the key with room that is idle
 * longest takes the call. The hold says which key it was, for the step to use. The locks
 * are one statement and what every key has spent one more, however many keys there are.
 */
export class PickGate implements Gate {
  readonly label: string;

  constructor(
    private readonly ledger: QuotaLedger,
    private readonly pool: readonly QuotaRules[],
    private readonly gapMs: number,
    private readonly ref: CallRef,
  ) {
    this.label = `quota ${pool[0]!.quota}`;
  }

  async reserve(sql: Sql, now: Date, effectKey: string | undefined): Promise<GateVerdict> {
    const sorted = this.pool.map((r) => r.key).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    await this.ledger.lockAll(sql, this.pool[0]!.quota, sorted);
    const uses = await this.ledger.useAll(sql, this.pool, now);
    const candidates: PickCandidate[] = this.pool.map((rules, i) => ({ rules, use: uses[i]! }));
    const decision = pickKey(candidates, now, this.gapMs);
    if (!decision.ok) return { ok: false, until: decision.until, reason: decision.reason, scope: 'item' };
    const rules = this.pool[decision.index]!;
    const id = await this.ledger.record(sql, { quota: rules.quota, key: rules.key, at: now, ...this.ref, effectKey });
    return {
      ok: true,
      hold: {
        picked: rules.key,
        confirm: async () => {},
        release: (on) => this.ledger.remove(on, id),
      },
    };
  }
}

/**
 * A budget as a gate: under the budget's lock, reserve the call's most expensive estimate if
 * it fits the period, and settle to what the call spent after it. A call that would pass a
 * limit stops the whole run (scope run) until the next period.
 */
export class BudgetGate implements Gate {
  readonly label: string;

  constructor(
    private readonly ledger: BudgetLedger,
    private readonly name: string,
    private readonly budget: BudgetConfig,
    private readonly timezone: string,
    private readonly prices: Record<string, number> | undefined,
    private readonly estimate: Record<string, number>,
    private readonly ref: CallRef,
  ) {
    this.label = `budget ${name}`;
  }

  async reserve(sql: Sql, now: Date): Promise<GateVerdict> {
    const period = budgetPeriod(this.budget, this.timezone, now);
    const usd = priceOf(this.estimate, this.prices);
    await this.ledger.lock(sql, this.name);
    const refusal = budgetRefusal(this.name, this.budget, await this.ledger.use(sql, this.name, period.start), this.estimate, usd, period);
    if (refusal) return { ok: false, until: period.end, reason: refusal, scope: 'run' };
    const id = await this.ledger.reserve(sql, { budget: this.name, periodStart: period.start, ...this.ref, estimate: this.estimate, usd, now });
    const settle = (on: Sql, spent: Record<string, number>) => this.ledger.settle(on, id, spent, priceOf(spent, this.prices));
    return { ok: true, hold: { confirm: settle, release: settle } };
  }
}
