import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { type SmtpSandbox, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { ManualClock } from '../engine/clock.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun } from '../engine/executor/run.ts';
import { silentLogger } from '../engine/log.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { Resources } from '../engine/resources.ts';
import { RunStore } from '../engine/store/index.ts';
import { createRegistry } from '../steps/index.ts';
import { testDatabases } from './helpers/db.ts';

/**
 * A week of cold email on an injected clock: email-daily every weekday at 07:30 London, Monday
 * to Friday and the next Monday, against a real SMTP server on loopback, with an audience
 * larger than the mailboxes can take. What the receiving side saw, matched to the outbox,
 * must keep every promise of the channel: the caps (a calendar day in London and any 24
 * hours), the gap between two sends of a mailbox, the window and the weekdays, each domain
 * within its mailboxes' caps, one mailbox per prospect, no sequence step twice, follow-ups
 * only after their delay and never after a click, a reply or an unsubscribe.
 *
 * The week chosen ends British Summer Time (Sunday 25 October 2026): Monday to Friday London
 * is UTC+1, the next Monday UTC, so "08:00-18:00 London" is checked on both sides of the change.
 *
 * Volume: the shipped quota (50 a day, 50 in 24 hours, 600-720 s apart, 08:00-18:00) over
 * two of the shipped mailboxes on one domain (a config edit), so each mailbox fills its day as
 * in production and the domain's sum is checked, while the week (600 sends, each through a
 * real SMTP session, DKIM-signed and parsed at the server) stays within the suite's time on
 * both databases: 18 mailboxes would be nine times the sends for no promise more. `daily` is
 * raised above the mailboxes' room (a pipeline edit) so the room, not the volume, decides.
 */

const SECRET = 'link-secret-for-email-week-0123456789';
const TZ = 'Europe/London';
const MAILBOXES: Record<string, string[]> = {
  'intel-mail-one.example': ['ana.ruiz@intel-mail-one.example', 'ben.carter@intel-mail-one.example'],
};
const CAP = 50;
const PROSPECTS = 1000;
const CATEGORIES = ['traffic-falling', 'competitor-ahead', 'paid-heavy', 'striking-distance', 'growth'];
/** Each weekday's run at 07:30 London (06:30 UTC in summer time, 07:30 UTC after it). */
const DAYS = ['2026-10-19T06:30:00Z', '2026-10-20T06:30:00Z', '2026-10-21T06:30:00Z', '2026-10-22T06:30:00Z', '2026-10-23T06:30:00Z', '2026-10-26T07:30:00Z'];
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The shipped config with only MAILBOXES under email.domains. */
function weekConfig(registry: ReturnType<typeof createRegistry>, env: Record<string, string>): EngineConfig {
  const config = parse(readFileSync('pipelines/flows.config.yaml', 'utf8'));
  for (const [domain, settings] of Object.entries(config.email.domains as Record<string, { mailboxes: Record<string, unknown> }>)) {
    const keep = MAILBOXES[domain];
    if (!keep) delete config.email.domains[domain];
    else settings.mailboxes = Object.fromEntries(Object.entries(settings.mailboxes).filter(([address]) => keep.includes(address)));
  }
  const loaded = loadConfig(stringify(config), 'flows.config.yaml', env, registry);
  if (!loaded.config) throw new Error(JSON.stringify(loaded.diagnostics));
  return loaded.config;
}

const londonParts = (at: Date) =>
  Object.fromEntries(new Intl.DateTimeFormat('en-GB', { timeZone: TZ, weekday: 'short', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).formatToParts(at).map((p) => [p.type, p.value]));
const londonDate = (at: Date) => {
  const p = londonParts(at);
  return `${p.year}-${p.month}-${p.day}`;
};

interface Sent {
  prospect_id: string;
  address: string;
  mailbox: string;
  domain: string;
  sequence_step: string;
  sent_at: Date;
  message_id: string;
}

/** Whether `times` (sorted) ever has more than `cap` within `spanMs` (a half-open span). */
function mostWithin(times: number[], spanMs: number): number {
  let most = 0;
  for (let i = 0, j = 0; j < times.length; j++) {
    while (times[j]! - times[i]! >= spanMs) i++;
    most = Math.max(most, j - i + 1);
  }
  return most;
}

const groupBy = <T>(rows: T[], key: (r: T) => string) => {
  const out = new Map<string, T[]>();
  for (const r of rows) out.set(key(r), [...(out.get(key(r)) ?? []), r]);
  return out;
};

describe.each(testDatabases)('a week of email-daily on $name', ({ name, open }) => {
  let db: Database;
  let smtp: SmtpSandbox;
  let state: string;
  let config: EngineConfig;
  let pipeline: Pipeline;
  let resources: Resources;
  /** What happened to whom between the runs: nothing of their sequence may follow it. */
  const stops: { prospect_id: string; what: string; at: Date }[] = [];

  beforeAll(async () => {
    db = await open();
    state = mkdtempSync(join(tmpdir(), 'flows-email-week-'));
    smtp = await startSmtpSandbox({});
    const registry = createRegistry();
    const env = { FLOWS_LINK_SECRET: SECRET };
    config = weekConfig(registry, env);
    config.connectors = { ...config.connectors, smtp: { host: smtp.host, port: smtp.port } };
    config.public_url = 'https://reports.example.test';
    // One item at a time: the ManualClock moves to the end of every sleep, for every sleeper
    // at once, so two items in flight would drag each other to the later one's time (a send
    // waiting for tomorrow's window would take the others with it). Sent one after another,
    // each email goes at the moment the quota lets it, as it would on a real clock.
    const yaml = readFileSync('pipelines/email-daily.yaml', 'utf8').replace('daily: 833', 'daily: 100000').replace('concurrency: 18', 'concurrency: 1');
    const loaded = loadPipeline(yaml, 'email-daily.yaml', { registry, config });
    if (!loaded.pipeline) throw new Error(JSON.stringify(loaded.diagnostics));
    pipeline = loaded.pipeline;
    resources = new Resources({ config, env, log: silentLogger, clock: new ManualClock(), projectDir: 'pipelines', stateDir: state });
    await db.query(
      `INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics)
       SELECT 'site-' || i || '.test', 'Company ' || i, 'Person ' || i, 'owner' || i || '@site-' || i || '.test', ($1::text[])[1 + i % 5], 'a reason',
              json_build_object('organic_traffic', 1000 * (2000 - i), 'paid_share', 0.2, 'competitor_gap', 2, 'top_competitor', 'rival.test')
         FROM generate_series(1, $2::int) AS i`,
      [CATEGORIES, PROSPECTS],
    );
  }, 60_000);

  afterAll(async () => {
    await resources?.close();
    await smtp?.close();
    await db?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  const sentRows = () =>
    db.query<Sent>("SELECT prospect_id::text, address, mailbox, domain, sequence_step, sent_at, message_id FROM email_outbox WHERE state = 'sent' ORDER BY sent_at");

  /** A prospect whose teaser went on `day` (London), for the stops between runs. */
  async function teaserOf(day: string, nth: number): Promise<string> {
    const sent = (await sentRows()).filter((s) => s.sequence_step === 'teaser' && londonDate(new Date(s.sent_at)) === day);
    return sent[nth]!.prospect_id;
  }

  async function stop(prospectId: string, what: 'clicked' | 'replied' | 'unsubscribed', at: Date) {
    if (what === 'clicked') await db.query("INSERT INTO flow_events (type, key, payload, occurred_at) VALUES ('email.clicked', $1, '{}', $2)", [prospectId, at]);
    if (what === 'replied') await db.query("UPDATE prospects SET replied_at = $2, reply_channel = 'email' WHERE id = $1", [prospectId, at]);
    if (what === 'unsubscribed') await db.query("INSERT INTO email_suppressions (address, reason, source, created_at) SELECT lower(email), 'unsubscribed', 'one-click', $2 FROM prospects WHERE id = $1", [prospectId, at]);
    stops.push({ prospect_id: prospectId, what, at });
  }

  it('runs every weekday and fills each mailbox to its cap', async () => {
    const started = Date.now();
    const perDay: string[] = [];
    for (const [i, morning] of DAYS.entries()) {
      const clock = new ManualClock(new Date(morning));
      const result = await executeRun({ pipeline, config, store: new RunStore(db), clock, resources, log: silentLogger });
      const today = (await sentRows()).filter((s) => londonDate(new Date(s.sent_at)) === londonDate(new Date(morning)));
      perDay.push(`${londonDate(new Date(morning))}: ${today.length} (${[...groupBy(today, (s) => s.sequence_step)].map(([k, v]) => `${k} ${v.length}`).join(', ')}) until ${clock.now().toISOString()}`);
      expect(result.status, `${morning}: ${result.error ?? ''}`).toBe('completed');
      // The day's emails all went the same day: nothing was planned beyond the room.
      expect(londonDate(clock.now()), perDay.join('; ')).toBe(londonDate(new Date(morning)));
      // Between the runs: some of Monday's prospects click, reply or unsubscribe; on Thursday
      // evening, some who got their first follow-up click (the second must not follow).
      if (i === 1) {
        await stop(await teaserOf('2026-10-19', 0), 'clicked', new Date('2026-10-20T19:00:00Z'));
        await stop(await teaserOf('2026-10-19', 1), 'replied', new Date('2026-10-20T19:00:00Z'));
        await stop(await teaserOf('2026-10-19', 2), 'unsubscribed', new Date('2026-10-20T19:00:00Z'));
      }
      if (i === 3) {
        const fu1 = (await sentRows()).filter((s) => s.sequence_step === 'follow-up-1');
        await stop(fu1[0]!.prospect_id, 'clicked', new Date('2026-10-22T19:00:00Z'));
        await stop(fu1[1]!.prospect_id, 'replied', new Date('2026-10-22T19:00:00Z'));
      }
    }
    console.log(`email week on ${name}: ${perDay.join('; ')} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const sent = await sentRows();
    const mailboxes = Object.values(MAILBOXES).flat();
    for (const day of DAYS.map((d) => londonDate(new Date(d)))) {
      for (const mailbox of mailboxes) expect(sent.filter((s) => s.mailbox === mailbox && londonDate(new Date(s.sent_at)) === day).length, `${mailbox} on ${day}`).toBe(CAP);
    }
  }, 300_000);

  it('keeps every promise, as the receiving server saw it', async () => {
    const sent = await sentRows();
    const byMessageId = new Map(sent.map((s) => [s.message_id, s]));
    // What the server received is what the outbox says went, each once.
    expect(smtp.messages).toHaveLength(sent.length);
    expect(new Set(smtp.messages.map((m) => m.messageId)).size).toBe(smtp.messages.length);
    const received = smtp.messages.map((m) => {
      const row = byMessageId.get(m.messageId!);
      expect(row, `${m.messageId} is in the outbox`).toBeDefined();
      expect(m.envelope.to).toEqual([row!.address]);
      expect(m.from?.email).toBe(row!.mailbox);
      return { ...row!, at: new Date(row!.sent_at).getTime() };
    });

    for (const [mailbox, rows] of groupBy(received, (r) => r.mailbox)) {
      const times = rows.map((r) => r.at).sort((a, b) => a - b);
      for (const [day, ofDay] of groupBy(rows, (r) => londonDate(new Date(r.at)))) expect(ofDay.length, `${mailbox} on ${day}`).toBeLessThanOrEqual(CAP);
      expect(mostWithin(times, DAY), `${mailbox} in 24 hours`).toBeLessThanOrEqual(CAP);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!, `${mailbox} at ${new Date(times[i]!).toISOString()}`).toBeGreaterThanOrEqual(600_000);
    }
    for (const r of received) {
      const p = londonParts(new Date(r.at));
      expect(['Mon', 'Tue', 'Wed', 'Thu', 'Fri'], new Date(r.at).toISOString()).toContain(p.weekday);
      expect(`${p.hour}:${p.minute}:${p.second}` >= '08:00:00' && `${p.hour}:${p.minute}:${p.second}` < '18:00:00', `${new Date(r.at).toISOString()} is ${p.hour}:${p.minute} in London`).toBe(true);
    }
    for (const [domain, rows] of groupBy(received, (r) => r.domain)) {
      const cap = CAP * MAILBOXES[domain]!.length;
      for (const [day, ofDay] of groupBy(rows, (r) => londonDate(new Date(r.at)))) expect(ofDay.length, `${domain} on ${day}`).toBeLessThanOrEqual(cap);
      expect(mostWithin(rows.map((r) => r.at).sort((a, b) => a - b), DAY), `${domain} in 24 hours`).toBeLessThanOrEqual(cap);
    }

    const byProspect = groupBy(received, (r) => r.prospect_id);
    for (const [prospect, rows] of byProspect) {
      expect(new Set(rows.map((r) => r.mailbox)).size, `prospect ${prospect}: one mailbox`).toBe(1);
      expect(new Set(rows.map((r) => r.sequence_step)).size, `prospect ${prospect}: no step twice`).toBe(rows.length);
      const at = Object.fromEntries(rows.map((r) => [r.sequence_step, r.at]));
      if (at['follow-up-1'] !== undefined) expect(at['follow-up-1'] - at.teaser!, `prospect ${prospect}: follow-up-1 3 days after`).toBeGreaterThanOrEqual(3 * DAY);
      if (at['follow-up-2'] !== undefined) {
        expect(at['follow-up-1'], `prospect ${prospect}: follow-up-2 after follow-up-1`).toBeDefined();
        expect(at['follow-up-2'] - at.teaser!, `prospect ${prospect}: follow-up-2 7 days after`).toBeGreaterThanOrEqual(7 * DAY);
      }
    }
    for (const s of stops) {
      const after = (byProspect.get(s.prospect_id) ?? []).filter((r) => r.at > s.at.getTime());
      expect(after.map((r) => r.sequence_step), `nothing after ${s.what}`).toEqual([]);
    }
    // The week did reach the follow-ups: Monday's teasers got their first on Thursday and their second on the next Monday.
    const steps = groupBy(received, (r) => r.sequence_step);
    expect(steps.get('follow-up-1')?.length ?? 0).toBeGreaterThan(0);
    expect(steps.get('follow-up-2')?.length ?? 0).toBeGreaterThan(0);
  }, 60_000);
});
