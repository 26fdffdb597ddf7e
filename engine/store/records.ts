import type { Kysely, Selectable, Transaction } from 'kysely';
import type { FlowEffectsTable, ItemStatus, Tables } from '../db/tables.ts';

/** Rows and records the store reads and writes. */
export type RunRow = Selectable<Tables['flow_runs']>;
export type StepRow = Selectable<Tables['flow_steps']>;
export type EffectRow = Selectable<FlowEffectsTable>;
export type Db = Kysely<Tables> | Transaction<Tables>;
export type Scrubber = <T>(value: T) => T;

export interface ItemRecord {
  runId: string;
  stepId: string;
  itemKey: string;
  status: ItemStatus;
  attempts: number;
  output: unknown;
  error: string | null;
  finishedAt: Date;
}

/** JSON columns are written as text; `undefined` is stored as null. */
export const json = (v: unknown) => JSON.stringify(v ?? null);
