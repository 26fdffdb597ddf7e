import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { writableQueryable } from '../engine/executor/context.ts';
import { RunStore } from '../engine/store/index.ts';
import { emailHealthRemarks, sendingHealth } from '../steps/email/health.ts';
import { parseInbound } from '../steps/email/inbound.ts';
import { receiveInbound, recordInbound } from '../steps/email/replies.ts';
import { createRegistry } from '../steps/index.ts';
import { first, testDatabases } from './helpers/db.ts';

/**
 * What mail that came back does to the prospect, the outbox, the suppression list and the
 * events, on both databases; and the mailbox health that pauses a mailbox (or a domain's
 * mailboxes) past 5% bounces or 0.1% complaints over 7 days.
 */

const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', 'mail', name));
const NOW = new Date('2026-11-06T12:00:00Z');
const DAY = 86_400_000;
const ANA = 'ana.ruiz@intel-mail-one.example';

function shippedConfig(): EngineConfig {
  const loaded = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', { FLOWS_LINK_SECRET: 'link-secret-for-tests-0123456789abcdef' }, createRegistry());
  expect(loaded.diagnostics).toEqual([]);
  return loaded.config!;
}

describe.each(testDatabases)('inbound mail on $name', ({ open }) => {
  let db: Database;
  let config: EngineConfig;
  let n = 0;

  beforeAll(async () => {
    db = await open();
    config = shippedConfig();
  });
  afterAll(async () => db?.close());
  beforeEach(async () => {
    await db.query('DELETE FROM email_inbound');
    await db.query('DELETE FROM email_outbox');
    await db.query('DELETE FROM email_suppressions');
    await db.query('DELETE FROM flow_events');
    await db.query('DELETE FROM flow_quota_pauses');
    await db.query('DELETE FROM prospects');
  });

  const q = () => writableQueryable(db);

  async function prospect(email: string, replied?: { at: Date; channel: string }): Promise<string> {
    const row = await first(
      db.query<{ id: string }>('INSERT INTO prospects (domain, email, replied_at, reply_channel) VALUES ($1, $2, $3, $4) RETURNING id', [email.split('@')[1], email, replied?.at ?? null, replied?.channel ?? null]),
    );
    return String(row.id);
  }

  /** An outbox row: sent (with a Message-ID and a time) unless state says otherwise. */
  async function outbox(prospectId: string, o: { address: string; mailbox?: string; step?: string; messageId?: string; state?: string; sentAt?: Date; variant?: string }): Promise<string> {
    const mailbox = o.mailbox ?? ANA;
    const step = o.step ?? `step-${++n}`;
    const state = o.state ?? 'sent';
    const sentAt = state === 'planned' ? null : (o.sentAt ?? new Date(NOW.getTime() - DAY));
    const row = await first(
      db.query<{ id: string }>(
        `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, variant, message_id, state, idempotency_key, due_at, sent_at)
         VALUES ('autumn', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`,
        [prospectId, step, n, o.address, mailbox, mailbox.split('@')[1], o.variant ?? 'a', o.messageId ?? null, state, `autumn:${prospectId}:${step}`, sentAt ?? NOW, sentAt],
      ),
    );
    return String(row.id);
  }

  const outboxRow = (id: string) => first(db.query<{ state: string; reason: string | null }>('SELECT state, reason FROM email_outbox WHERE id = $1', [id]));
  const events = (type: string) => db.query<{ key: string | null; payload: Record<string, unknown> }>('SELECT key, payload FROM flow_events WHERE type = $1 ORDER BY id', [type]);
  const suppressions = () => db.query<{ address: string; reason: string; source: string }>('SELECT address, reason, source FROM email_suppressions ORDER BY address');

  describe('recordInbound', () => {
    it('a Gmail reply to a follow-up: matched by In-Reply-To, the prospect replied, the rest of the sequence stopped, email.replied', async () => {
      const sam = await prospect('sam@northwind-tea.test');
      await outbox(sam, { address: 'sam@northwind-tea.test', step: 'teaser', messageId: '<0f1e2d3c4b5a69788796a5b4c3d2e1f0@intel-mail-one.example>', sentAt: new Date(NOW.getTime() - 4 * DAY) });
      const followUp = await outbox(sam, { address: 'sam@northwind-tea.test', step: 'follow-up-1', messageId: '<f0e1d2c3b4a5968778695a4b3c2d1e0f@intel-mail-one.example>', variant: 'b' });
      const later = await outbox(sam, { address: 'sam@northwind-tea.test', step: 'follow-up-2', state: 'planned' });
      const other = await prospect('someone@else.test');
      const untouched = await outbox(other, { address: 'someone@else.test', state: 'planned' });

      const result = await recordInbound(q(), ANA, await parseInbound(fixture('gmail-reply.eml')), NOW);
      expect(result).toMatchObject({ status: 'recorded', kind: 'reply', matchedBy: 'in-reply-to', outbox: { id: followUp, prospect_id: sam }, stopped: 1, suppressed: [] });
      const p = await first(db.query<{ replied_at: Date; reply_channel: string }>('SELECT replied_at, reply_channel FROM prospects WHERE id = $1', [sam]));
      expect(new Date(p.replied_at).toISOString()).toBe(NOW.toISOString());
      expect(p.reply_channel).toBe('email');
      expect(await outboxRow(later)).toEqual({ state: 'stopped', reason: 'replied' });
      expect(await outboxRow(untouched)).toEqual({ state: 'planned', reason: null });
      expect(await events('email.replied')).toEqual([
        { key: sam, payload: { prospect_id: sam, channel: 'email', campaign: 'autumn', variant: 'b', mailbox: ANA, domain: 'intel-mail-one.example', outbox_id: followUp } },
      ]);
      const inbound = await first(db.query<{ kind: string; outbox_id: string; prospect_id: string; from_address: string; detail: Record<string, unknown> }>('SELECT kind, outbox_id, prospect_id, from_address, detail FROM email_inbound'));
      expect(inbound).toMatchObject({ kind: 'reply', outbox_id: followUp, prospect_id: sam, from_address: 'sam@northwind-tea.test', detail: { matched_by: 'in-reply-to' } });

      // Read again (a second fetch, a webhook retry): nothing more happens.
      expect(await recordInbound(q(), ANA, await parseInbound(fixture('gmail-reply.eml')), new Date(NOW.getTime() + DAY))).toBe('seen');
      expect(await events('email.replied')).toHaveLength(1);
      expect(await db.query('SELECT 1 FROM email_inbound')).toHaveLength(1);
    });

    it('a reply with no In-Reply-To: matched to the latest email sent to its sender', async () => {
      const morgan = await prospect('owner@litware-labs.test');
      const dan = 'dan.okafor@intel-mail-one.example';
      await outbox(morgan, { address: 'owner@litware-labs.test', mailbox: dan, messageId: '<t@intel-mail-one.example>', sentAt: new Date(NOW.getTime() - 3 * DAY) });
      const latest = await outbox(morgan, { address: 'owner@litware-labs.test', mailbox: dan, messageId: '<f@intel-mail-one.example>', sentAt: new Date(NOW.getTime() - DAY) });
      const result = await recordInbound(q(), dan, await parseInbound(fixture('reply-no-in-reply-to.eml')), NOW);
      expect(result).toMatchObject({ kind: 'reply', matchedBy: 'sender', outbox: { id: latest } });
      expect(await events('email.replied')).toHaveLength(1);
    });

    it('keeps the first reply of a prospect who answered on another channel before', async () => {
      const earlier = new Date(NOW.getTime() - 2 * DAY);
      const sam = await prospect('sam@northwind-tea.test', { at: earlier, channel: 'linkedin' });
      await outbox(sam, { address: 'sam@northwind-tea.test', messageId: '<f0e1d2c3b4a5968778695a4b3c2d1e0f@intel-mail-one.example>' });
      const planned = await outbox(sam, { address: 'sam@northwind-tea.test', state: 'planned' });
      await recordInbound(q(), ANA, await parseInbound(fixture('gmail-reply.eml')), NOW);
      const p = await first(db.query<{ replied_at: Date; reply_channel: string }>('SELECT replied_at, reply_channel FROM prospects WHERE id = $1', [sam]));
      expect([new Date(p.replied_at).toISOString(), p.reply_channel]).toEqual([earlier.toISOString(), 'linkedin']);
      expect(await outboxRow(planned)).toEqual({ state: 'stopped', reason: 'replied' });
    });

    it('an out-of-office is recorded against the email it answers and changes nothing else', async () => {
      const pat = await prospect('pat.kim@woodgrove-bank.test');
      const teaser = await outbox(pat, { address: 'pat.kim@woodgrove-bank.test', messageId: '<aa11bb22cc33dd44ee55ff6677889900@intel-mail-one.example>' });
      const next = await outbox(pat, { address: 'pat.kim@woodgrove-bank.test', state: 'planned' });
      const result = await recordInbound(q(), ANA, await parseInbound(fixture('exchange-out-of-office.eml')), NOW);
      expect(result).toMatchObject({ kind: 'auto_reply', outbox: { id: teaser }, stopped: 0 });
      expect(await outboxRow(next)).toEqual({ state: 'planned', reason: null });
      expect(await first(db.query('SELECT replied_at FROM prospects WHERE id = $1', [pat]))).toEqual({ replied_at: null });
      expect(await db.query('SELECT type FROM flow_events')).toEqual([]);
    });

    it('a hard bounce: the address suppressed, the email bounced, the rest stopped, email.bounced (hard)', async () => {
      const founder = await prospect('founder@acme-widgets.test');
      const teaser = await outbox(founder, { address: 'founder@acme-widgets.test', messageId: '<7c1e9a2b4d6f8a0c2e4b6d8f0a1c3e5b@intel-mail-one.example>' });
      const next = await outbox(founder, { address: 'founder@acme-widgets.test', state: 'planned' });
      const result = await recordInbound(q(), ANA, await parseInbound(fixture('postfix-hard-bounce.eml')), NOW);
      expect(result).toMatchObject({ kind: 'bounce', matchedBy: 'original-message-id', stopped: 1, suppressed: ['founder@acme-widgets.test'] });
      expect(await suppressions()).toEqual([{ address: 'founder@acme-widgets.test', reason: 'hard_bounce', source: 'dsn 5.1.1' }]);
      expect(await outboxRow(teaser)).toEqual({ state: 'bounced', reason: 'dsn 5.1.1: 550 5.1.1 <founder@acme-widgets.test>: Recipient address rejected: User unknown in virtual mailbox table' });
      expect(await outboxRow(next)).toEqual({ state: 'stopped', reason: 'bounced' });
      expect(await events('email.bounced')).toEqual([
        {
          key: 'founder@acme-widgets.test',
          payload: {
            kind: 'hard',
            address: 'founder@acme-widgets.test',
            status: '5.1.1',
            diagnostic: '550 5.1.1 <founder@acme-widgets.test>: Recipient address rejected: User unknown in virtual mailbox table',
            remote_mta: 'mx1.acme-widgets.test',
            outbox_id: teaser,
            prospect_id: founder,
            campaign: 'autumn',
            variant: 'a',
            mailbox: ANA,
            domain: 'intel-mail-one.example',
          },
        },
      ]);
    });

    it('a bounce that matches no email still suppresses the failed recipients', async () => {
      const result = await recordInbound(q(), 'ben.carter@intel-mail-one.example', await parseInbound(fixture('gmail-bounce.eml')), NOW);
      expect(result).toMatchObject({ kind: 'bounce', stopped: 0, suppressed: ['nobody.here.anymore@gmail.com'] });
      expect(result === 'seen' ? undefined : result.outbox).toBeUndefined();
      expect(await first(db.query('SELECT outbox_id FROM email_inbound'))).toEqual({ outbox_id: null });
    });

    it('a delay is a soft bounce: an event, nothing suppressed, the email still sent', async () => {
      const owner = await prospect('owner@slow-greenhouse.test');
      const teaser = await outbox(owner, { address: 'owner@slow-greenhouse.test', messageId: '<9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b@intel-mail-one.example>' });
      const next = await outbox(owner, { address: 'owner@slow-greenhouse.test', state: 'planned' });
      const result = await recordInbound(q(), ANA, await parseInbound(fixture('exim-delay.eml')), NOW);
      expect(result).toMatchObject({ kind: 'delay', matchedBy: 'references', stopped: 0, suppressed: [] });
      expect(await suppressions()).toEqual([]);
      expect(await outboxRow(teaser)).toEqual({ state: 'sent', reason: null });
      expect(await outboxRow(next)).toEqual({ state: 'planned', reason: null });
      expect(await events('email.bounced')).toEqual([
        { key: 'owner@slow-greenhouse.test', payload: expect.objectContaining({ kind: 'soft', action: 'delayed', status: '4.0.0', diagnostic: '451 4.7.1 Greylisted, please try again later', outbox_id: teaser }) },
      ]);
    });

    it('a complaint: the address suppressed, the rest stopped, email.complained', async () => {
      const hugo = 'hugo.berg@intel-mail-two.example';
      const buyer = await prospect('buyer@fabrikam-shop.test');
      const teaser = await outbox(buyer, { address: 'buyer@fabrikam-shop.test', mailbox: hugo, messageId: '<1f2e3d4c5b6a79881726354a5b6c7d8e@intel-mail-two.example>' });
      const next = await outbox(buyer, { address: 'buyer@fabrikam-shop.test', mailbox: hugo, state: 'planned' });
      const result = await recordInbound(q(), hugo, await parseInbound(fixture('arf-complaint.eml')), NOW);
      expect(result).toMatchObject({ kind: 'complaint', outbox: { id: teaser }, stopped: 1, suppressed: ['buyer@fabrikam-shop.test'] });
      expect(await suppressions()).toEqual([{ address: 'buyer@fabrikam-shop.test', reason: 'complaint', source: 'feedback report (abuse)' }]);
      expect(await outboxRow(teaser)).toEqual({ state: 'sent', reason: null });
      expect(await outboxRow(next)).toEqual({ state: 'stopped', reason: 'complained' });
      expect(await events('email.complained')).toEqual([
        { key: 'buyer@fabrikam-shop.test', payload: { address: 'buyer@fabrikam-shop.test', feedback_type: 'abuse', outbox_id: teaser, prospect_id: buyer, campaign: 'autumn', variant: 'a', mailbox: hugo, domain: 'intel-mail-two.example' } },
      ]);
    });

    it('a reply from someone never mailed is recorded, and nothing else', async () => {
      const result = await recordInbound(q(), ANA, await parseInbound(fixture('gmail-reply.eml')), NOW);
      expect(result).toMatchObject({ kind: 'reply', stopped: 0 });
      expect(await db.query('SELECT type FROM flow_events')).toEqual([]);
    });

    it('a message no parser reads is recorded as other with its problem', async () => {
      const junk = Array.from({ length: 20_000 }, () => 'a'.repeat(60)).join('\r\n ');
      const raw = Buffer.from(`From: x@y.test\r\nSubject: hi\r\nX-Junk: ${junk}\r\n\r\nbody\r\n`);
      const received = await receiveInbound(q(), config, ANA, raw, NOW);
      expect(received).toMatchObject({ status: 'recorded', kind: 'other', messageId: expect.stringMatching(/^sha256:/) });
      expect(await first(db.query('SELECT kind, detail FROM email_inbound'))).toEqual({ kind: 'other', detail: { problem: 'unreadable: Max header size for a MIME node exceeded' } });
      expect((await receiveInbound(q(), config, ANA, raw, NOW)).status).toBe('seen');
    });
  });

  describe('mailbox health', () => {
    /** `count` emails sent by `mailbox` within the window, `bounced` of them already marked bounced. */
    async function sends(mailbox: string, count: number, bounced = 0, ageDays = 1): Promise<void> {
      const p = await prospect(`many@batch-${++n}.test`);
      for (let i = 0; i < count; i++) {
        await outbox(p, { address: `r${i}-${n}@recipients.test`, mailbox, messageId: `<${n}-${i}@${mailbox.split('@')[1]}>`, state: i < bounced ? 'bounced' : 'sent', sentAt: new Date(NOW.getTime() - ageDays * DAY) });
      }
    }
    /** The teaser the Postfix bounce fixture returns, sent by ana. */
    const bouncedTeaser = async () => outbox(await prospect('founder@acme-widgets.test'), { address: 'founder@acme-widgets.test', messageId: '<7c1e9a2b4d6f8a0c2e4b6d8f0a1c3e5b@intel-mail-one.example>' });
    const pauses = () => db.query<{ quota: string; quota_key: string; reason: string; until: Date | null }>('SELECT quota, quota_key, reason, until FROM flow_quota_pauses ORDER BY quota_key');

    it('49 sends with 5 bounces do not pause: under 50 sends a rate does not count (older sends left out)', async () => {
      await sends(ANA, 10, 10, 8);
      await sends(ANA, 48, 4);
      await bouncedTeaser();
      const received = await receiveInbound(q(), config, ANA, fixture('postfix-hard-bounce.eml'), NOW);
      expect(received).toMatchObject({ kind: 'bounce', paused: [] });
      expect(await pauses()).toEqual([]);
      const ana = (await sendingHealth(q(), config, NOW)).find((h) => h.name === ANA);
      expect(ana).toMatchObject({ sent: 49, bounces: 5, counted: false });
      expect(ana!.breach).toBeUndefined();
    });

    it('50 sends with 3 bounces pause the mailbox until a person resumes it, as flows quotas pause does', async () => {
      await sends(ANA, 49, 2);
      await sends('ben.carter@intel-mail-one.example', 40); // the domain as a whole stays under the line
      await bouncedTeaser();
      const received = await receiveInbound(q(), config, ANA, fixture('postfix-hard-bounce.eml'), NOW);
      expect(received.paused).toEqual([ANA]);
      expect(await pauses()).toEqual([{ quota: 'mailbox', quota_key: ANA, reason: 'bounce rate 6.0% over 7 days (3 of 50 sent)', until: null }]);
      expect(await events('email.mailbox_paused')).toEqual([
        { key: ANA, payload: { mailbox: ANA, domain: 'intel-mail-one.example', quota: 'mailbox', scope: 'mailbox', reason: 'bounce rate 6.0% over 7 days (3 of 50 sent)', sent: 50, bounces: 3, complaints: 0 } },
      ]);
      // The quota ledger sees the pause (sends under the key wait), and resuming lifts it.
      const ledger = new RunStore(db).quotas;
      expect(await ledger.pauseAt('mailbox', ANA, NOW)).toEqual({ reason: 'bounce rate 6.0% over 7 days (3 of 50 sent)', until: null });
      expect(await ledger.pauseAt('mailbox', 'ben.carter@intel-mail-one.example', NOW)).toBeUndefined();
      expect(await ledger.resume('mailbox', ANA, { by: 'a test', now: NOW })).toBe(true);
    });

    it('a mailbox already paused keeps its pause and reason: no second pause, no second event', async () => {
      await sends(ANA, 49, 2);
      await sends('ben.carter@intel-mail-one.example', 40);
      await bouncedTeaser();
      await new RunStore(db).quotas.pause({ quota: 'mailbox', key: ANA, reason: 'warming up again', by: 'a person', until: null, now: NOW });
      const received = await receiveInbound(q(), config, ANA, fixture('postfix-hard-bounce.eml'), NOW);
      expect(received.paused).toEqual([]);
      expect(await pauses()).toEqual([{ quota: 'mailbox', quota_key: ANA, reason: 'warming up again', until: null }]);
      expect(await events('email.mailbox_paused')).toEqual([]);
    });

    it('a complaint rate on a domain pauses every mailbox of that domain, and only those', async () => {
      const domainTwo = (await sendingHealth(q(), config, NOW)).filter((h) => h.scope === 'mailbox' && h.domain === 'intel-mail-two.example').map((h) => h.name);
      expect(domainTwo).toHaveLength(6);
      for (const mailbox of domainTwo) await sends(mailbox, 10);
      await sends(ANA, 60);
      const hugo = 'hugo.berg@intel-mail-two.example';
      await outbox(await prospect('buyer@fabrikam-shop.test'), { address: 'buyer@fabrikam-shop.test', mailbox: hugo, messageId: '<1f2e3d4c5b6a79881726354a5b6c7d8e@intel-mail-two.example>' });
      const received = await receiveInbound(q(), config, hugo, fixture('arf-complaint.eml'), NOW);
      expect(received.kind).toBe('complaint');
      expect([...received.paused].sort()).toEqual([...domainTwo].sort());
      const reason = 'domain intel-mail-two.example: complaint rate 1.6% over 7 days (1 of 61 sent)';
      expect(await pauses()).toEqual([...domainTwo].sort().map((key) => ({ quota: 'mailbox', quota_key: key, reason, until: null })));
      expect(await events('email.mailbox_paused')).toHaveLength(6);
      const health = await sendingHealth(q(), config, NOW);
      expect(health.find((h) => h.name === 'intel-mail-two.example')).toMatchObject({ scope: 'domain', sent: 61, complaints: 1, counted: true, breach: reason });
      expect(health.find((h) => h.name === hugo)).toMatchObject({ sent: 11, complaints: 1, counted: false });
      // flows quotas shows the same rates under the mailbox quota: each domain, and the mailbox with the complaint.
      const remarks = await emailHealthRemarks(q(), config, NOW);
      expect(remarks).toContainEqual({ quota: 'mailbox', text: `domain intel-mail-two.example: bounces 0.00% (0 of 61 sent), complaints 1.6% (1) over 7 days: past the limit, ${reason}` });
      expect(remarks).toContainEqual({ quota: 'mailbox', key: hugo, text: `${hugo}: bounces 0.00% (0 of 11 sent), complaints 9.1% (1) over 7 days (counted from 50 sent)` });
      expect(remarks.filter((r) => r.key)).toHaveLength(1);
    });
  });
});
