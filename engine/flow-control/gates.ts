import { priceOf } from '../cost.ts';
import type { Gate, GateVerdict, GroupedCall, Sql } from '../ledger/types.ts';
import type { BudgetLedger } from './budget-ledger.ts';
import { type BudgetConfig, budgetPeriod, budgetRefusal } from './budget-spec.ts';
import type { QuotaLedger } from './quota-ledger.ts';
import { decide, type PickCandidate, pickKey, withEffectAt } from './quota-policy.ts';
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
 * only): never dropped, never done early. Concurrent calls of one key are decided together
 * (reserveGroup), each in turn as if alone.
 */
export class QuotaGate implements Gate {
  readonly label: string;
  readonly group: string;

  constructor(
    private readonly ledger: QuotaLedger,
    private readonly rules: QuotaRules,
    private readonly gapMs: number,
    private readonly ref: CallRef,
  ) {
    this.label = `quota ${quotaLabel(rules.quota, rules.key)}`;
    this.group = `${this.label}\u001fone`;
  }

  async reserve(sql: Sql, now: Date, effectKey: string | undefined): Promise<GateVerdict> {
    return (await this.reserveGroup(sql, now, [{ gate: this, effectKey }]))[0]!;
  }

  async reserveGroup(sql: Sql, now: Date, calls: readonly GroupedCall[]): Promise<GateVerdict[]> {
    await this.ledger.lock(sql, this.rules.quota, this.rules.key);
    let use = await this.ledger.use(sql, this.rules, now);
    return decideInTurn(sql, this.ledger, now, calls, (call) => {
      const gate = call.gate as QuotaGate;
      const decision = decide(gate.rules, use, now, gate.gapMs);
      if (!decision.ok) return decision;
      use = withEffectAt(use, now);
      return { ok: true, rules: gate.rules, ref: gate.ref };
    });
  }
}

/**
 * A quota whose key the engine picks (rotation across mailboxes): under every key's lock, in
 * key order, each key decides as a QuotaGate would, and the key with room that is idle
 * longest takes the call. The hold says which key it was, for the step to use. The locks
 * are one statement and what every key has spent one more, however many keys there are and
 * however many concurrent calls are decided together (each in turn, seeing the ones before).
 */
export class PickGate implements Gate {
  readonly label: string;
  readonly group: string;

  constructor(
    private readonly ledger: QuotaLedger,
    private readonly pool: readonly QuotaRules[],
    private readonly gapMs: number,
    private readonly ref: CallRef,
  ) {
    this.label = `quota ${pool[0]!.quota}`;
    this.group = `${this.label}\u001fpick\u001f${pool.map((r) => r.key).join('\u001f')}`;
  }

  async reserve(sql: Sql, now: Date, effectKey: string | undefined): Promise<GateVerdict> {
    return (await this.reserveGroup(sql, now, [{ gate: this, effectKey }]))[0]!;
  }

  async reserveGroup(sql: Sql, now: Date, calls: readonly GroupedCall[]): Promise<GateVerdict[]> {
    const sorted = this.pool.map((r) => r.key).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    await this.ledger.lockAll(sql, this.pool[0]!.quota, sorted);
    // The keys' windows may be read in each call's own timezone; what they count is the same.
    const uses = await this.ledger.useAll(sql, this.pool, now);
    return decideInTurn(sql, this.ledger, now, calls, (call) => {
      const gate = call.gate as PickGate;
      const candidates: PickCandidate[] = gate.pool.map((rules, i) => ({ rules, use: uses[i]! }));
      const decision = pickKey(candidates, now, gate.gapMs);
      if (!decision.ok) return decision;
      uses[decision.index] = withEffectAt(uses[decision.index]!, now);
      return { ok: true, rules: gate.pool[decision.index]!, ref: gate.ref, picked: true };
    });
  }
}

type TurnDecision = { ok: true; rules: QuotaRules; ref: CallRef; picked?: boolean } | { ok: false; until: Date; reason: string };

/** Decides each call in turn and records those admitted in one statement; their holds free their entries. */
async function decideInTurn(
  sql: Sql,
  ledger: QuotaLedger,
  now: Date,
  calls: readonly GroupedCall[],
  decideOne: (call: GroupedCall) => TurnDecision,
): Promise<GateVerdict[]> {
  const decisions = calls.map(decideOne);
  const admitted = decisions.flatMap((d, i) => (d.ok ? [{ d, effectKey: calls[i]!.effectKey }] : []));
  const ids = await ledger.recordAll(
    sql,
    admitted.map(({ d, effectKey }) => ({ quota: d.rules.quota, key: d.rules.key, at: now, ...d.ref, effectKey })),
  );
  let next = 0;
  return decisions.map((d): GateVerdict => {
    if (!d.ok) return { ok: false, until: d.until, reason: d.reason, scope: 'item' };
    const id = ids[next++]!;
    return {
      ok: true,
      hold: {
        picked: d.picked ? d.rules.key : undefined,
        confirm: async () => {},
        release: (on) => ledger.remove(on, id),
      },
    };
  });
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
