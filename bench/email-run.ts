/**
 * What the cold email bench measures: the shipped email-daily pipeline sending a week's
 * teasers with the mailbox quota's gaps taken out, and nodemailer sending a prebuilt message
 * of the same size to the same SMTP sandbox, pooled the same way, as many in flight.
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTransport } from 'nodemailer';
import { parseDocument } from 'yaml';
import { DKIM_SIGNED_HEADERS, SmtpMailer, type EmailMessage, type EmailSender, type SendResult } from '../connectors/smtp/client.ts';
import { smtpConnector } from '../connectors/smtp/connector.ts';
import type { SmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import { connectorSettings } from '../engine/connector-settings.ts';
import type { Database } from '../engine/db/connect.ts';
import { RunEvents } from '../engine/events.ts';
import { executeRun, type RunResult } from '../engine/executor/run.ts';
import { silentLogger } from '../engine/log.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { Resources } from '../engine/resources.ts';
import { insertSql } from '../engine/sql-insert.ts';
import { RunStore } from '../engine/store/index.ts';
import { generatedKey } from '../steps/email/mailers.ts';
import { emailSettings } from '../steps/email/settings.ts';
import { createRegistry } from '../steps/index.ts';
import { PIPELINES_DIR } from './report-kit.ts';
import { MemorySampler } from './weekly-run.ts';

/** Monday 23 November 2026, 08:00 in London: the mailboxes' window opens. */
export const MONDAY_8AM = new Date('2026-11-23T08:00:00Z');
export const LINK_SECRET = 'link-secret-for-the-email-bench-0123456789';
const CATEGORIES = ['traffic-falling', 'competitor-ahead', 'paid-heavy', 'striking-distance', 'growth'];
/** email.deliver's concurrency in the shipped pipeline: the baseline keeps as many in flight. */
export const SHIPPED_CONCURRENCY = 18;

/**
 * The shipped config with the mailbox quota's gaps off: no spacing, no ramp, and caps that
 * let every mailbox send the whole volume (the rotation still spreads it over all 18). SMTP
 * goes to the sandbox; links point at a public URL.
 */
export function gapsOffConfig(emails: number, smtp: SmtpSandbox): EngineConfig {
  const file = join(PIPELINES_DIR, 'flows.config.yaml');
  const doc = parseDocument(readFileSync(file, 'utf8'));
  doc.setIn(['quotas', 'mailbox', 'caps'], { day: emails, rolling_24h: emails });
  doc.deleteIn(['quotas', 'mailbox', 'spacing']);
  doc.deleteIn(['quotas', 'mailbox', 'ramp']);
  doc.setIn(['connectors', 'smtp'], { host: smtp.host, port: smtp.port });
  doc.set('public_url', 'https://reports.example.test');
  const loaded = loadConfig(doc.toString(), file, { FLOWS_LINK_SECRET: LINK_SECRET }, createRegistry());
  if (!loaded.config) throw new Error(`${file} (edited for the bench): ${loaded.diagnostics.map((d) => d.message).join('; ')}`);
  return loaded.config;
}

/** pipelines/email-daily.yaml with its daily volume set to `emails`. */
export function dailyPipeline(config: EngineConfig, emails: number): Pipeline {
  const file = join(PIPELINES_DIR, 'email-daily.yaml');
  const text = readFileSync(file, 'utf8');
  const daily = /^(\s+daily:) \d+/m;
  if ((text.match(new RegExp(daily.source, 'gm')) ?? []).length !== 1) throw new Error(`${file}: expected one "daily: <n>" line to set the volume; the pipeline changed (update bench/email-run.ts)`);
  const { pipeline, diagnostics } = loadPipeline(text.replace(daily, `$1 ${emails}`), file, { registry: createRegistry(), config });
  if (!pipeline) throw new Error(`${file}: ${diagnostics.map((d) => d.message).join('; ')}`);
  return pipeline;
}

/** The DKIM keys of the config's domains, made now (a one-off: production reads them from the config). */
export function makeDkimKeys(config: EngineConfig, stateDir: string): void {
  for (const [domain, d] of Object.entries(emailSettings(config)?.domains ?? {})) if (d.dkim) generatedKey(stateDir, domain, d.dkim.selector);
}

/** `n` prospects with an email, a category and metrics; the ids of those the campaign may take first vary with the score. */
export async function seedProspects(db: Database, n: number): Promise<void> {
  const shape = { table: 'prospects', columns: ['domain', 'company_name', 'contact_name', 'email', 'category', 'category_reason', 'metrics'] };
  for (let at = 0; at < n; at += 500) {
    const rows = Array.from({ length: Math.min(500, n - at) }, (_, j) => {
      const i = at + j;
      const metrics = { organic_traffic: 500 + ((i * 7919) % 60_000), paid_share: (i % 10) / 10, competitor_gap: 1 + (i % 6), top_competitor: `rival-${i % 97}.test`, page2_keywords: i % 30, traffic_trend: -((i % 5) / 10) };
      return [`site-${i}.test`, `Company ${i}`, `Person${i} Smith`, `owner${i}@site-${i}.test`, CATEGORIES[i % CATEGORIES.length], 'organic interest down 20% over the last three months', JSON.stringify(metrics)];
    });
    await db.query(insertSql(shape, rows.length), rows.flat());
  }
}

/** Counts what reaches the sandbox and forgets it as it comes, so 4,165 parsed emails do not pile up in memory. */
export class Drain {
  private timer: NodeJS.Timeout | undefined;
  bytes = 0;
  count = 0;
  /** The first email taken, as it arrived. */
  sample: Buffer | undefined;
  constructor(private readonly smtp: SmtpSandbox) {}
  start(): this {
    this.take();
    this.count = 0;
    this.bytes = 0;
    this.timer = setInterval(() => this.take(), 100);
    return this;
  }
  stop(): this {
    clearInterval(this.timer);
    this.take();
    return this;
  }
  private take(): void {
    for (const m of this.smtp.messages) {
      this.count++;
      this.bytes += m.raw.length;
      this.sample ??= m.raw;
    }
    this.smtp.clear();
  }
}

/** A sender that adds up the time its sends take (from the call to the server's 250), around the connector's own mailer. */
export class TimedSender implements EmailSender {
  sends = 0;
  busyMs = 0;
  constructor(private readonly inner: EmailSender) {}
  async send(message: EmailMessage, options?: { signal?: AbortSignal }): Promise<SendResult> {
    const t = performance.now();
    try {
      return await this.inner.send(message, options);
    } finally {
      this.busyMs += performance.now() - t;
      this.sends++;
    }
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface PipelineMeasure {
  result: RunResult;
  wallMs: number;
  planMs: number;
  sendMs: number;
  cpuMs: number;
  /** Mean time of one SMTP send as email.deliver sees it (queueing for a pooled connection included). */
  smtpMeanMs: number;
  received: number;
  meanBytes: number;
  peakRssMb: number;
  sample: Buffer | undefined;
  /** Statements sent to the database during the run. */
  statements: number;
}

/** One run of email-daily on a fresh, seeded database, on a clock at Monday 08:00. */
export async function pipelineRun(options: { db: Database; config: EngineConfig; pipeline: Pipeline; smtp: SmtpSandbox; stateDir: string; profile?: () => Promise<() => Promise<void>> }): Promise<PipelineMeasure> {
  const { db, config, pipeline, smtp, stateDir } = options;
  const clock = new ManualClock(new Date(MONDAY_8AM));
  // The connector's own mailer, from the same settings the engine would give it, timed.
  const sender = new TimedSender(new SmtpMailer(connectorSettings(smtpConnector, config)));
  const resources = new Resources({ config, env: { FLOWS_LINK_SECRET: LINK_SECRET }, log: silentLogger, clock, projectDir: PIPELINES_DIR, stateDir }).provide(smtpConnector, sender);
  const events = new RunEvents();
  const marks = new Map<string, { start: number; end: number }>();
  events.on('step:start', ({ stepId }) => marks.set(stepId, { start: performance.now(), end: NaN }));
  events.on('step:finish', ({ stepId }) => (marks.get(stepId)!.end = performance.now()));
  const drain = new Drain(smtp).start();
  const sampler = new MemorySampler().start();
  const stopProfile = await options.profile?.();
  const cpu = process.cpuUsage();
  const sent = statements.count;
  const t0 = performance.now();
  let result: RunResult;
  try {
    result = await executeRun({ pipeline, config, store: new RunStore(db), clock, resources, events, projectDir: PIPELINES_DIR });
  } finally {
    await stopProfile?.();
    sampler.stop();
    drain.stop();
    await resources.close();
  }
  const wallMs = performance.now() - t0;
  const used = process.cpuUsage(cpu);
  const span = (id: string) => (marks.get(id) ? marks.get(id)!.end - marks.get(id)!.start : NaN);
  return {
    result,
    wallMs,
    planMs: span('plan'),
    sendMs: span('send'),
    cpuMs: (used.user + used.system) / 1000,
    smtpMeanMs: sender.busyMs / Math.max(1, sender.sends),
    received: drain.count,
    meanBytes: drain.bytes / Math.max(1, drain.count),
    peakRssMb: sampler.peakRssMb,
    sample: drain.sample,
    statements: statements.count - sent,
  };
}

export interface BaselineMeasure {
  wallMs: number;
  cpuMs: number;
  received: number;
  meanBytes: number;
}

/**
 * nodemailer alone: `n` sends to the sandbox through one pooled transport with the mailer's
 * pool settings, `concurrency` in flight. `raw`: the prebuilt message as it is (nothing
 * built per send); `fields`: the same message's parts, so nodemailer builds the MIME and
 * signs it with DKIM on every send, as it does for email.deliver.
 */
export async function baselineRun(options: { smtp: SmtpSandbox; config: EngineConfig; n: number; concurrency: number; message: Buffer; mode: 'raw' | 'fields'; dkim: { domain: string; selector: string; privateKey: string } }): Promise<BaselineMeasure> {
  const { smtp, n, concurrency, message } = options;
  const pool = connectorSettings(smtpConnector, options.config) as { pool_size?: number; messages_per_connection?: number };
  const transport = createTransport({ pool: true, host: smtp.host, port: smtp.port, secure: false, maxConnections: pool.pool_size ?? 5, maxMessages: pool.messages_per_connection ?? 100, maxRequeues: 0, disableFileAccess: true, disableUrlAccess: true });
  const parts = options.mode === 'fields' ? await partsOf(message) : undefined;
  // Parsed once, as the composer's worker does: a PEM string would be parsed for every signature.
  const privateKey = createPrivateKey(options.dkim.privateKey) as unknown as string;
  const drain = new Drain(smtp).start();
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const to = `owner${i}@site-${i}.test`;
      if (parts) {
        await transport.sendMail({ ...parts, to, messageId: `<bench-${i}@${options.dkim.domain}>`, dkim: { domainName: options.dkim.domain, keySelector: options.dkim.selector, privateKey, headerFieldNames: DKIM_SIGNED_HEADERS } });
      } else {
        await transport.sendMail({ envelope: { from: 'ana.ruiz@intel-mail-one.example', to }, raw: message });
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    transport.close();
  }
  const wallMs = performance.now() - t0;
  const used = process.cpuUsage(cpu);
  await smtp.waitFor(0);
  drain.stop();
  return { wallMs, cpuMs: (used.user + used.system) / 1000, received: drain.count, meanBytes: drain.bytes / Math.max(1, drain.count) };
}

/** The parts of a sent message that email.deliver hands nodemailer. */
async function partsOf(raw: Buffer) {
  const { simpleParser } = await import('mailparser');
  const m = await simpleParser(raw);
  const header = (name: string) => {
    const line = m.headerLines.find((h) => h.key === name)?.line;
    return line ? line.slice(line.indexOf(':') + 1).trim() : undefined;
  };
  const from = m.from?.value[0];
  return {
    from: { name: from?.name ?? '', address: from?.address ?? '' },
    subject: m.subject ?? '',
    html: typeof m.html === 'string' ? m.html : '',
    text: m.text ?? '',
    headers: { 'List-Unsubscribe': header('list-unsubscribe') ?? '', 'List-Unsubscribe-Post': header('list-unsubscribe-post') ?? '' },
  };
}

/**
 * Statements sent to the database, counted (and, with `byText`, timed by text) by wrapping the
 * client query method of pg and of PGlite in this process, where every engine and kysely query ends.
 */
export const statements = { count: 0, byText: new Map<string, { n: number; ms: number }>(), timing: false };

export async function countStatements(kind: 'pglite' | 'postgres'): Promise<void> {
  let target: object | null = (await import('pg')).default.Client.prototype;
  if (kind === 'pglite') {
    const { PGlite } = await import('@electric-sql/pglite');
    target = PGlite.prototype;
    while (target && !Object.prototype.hasOwnProperty.call(target, 'query')) target = Object.getPrototypeOf(target);
  }
  if (!target) throw new Error('cannot find the query method to count statements');
  const t = target as { query: (...a: unknown[]) => unknown; counted?: boolean };
  if (t.counted) return;
  t.counted = true;
  const original = t.query;
  t.query = function (this: unknown, ...a: unknown[]) {
    statements.count++;
    if (!statements.timing) return original.apply(this, a);
    const text = typeof a[0] === 'string' ? a[0] : ((a[0] as { text?: string })?.text ?? '?');
    const key = text.replace(/\s+/g, ' ').replace(/\$\d+(, \$\d+){3,}/g, '$.., ..').slice(0, 120);
    const start = performance.now();
    const done = () => {
      const e = statements.byText.get(key) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += performance.now() - start;
      statements.byText.set(key, e);
    };
    const r = original.apply(this, a) as Promise<unknown>;
    return r && typeof r.then === 'function' ? r.finally(done) : (done(), r);
  };
}
