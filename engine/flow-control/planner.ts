import { priceOf } from '../cost.ts';
import type { BudgetLedger } from './budget-ledger.ts';
import { budgetPeriod, budgetRefusal, type BudgetUse } from './budget-spec.ts';
import { type FlowControl, type GatedCall, spacingSeed } from './index.ts';
import type { QuotaLedger } from './quota-ledger.ts';
import { gapFor, pickKey } from './quota-policy.ts';
import { QuotaSimulator, type Slot } from './quota-simulator.ts';

/** Where one line of work stands in a dry run's time: when it gets to its next call. */
export interface Lane {
  at: Date;
}

/**
 * The lanes of a step in a dry run: as many as the items in flight (its concurrency), each
 * starting when the run reaches the step. An item takes the lane that is free earliest, as
 * it would take a free place in the run's queue.
 */
export class LanePool {
  private readonly free: Lane[];
  private readonly lanes: Lane[];

  constructor(concurrency: number, start: Date) {
    this.lanes = Array.from({ length: Math.max(1, concurrency) }, () => ({ at: start }));
    this.free = [...this.lanes];
  }

  acquire(): Lane {
    if (!this.free.length) this.free.push({ at: this.latest() }); // more in flight than planned: never blocks
    this.free.sort((a, b) => a.at.getTime() - b.at.getTime());
    return this.free.shift()!;
  }

  release(lane: Lane): void {
    this.free.push(lane);
  }

  latest(): Date {
    return new Date(Math.max(...this.lanes.map((l) => l.at.getTime())));
  }
}

/** The slot a picking quota took for a call in the plan, and the key it chose. */
export interface Picked {
  key: string;
  slot: Slot;
  simulator: QuotaSimulator;
}

export interface PlannedGates {
  slot?: Slot;
  /** Why the run would not make this call now (a spent budget stops the run until its next period). */
  waits?: string;
}

/**
 * The dry run's flow control: the same decisions as the run's gates (quota-policy's decide,
 * budget-spec's budgetRefusal), over simulated ledgers that start from the real ones, on the
 * time the run would have reached. With the run's clock and order, the run does what this
 * plans.
 */
export class DryRunPlanner {
  private readonly simulators = new Map<string, Promise<QuotaSimulator>>();
  private readonly budgets = new Map<string, Promise<BudgetUse>>();
  private halted?: string;
  private runTime: Date;

  constructor(
    private readonly flow: FlowControl,
    private readonly ledgers: { quotas: QuotaLedger; budgets: BudgetLedger },
    private readonly now: Date,
  ) {
    this.runTime = now;
  }

  /** The lanes of a step the run is reaching now. */
  lanes(concurrency: number): LanePool {
    return new LanePool(concurrency, this.runTime);
  }

  /** The step is done: the next starts when its last lane is. */
  finished(pool: LanePool): void {
    const latest = pool.latest();
    if (latest > this.runTime) this.runTime = latest;
  }

  /**
   * For a quota that picks its key: the key the run would choose for this call at the lane's
   * time (of the keys, the first to have room; among those, pickKey's rule), with its slot,
   * taken at once as the run's reservation is (items in flight plan side by side). Undefined
   * when the call names its key or its quota does not pick. Give it back with unpick() when
   * the item is skipped, as the run releases its reservation.
   */
  async pick(call: GatedCall, lane: Lane): Promise<Picked | undefined> {
    const pool = call.quota ? this.flow.pool(call.quota, call.quotaKey, call.windowTimezone) : undefined;
    if (!pool || this.halted) return undefined;
    const gapMs = gapFor(pool[0]!.spacing, spacingSeed(call));
    const simulators = await Promise.all(pool.map((rules) => this.simulator(rules.quota, rules.key)));
    // From here on synchronous: no other item's plan comes between the choice and the slot.
    const times = simulators.map((s, i) => s.earliest(lane.at, gapMs, pool[i]));
    const open = times.filter((t) => !t.blocked);
    let index = 0;
    if (open.length) {
      const at = new Date(Math.min(...open.map((t) => t.at.getTime())));
      const decision = pickKey(pool.map((rules, i) => ({ rules, use: simulators[i]!.useAt(at) })), at, gapMs);
      if (decision.ok) index = decision.index;
    }
    const slot = { ...simulators[index]!.admit(lane.at, gapMs, pool[index]), key: pool[index]!.key };
    lane.at = new Date(slot.at);
    return { key: slot.key, slot, simulator: simulators[index]! };
  }

  /** A picked slot the item does not use after all (its plan skipped it). */
  unpick(picked: Picked): void {
    picked.simulator.remove(new Date(picked.slot.at));
  }

  /** Places the call under its quota (in the slot pick() took, for a picking quota) and budget. */
  async plan(call: GatedCall, lane: Lane, picked?: Picked): Promise<PlannedGates> {
    if (this.halted) return { waits: this.halted };
    let slot: Slot | undefined = picked?.slot;
    if (call.quota && !picked) {
      const rules = this.flow.rules(call.quota, call.quotaKey, call.windowTimezone);
      slot = (await this.simulator(call.quota, call.quotaKey ?? '')).admit(lane.at, gapFor(rules.spacing, spacingSeed(call)), rules);
      lane.at = new Date(slot.at);
    }
    if (call.budget) {
      const refusal = await this.spend(call.budget, call.estimate ?? {}, lane.at);
      if (refusal) {
        this.halted = `the run would stop here: ${refusal}`;
        return { slot, waits: this.halted };
      }
    }
    return { slot };
  }

  private simulator(quota: string, key: string): Promise<QuotaSimulator> {
    const id = `${quota}\u001f${key}`;
    let simulator = this.simulators.get(id);
    if (!simulator) {
      const rules = this.flow.rules(quota, key);
      simulator = (async () => new QuotaSimulator(rules, await this.ledgers.quotas.history(rules, this.now), await this.ledgers.quotas.pauseAt(quota, key, this.now)))();
      this.simulators.set(id, simulator);
    }
    return simulator;
  }

  /** Adds the estimate to the budget's period as the run would reserve it; why not, when it does not fit. */
  private async spend(name: string, estimate: Record<string, number>, at: Date): Promise<string | undefined> {
    const budget = this.flow.budget(name);
    const period = budgetPeriod(budget, this.flow.timezone, at);
    const id = `${name}\u001f${period.start.toISOString()}`;
    let use = this.budgets.get(id);
    if (!use) this.budgets.set(id, (use = this.ledgers.budgets.useNow(name, period.start)));
    const used = await use;
    const usd = priceOf(estimate, this.flow.config.prices);
    const refusal = budgetRefusal(name, budget, used, estimate, usd, period);
    if (refusal) return refusal;
    for (const [unit, n] of Object.entries(estimate)) used.units[unit] = (used.units[unit] ?? 0) + n;
    used.usd += usd;
    return undefined;
  }
}
