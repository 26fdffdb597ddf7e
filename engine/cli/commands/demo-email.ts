import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { systemClock } from '../../clock.ts';
import type { EngineConfig } from '../../config.ts';
import { Daemon, type Page } from '../../daemon/daemon.ts';
import type { Database } from '../../db/connect.ts';
import { executeRun } from '../../executor/run.ts';
import { loadPipeline } from '../../pipeline/load.ts';
import type { Pipeline } from '../../pipeline/types.ts';
import { RunStore } from '../../store/index.ts';
import { ValidationError } from '../../errors.ts';
import type { Project } from '../project.ts';

/**
 * The demo's email day: the prospects weekly-enrich categorised get their teasers from the
 * shipped mailboxes, as production sends them (every header, DKIM-signed with a key the demo
 * generates). A dry run first shows the day under the shipped quota (a gap of ten minutes or
 * more per mailbox, 08:00-18:00); the run itself lifts the gap and the window, or the demo
 * would take a day. Then, through the daemon: a link scanner's fetches start nothing, a
 * person's click becomes a report and a threaded follow-up, an unsubscribe, and a bounce.
 */

const OUTBOX = join('.flows', 'outbox');

/** The raw messages the SMTP sandbox took, newest last. */
function outboxFiles(): string[] {
  return existsSync(OUTBOX) ? readdirSync(OUTBOX).filter((f) => f.endsWith('.eml')).sort().map((f) => join(OUTBOX, f)) : [];
}

/** The config the run uses: the day's, with the mailbox quota's gap, window and days lifted. */
function demoConfig(config: EngineConfig, mailboxQuota: string): EngineConfig {
  const mailbox = config.quotas?.[mailboxQuota];
  if (!mailbox) return config;
  const { spacing: _, window: __, days: ___, ...rest } = mailbox;
  return { ...config, quotas: { ...config.quotas, [mailboxQuota]: rest } };
}

/** What one demo's email day sends under: a campaign and quotas of its own, and the pipelines naming them. */
interface EmailDay {
  campaign: string;
  mailboxQuota: string;
  config: EngineConfig;
  emailDaily: Pipeline;
  clickReport?: Pipeline;
}

/**
 * A fresh email day: everything the engine keys this day's work by is new, so what earlier
 * demos left in its tables (the sends' effect keys, the mailboxes' counts in the quota
 * ledger, click-report's dedupe keys, the events) is kept as production keeps it, and none
 * of it is this day's. The campaign is new (the sends' keys and the outbox rows name it), the
 * quotas "mailbox" and "reply" are the shipped ones under new names, and click-report runs
 * once per prospect and campaign.
 */
function freshEmailDay(p: Project): EmailDay {
  const tag = `d${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const campaign = `search-visibility-${tag}`;
  const mailboxQuota = `mailbox-${tag}`;
  const replyQuota = `reply-${tag}`;
  const { mailbox, reply, ...others } = p.config.quotas ?? {};
  const config: EngineConfig = { ...p.config, quotas: { ...others, ...(mailbox ? { [mailboxQuota]: mailbox } : {}), ...(reply ? { [replyQuota]: reply } : {}) } };
  const load = (name: string, edit: (steps: (id: string) => string[]) => [string[], unknown][]): Pipeline => {
    const file = p.findPipelineFile(name);
    const doc = parseDocument(readFileSync(file, 'utf8'));
    const ids = (doc.get('steps') as { items: { get(key: string): unknown }[] }).items.map((step) => step.get('id'));
    const step = (id: string) => {
      if (!ids.includes(id)) throw new Error(`${p.display(file)}: the demo changes its step "${id}", which it no longer has`);
      return ['steps', String(ids.indexOf(id))];
    };
    for (const [path, value] of edit(step)) doc.setIn(path.map((k) => (/^\d+$/.test(k) ? Number(k) : k)), value);
    const { pipeline, diagnostics } = loadPipeline(doc.toString(), p.display(file), { registry: p.registry, config });
    if (!pipeline) throw new ValidationError(diagnostics);
    return pipeline;
  };
  const emailDaily = load('email-daily', (step) => [
    [[...step('plan'), 'with', 'campaign'], campaign],
    [[...step('plan'), 'with', 'quota'], mailboxQuota],
    [[...step('send'), 'quota'], mailboxQuota],
  ]);
  const clickReport = existsSync(join(p.dir, 'click-report.yaml'))
    ? load('click-report', (step) => [
        [['trigger', 'event', 'dedupe', 'key'], '${{ event.key }}:${{ event.payload.campaign }}'],
        [[...step('send'), 'quota'], replyQuota],
      ])
    : undefined;
  return { campaign, mailboxQuota, config, emailDaily, clickReport };
}

export async function demoEmail(project: Project, db: Database, say: (s?: string) => void, pages: readonly Page[], noReports: string | undefined): Promise<void> {
  const p = project.withEnv({ FLOWS_LINK_SECRET: process.env.FLOWS_LINK_SECRET || randomBytes(24).toString('hex') });
  const day = freshEmailDay(p);
  const log = p.log.child({}, { level: 'error' });
  const store = new RunStore(db, p.scrub);
  const base = { pipeline: day.emailDaily, store, env: p.env, log, scrub: p.scrub, projectDir: p.dir };
  // The demo's database keeps what earlier demos did: the email day's own rows start afresh
  // (or every prospect would have been emailed lately); the engine's are keyed by the fresh day.
  for (const table of ['email_click_observations', 'email_links', 'email_inbound', 'email_outbox', 'email_suppressions']) await db.query(`DELETE FROM ${table}`);
  say(`\n10. The email day (email-daily, weekdays 07:30): teasers to the prospects with an email and a category, from ${Object.keys(day.config.quotas?.[day.mailboxQuota]?.keys ?? {}).length} mailboxes on 3 domains.`);
  const dry = await executeRun({ ...base, config: day.config, dryRun: true, outDir: join('.flows', 'demo', 'email-dry-run') });
  const planned = dry.effects.filter((e) => e.step === 'send' && e.slot);
  const boxes = new Set(planned.map((e) => e.slot!.key));
  const first = planned[0]?.slot;
  const last = planned.at(-1)?.slot;
  say(`   dry run under the shipped quota: ${planned.length} teasers from ${boxes.size} mailboxes, ${first ? `${first.label}: the first at ${first.at.slice(11, 16)}Z, the last at ${last!.at.slice(11, 16)}Z (10 minutes or more between two of one mailbox)` : 'none'}`);
  say(`   each email rendered with its headers: ${dry.artifacts}/`);

  // One address no longer exists: the receiving server refuses it for good.
  const [gone] = await db.query<{ id: string; email: string }>(
    `UPDATE prospects SET email = 'nobody@' || coalesce(domain, 'example') || '.invalid'
      WHERE id = (SELECT id FROM prospects WHERE email IS NOT NULL AND category IS NOT NULL ORDER BY domain DESC LIMIT 1) RETURNING id, email`,
  );
  const before = outboxFiles().length;
  const real = await executeRun({ ...base, config: demoConfig(day.config, day.mailboxQuota) });
  const sent = await db.query<{ address: string; mailbox: string; domain: string; message_id: string; id: string }>(
    "SELECT id::text, address, mailbox, domain, message_id FROM email_outbox WHERE state = 'sent' AND run_id = $1 ORDER BY sent_at, address",
    [real.run_id],
  );
  const bounced = await db.query<{ address: string; reason: string }>("SELECT address, reason FROM email_outbox WHERE state = 'bounced' AND run_id = $1", [real.run_id]);
  const domains = new Set(sent.map((s) => s.domain));
  say(`   run ${real.run_id}: ${real.status}; ${sent.length} sent from ${new Set(sent.map((s) => s.mailbox)).size} mailboxes on ${domains.size} domains (the demo lifts the gap and the window)`);
  if (gone && bounced.length) say(`   ${bounced[0]!.address}: ${bounced[0]!.reason}: suppressed, its sequence stopped, an email.bounced event`);
  const files = outboxFiles().slice(before);
  const { simpleParser } = await import('mailparser');
  const mail = files.length ? await simpleParser(readFileSync(files[0]!)) : undefined;
  if (mail) {
    const line = (key: string) => (mail.headerLines.find((l) => l.key === key)?.line ?? '').replace(/\r?\n\s+/g, ' ');
    const dkim = line('dkim-signature');
    const tag = (name: string) => new RegExp(`[;:]\\s*${name}=([^;]+)`).exec(dkim)?.[1]?.replace(/\s+/g, '');
    const signed = dkim ? [dkim, tag('d'), tag('s'), tag('h')] : undefined;
    say(`   one of them as the SMTP sandbox took it (${files[0]}):`);
    say(`     From: ${mail.from?.text}   To: ${mail.to && !Array.isArray(mail.to) ? mail.to.text : ''}`);
    say(`     Subject: ${mail.subject}   Message-ID: ${mail.messageId}`);
    say(`     ${line('list-unsubscribe').slice(0, 120)}...`);
    say(`     ${line('list-unsubscribe-post')}`);
    if (signed) say(`     DKIM-Signature: d=${signed[1]} s=${signed[2]}, signed fields ${signed[3]} (key: .flows/dkim/${signed[1]}.pem, DNS record beside it)`);
  }
  if (!sent.length) return;

  const clickReport = day.clickReport ? [day.clickReport] : [];
  const daemon = new Daemon({ db, config: demoConfig(day.config, day.mailboxQuota), pipelines: clickReport, pages, verifiers: p.registry.verifiers, connectors: p.registry.connectors.values(), projectDir: p.dir, clock: systemClock, port: 0, loops: false, log, env: p.env, scrub: p.scrub });
  await daemon.start();
  try {
    const linksOf = async (outboxId: string) => {
      const message = sent.find((s) => s.id === outboxId)!;
      for (const file of outboxFiles().reverse()) {
        const parsed = await simpleParser(readFileSync(file));
        if (parsed.messageId !== message.message_id) continue;
        const hrefs = [...String(parsed.html).matchAll(/href="([^"]+)"/g)].map((m) => m[1]!.replaceAll('&amp;', '&'));
        const local = (u: string) => `${daemon.url}${new URL(u).pathname}`;
        return { clicks: hrefs.filter((h) => h.includes('/c/')).map(local), unsubscribe: hrefs.filter((h) => h.includes('/u/')).map(local)[0]! };
      }
      throw new Error(`the demo found no email ${message.message_id} in ${OUTBOX}`);
    };
    const observed = async (outboxId: string) =>
      (await db.query<{ class: string; n: number }>('SELECT class, count(*)::int AS n FROM email_click_observations WHERE outbox_id = $1 GROUP BY class ORDER BY class', [outboxId]))
        .map((r) => `${r.class} ${r.n}`)
        .join(', ');
    const clicked = async () => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM flow_events WHERE type = 'email.clicked' AND payload->>'campaign' = $1", [day.campaign]))[0]!.n;

    // A link scanner at delivery: a HEAD, then every link of the email within a second.
    const scanned = sent[0]!;
    const scanner = await linksOf(scanned.id);
    const agent = { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36' };
    await fetch(scanner.clicks[0]!, { method: 'HEAD', redirect: 'manual', headers: agent });
    for (const link of scanner.clicks) await fetch(link, { redirect: 'manual', headers: agent });
    say(`\n   A link scanner fetches ${scanned.address}'s email: observations ${await observed(scanned.id)}; email.clicked events: ${await clicked()} (no report, no cost)`);

    // A person, a while later: the report link, the landing page, the button.
    const person = sent[1] ?? sent[0]!;
    const links = await linksOf(person.id);
    await db.query("UPDATE email_outbox SET sent_at = sent_at - interval '2 hours' WHERE id = $1", [person.id]);
    const phone = { 'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1' };
    const hop = await fetch(links.clicks[0]!, { redirect: 'manual', headers: phone });
    const landing = `${daemon.url}${new URL(hop.headers.get('location')!, daemon.url).pathname}`;
    const page = await fetch(landing, { headers: phone });
    const pressed = await fetch(landing, { method: 'POST', redirect: 'manual', headers: { ...phone, 'content-type': 'application/x-www-form-urlencoded' }, body: 'confirm=yes' });
    say(`   ${person.address} clicks: /c/ ${hop.status} to the landing page (${page.status}, one "Get my report" button), the button ${pressed.status}: email.clicked events: ${await clicked()}`);
    if (clickReport.length && !noReports) {
      const started = performance.now();
      const dispatched = (await daemon.tick()).dispatched.find((d) => d.pipeline === 'click-report' && d.action === 'started');
      const status = dispatched?.runId ? await finishedRun(store, dispatched.runId) : 'not started';
      const followUp = await db.query<{ subject: string; mailbox: string; message_id: string }>(
        "SELECT subject, mailbox, message_id FROM email_outbox WHERE prospect_id = (SELECT prospect_id FROM email_outbox WHERE id = $1) AND state = 'sent' AND sequence_step = 'report-ready' ORDER BY sent_at DESC LIMIT 1",
        [person.id],
      );
      say(`   click-report run ${dispatched?.runId ?? '-'}: ${status} in ${((performance.now() - started) / 1000).toFixed(1)}s${followUp[0] ? `: the report, then "${followUp[0].subject}" from ${followUp[0].mailbox}, in the teaser's thread (In-Reply-To ${person.message_id})` : ''}`);
      const ready = await fetch(`${landing}/status`, { redirect: 'manual' });
      say(`   the page the person is on: ${ready.status} to ${ready.headers.get('location') ?? '(still preparing)'}`);
    } else if (noReports) {
      say(`   click-report: skipped, ${noReports}.`);
    }

    // One-click unsubscribe, as a mail client sends it (RFC 8058).
    const leaver = sent[2] ?? sent[0]!;
    const { unsubscribe } = await linksOf(leaver.id);
    const answer = await fetch(unsubscribe, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    const [suppressed] = await db.query<{ reason: string; source: string }>('SELECT reason, source FROM email_suppressions WHERE address = $1', [leaver.address]);
    say(`   ${leaver.address} unsubscribes with one click: ${answer.status}; suppressed (${suppressed?.reason}, ${suppressed?.source}): no pipeline sends them marketing email again`);
  } finally {
    await daemon.stop();
  }
}

async function finishedRun(store: RunStore, runId: string): Promise<string> {
  for (let i = 0; i < 2400; i++) {
    const run = await store.runs.get(runId);
    if (run && !['queued', 'running'].includes(run.status)) return run.status;
    await new Promise((r) => setTimeout(r, 50));
  }
  return 'still running';
}
