import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';

/**
 * The engine's migrations: its own flow_* tables, nothing else (the tables a business keeps
 * belong to the steps that use them, which hand their migrations to openDatabase). They live
 * in code, in order; the Migrator applies the missing ones at start-up (it takes a lock, so
 * several processes starting at once on Postgres are safe). Never edit a migration that has
 * shipped: add the next one.
 */
export type Migrations = Record<string, Migration>;

const migrations: Migrations = {
  '0001_engine': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('flow_runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('pipeline', 'text', (c) => c.notNull())
        .addColumn('pipeline_file', 'text', (c) => c.notNull())
        .addColumn('pipeline_hash', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('dry_run', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('inputs', 'jsonb', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('started_at', 'timestamptz', (c) => c.notNull())
        .addColumn('finished_at', 'timestamptz')
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('flow_runs_pipeline_started')
        .on('flow_runs')
        .columns(['pipeline', 'started_at'])
        .execute();

      await db.schema
        .createTable('flow_steps')
        .addColumn('run_id', 'text', (c) => c.notNull().references('flow_runs.id').onDelete('cascade'))
        .addColumn('step_id', 'text', (c) => c.notNull())
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('output', 'jsonb')
        .addColumn('error', 'text')
        .addColumn('items_total', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('items_succeeded', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('items_failed', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('items_skipped', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('started_at', 'timestamptz', (c) => c.notNull())
        .addColumn('finished_at', 'timestamptz')
        .addPrimaryKeyConstraint('flow_steps_pk', ['run_id', 'step_id'])
        .execute();

      await db.schema
        .createTable('flow_items')
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('step_id', 'text', (c) => c.notNull())
        .addColumn('item_key', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('output', 'jsonb')
        .addColumn('error', 'text')
        .addColumn('finished_at', 'timestamptz', (c) => c.notNull())
        .addPrimaryKeyConstraint('flow_items_pk', ['run_id', 'step_id', 'item_key'])
        .addForeignKeyConstraint('flow_items_step_fk', ['run_id', 'step_id'], 'flow_steps', ['run_id', 'step_id'], (c) =>
          c.onDelete('cascade'),
        )
        .execute();

      await db.schema
        .createTable('flow_effects')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('step_id', 'text', (c) => c.notNull())
        .addColumn('item_key', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('summary', 'text', (c) => c.notNull())
        .addColumn('output', 'jsonb')
        .addColumn('reserved_at', 'timestamptz', (c) => c.notNull())
        .addColumn('done_at', 'timestamptz')
        .execute();
      await db.schema.createIndex('flow_effects_run').on('flow_effects').columns(['run_id', 'step_id']).execute();

      await db.schema
        .createTable('events')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('key', 'text')
        .addColumn('payload', 'jsonb', (c) => c.notNull())
        .addColumn('run_id', 'text')
        .addColumn('occurred_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_type_time').on('events').columns(['type', 'occurred_at']).execute();
    },
  },
  '0003_quota_ledger': {
    async up(db: Kysely<any>) {
      // The quota ledger is the effects table itself: an effect under a quota records which
      // quota and key it counts against, in the same row as its idempotency key.
      await db.schema.alterTable('flow_effects').addColumn('quota', 'text').execute();
      await db.schema.alterTable('flow_effects').addColumn('quota_key', 'text').execute();
      // Partial: most effects have no quota, and their inserts should not pay for this index.
      await db.schema
        .createIndex('flow_effects_quota')
        .on('flow_effects')
        .columns(['quota', 'quota_key', 'reserved_at'])
        .where(sql.ref('quota'), 'is not', null)
        .execute();
      await db.schema.alterTable('flow_runs').addColumn('waiting_until', 'timestamptz').execute();
      await db.schema.alterTable('flow_runs').addColumn('waiting_reason', 'text').execute();
    },
  },
  '0004_daemon': {
    async up(db: Kysely<any>) {
      // Runs the daemon executes: why each started, and who holds it until when. A worker
      // renews its lease while it runs; a run whose lease ran out is queued again.
      await db.schema.alterTable('flow_runs').addColumn('trigger', 'text', (c) => c.notNull().defaultTo('manual')).execute();
      await db.schema.alterTable('flow_runs').addColumn('trigger_ref', 'text').execute();
      await db.schema.alterTable('flow_runs').addColumn('claimed_by', 'text').execute();
      await db.schema.alterTable('flow_runs').addColumn('lease_until', 'timestamptz').execute();
      await db.schema
        .createIndex('flow_runs_active')
        .on('flow_runs')
        .columns(['pipeline', 'status'])
        .where(sql.ref('status'), 'in', ['queued', 'running', 'waiting'])
        .execute();

      // The last fire handled for each schedule: a row lock on it makes each fire happen once.
      await db.schema
        .createTable('flow_schedules')
        .addColumn('pipeline', 'text', (c) => c.primaryKey())
        .addColumn('last_fire_at', 'timestamptz', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .execute();

      // Each provider event once per route.
      await db.schema
        .createTable('webhook_events')
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text')
        .addColumn('received_at', 'timestamptz', (c) => c.notNull())
        .addPrimaryKeyConstraint('webhook_events_pk', ['route', 'event_id'])
        .execute();

      // Runs started by events, by dedupe key, for "one run per key per window".
      await db.schema
        .createTable('flow_trigger_keys')
        .addColumn('pipeline', 'text', (c) => c.notNull())
        .addColumn('dedupe_key', 'text', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('fired_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('flow_trigger_keys_lookup').on('flow_trigger_keys').columns(['pipeline', 'dedupe_key', 'fired_at']).execute();

      // Events are handed to the pipelines they trigger once; those recorded before the
      // daemon existed count as handed over.
      await db.schema.alterTable('events').addColumn('dispatched_at', 'timestamptz').execute();
      await sql`UPDATE events SET dispatched_at = occurred_at`.execute(db);
      await db.schema
        .createIndex('events_undispatched')
        .on('events')
        .columns(['occurred_at'])
        .where(sql.ref('dispatched_at'), 'is', null)
        .execute();
    },
  },
  '0006_budgets': {
    async up(db: Kysely<any>) {
      // What each budget spent, per period: a row per call, reserved at its estimate before
      // the call and settled to what it really cost after.
      await db.schema
        .createTable('budget_ledger')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('budget', 'text', (c) => c.notNull())
        .addColumn('period_start', 'timestamptz', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('step_id', 'text', (c) => c.notNull())
        .addColumn('item_key', 'text', (c) => c.notNull())
        .addColumn('units', 'jsonb', (c) => c.notNull())
        .addColumn('usd', 'numeric(14, 6)', (c) => c.notNull().defaultTo(0))
        .addColumn('settled', 'boolean', (c) => c.notNull().defaultTo(false))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('budget_ledger_period').on('budget_ledger').columns(['budget', 'period_start']).execute();
    },
  },
  '0008_totals_and_metrics': {
    async up(db: Kysely<any>) {
      // Running totals of each budget per period and unit (usd included), updated with the
      // ledger, so checking a budget reads a few rows however many calls the week made.
      await db.schema
        .createTable('budget_totals')
        .addColumn('budget', 'text', (c) => c.notNull())
        .addColumn('period_start', 'timestamptz', (c) => c.notNull())
        .addColumn('unit', 'text', (c) => c.notNull())
        .addColumn('amount', 'numeric', (c) => c.notNull())
        .addPrimaryKeyConstraint('budget_totals_pk', ['budget', 'period_start', 'unit'])
        .execute();
      await sql`INSERT INTO budget_totals (budget, period_start, unit, amount)
                SELECT l.budget, l.period_start, u.key, sum((u.value)::numeric) FROM budget_ledger l, jsonb_each_text(l.units) u GROUP BY 1, 2, 3
                UNION ALL
                SELECT budget, period_start, 'usd', sum(usd) FROM budget_ledger GROUP BY 1, 2`.execute(db);
    },
  },
  '0009_flow_control': {
    async up(db: Kysely<any>) {
      // The quota ledger is a table of its own: a gated read counts as well as an effect, and
      // a cap is counted from it alone.
      await db.schema
        .createTable('flow_quota_ledger')
        .addColumn('id', 'bigserial', (c) => c.primaryKey())
        .addColumn('quota', 'text', (c) => c.notNull())
        .addColumn('quota_key', 'text', (c) => c.notNull())
        .addColumn('at', 'timestamptz', (c) => c.notNull())
        .addColumn('run_id', 'text', (c) => c.notNull())
        .addColumn('step_id', 'text', (c) => c.notNull())
        .addColumn('item_key', 'text', (c) => c.notNull())
        .addColumn('effect_key', 'text')
        .execute();
      await db.schema.createIndex('flow_quota_ledger_use').on('flow_quota_ledger').columns(['quota', 'quota_key', 'at']).execute();
      await sql`INSERT INTO flow_quota_ledger (quota, quota_key, at, run_id, step_id, item_key, effect_key)
                SELECT quota, coalesce(quota_key, ''), reserved_at, run_id, step_id, item_key, key FROM flow_effects WHERE quota IS NOT NULL`.execute(db);
      await db.schema.dropIndex('flow_effects_quota').execute();
      await db.schema.alterTable('flow_effects').dropColumn('quota').execute();
      await db.schema.alterTable('flow_effects').dropColumn('quota_key').execute();

      // Quotas (or one key of one) paused by a person or a rule, with the reason, maybe until a time.
      await db.schema
        .createTable('flow_quota_pauses')
        .addColumn('quota', 'text', (c) => c.notNull())
        .addColumn('quota_key', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('paused_by', 'text', (c) => c.notNull())
        .addColumn('paused_at', 'timestamptz', (c) => c.notNull())
        .addColumn('until', 'timestamptz')
        .addPrimaryKeyConstraint('flow_quota_pauses_pk', ['quota', 'quota_key'])
        .execute();

      // What identifies an effect outside (recipient, subject, Message-ID), for a person to look
      // it up while it is in doubt; outputs kept only until their item is recorded.
      await db.schema.alterTable('flow_effects').addColumn('identity', 'jsonb').execute();
      await db.schema.alterTable('flow_effects').addColumn('transient', 'boolean', (c) => c.notNull().defaultTo(false)).execute();
      // How often an effect left in doubt by a crash was performed again (its step allows it): counted, never hidden.
      await db.schema.alterTable('flow_effects').addColumn('repeats', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema
        .createIndex('flow_effects_transient')
        .on('flow_effects')
        .columns(['run_id', 'item_key'])
        .where(sql.ref('transient'), '=', true)
        .execute();

      // The engine's tables are the flow_* ones; the business tables belong to the steps.
      await db.schema.alterTable('budget_ledger').renameTo('flow_budget_ledger').execute();
      await db.schema.alterTable('budget_totals').renameTo('flow_budget_totals').execute();
      await db.schema.alterTable('webhook_events').renameTo('flow_webhook_events').execute();
      await db.schema.alterTable('events').renameTo('flow_events').execute();
    },
  },
  '0010_run_cost': {
    async up(db: Kysely<any>) {
      // What a run spent (a dry run: what it would spend), by unit and in USD, summed over the
      // times it was resumed; flows runs and flows show print it.
      await db.schema.alterTable('flow_runs').addColumn('cost', 'jsonb').execute();
    },
  },
  // Numbered after the steps' migrations (0011-0019): one history, ordered by name.
  '0020_effects_resolved_happened': {
    async up(db: Kysely<any>) {
      // The effects a person confirmed (flows effects resolve --happened): few, and looked up
      // by every campaign run (email.deliver records those sends), so only they are indexed.
      await sql`CREATE INDEX flow_effects_resolved_happened ON flow_effects (key) WHERE status = 'done' AND (output->>'resolved') = 'happened'`.execute(db);
    },
  },
};

/**
 * Applies the engine's migrations and `extra` (the steps' tables), ordered by name in one
 * history; a migration added later with an earlier name is applied too.
 */
export async function migrateToLatest(db: Kysely<any>, extra: Migrations = {}): Promise<void> {
  for (const name of Object.keys(extra)) if (name in migrations) throw new Error(`migration ${name} is declared by the engine and by a step`);
  const known: Migrations = { ...migrations, ...extra };
  // A database may hold tables of steps this process does not load (a tool that needs the
  // engine's tables only): their applied migrations stand, unknown here but not missing.
  for (const name of await appliedMigrations(db)) known[name] ??= { up: async () => {} };
  const provider: MigrationProvider = { getMigrations: async () => known };
  const migrator = new Migrator({ db, provider, allowUnorderedMigrations: true });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${String(error)}`, { cause: error });
  }
}

async function appliedMigrations(db: Kysely<any>): Promise<string[]> {
  const exists = await sql<{ t: string | null }>`SELECT to_regclass('kysely_migration')::text AS t`.execute(db);
  if (!exists.rows[0]?.t) return [];
  return (await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(db)).rows.map((r) => r.name);
}
