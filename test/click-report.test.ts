import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReceivedEmail, SmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { ManualClock, systemClock } from '../engine/clock.ts';
import type { EngineConfig } from '../engine/config.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { Resources } from '../engine/resources.ts';
import { RunStore } from '../engine/store/index.ts';
import { landingPageUrl } from '../steps/email/links.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { first, testDatabases } from './helpers/db.ts';
import { type EmailProject, emailProject } from './helpers/email-project.ts';
import { eventually } from './helpers/eventually.ts';

/**
 * click-report as shipped, through a real daemon: email-daily sends the teasers (a real SMTP
 * server on loopback, on an injected clock), a person presses the landing page's button, and
 * the daemon runs click-report: the report (made, or a fresh one reused) and one follow-up in
 * the teaser's thread from its mailbox, DKIM-signed, whose link opens the report. Scanners
 * fetching links start nothing, a second click within 30 days starts no second run, and a
 * suppressed address gets no email while the person still gets the report on the page.
 */

const SECRET = 'link-secret-for-click-report-0123456789';
const MONDAY = '2026-11-23T07:30:00Z';
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';
const CHROME_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const hasChromium = existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium');

/** The prospects: who makes a report, who has a fresh one, who is only scanned, who unsubscribed. */
const PROSPECTS = ['maker', 'reuser', 'scanned', 'unsubscribed'] as const;
type Who = (typeof PROSPECTS)[number];

interface Teaser {
  prospect_id: string;
  outbox_id: string;
  address: string;
  mailbox: string;
  domain: string;
  message_id: string;
  subject: string;
  variant: string;
}

describe.each(testDatabases)('click-report through the daemon on $name', ({ open }) => {
  let db: Database;
  let daemon: Daemon;
  let project: EmailProject;
  let resources: Resources;
  let smtp: SmtpSandbox;
  let state: string;
  let config: EngineConfig;
  const teasers = new Map<Who, Teaser>();
  const teaserMail = new Map<Who, ReceivedEmail>();

  beforeAll(async () => {
    db = await open();
    project = await emailProject({
      secret: SECRET,
      clock: systemClock,
      config: ({ public_url: _unset, ...shipped }, dir) => ({ ...shipped, connectors: { ...shipped.connectors, storage: { dir: join(dir, 'reports') } } }),
    });
    ({ resources, smtp, state, config } = project);
    const { env } = project;
    const load = (file: string, withConfig: EngineConfig): Pipeline => project.pipeline(file, { config: withConfig });
    // Loops off: the test ticks the dispatcher itself, so it knows what each event started.
    daemon = new Daemon({ db, config, pipelines: [load('click-report.yaml', config)], pages: builtinPages, resources, env, port: 0, loops: false });
    await daemon.start();

    for (const who of PROSPECTS) {
      await db.query(
        `INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics) VALUES ($1, $2, $3, $4, 'competitor-ahead', 'rival.test gets 4x their organic traffic', $5)`,
        [`${who}.test`, `${who} Ltd`, `Sam ${who}`, `sam@${who}.test`, JSON.stringify({ organic_traffic: 12000, paid_share: 0.2, competitor_gap: 4, top_competitor: 'rival.test' })],
      );
    }
    // The teasers, sent by email-daily as shipped, with links to this daemon.
    const daily = load('email-daily.yaml', { ...config, public_url: daemon.url });
    const sent = await executeRun({ pipeline: daily, config: { ...config, public_url: daemon.url }, store: new RunStore(db), clock: new ManualClock(new Date(MONDAY)), resources });
    expect(sent.status).toBe('completed');
    expect(smtp.messages).toHaveLength(PROSPECTS.length);
    for (const who of PROSPECTS) {
      const row = await first(
        db.query<Teaser>(
          `SELECT o.prospect_id::text, o.id::text AS outbox_id, o.address, o.mailbox, o.domain, o.message_id, o.subject, o.variant
             FROM email_outbox o JOIN prospects p ON p.id = o.prospect_id WHERE p.domain = $1 AND o.sequence_step = 'teaser' AND o.state = 'sent'`,
          [`${who}.test`],
        ),
      );
      teasers.set(who, row);
      teaserMail.set(who, smtp.messages.find((m) => m.envelope.to[0] === row.address)!);
    }
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await project?.close();
    await db?.close();
  });

  const visit = (url: string, init: { ua: string; method?: string }) =>
    fetch(url, {
      method: init.method ?? 'GET',
      redirect: 'manual',
      headers: { 'user-agent': init.ua, ...(init.method === 'POST' ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      ...(init.method === 'POST' ? { body: 'confirm=yes' } : {}),
    });

  /** The teaser's report link: its first /c/ link (the honeypot, an empty anchor, ends the footer). */
  const reportLinkOf = (who: Who) => /href="([^"]+\/c\/[^"]+)"/.exec(teaserMail.get(who)!.html!)![1]!;

  /** A person: the teaser's link, its landing page, the button. Returns the landing page URL. */
  async function press(who: Who): Promise<string> {
    const click = await visit(reportLinkOf(who), { ua: IPHONE });
    expect(click.status).toBe(302);
    const landing = click.headers.get('location')!;
    expect((await visit(landing, { ua: IPHONE })).status).toBe(200);
    const post = await visit(landing, { ua: IPHONE, method: 'POST' });
    expect(post.status).toBe(303);
    return landing;
  }

  const runs = () => db.query<{ id: string; status: string; error: string | null }>("SELECT id, status, error FROM flow_runs WHERE pipeline = 'click-report' ORDER BY started_at");
  const events = (type: string, key: string) => db.query<{ payload: Record<string, unknown> }>('SELECT payload FROM flow_events WHERE type = $1 AND key = $2 ORDER BY occurred_at', [type, key]);
  const mailTo = (address: string) => smtp.messages.filter((m) => m.envelope.to[0] === address);

  /** One tick of the daemon's dispatcher; the run it started, finished. */
  async function dispatchAndFinish(): Promise<{ id: string; status: string; error: string | null }> {
    const tick = await daemon.tick();
    const started = tick.dispatched.filter((d) => d.action === 'started');
    expect(started).toHaveLength(1);
    const id = started[0]!.runId!;
    await eventually(async () => !['queued', 'running'].includes((await runs()).find((r) => r.id === id)?.status ?? 'queued'), `run ${id} to finish`, 90_000);
    return (await runs()).find((r) => r.id === id)!;
  }

  /** The follow-up as it must be: in the teaser's thread, from its mailbox, signed, linking to `reportUrl`. */
  async function expectFollowUp(who: Who, reportUrl: string) {
    const teaser = teasers.get(who)!;
    const mails = mailTo(teaser.address);
    expect(mails).toHaveLength(2);
    const mail = mails[1]!;
    expect(mail.from?.email).toBe(teaser.mailbox);
    expect(mail.envelope.from).toBe(teaser.mailbox);
    expect(mail.headers['in-reply-to']).toBe(teaser.message_id);
    expect(mail.headers.references).toBe(teaser.message_id);
    expect(mail.subject).toBe(`Re: ${teaser.subject}`);
    expect(mail.messageId).not.toBe(teaser.message_id);
    expect(mail.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
    const dkim = await dkimVerify(mail.raw, { resolver: project.dkimResolver });
    expect(dkim.results).toHaveLength(1);
    expect(dkim.results[0]!.status.result).toBe('pass');
    expect(dkim.results[0]!.signingDomain).toBe(teaser.domain);
    // The report link is the report's own URL, in both parts; it opens the report.
    expect(mail.html).toContain(`href="${reportUrl}"`);
    expect(mail.text).toContain(reportUrl);
    const page = await fetch(reportUrl);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const row = await first(db.query<{ state: string; mailbox: string; thread_message_id: string; step_index: number; idempotency_key: string }>(
      "SELECT state, mailbox, thread_message_id, step_index, idempotency_key FROM email_outbox WHERE prospect_id = $1 AND sequence_step = 'report-ready'",
      [teaser.prospect_id],
    ));
    expect(row).toEqual({ state: 'sent', mailbox: teaser.mailbox, thread_message_id: teaser.message_id, step_index: -1, idempotency_key: `search-visibility:${teaser.prospect_id}:report-ready` });
    const followUpSent = await events('email.follow_up_sent', teaser.prospect_id);
    expect(followUpSent).toHaveLength(1);
    expect(followUpSent[0]!.payload).toMatchObject({ prospect_id: teaser.prospect_id, channel: 'email', campaign: 'search-visibility', variant: teaser.variant, mailbox: teaser.mailbox, domain: teaser.domain, report_url: reportUrl });
  }

  it.runIf(hasChromium)('makes the report a person asked for and sends it in the teaser\'s thread, from its mailbox; the status page opens it', async () => {
    const teaser = teasers.get('maker')!;
    const landing = await press('maker');
    const run = await dispatchAndFinish();
    expect(run).toMatchObject({ status: 'completed', error: null });

    const reports = await db.query<{ id: string; token: string; pdf_path: string; cost: unknown }>('SELECT id::text, token, pdf_path, cost FROM generated_reports WHERE prospect_id = $1', [teaser.prospect_id]);
    expect(reports).toHaveLength(1);
    const report = reports[0]!;
    expect(readFileSync(join(state, 'reports', report.pdf_path)).subarray(0, 5).toString()).toBe('%PDF-');
    const cost = (typeof report.cost === 'string' ? JSON.parse(report.cost) : report.cost) as Record<string, number>;
    expect(cost.semrush_units).toBeGreaterThan(0);
    expect(cost.spyfu_rows).toBeGreaterThan(0);
    expect(cost.claude_output_tokens).toBeGreaterThan(0);
    const generated = await events('report.generated', teaser.prospect_id);
    expect(generated).toHaveLength(1);
    expect(generated[0]!.payload).toMatchObject({ report_id: report.id, prospect_id: teaser.prospect_id, domain: 'maker.test', channel: 'email', campaign: 'search-visibility', variant: teaser.variant });

    const reportUrl = `${daemon.url}/reports/${report.token}`;
    await expectFollowUp('maker', reportUrl);
    const status = await visit(`${landing}/status`, { ua: IPHONE });
    expect(status.status).toBe(303);
    expect(status.headers.get('location')).toBe(reportUrl);
  }, 120_000);

  it('reuses a report of the prospect made within 30 days: no new report, the follow-up links to it', async () => {
    const teaser = teasers.get('reuser')!;
    const token = 'F'.repeat(16) + 'f'.repeat(16);
    mkdirSync(join(state, 'reports', 'fresh'), { recursive: true });
    writeFileSync(join(state, 'reports', 'fresh', 'report.html'), '<!doctype html><title>reuser.test</title><p>the report</p>');
    // An older one of the same domain is not the one sent.
    await db.query("INSERT INTO generated_reports (prospect_id, domain, token, html_path, created_at) VALUES (NULL, 'reuser.test', $1, 'old/report.html', now() - interval '45 days')", ['O'.repeat(32)]);
    await db.query("INSERT INTO generated_reports (prospect_id, domain, token, html_path, created_at) VALUES (NULL, 'reuser.test', $1, 'fresh/report.html', now() - interval '3 days')", [token]);
    await press('reuser');
    expect(await dispatchAndFinish()).toMatchObject({ status: 'completed', error: null });
    expect(await db.query("SELECT 1 FROM generated_reports WHERE domain = 'reuser.test'")).toHaveLength(2);
    expect(await events('report.generated', teaser.prospect_id)).toEqual([]);
    await expectFollowUp('reuser', `${daemon.url}/reports/${token}`);
  }, 60_000);

  it('starts no second run for a second click within 30 days', async () => {
    const teaser = teasers.get('reuser')!;
    const before = { runs: (await runs()).length, mail: smtp.messages.length };
    // The prospect asks again from another email of the campaign (a press on one email counts once anyway).
    const [other] = await db.query<{ id: string }>(
      `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, variant, state, idempotency_key, due_at, sent_at, thread_message_id)
       VALUES ('search-visibility', $1, 'follow-up-1', 1, $2, $3, $4, 'a', 'sent', $5, now(), now() - interval '1 hour', $6) RETURNING id::text`,
      [teaser.prospect_id, teaser.address, teaser.mailbox, teaser.domain, `search-visibility:${teaser.prospect_id}:follow-up-1`, teaser.message_id],
    );
    const landing = landingPageUrl({ ...config, public_url: daemon.url }, other!.id, new Date());
    expect((await visit(landing, { ua: IPHONE, method: 'POST' })).status).toBe(303);
    expect(await events('email.clicked', teaser.prospect_id)).toHaveLength(2);
    const tick = await daemon.tick();
    expect(tick.dispatched).toEqual([expect.objectContaining({ pipeline: 'click-report', action: 'deduplicated' })]);
    await daemon.idle();
    expect((await runs()).length).toBe(before.runs);
    expect(smtp.messages.length).toBe(before.mail);
  });

  it('starts nothing for a scanner fetching the links and the landing page', async () => {
    const teaser = teasers.get('scanned')!;
    const html = teaserMail.get('scanned')!.html!;
    const before = (await runs()).length;
    for (const [, link] of html.matchAll(/href="([^"]+\/c\/[^"]+)"/g)) {
      const fetched = await visit(link!, { ua: CHROME_WINDOWS });
      expect(fetched.status).toBe(302);
      expect((await visit(fetched.headers.get('location')!, { ua: CHROME_WINDOWS })).status).toBe(200);
    }
    expect((await db.query('SELECT 1 FROM email_click_observations WHERE prospect_id = $1', [teaser.prospect_id])).length).toBeGreaterThanOrEqual(2);
    expect(await events('email.clicked', teaser.prospect_id)).toEqual([]);
    const tick = await daemon.tick();
    expect(tick.dispatched).toEqual([]);
    expect((await runs()).length).toBe(before);
    expect(await db.query('SELECT 1 FROM generated_reports WHERE domain = $1', ['scanned.test'])).toEqual([]);
    expect(mailTo(teaser.address)).toHaveLength(1);
  });

  it('sends no follow-up to a suppressed address, while the person still gets the report on the page', async () => {
    const teaser = teasers.get('unsubscribed')!;
    const token = 'U'.repeat(16) + 'u'.repeat(16);
    mkdirSync(join(state, 'reports', 'unsub'), { recursive: true });
    writeFileSync(join(state, 'reports', 'unsub', 'report.html'), '<!doctype html><title>unsubscribed.test</title>');
    await db.query("INSERT INTO generated_reports (prospect_id, domain, token, html_path) VALUES ($1, 'unsubscribed.test', $2, 'unsub/report.html')", [teaser.prospect_id, token]);
    await db.query("INSERT INTO email_suppressions (address, reason, source) VALUES ($1, 'unsubscribed', 'one-click')", [teaser.address]);
    const landing = await press('unsubscribed');
    expect(await dispatchAndFinish()).toMatchObject({ status: 'completed', error: null });
    expect(mailTo(teaser.address)).toHaveLength(1);
    expect(await first(db.query("SELECT state, reason FROM email_outbox WHERE prospect_id = $1 AND sequence_step = 'report-ready'", [teaser.prospect_id]))).toEqual({ state: 'stopped', reason: 'unsubscribed' });
    expect(await events('email.follow_up_sent', teaser.prospect_id)).toEqual([]);
    const status = await visit(`${landing}/status`, { ua: IPHONE });
    expect(status.status).toBe(303);
    expect(status.headers.get('location')).toBe(`${daemon.url}/reports/${token}`);
  }, 60_000);

  it('plans the whole run in a dry run, writing and sending nothing', async () => {
    const teaser = teasers.get('scanned')!;
    const pipeline = loadPipeline(readFileSync('pipelines/click-report.yaml', 'utf8'), 'click-report.yaml', { registry: createRegistry(), config }).pipeline!;
    const inputs = { prospect_id: teaser.prospect_id, outbox_id: teaser.outbox_id, campaign: 'search-visibility', variant: teaser.variant };
    const dry = await executeRun({ pipeline, config: { ...config, public_url: daemon.url }, store: new RunStore(db), clock: systemClock, resources, inputs, dryRun: true, outDir: join(state, 'dry-run') });
    expect(dry.status).toBe('completed');
    const send = dry.effects.find((e) => e.step === 'send')!;
    expect(send.summary).toContain(`report-ready of search-visibility to ${teaser.address} from ${teaser.mailbox}: Re: ${teaser.subject}`);
    const text = readFileSync(join(dry.artifacts!, send.files!.find((f) => f.endsWith('email.txt'))!), 'utf8');
    expect(text).toContain(`In-Reply-To: ${teaser.message_id}`);
    expect(text).toContain(`${daemon.url}/reports/dry-run`);
    expect(await db.query("SELECT 1 FROM email_outbox WHERE prospect_id = $1 AND sequence_step = 'report-ready'", [teaser.prospect_id])).toEqual([]);
    expect(await db.query("SELECT 1 FROM generated_reports WHERE domain = 'scanned.test'")).toEqual([]);
    expect(mailTo(teaser.address)).toHaveLength(1);
  }, 60_000);

  it("leaves a reply still to send to the run that wrote it: email-daily's plan neither stops it (the prospect clicked) nor sends it", async () => {
    const teaser = teasers.get('scanned')!;
    // As click-report leaves it between writing the row and sending it; the click is one the daemon has already handled.
    await db.query("INSERT INTO flow_events (type, key, payload, occurred_at, dispatched_at) VALUES ('email.clicked', $1, '{}', now(), now())", [teaser.prospect_id]);
    await db.query(
      `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, variant, subject, thread_message_id, idempotency_key, due_at)
       VALUES ('search-visibility', $1, 'report-ready', -1, $2, $3, $4, $5, 'Re: {{ thread_subject }}', $6, $7, $8)`,
      [teaser.prospect_id, teaser.address, teaser.mailbox, teaser.domain, teaser.variant, teaser.message_id, `search-visibility:${teaser.prospect_id}:report-ready`, MONDAY],
    );
    const daily = loadPipeline(readFileSync('pipelines/email-daily.yaml', 'utf8'), 'email-daily.yaml', { registry: createRegistry(), config }).pipeline!;
    const tuesday = await executeRun({ pipeline: daily, config: { ...config, public_url: daemon.url }, store: new RunStore(db), clock: new ManualClock(new Date('2026-11-24T07:30:00Z')), resources });
    expect(tuesday.status).toBe('completed');
    expect(await first(db.query("SELECT state, reason, run_id FROM email_outbox WHERE prospect_id = $1 AND sequence_step = 'report-ready'", [teaser.prospect_id]))).toEqual({ state: 'planned', reason: null, run_id: null });
    expect(mailTo(teaser.address)).toHaveLength(1);
  }, 60_000);
});
