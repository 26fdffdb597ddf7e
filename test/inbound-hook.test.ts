import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import type { Database } from '../engine/db/connect.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { first, testDatabases } from './helpers/db.ts';

/**
 * POST /hooks/inbound-mail through a real daemon: a provider forwards a raw message that
 * arrived at one of our mailboxes, signed with email.inbound_secret over the mailbox and the
 * message. A bad signature records nothing; a good one is recorded as IMAP reading would
 * record it.
 */

const SECRET = 'inbound-secret-for-tests-4f0c9a1e7b2d';
const ANA = 'ana.ruiz@intel-mail-one.example';
const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', 'mail', name));
const BEN = 'ben.carter@intel-mail-one.example';
/** What a forwarder sends: the HMAC of the mailbox (lower case), a line feed, and the raw message. */
const sign = (body: Buffer, mailbox = ANA, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(`${mailbox.toLowerCase()}\n`).update(body).digest('hex')}`;
const bodyOnly = (body: Buffer) => `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;

function config(env: Record<string, string>): EngineConfig {
  const loaded = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', { FLOWS_LINK_SECRET: 'link-secret-for-tests-0123456789abcdef', ...env }, createRegistry());
  expect(loaded.diagnostics).toEqual([]);
  return loaded.config!;
}

describe.each(testDatabases)('the inbound-mail webhook on $name', ({ open }) => {
  let db: Database;
  let daemon: Daemon;
  let unset: Daemon;

  beforeAll(async () => {
    db = await open();
    const registry = createRegistry();
    daemon = new Daemon({ db, config: config({ FLOWS_INBOUND_SECRET: SECRET }), pipelines: [], pages: builtinPages, verifiers: registry.verifiers, port: 0 });
    unset = new Daemon({ db, config: config({}), pipelines: [], pages: builtinPages, verifiers: registry.verifiers, port: 0 });
    await daemon.start();
    await unset.start();
  }, 60_000);

  afterAll(async () => {
    await unset?.stop();
    await daemon?.stop();
    await db?.close();
  });

  const post = (to: Daemon, body: Buffer, headers: Record<string, string>) => fetch(`${to.url}/hooks/inbound-mail`, { method: 'POST', headers: { 'content-type': 'message/rfc822', ...headers }, body });
  const inbound = () => db.query<{ mailbox: string; kind: string }>('SELECT mailbox, kind FROM email_inbound ORDER BY received_at, kind');

  it('answers 404 when no inbound_secret is set', async () => {
    const body = fixture('gmail-reply.eml');
    const answer = await post(unset, body, { 'x-flows-signature': sign(body), 'x-flows-mailbox': ANA });
    expect(answer.status).toBe(404);
    expect(await inbound()).toEqual([]);
  });

  it('refuses a bad or missing signature with 401 and records nothing', async () => {
    const body = fixture('postfix-hard-bounce.eml');
    const tampered = Buffer.concat([body, Buffer.from('\n')]);
    for (const headers of [{ 'x-flows-signature': sign(body, ANA, 'another secret') }, { 'x-flows-signature': sign(body) }, {}, { 'x-flows-signature': 'sha256=zz' }, { 'x-flows-signature': sign(body).slice(7) }, { 'x-flows-signature': bodyOnly(body) }] as Record<string, string>[]) {
      const answer = await post(daemon, headers['x-flows-signature'] === sign(body) ? tampered : body, { ...headers, 'x-flows-mailbox': ANA });
      expect(answer.status, JSON.stringify(headers)).toBe(401);
    }
    expect(await inbound()).toEqual([]);
    expect(await db.query('SELECT 1 FROM email_suppressions')).toEqual([]);
  });

  it('refuses a signed message replayed under another mailbox with 401, and records nothing', async () => {
    const body = fixture('postfix-hard-bounce.eml');
    const answer = await post(daemon, body, { 'x-flows-signature': sign(body, ANA), 'x-flows-mailbox': BEN });
    expect(answer.status).toBe(401);
    expect(await answer.json()).toEqual({ status: 'rejected', error: 'x-flows-signature: not the HMAC-SHA256 of this mailbox and body with email.inbound_secret' });
    expect(await inbound()).toEqual([]);
    expect(await db.query('SELECT 1 FROM email_suppressions')).toEqual([]);
  });

  it('refuses a mailbox that is not configured (or none) with 400, and a body that is no message with 415', async () => {
    const body = fixture('gmail-reply.eml');
    const unknown = await post(daemon, body, { 'x-flows-signature': sign(body, 'someone@elsewhere.test'), 'x-flows-mailbox': 'someone@elsewhere.test' });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toEqual({ status: 'rejected', error: 'x-flows-mailbox: someone@elsewhere.test is not a mailbox under email.domains' });
    expect((await post(daemon, body, { 'x-flows-signature': sign(body) })).status).toBe(400);
    const json = Buffer.from('{"message": "hi"}');
    expect((await post(daemon, json, { 'content-type': 'application/json', 'x-flows-signature': sign(json), 'x-flows-mailbox': ANA })).status).toBe(415);
    expect(await inbound()).toEqual([]);
  });

  it('records a signed message as reading the mailbox would: 200 with its kind, and seen the second time', async () => {
    const prospect = await first(db.query<{ id: string }>("INSERT INTO prospects (domain, email) VALUES ('acme-widgets.test', 'founder@acme-widgets.test') RETURNING id"));
    await db.query(
      `INSERT INTO email_outbox (campaign, prospect_id, sequence_step, step_index, address, mailbox, domain, message_id, state, idempotency_key, due_at, sent_at)
       VALUES ('autumn', $1, 'teaser', 0, 'founder@acme-widgets.test', $2, 'intel-mail-one.example', '<7c1e9a2b4d6f8a0c2e4b6d8f0a1c3e5b@intel-mail-one.example>', 'sent', 'k1', now(), now())`,
      [prospect.id, ANA],
    );
    const body = fixture('postfix-hard-bounce.eml');
    const answer = await post(daemon, body, { 'x-flows-signature': sign(body, 'Ana.Ruiz@intel-mail-one.example'), 'x-flows-mailbox': 'Ana.Ruiz@intel-mail-one.example' });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ status: 'recorded', kind: 'bounce', message_id: '<20261103101502.4Yx2Kq0bQzz9sWQ@mail.intel-mail-one.example>', paused: [] });
    expect(await inbound()).toEqual([{ mailbox: ANA, kind: 'bounce' }]);
    expect(await db.query('SELECT address, reason FROM email_suppressions')).toEqual([{ address: 'founder@acme-widgets.test', reason: 'hard_bounce' }]);
    expect(await db.query("SELECT state FROM email_outbox WHERE idempotency_key = 'k1'")).toEqual([{ state: 'bounced' }]);

    const again = await post(daemon, body, { 'x-flows-signature': sign(body), 'x-flows-mailbox': ANA });
    expect(await again.json()).toMatchObject({ status: 'seen', kind: 'bounce' });
    expect(await inbound()).toHaveLength(1);
  });
});
