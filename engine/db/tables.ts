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

/** The business tables of the report company (see DESIGN.md). */
export interface ProspectsTable {
  id: Generated<string>;
  domain: string;
  company_name: string | null;
  contact_name: string | null;
  email: string | null;
  linkedin_url: string | null;
  category: string | null;
  category_reason: string | null;
  metrics: Json<Record<string, unknown>> | null;
  source: string | null;
  status: Generated<string>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface ProspectIntelligenceTable {
  id: Generated<string>;
  prospect_id: string | null;
  domain: string;
  source: string;
  data: Json<Record<string, unknown>>;
  fetched_at: Timestamp;
}

export interface GeneratedReportsTable {
  id: Generated<string>;
  prospect_id: string | null;
  domain: string;
  token: string;
  html_path: string | null;
  pdf_path: string | null;
  cost: Json<Record<string, number>>;
  created_at: Generated<Date>;
  effect_key: string | null;
  run_id: string | null;
  company_name: string | null;
  /** numeric: read back as a string by pg. */
  cost_usd: ColumnType<string, number | string, number | string>;
  pdf_bytes: number | null;
}

export interface PaymentsTable {
  id: Generated<string>;
  provider: Generated<string>;
  session_id: string;
  event_id: string;
  prospect_id: string | null;
  domain: string | null;
  email: string | null;
  /** In the currency's smallest unit (cents); bigint, read back as a string by pg. */
  amount: ColumnType<string, number | string, number | string>;
  currency: string;
  channel: string | null;
  campaign: string | null;
  variant: string | null;
  report_id: string | null;
  run_id: string | null;
  paid_at: Timestamp;
  created_at: Generated<Date>;
}

export interface ReportRequestsTable {
  id: Generated<string>;
  prospect_id: string | null;
  domain: string;
  reason: string;
  status: Generated<string>;
  report_id: string | null;
  requested_at: Generated<Date>;
  fulfilled_at: Timestamp | null;
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

export interface LinkedinSelectionsTable {
  week: string;
  prospect_id: string;
  rank: number;
  score: number;
  report_id: string | null;
  run_id: string | null;
  selected_at: Timestamp;
}

export interface ClaudeBatchesTable {
  effect_key: string;
  batch_id: string;
  requests: number;
  submitted_at: Timestamp;
  ended_at: Timestamp | null;
}

export interface BudgetTotalsTable {
  budget: string;
  period_start: Timestamp;
  unit: string;
  amount: ColumnType<string, number | string, number | string>;
}

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
  prospects: ProspectsTable;
  prospect_intelligence: ProspectIntelligenceTable;
  generated_reports: GeneratedReportsTable;
  report_requests: ReportRequestsTable;
  payments: PaymentsTable;
  flow_budget_ledger: BudgetLedgerTable;
  flow_budget_totals: BudgetTotalsTable;
  linkedin_selections: LinkedinSelectionsTable;
  claude_batches: ClaudeBatchesTable;
}
