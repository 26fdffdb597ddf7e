import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../engine/clock.ts';
import type { Database } from '../engine/db/connect.ts';
import { executeRun, type RunResult } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { messageIdFor } from '../steps/email/message-id.ts';
import { readLink } from '../steps/email/tokens.ts';
import { testDatabases } from './helpers/db.ts';
import { type EmailProject, emailProject } from './helpers/email-project.ts';

/**
 * email-daily as shipped (pipelines/email-daily.yaml and the shipped config's 18 mailboxes),
 * against a real SMTP server on loopback, on an injected clock: the audience, rotation across
 * mailboxes within their caps and gaps, DKIM signatures an independent verifier accepts,
 * signed links with no personal data, one-click unsubscribe headers, and follow-ups in the
 * teaser's thread from the teaser's mailbox, stopped by a click or a reply.
 */

const SECRET = 'link-secret-for-email-daily-0123456789';
const CATEGORIES = ['traffic-falling', 'competitor-ahead', 'paid-heavy', 'striking-distance', 'growth'];
const MONDAY = '2026-11-23T07:30:00Z'; // 07:30 in London, before the mailboxes' window

interface Setup extends EmailProject {
  db: Database;
}

function setup(open: () => Promise<Database>): Setup {
  const t = {} as Setup;
  beforeAll(async () => {
    const db = await open();
    const project = await emailProject({ secret: SECRET, clock: new ManualClock(), config: (shipped) => ({ ...shipped, public_url: 'https://reports.example.test' }) });
    Object.assign(t, project, { db });
    await seed(t.db);
  }, 60_000);
  afterAll(async () => {
    await t.close?.();
    await t.db?.close();
  });
  return t;
}

/** 40 prospects with an email and a category, and some who must get nothing. */
async function seed(db: Database): Promise<void> {
  for (const table of ['email_click_observations', 'email_links', 'email_inbound', 'email_outbox', 'email_suppressions', 'email_addresses', 'payments', 'prospects']) await db.query(`DELETE FROM ${table}`);
  for (let i = 0; i < 44; i++) {
    const name = i === 0 ? '<b>Eve</b> & "Co"' : `Person ${i}`;
    await db.query(
      `INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        `site-${i}.test`,
        i === 0 ? '<script>alert(1)</script> Widgets' : `Company ${i}`,
        name,
        `Owner${i}@Site-${i}.test`,
        CATEGORIES[i % CATEGORIES.length],
        'organic interest down 20% over the last three months',
        JSON.stringify({ organic_traffic: 1000 * (44 - i), paid_share: 0.2, competitor_gap: 2, top_competitor: 'rival.test', page2_keywords: 7, traffic_trend: -0.2 }),
      ],
    );
  }
  // Suppressed, a customer, one who replied already, and one without an email: none gets a teaser.
  await db.query("INSERT INTO email_suppressions (address, reason, source) VALUES ('owner40@site-40.test', 'unsubscribed', 'one-click')");
  await db.query("INSERT INTO payments (session_id, event_id, prospect_id, email, amount, currency, paid_at) SELECT 'cs_1', 'evt_1', id, email, 9900, 'usd', now() FROM prospects WHERE domain = 'site-41.test'");
  await db.query("UPDATE prospects SET replied_at = now(), reply_channel = 'linkedin' WHERE domain = 'site-42.test'");
  await db.query("UPDATE prospects SET email = NULL WHERE domain = 'site-43.test'");
  // Two in New York (the last two by score): their window is 08:00-18:00 there, 13:00-23:00 in London.
  await db.query("UPDATE prospects SET timezone = 'America/New_York' WHERE domain IN ('site-38.test', 'site-39.test')");
}

describe.each(testDatabases)('email-daily on $name', ({ open }) => {
  const t = setup(open);
  const store = () => new RunStore(t.db);
  const run = (clock: ManualClock, options: { dryRun?: boolean; edit?: (y: string) => string } = {}): Promise<RunResult> =>
    executeRun({ pipeline: t.pipeline('email-daily.yaml', { edit: options.edit }), config: t.config, store: store(), clock, resources: t.resources, dryRun: options.dryRun, outDir: join(t.state, `dry-${Math.random()}`) });
  // One at a time, so the manual clock moves with each wait and the dry run can be compared slot by slot.
  const serial = (y: string) => y.replace('concurrency: 18', 'concurrency: 1');

  it('plans the day in a dry run, then sends exactly that: every teaser from the mailbox and slot predicted, within caps and gaps', async () => {
    const dry = await run(new ManualClock(new Date(MONDAY)), { dryRun: true, edit: serial });
    expect(dry.status).toBe('completed');
    const predicted = dry.effects.filter((e) => e.step === 'send');
    expect(predicted).toHaveLength(40);
    expect(await t.db.query('SELECT id FROM email_outbox')).toEqual([]);
    expect(t.smtp.messages).toHaveLength(0);

    const real = await run(new ManualClock(new Date(MONDAY)), { edit: serial });
    expect(real.status).toBe('completed');
    const sent = await t.db.query<{ prospect_id: string; address: string; mailbox: string; domain: string; sent_at: Date; message_id: string; variant: string; idempotency_key: string }>(
      "SELECT prospect_id::text, address, mailbox, domain, sent_at, message_id, variant, idempotency_key FROM email_outbox WHERE state = 'sent' ORDER BY sent_at",
    );
    expect(sent).toHaveLength(40);
    expect(t.smtp.messages).toHaveLength(40);
    // The dry run's mailbox and time for each email are the run's.
    const byKey = new Map(sent.map((s) => [s.idempotency_key, `${new Date(s.sent_at).toISOString().slice(0, 16)} ${s.mailbox}`]));
    const planned = new Map(predicted.map((e) => [e.key.replace(/^send:/, ''), `${e.slot!.at.slice(0, 16)} ${e.slot!.key}`]));
    expect(Object.fromEntries(byKey)).toEqual(Object.fromEntries(planned));

    // Every mailbox within its caps and gaps; the rotation used all 18 (40 emails, most idle first).
    const perMailbox = new Map<string, number[]>();
    for (const s of sent) perMailbox.set(s.mailbox, [...(perMailbox.get(s.mailbox) ?? []), new Date(s.sent_at).getTime()]);
    expect(perMailbox.size).toBe(18);
    for (const times of perMailbox.values()) {
      expect(times.length).toBeLessThanOrEqual(50);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(600_000);
    }
    expect(Math.min(...sent.map((s) => new Date(s.sent_at).getTime()))).toBe(Date.parse('2026-11-23T08:00:00Z'));
    // The recipient's window where their timezone is known, in the plan and in the run.
    const zones = new Map((await t.db.query<{ id: string; timezone: string | null }>('SELECT id::text, timezone FROM prospects')).map((p) => [p.id, p.timezone]));
    for (const s of sent) {
      const label = predicted.find((e) => e.key === `send:${s.idempotency_key}`)!.slot!.label;
      if (zones.get(s.prospect_id) === 'America/New_York') {
        expect(label).toMatch(/America\/New_York$/);
        expect(new Date(s.sent_at).getTime()).toBeGreaterThanOrEqual(Date.parse('2026-11-23T13:00:00Z'));
      } else expect(label).toMatch(/Europe\/London$/);
    }
    expect([...zones.values()].filter((z) => z === 'America/New_York')).toHaveLength(2);

    // Nobody who must not get one did.
    const to = t.smtp.messages.map((m) => m.envelope.to[0]);
    for (const gone of ['owner40@site-40.test', 'owner41@site-41.test', 'owner42@site-42.test']) expect(to).not.toContain(gone);
  }, 120_000);

  it('sends what production sends: DKIM verified independently, one-click unsubscribe signed, links signed and free of personal data, data escaped', async () => {
    const resolver = t.dkimResolver;
    const outbox = await t.db.query<{ address: string; mailbox: string; message_id: string }>("SELECT address, mailbox, message_id FROM email_outbox WHERE state = 'sent'");
    for (const m of t.smtp.messages) {
      const row = outbox.find((o) => o.address === m.envelope.to[0])!;
      expect(m.from?.email).toBe(row.mailbox);
      expect(m.messageId).toBe(row.message_id);
      expect(m.headers['list-unsubscribe']).toMatch(/^<https:\/\/reports\.example\.test\/u\/[A-Za-z0-9_-]{50}>, <mailto:unsubscribe@intel-mail-(one|two|three)\.example\?subject=unsubscribe%20[A-Za-z0-9_-]{50}>$/);
      expect(m.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
      const result = await dkimVerify(m.raw, { resolver });
      expect(result.results, m.envelope.to[0]).toHaveLength(1);
      const signature = result.results[0]! as (typeof result.results)[number] & { signingHeaders?: { keys?: string } };
      expect(signature.status.result, `${m.envelope.to[0]}: ${JSON.stringify(signature.status)}`).toBe('pass');
      expect(signature.signingDomain).toBe(row.mailbox.split('@')[1]);
      const signed = String(signature.signingHeaders?.keys ?? '').toLowerCase();
      expect(signed).toContain('list-unsubscribe');
      expect(signed).toContain('list-unsubscribe-post');
      // Links: signed click tokens naming a link row, never the address or the domain.
      const links = [...(m.html ?? '').matchAll(/href="([^"]+)"/g)].map((x) => x[1]!);
      const clicks = links.filter((l) => l.includes('/c/'));
      expect(clicks.length).toBeGreaterThanOrEqual(2);
      for (const link of clicks) {
        const token = link.split('/c/')[1]!;
        expect(readLink(SECRET, token)?.kind).toBe('c');
        expect(link.toLowerCase()).not.toContain(m.envelope.to[0]!.split('@')[0]!);
      }
      expect(m.text).toContain('20 Wenlock Road');
      expect(m.html).not.toMatch(/<img[^>]+1x1|width="1"/);
    }
    const eve = t.smtp.messages.find((m) => m.envelope.to[0] === 'owner0@site-0.test')!;
    expect(eve.html).not.toContain('<script>alert(1)</script>');
    expect(eve.html).not.toContain('<b>Eve</b>');
  }, 60_000);

  it('on day 4 sends follow-up-1 from the teaser\'s mailbox in its thread, except to a prospect who clicked or replied', async () => {
    const [clicked, replied] = await t.db.query<{ id: string }>("SELECT id::text FROM prospects WHERE domain IN ('site-1.test', 'site-2.test') ORDER BY domain");
    await t.db.query("INSERT INTO flow_events (type, key, payload, occurred_at) VALUES ('email.clicked', $1, '{}', now())", [clicked!.id]);
    await t.db.query("UPDATE prospects SET replied_at = now(), reply_channel = 'email' WHERE id = $1", [replied!.id]);
    t.smtp.clear();
    const thursday = await run(new ManualClock(new Date('2026-11-26T07:30:00Z')));
    expect(thursday.status).toBe('completed');
    expect(t.smtp.messages).toHaveLength(38);
    const teasers = await t.db.query<{ address: string; mailbox: string; message_id: string; subject: string }>("SELECT address, mailbox, message_id, subject FROM email_outbox WHERE sequence_step = 'teaser'");
    for (const m of t.smtp.messages) {
      const teaser = teasers.find((x) => x.address === m.envelope.to[0])!;
      expect(m.from?.email).toBe(teaser.mailbox);
      expect(m.headers['in-reply-to']).toBe(teaser.message_id);
      expect(m.headers.references).toContain(teaser.message_id);
      expect(m.subject).toBe(`Re: ${teaser.subject}`);
    }
    const to = t.smtp.messages.map((m) => m.envelope.to[0]);
    expect(to).not.toContain('owner1@site-1.test');
    expect(to).not.toContain('owner2@site-2.test');
    const stopped = await t.db.query("SELECT address, reason FROM email_outbox WHERE state = 'stopped' ORDER BY address");
    expect(stopped).toEqual([]);
    // Run again the same day: nothing new is planned or sent.
    t.smtp.clear();
    const again = await run(new ManualClock(new Date('2026-11-26T15:00:00Z')));
    expect(again.status).toBe('completed');
    expect(t.smtp.messages).toHaveLength(0);
  }, 120_000);

  it('a send a person confirmed after a crash (flows effects resolve --happened) is recorded as sent, never sent again, and its thread goes on', async () => {
    const campaign = (await t.db.query<{ campaign: string }>('SELECT campaign FROM email_outbox LIMIT 1'))[0]!.campaign;
    const [p] = await t.db.query<{ id: string }>(
      `INSERT INTO prospects (domain, company_name, contact_name, email, category, category_reason, metrics)
       VALUES ('site-77.test', 'Company 77', 'Person 77', 'owner77@site-77.test', 'growth', 'steady', '{"organic_traffic": 99000}') RETURNING id::text`,
    );
    const key = `${campaign}:${p!.id}:teaser`;
    const mailbox = 'ana.ruiz@intel-mail-one.example';
    const at = new Date('2026-11-27T10:00:00Z');
    // What a crash mid-send left, then a person's --happened: the effect done, its mailbox slot taken.
    await t.db.query("INSERT INTO flow_effects (key, run_id, step_id, item_key, kind, status, summary, output, reserved_at, done_at) VALUES ($1, 'r-crashed', 'send', $2, 'email', 'done', 'teaser', '{\"resolved\": \"happened\"}', $3, $3)", [`send:${key}`, key, at]);
    await t.db.query("INSERT INTO flow_quota_ledger (quota, quota_key, at, run_id, step_id, item_key, effect_key) VALUES ('mailbox', $1, $2, 'r-crashed', 'send', $3, $4)", [mailbox, at, key, `send:${key}`]);
    t.smtp.clear();
    const monday = await run(new ManualClock(new Date('2026-11-30T07:30:00Z')));
    expect(monday.status, monday.error).toBe('completed');
    expect(t.smtp.messages.map((m) => m.envelope.to[0])).not.toContain('owner77@site-77.test');
    const [row] = await t.db.query<{ state: string; mailbox: string; message_id: string; subject: string; sent_at: Date }>('SELECT state, mailbox, message_id, subject, sent_at FROM email_outbox WHERE idempotency_key = $1', [key]);
    expect(row).toMatchObject({ state: 'sent', mailbox, message_id: messageIdFor(key, 'intel-mail-one.example') });
    expect(new Date(row!.sent_at).toISOString()).toBe(at.toISOString());
    expect(row!.subject).not.toContain('{{');
    expect(row!.subject).toMatch(/Company 77|site-77\.test/); // rendered: the A/B variant's subject names the company or its domain
    const [sent] = await t.db.query<{ payload: Record<string, unknown> | string }>("SELECT payload FROM flow_events WHERE type = 'email.sent' AND key = $1", [p!.id]);
    expect(typeof sent!.payload === 'string' ? JSON.parse(sent!.payload) : sent!.payload).toMatchObject({ mailbox, confirmed: 'flows effects resolve --happened' });
    // Three days after it: its follow-up goes in its thread, from its mailbox.
    t.smtp.clear();
    const thursday = await run(new ManualClock(new Date('2026-12-03T07:30:00Z')));
    expect(thursday.status, thursday.error).toBe('completed');
    const follow = t.smtp.messages.find((m) => m.envelope.to[0] === 'owner77@site-77.test')!;
    expect(follow.from?.email).toBe(mailbox);
    expect(follow.headers['in-reply-to']).toBe(row!.message_id);
    expect(follow.subject).toBe(`Re: ${row!.subject}`);
  }, 120_000);
});
