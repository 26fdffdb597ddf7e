import type { ColumnType, Generated } from 'kysely';

/** JSON columns: written as a JSON string, read back parsed. */
export type Json<T = unknown> = ColumnType<T, string, string>;
type Timestamp = ColumnType<Date, Date | string, Date | string>;

export type RunStatus =
  /** Waiting in the daemon's queue for a worker. */
  | 'queued'
  | 'running'
  /** Parked until a quota window opens; the daemon queues it again for then. */
  | 'waiting'
  | 'completed'
  | 'completed_with_errors'
  | 'failed'
  /** Stopped on purpose by a step: a person must look at it (`flows show` says why). */
  | 'needs_attention'
  | 'interrupted';

/** Every run status, in the order a run may pass through them (option choices list them). */
export const RUN_STATUSES = Object.keys({
  queued: true,
  running: true,
  waiting: true,
  completed: true,
  completed_with_errors: true,
  failed: true,
  needs_attention: true,
  interrupted: true,
} satisfies Record<RunStatus, true>) as RunStatus[];

export type StepStatus = 'running' | 'completed' | 'completed_with_errors' | 'failed' | 'skipped';
export type ItemStatus = 'succeeded' | 'failed' | 'skipped';
export type EffectStatus = 'reserved' | 'done';

export interface FlowRunsTable {
  id: string;
  pipeline: string;
  pipeline_file: string;
  pipeline_hash: string;
  status: RunStatus;
  dry_run: boolean;
  inputs: Json<Record<string, unknown>>;
  error: string | null;
  started_at: Timestamp;
  finished_at: Timestamp | null;
  updated_at: Timestamp;
  /** Set while the run waits for a quota window: when it goes on, and why. */
  waiting_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  waiting_reason: ColumnType<string | null, string | null | undefined, string | null>;
  /** What started the run: manual, schedule, webhook or event. */
  trigger: ColumnType<string, string | undefined, string>;
  /** The fire time, webhook event id or event id behind it. */
  trigger_ref: ColumnType<string | null, string | null | undefined, string | null>;
  /** The daemon worker executing it, and until when its claim holds without renewal. */
  claimed_by: ColumnType<string | null, string | null | undefined, string | null>;
  lease_until: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** What the run spent, or a dry run would spend: { units, usd }; null before it first stops. */
  cost: ColumnType<{ units: Record<string, number>; usd: number } | null, string | null | undefined, string | null>;
}

export interface FlowStepsTable {
  run_id: string;
  step_id: string;
  position: number;
  status: StepStatus;
  output: Json | null;
  error: string | null;
  items_total: number;
  items_succeeded: number;
  items_failed: number;
  items_skipped: number;
  started_at: Timestamp;
  finished_at: Timestamp | null;
}

export interface FlowItemsTable {
  run_id: string;
  step_id: string;
  item_key: string;
  status: ItemStatus;
  attempts: number;
  output: Json | null;
  error: string | null;
  finished_at: Timestamp;
}

export interface FlowEffectsTable {
  /** The idempotency key: unique across all runs. */
  key: string;
  run_id: string;
  step_id: string;
  item_key: string;
  kind: string;
  status: EffectStatus;
  summary: string;
  output: Json | null;
  reserved_at: Timestamp;
  done_at: Timestamp | null;
  /** What identifies it outside (recipient, subject, Message-ID ...), shown while it is in doubt. */
  identity: ColumnType<Record<string, string> | null, string | null | undefined, string | null>;
  /** The output is kept only until the effect's item is recorded (large data stored elsewhere). */
  transient: ColumnType<boolean, boolean | undefined, boolean>;
  /** Times it was performed again after a crash left it in doubt (in_doubt: repeat, or the provider deduplicates). */
  repeats: ColumnType<number, number | undefined, number>;
}

export interface FlowQuotaLedgerTable {
  id: Generated<string>;
  quota: string;
  quota_key: string;
  at: Timestamp;
  run_id: string;
  step_id: string;
  item_key: string;
  effect_key: string | null;
}

export interface FlowQuotaPausesTable {
  quota: string;
  quota_key: string;
  reason: string;
  paused_by: string;
  paused_at: Timestamp;
  until: Timestamp | null;
}

export interface EventsTable {
  id: Generated<string>;
  type: string;
  key: string | null;
  payload: Json<Record<string, unknown>>;
  run_id: string | null;
  occurred_at: Timestamp;
  /** When the daemon handed it to the pipelines it triggers. */
  dispatched_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface FlowSchedulesTable {
  pipeline: string;
  last_fire_at: Timestamp;
  updated_at: Timestamp;
}

export interface WebhookEventsTable {
  route: string;
  event_id: string;
  run_id: string | null;
  received_at: Timestamp;
}

export interface FlowTriggerKeysTable {
  pipeline: string;
  dedupe_key: string;
  run_id: string;
  fired_at: Timestamp;
}

export interface BudgetLedgerTable {
  id: Generated<string>;
  budget: string;
  period_start: Timestamp;
  run_id: string;
  step_id: string;
  item_key: string;
  units: Json<Record<string, number>>;
  usd: ColumnType<string, number | string, number | string>;
  settled: boolean;
  created_at: Timestamp;
}

export interface BudgetTotalsTable {
  budget: string;
  period_start: Timestamp;
  unit: string;
  amount: ColumnType<string, number | string, number | string>;
}

/** The engine's tables: the flow_* ones (the business tables belong to the steps, see steps/tables.ts). */
export interface Tables {
  flow_runs: FlowRunsTable;
  flow_steps: FlowStepsTable;
  flow_items: FlowItemsTable;
  flow_effects: FlowEffectsTable;
  flow_quota_ledger: FlowQuotaLedgerTable;
  flow_quota_pauses: FlowQuotaPausesTable;
  flow_events: EventsTable;
  flow_schedules: FlowSchedulesTable;
  flow_webhook_events: WebhookEventsTable;
  flow_trigger_keys: FlowTriggerKeysTable;
  flow_budget_ledger: BudgetLedgerTable;
  flow_budget_totals: BudgetTotalsTable;
}
