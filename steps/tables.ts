import { type ColumnType, type Generated, type Kysely, type Migration, sql } from 'kysely';

/**
 * The tables of the report business, owned by the steps that read and write them (prospect
 * import and enrichment, reports, payments, the LinkedIn week, email consent). The engine keeps only its
 * flow_* tables; these migrations reach the database through the registry (openDatabase
 * applies them with the engine's, in one history ordered by name). Never edit a migration
 * that has shipped: add the next one. The first three were written before the engine and the
 * steps kept separate migrations, and keep their names so databases made then stay current.
 */

type Json<T = unknown> = ColumnType<T, string, string>;
type Timestamp = ColumnType<Date, Date | string, Date | string>;

export interface ProspectsTable {
  id: Generated<string>;
  /** The prospect's identity; null for one known by its LinkedIn profile alone, until a row brings it. */
  domain: string | null;
  company_name: string | null;
  contact_name: string | null;
  email: string | null;
  /** The profile to invite (https://www.linkedin.com/in/<slug>/); one prospect per profile. */
  linkedin_url: string | null;
  /** A Sales Navigator lead page, kept apart: never the profile, never invited. */
  sales_navigator_url: string | null;
  /** IANA timezone of the contact, when a source gave a valid one. */
  timezone: string | null;
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

/** Every address the business has sent marketing email to, by the id its links carry instead of the address. */
export interface EmailAddressesTable {
  id: Generated<string>;
  /** Lower-cased. */
  address: string;
  created_at: Generated<Date>;
}

export type SuppressionReason = 'unsubscribed' | 'hard_bounce' | 'complaint' | 'manual';

/** Addresses that get no marketing email again: one row per address, the first reason kept. */
export interface EmailSuppressionsTable {
  /** Lower-cased. */
  address: string;
  reason: SuppressionReason;
  /** How it came: one-click, confirmation page, an SMTP reply, a person. */
  source: string;
  created_at: Timestamp;
}

/** One email of a campaign's sequence to one prospect: planned, then sent once under its idempotency key. */
export interface EmailOutboxTable {
  id: Generated<string>;
  campaign: string;
  prospect_id: string;
  /** The sequence step's name (teaser, follow-up-1 ...) and its place in the sequence (0 for the first). */
  sequence_step: string;
  step_index: number;
  /** Lower-cased recipient address. */
  address: string;
  /** The mailbox that sent (or will send) it; every later email of the thread goes from the teaser's. */
  mailbox: string | null;
  domain: string | null;
  variant: string | null;
  subject: string | null;
  /** Our Message-ID, set when it is sent; thread_message_id is the teaser's (In-Reply-To of follow-ups). */
  message_id: string | null;
  thread_message_id: string | null;
  state: Generated<'planned' | 'sent' | 'bounced' | 'skipped' | 'in_doubt' | 'stopped'>;
  /** Why it was skipped, stopped or bounced. */
  reason: string | null;
  /** `campaign:prospect:step`: the key its send is reserved under in the effect ledger. */
  idempotency_key: string;
  due_at: Timestamp;
  sent_at: Timestamp | null;
  soft_bounces: Generated<number>;
  run_id: string | null;
  created_at: Generated<Date>;
}

/** The links of a sent email, each a signed token naming this row (never the address). */
export interface EmailLinksTable {
  id: Generated<string>;
  outbox_id: string;
  /** report (the call to action), honeypot (hidden: only machines follow it), unsubscribe, other. */
  purpose: string;
  target: string;
  created_at: Generated<Date>;
}

/** Every fetch of an email's link, with the class the scanner rules gave it. */
export interface EmailClickObservationsTable {
  id: Generated<string>;
  link_id: string;
  outbox_id: string;
  prospect_id: string | null;
  method: string;
  ip: string | null;
  user_agent: string | null;
  /** human, or what gave a machine away: head, honeypot, burst, too_soon, network, user_agent. */
  class: string;
  signals: Json<Record<string, unknown>>;
  observed_at: Timestamp;
}

/** Mail that came back to a mailbox (replies, auto-replies, delivery reports), each read once. */
export interface EmailInboundTable {
  id: Generated<string>;
  mailbox: string;
  /** The incoming message's own Message-ID (or a hash of it when it has none): read once. */
  message_id: string;
  kind: 'reply' | 'auto_reply' | 'bounce' | 'delay' | 'complaint' | 'other';
  outbox_id: string | null;
  prospect_id: string | null;
  from_address: string | null;
  subject: string | null;
  detail: Json<Record<string, unknown>>;
  received_at: Timestamp;
}

/** Where reading each mailbox's INBOX over IMAP got to: the last UID read under the folder's UIDVALIDITY. */
export interface EmailInboxCursorsTable {
  /** Lower-cased mailbox address. */
  mailbox: string;
  /** The folder's UIDVALIDITY when last_uid was read; another value means the UIDs were renumbered and reading starts over. */
  uid_validity: string;
  last_uid: ColumnType<string, number | string, number | string>;
  updated_at: Timestamp;
}

/** One row per prospect ever invited on LinkedIn (and one per profile): nobody is invited twice, across runs and accounts. */
export interface LinkedinInvitationsTable {
  id: Generated<string>;
  prospect_id: string;
  /** The profile in canonical form (normaliseProfileUrl). */
  profile_url: string;
  account: string;
  campaign: string;
  variant: string;
  note: string;
  state: Generated<'planned' | 'sent' | 'accepted' | 'withdrawn' | 'failed'>;
  /** The Phantombuster launch, recorded before its end is waited for. */
  container_id: string | null;
  idempotency_key: string;
  week: string | null;
  planned_at: Timestamp;
  /** Before 0017: when the launch was reserved. Launches are in linkedin_launches now. */
  launched_at: Timestamp | null;
  sent_at: Timestamp | null;
  accepted_at: Timestamp | null;
  /** Since 0017: when linkedin.withdraw withdrew it. */
  withdrawn_at: Timestamp | null;
  reason: string | null;
  run_id: string | null;
}

/** Which launch holds a LinkedIn account's one launch at a time (its linkedin_launches key), and until when. */
export interface LinkedinAccountLeasesTable {
  account: string;
  holder: string | null;
  until: Timestamp | null;
}

/**
 * Every Phantombuster launch on a LinkedIn account, by the key of what it does: reserved before
 * it is made, its container recorded as soon as it exists. A launch that did nothing is kept
 * under "<key>#<container id>" (its key free for the next attempt), so its container is never
 * taken for a lost one.
 */
export interface LinkedinLaunchesTable {
  key: string;
  account: string;
  kind: string;
  /** Set when the launch answered; a reservation without one is looked for among the agent's containers. */
  container_id: string | null;
  launched_at: Timestamp;
  finished_at: Timestamp | null;
  outcome: string | null;
  run_id: string | null;
}

/** One row per LinkedIn message: the report link on acceptance and each follow-up of the sequence. */
export interface LinkedinMessagesTable {
  id: Generated<string>;
  invitation_id: string;
  prospect_id: string;
  account: string;
  campaign: string;
  variant: string;
  /** report-link, or the follow-up step's name. */
  sequence_step: string;
  text: string;
  report_id: string | null;
  state: Generated<'planned' | 'sent' | 'failed' | 'stopped'>;
  container_id: string | null;
  idempotency_key: string;
  planned_at: Timestamp;
  sent_at: Timestamp | null;
  reason: string | null;
  run_id: string | null;
}

/** A reply read from an account's inbox, once per thread message: it marks the prospect replied. */
export interface LinkedinRepliesTable {
  account: string;
  profile_url: string;
  message_at: Timestamp;
  prospect_id: string | null;
  text: string;
  recorded_at: Timestamp;
}

/** A Phantombuster run an end-of-run webhook told of, once per container, as the API describes it (never as the webhook's body did). */
export interface PhantombusterRunsTable {
  container_id: string;
  agent_id: string | null;
  /** The account whose agent ran it; null for an agent no account configures. */
  account: string | null;
  /** What the agent does for the account (connect, message ...); null with the account. */
  kind: string | null;
  /** The container's status from the API (finished ...). */
  status: string;
  exit_code: number | null;
  /** The run's outcome kind as classify() reads it: ok, empty, session_expired ... */
  outcome: string;
  received_at: Timestamp;
  /** When the API was asked. */
  fetched_at: Timestamp;
}

export interface BusinessTables {
  prospects: ProspectsTable;
  prospect_intelligence: ProspectIntelligenceTable;
  generated_reports: GeneratedReportsTable;
  report_requests: ReportRequestsTable;
  payments: PaymentsTable;
  linkedin_selections: LinkedinSelectionsTable;
  claude_batches: ClaudeBatchesTable;
  email_addresses: EmailAddressesTable;
  email_suppressions: EmailSuppressionsTable;
  email_outbox: EmailOutboxTable;
  email_links: EmailLinksTable;
  email_click_observations: EmailClickObservationsTable;
  email_inbound: EmailInboundTable;
  email_inbox_cursors: EmailInboxCursorsTable;
  linkedin_invitations: LinkedinInvitationsTable;
  linkedin_account_leases: LinkedinAccountLeasesTable;
  linkedin_launches: LinkedinLaunchesTable;
  linkedin_messages: LinkedinMessagesTable;
  linkedin_replies: LinkedinRepliesTable;
  phantombuster_runs: PhantombusterRunsTable;
}

export const businessMigrations: Record<string, Migration> = {
  '0002_business': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('prospects')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('domain', 'text', (c) => c.notNull().unique())
        .addColumn('company_name', 'text')
        .addColumn('contact_name', 'text')
        .addColumn('email', 'text')
        .addColumn('linkedin_url', 'text')
        .addColumn('category', 'text')
        .addColumn('category_reason', 'text')
        .addColumn('source', 'text')
        .addColumn('status', 'text', (c) => c.notNull().defaultTo('new'))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();

      await db.schema
        .createTable('prospect_intelligence')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('prospect_id', 'uuid', (c) => c.references('prospects.id').onDelete('cascade'))
        .addColumn('domain', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('data', 'jsonb', (c) => c.notNull())
        .addColumn('fetched_at', 'timestamptz', (c) => c.notNull())
        .addUniqueConstraint('prospect_intelligence_domain_source', ['domain', 'source'])
        .execute();

      await db.schema
        .createTable('generated_reports')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('prospect_id', 'uuid', (c) => c.references('prospects.id').onDelete('set null'))
        .addColumn('domain', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull().unique())
        .addColumn('html_path', 'text')
        .addColumn('pdf_path', 'text')
        .addColumn('cost', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();

      await db.schema
        .createTable('report_requests')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('prospect_id', 'uuid', (c) => c.references('prospects.id').onDelete('set null'))
        .addColumn('domain', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull().defaultTo('pending'))
        .addColumn('report_id', 'uuid', (c) => c.references('generated_reports.id').onDelete('set null'))
        .addColumn('requested_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addColumn('fulfilled_at', 'timestamptz')
        .execute();
    },
  },
  '0005_reports': {
    async up(db: Kysely<any>) {
      // A report is made once per effect: a retry after a crash finds the row by its key.
      await db.schema.alterTable('generated_reports').addColumn('effect_key', 'text', (c) => c.unique()).execute();
      await db.schema.alterTable('generated_reports').addColumn('run_id', 'text').execute();
      await db.schema.alterTable('generated_reports').addColumn('company_name', 'text').execute();
      await db.schema.alterTable('generated_reports').addColumn('cost_usd', 'numeric(12, 6)', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('generated_reports').addColumn('pdf_bytes', 'integer').execute();
      await db.schema.createIndex('generated_reports_domain').on('generated_reports').columns(['domain', 'created_at']).execute();

      // Money received: one row per Stripe Checkout Session, with the attribution it carried.
      await db.schema
        .createTable('payments')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('provider', 'text', (c) => c.notNull().defaultTo('stripe'))
        .addColumn('session_id', 'text', (c) => c.notNull().unique())
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('prospect_id', 'uuid', (c) => c.references('prospects.id').onDelete('set null'))
        .addColumn('domain', 'text')
        .addColumn('email', 'text')
        .addColumn('amount', 'bigint', (c) => c.notNull())
        .addColumn('currency', 'text', (c) => c.notNull())
        .addColumn('channel', 'text')
        .addColumn('campaign', 'text')
        .addColumn('variant', 'text')
        .addColumn('report_id', 'uuid', (c) => c.references('generated_reports.id').onDelete('set null'))
        .addColumn('run_id', 'text')
        .addColumn('paid_at', 'timestamptz', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema.createIndex('payments_attribution').on('payments').columns(['channel', 'campaign', 'variant']).execute();
    },
  },
  '0007_linkedin_week': {
    async up(db: Kysely<any>) {
      // The prospects LinkedIn contacts each week, chosen by score, with their ready report.
      await db.schema
        .createTable('linkedin_selections')
        .addColumn('week', 'text', (c) => c.notNull())
        .addColumn('prospect_id', 'uuid', (c) => c.notNull().references('prospects.id').onDelete('cascade'))
        .addColumn('rank', 'integer', (c) => c.notNull())
        .addColumn('score', 'double precision', (c) => c.notNull())
        .addColumn('report_id', 'uuid', (c) => c.references('generated_reports.id').onDelete('set null'))
        .addColumn('run_id', 'text')
        .addColumn('selected_at', 'timestamptz', (c) => c.notNull())
        .addPrimaryKeyConstraint('linkedin_selections_pk', ['week', 'prospect_id'])
        .execute();
      await db.schema.createIndex('linkedin_selections_prospect').on('linkedin_selections').columns(['prospect_id']).execute();

      // Message batches submitted, by the effect that submitted them: a resumed run polls the
      // batch it already paid for instead of submitting another.
      await db.schema
        .createTable('claude_batches')
        .addColumn('effect_key', 'text', (c) => c.primaryKey())
        .addColumn('batch_id', 'text', (c) => c.notNull())
        .addColumn('requests', 'integer', (c) => c.notNull())
        .addColumn('submitted_at', 'timestamptz', (c) => c.notNull())
        .addColumn('ended_at', 'timestamptz')
        .execute();
    },
  },
  '0008_prospect_metrics': {
    async up(db: Kysely<any>) {
      // The numbers a prospect is categorised and scored by, kept small beside the category.
      // (Databases made before the steps kept their own migrations have it already.)
      await sql`ALTER TABLE prospects ADD COLUMN IF NOT EXISTS metrics jsonb`.execute(db);
    },
  },
  '0011_prospect_sales_navigator': {
    async up(db: Kysely<any>) {
      // A Sales Navigator export names the lead page beside the profile: both are kept, apart.
      await db.schema.alterTable('prospects').addColumn('sales_navigator_url', 'text').execute();
    },
  },
  '0012_prospect_linkedin_identity': {
    async up(db: Kysely<any>) {
      // A prospect is its domain or, until it has one, its LinkedIn profile: one prospect per
      // profile. Where two prospects share a profile, the one already chosen for a LinkedIn week
      // (else the first saved) keeps it; the others keep their domain.
      await sql`UPDATE prospects p SET linkedin_url = NULL
                 WHERE p.linkedin_url IS NOT NULL
                   AND p.id <> (SELECT o.id FROM prospects o WHERE o.linkedin_url = p.linkedin_url
                                 ORDER BY EXISTS (SELECT 1 FROM linkedin_selections s WHERE s.prospect_id = o.id) DESC, o.created_at, o.id
                                 LIMIT 1)`.execute(db);
      await db.schema.alterTable('prospects').alterColumn('domain', (c) => c.dropNotNull()).execute();
      await sql`ALTER TABLE prospects ADD CONSTRAINT prospects_identity CHECK (domain IS NOT NULL OR linkedin_url IS NOT NULL)`.execute(db);
      await db.schema.createIndex('prospects_linkedin_url_key').unique().on('prospects').column('linkedin_url').where(sql.ref('linkedin_url'), 'is not', null).execute();
    },
  },
  '0013_email_consent': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('email_addresses')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('address', 'text', (c) => c.notNull().unique().check(sql`address = lower(address)`))
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
      await db.schema
        .createTable('email_suppressions')
        .addColumn('address', 'text', (c) => c.primaryKey().check(sql`address = lower(address)`))
        .addColumn('reason', 'text', (c) => c.notNull().check(sql`reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')`))
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .execute();
    },
  },
  '0014_email_outbox': {
    async up(db: Kysely<any>) {
      // A reply on any channel stops every sequence for the prospect.
      await db.schema.alterTable('prospects').addColumn('replied_at', 'timestamptz').execute();
      await db.schema.alterTable('prospects').addColumn('reply_channel', 'text').execute();
      await db.schema
        .createTable('email_outbox')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('campaign', 'text', (c) => c.notNull())
        .addColumn('prospect_id', 'uuid', (c) => c.notNull().references('prospects.id').onDelete('cascade'))
        .addColumn('sequence_step', 'text', (c) => c.notNull())
        .addColumn('step_index', 'integer', (c) => c.notNull())
        .addColumn('address', 'text', (c) => c.notNull().check(sql`address = lower(address)`))
        .addColumn('mailbox', 'text')
        .addColumn('domain', 'text')
        .addColumn('variant', 'text')
        .addColumn('subject', 'text')
        .addColumn('message_id', 'text', (c) => c.unique())
        .addColumn('thread_message_id', 'text')
        .addColumn('state', 'text', (c) => c.notNull().defaultTo('planned').check(sql`state IN ('planned', 'sent', 'bounced', 'skipped', 'in_doubt', 'stopped')`))
        .addColumn('reason', 'text')
        .addColumn('idempotency_key', 'text', (c) => c.notNull().unique())
        .addColumn('due_at', 'timestamptz', (c) => c.notNull())
        .addColumn('sent_at', 'timestamptz')
        .addColumn('soft_bounces', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('run_id', 'text')
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addUniqueConstraint('email_outbox_once', ['campaign', 'prospect_id', 'sequence_step'])
        .execute();
      await db.schema.createIndex('email_outbox_prospect').on('email_outbox').columns(['prospect_id', 'sent_at']).execute();
      await db.schema.createIndex('email_outbox_address').on('email_outbox').columns(['address']).execute();
      await db.schema.createIndex('email_outbox_mailbox').on('email_outbox').columns(['mailbox', 'sent_at']).execute();
      await db.schema
        .createTable('email_links')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('outbox_id', 'uuid', (c) => c.notNull().references('email_outbox.id').onDelete('cascade'))
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
        .addUniqueConstraint('email_links_once', ['outbox_id', 'purpose'])
        .execute();
      await db.schema
        .createTable('email_click_observations')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('link_id', 'uuid', (c) => c.notNull().references('email_links.id').onDelete('cascade'))
        .addColumn('outbox_id', 'uuid', (c) => c.notNull().references('email_outbox.id').onDelete('cascade'))
        .addColumn('prospect_id', 'uuid', (c) => c.references('prospects.id').onDelete('set null'))
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('ip', 'text')
        .addColumn('user_agent', 'text')
        .addColumn('class', 'text', (c) => c.notNull())
        .addColumn('signals', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn('observed_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('email_click_observations_outbox').on('email_click_observations').columns(['outbox_id', 'observed_at']).execute();
      await db.schema
        .createTable('email_inbound')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('mailbox', 'text', (c) => c.notNull())
        .addColumn('message_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind IN ('reply', 'auto_reply', 'bounce', 'delay', 'complaint', 'other')`))
        .addColumn('outbox_id', 'uuid', (c) => c.references('email_outbox.id').onDelete('set null'))
        .addColumn('prospect_id', 'uuid', (c) => c.references('prospects.id').onDelete('set null'))
        .addColumn('from_address', 'text')
        .addColumn('subject', 'text')
        .addColumn('detail', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
        .addColumn('received_at', 'timestamptz', (c) => c.notNull())
        .addUniqueConstraint('email_inbound_once', ['mailbox', 'message_id'])
        .execute();
    },
  },
  '0015_email_inbox_cursors': {
    async up(db: Kysely<any>) {
      // One row per mailbox read over IMAP; messages are recorded once by Message-ID anyway,
      // so a cursor that lags one message behind reads that message again and changes nothing.
      await db.schema
        .createTable('email_inbox_cursors')
        .addColumn('mailbox', 'text', (c) => c.primaryKey().check(sql`mailbox = lower(mailbox)`))
        .addColumn('uid_validity', 'text', (c) => c.notNull())
        .addColumn('last_uid', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'timestamptz', (c) => c.notNull())
        .execute();
    },
  },
  '0016_linkedin_invitations': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('linkedin_invitations')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('prospect_id', 'uuid', (c) => c.notNull().unique().references('prospects.id').onDelete('cascade'))
        .addColumn('profile_url', 'text', (c) => c.notNull().unique())
        .addColumn('account', 'text', (c) => c.notNull())
        .addColumn('campaign', 'text', (c) => c.notNull())
        .addColumn('variant', 'text', (c) => c.notNull())
        .addColumn('note', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull().defaultTo('planned').check(sql`state IN ('planned', 'sent', 'accepted', 'withdrawn', 'failed')`))
        .addColumn('container_id', 'text')
        .addColumn('idempotency_key', 'text', (c) => c.notNull().unique())
        .addColumn('week', 'text')
        .addColumn('planned_at', 'timestamptz', (c) => c.notNull())
        .addColumn('launched_at', 'timestamptz')
        .addColumn('sent_at', 'timestamptz')
        .addColumn('accepted_at', 'timestamptz')
        .addColumn('reason', 'text')
        .addColumn('run_id', 'text')
        .execute();
      await db.schema.createIndex('linkedin_invitations_account').on('linkedin_invitations').columns(['account', 'sent_at']).execute();
      await db.schema.createIndex('linkedin_invitations_campaign').on('linkedin_invitations').columns(['campaign', 'planned_at']).execute();
      await db.schema
        .createTable('linkedin_account_leases')
        .addColumn('account', 'text', (c) => c.primaryKey())
        .addColumn('invitation_id', 'uuid')
        .addColumn('until', 'timestamptz')
        .execute();
    },
  },
  '0017_linkedin_messages': {
    async up(db: Kysely<any>) {
      // Every launch on an account, not only invitations: messages, exports and inbox reads
      // take the same lease and are found again the same way after a crash.
      await db.schema
        .createTable('linkedin_launches')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('account', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('container_id', 'text', (c) => c.unique())
        .addColumn('launched_at', 'timestamptz', (c) => c.notNull())
        .addColumn('finished_at', 'timestamptz')
        .addColumn('outcome', 'text')
        .addColumn('run_id', 'text')
        .execute();
      await db.schema.createIndex('linkedin_launches_account').on('linkedin_launches').columns(['account', 'kind', 'launched_at']).execute();
      // Launches reserved by invitations before this table: their rows carry them over.
      await sql`INSERT INTO linkedin_launches (key, account, kind, container_id, launched_at, finished_at, outcome)
        SELECT idempotency_key, account, 'connect', container_id, launched_at, sent_at, CASE WHEN state = 'sent' THEN 'ok' END
          FROM linkedin_invitations WHERE launched_at IS NOT NULL`.execute(db);
      await sql`ALTER TABLE linkedin_account_leases ALTER COLUMN invitation_id TYPE text USING invitation_id::text`.execute(db);
      await sql`ALTER TABLE linkedin_account_leases RENAME COLUMN invitation_id TO holder`.execute(db);
      await db.schema.alterTable('linkedin_invitations').addColumn('withdrawn_at', 'timestamptz').execute();
      await db.schema
        .createTable('linkedin_messages')
        .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
        .addColumn('invitation_id', 'uuid', (c) => c.notNull().references('linkedin_invitations.id').onDelete('cascade'))
        .addColumn('prospect_id', 'uuid', (c) => c.notNull().references('prospects.id').onDelete('cascade'))
        .addColumn('account', 'text', (c) => c.notNull())
        .addColumn('campaign', 'text', (c) => c.notNull())
        .addColumn('variant', 'text', (c) => c.notNull())
        .addColumn('sequence_step', 'text', (c) => c.notNull())
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('report_id', 'uuid')
        .addColumn('state', 'text', (c) => c.notNull().defaultTo('planned').check(sql`state IN ('planned', 'sent', 'failed', 'stopped')`))
        .addColumn('container_id', 'text')
        .addColumn('idempotency_key', 'text', (c) => c.notNull().unique())
        .addColumn('planned_at', 'timestamptz', (c) => c.notNull())
        .addColumn('sent_at', 'timestamptz')
        .addColumn('reason', 'text')
        .addColumn('run_id', 'text')
        .addUniqueConstraint('linkedin_messages_step', ['invitation_id', 'sequence_step'])
        .execute();
      await db.schema.createIndex('linkedin_messages_account').on('linkedin_messages').columns(['account', 'sent_at']).execute();
      await db.schema
        .createTable('linkedin_replies')
        .addColumn('account', 'text', (c) => c.notNull())
        .addColumn('profile_url', 'text', (c) => c.notNull())
        .addColumn('message_at', 'timestamptz', (c) => c.notNull())
        .addColumn('prospect_id', 'uuid', (c) => c.references('prospects.id').onDelete('set null'))
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('recorded_at', 'timestamptz', (c) => c.notNull())
        .addPrimaryKeyConstraint('linkedin_replies_pk', ['account', 'profile_url', 'message_at'])
        .execute();
    },
  },
  '0018_phantombuster_webhooks': {
    async up(db: Kysely<any>) {
      // The container id is the webhook's dedupe key: a second POST for it changes nothing.
      await db.schema
        .createTable('phantombuster_runs')
        .addColumn('container_id', 'text', (c) => c.primaryKey())
        .addColumn('agent_id', 'text')
        .addColumn('account', 'text')
        .addColumn('kind', 'text')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('exit_code', 'integer')
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('received_at', 'timestamptz', (c) => c.notNull())
        .addColumn('fetched_at', 'timestamptz', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('phantombuster_runs_account').on('phantombuster_runs').columns(['account', 'received_at']).execute();
    },
  },
  '0019_prospect_timezone': {
    async up(db: Kysely<any>) {
      // The contact's timezone when a source gives it: their emails go in their working hours.
      await db.schema.alterTable('prospects').addColumn('timezone', 'text').execute();
    },
  },
};
