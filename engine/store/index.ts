import type { Database } from '../db/connect.ts';
import { BudgetLedger } from '../flow-control/budget-ledger.ts';
import { QuotaLedger } from '../flow-control/quota-ledger.ts';
import { openLedger, type SqlLedger } from '../ledger/index.ts';
import { ItemRecords } from './items.ts';
import type { Scrubber } from './records.ts';
import { RunRecords } from './runs.ts';

export type { Db, EffectRow, ItemRecord, RunRow, Scrubber, StepRow } from './records.ts';
export { ItemRecords } from './items.ts';
export { RunRecords } from './runs.ts';

/**
 * Everything the engine records, in four parts with one job each: run records (runs and
 * their steps), items, the effect ledger, and the quota and budget ledgers of flow control.
 * Writes pass through `scrub`, so secret values never reach the database.
 */
export class RunStore {
  readonly runs: RunRecords;
  readonly items: ItemRecords;
  readonly effects: SqlLedger;
  readonly quotas: QuotaLedger;
  readonly budgets: BudgetLedger;

  constructor(
    readonly db: Database,
    readonly scrub: Scrubber = (v) => v,
  ) {
    this.runs = new RunRecords(db, scrub);
    this.items = new ItemRecords(db, scrub);
    this.effects = openLedger(db, scrub);
    this.quotas = new QuotaLedger(db);
    this.budgets = new BudgetLedger(db);
  }

  get kysely() {
    return this.db.kysely;
  }
}
