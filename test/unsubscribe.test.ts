import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ReceivedEmail, type SmtpSandbox, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { systemClock } from '../engine/clock.ts';
import { loadConfig } from '../engine/config.ts';
import { Daemon } from '../engine/daemon/daemon.ts';
import type { Database } from '../engine/db/connect.ts';
import { silentLogger } from '../engine/log.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import { Resources } from '../engine/resources.ts';
import { executeRun } from '../engine/executor/run.ts';
import type { EngineConfig } from '../engine/config.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { RunStore } from '../engine/store/index.ts';
import { readLink, signLink } from '../steps/email/tokens.ts';
import { builtinPages, createRegistry } from '../steps/index.ts';
import { first, testDatabases } from './helpers/db.ts';
import { eventually } from './helpers/eventually.ts';

/**
 * Consent in the email channel: signed unsubscribe links that carry no personal data, the
 * pages the daemon serves for them (RFC 8058 one-click and a confirmation page), and
 * email.send refusing marketing mail to a suppressed address while a transactional one goes.
 */

const readdirRecursive = (dir: string): string[] => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));

const SECRET = 'link-secret-for-tests-0123456789abcdef';
const ID = '0b4f5e2a-8c1d-4e7f-9a36-2d5c8b1e0f47';

describe('signed link tokens', () => {
  const issuedAt = new Date('2026-11-30T10:00:00Z');

  it('reads back what was signed', () => {
    const token = signLink(SECRET, { kind: 'u', id: ID, issuedAt });
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(readLink(SECRET, token)).toEqual({ kind: 'u', id: ID, day: Math.floor(issuedAt.getTime() / 86_400_000) });
    expect(readLink(SECRET, signLink(SECRET, { kind: 'c', id: ID, issuedAt }))?.kind).toBe('c');
  });

  it('refuses a token with any one character changed, cut short, lengthened, or signed with another secret', () => {
    const token = signLink(SECRET, { kind: 'u', id: ID, issuedAt });
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    for (let i = 0; i < token.length; i++) {
      for (const c of [alphabet[(alphabet.indexOf(token[i]!) + 1) % 64]!, alphabet[(alphabet.indexOf(token[i]!) + 32) % 64]!]) {
        const tampered = `${token.slice(0, i)}${c}${token.slice(i + 1)}`;
        expect(readLink(SECRET, tampered), `character ${i} changed to ${c}`).toBeUndefined();
      }
    }
    for (let n = 0; n < token.length; n++) expect(readLink(SECRET, token.slice(0, n))).toBeUndefined();
    expect(readLink(SECRET, `${token}A`)).toBeUndefined();
    expect(readLink(`${SECRET}x`, token)).toBeUndefined();
    expect(readLink('', token)).toBeUndefined();
    expect(readLink(SECRET, 'not a token at all')).toBeUndefined();
  });

  it('refuses to sign without a secret or with an id that is not a uuid', () => {
    expect(() => signLink('', { kind: 'u', id: ID, issuedAt })).toThrow('no secret to sign the link with');
    expect(() => signLink(SECRET, { kind: 'u', id: 'founder@acme.test', issuedAt })).toThrow(/uuid/);
  });
});

const MAILING = `
name: mailing
trigger:
  webhook:
    path: /hooks/mailing
    event_id: "\${{ body.id }}"
    inputs: { recipients: "\${{ body.recipients }}" }
inputs:
  recipients: { type: array }
steps:
  - id: send
    uses: email.send
    foreach: "\${{ inputs.recipients }}"
    item_key: "\${{ item.to }}"
    with:
      to: "\${{ item.to }}"
      sender: d1
      subject: "\${{ 'Your search visibility, ' + item.to }}"
      template: report-delivery
      transactional: "\${{ item.transactional }}"
      data: { name: Sam, company: Acme, domain: acme-widgets.test, url: https://example.test/r, pdf_url: https://example.test/r.pdf, headline: Your visibility }
`;

describe.each(testDatabases)('unsubscribe through the daemon on $name', ({ open }) => {
  let db: Database;
  let daemon: Daemon;
  let resources: Resources;
  let mailbox: SmtpSandbox;
  let state: string;
  let sent = 0;
  let mailing: Pipeline;
  let config: EngineConfig;

  beforeAll(async () => {
    db = await open();
    state = mkdtempSync(join(tmpdir(), 'flows-unsubscribe-'));
    const env = { FLOWS_LINK_SECRET: SECRET };
    const registry = createRegistry();
    const loaded = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', env, registry);
    expect(loaded.diagnostics).toEqual([]);
    mailbox = await startSmtpSandbox();
    // No public_url: the daemon's own address goes into the links.
    const { public_url: _unset, ...base } = loaded.config!;
    config = { ...base, connectors: { ...base.connectors, storage: { dir: join(state, 'reports') }, smtp: { host: mailbox.host, port: mailbox.port } } };
    const { pipeline, diagnostics } = loadPipeline(MAILING, 'mailing.yaml', { registry, config });
    expect(diagnostics).toEqual([]);
    mailing = pipeline!;
    resources = new Resources({ config, env, log: silentLogger, clock: systemClock, projectDir: 'pipelines', stateDir: state });
    daemon = new Daemon({ db, config, pipelines: [pipeline!], pages: builtinPages, verifiers: registry.verifiers, resources, env, port: 0 });
    await daemon.start();
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await resources?.close();
    await mailbox?.close();
    await db?.close();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  /** Runs the mailing pipeline for these recipients and returns its finished run. */
  async function mail(recipients: { to: string; transactional?: boolean }[]) {
    const answer = await fetch(`${daemon.url}/hooks/mailing`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: `mailing-${++sent}`, recipients: recipients.map((r) => ({ transactional: false, ...r })) }),
    });
    const { run_id } = (await answer.json()) as { run_id: string };
    const runOf = () => first(db.query<{ status: string; error: string | null }>('SELECT status, error FROM flow_runs WHERE id = $1', [run_id]));
    await eventually(async () => !['queued', 'running'].includes((await runOf()).status), `run ${run_id} to finish`, 30_000);
    return { run_id, ...(await runOf()) };
  }

  const itemsOf = (runId: string) => db.query<{ item_key: string; status: string; error: string | null }>('SELECT item_key, status, error FROM flow_items WHERE run_id = $1 ORDER BY item_key', [runId]);
  const suppressions = () => db.query<{ address: string; reason: string; source: string }>('SELECT address, reason, source FROM email_suppressions ORDER BY address');
  const unsubscribeEvents = () => db.query<{ key: string }>("SELECT key FROM flow_events WHERE type = 'email.unsubscribed'");

  let email: ReceivedEmail;
  let link: string;
  let token: string;

  it('sends a marketing email with both List-Unsubscribe headers, the link signed and carrying no address', async () => {
    const run = await mail([{ to: 'Founder@Acme-Widgets.test' }]);
    expect(await itemsOf(run.run_id)).toEqual([{ item_key: 'Founder@Acme-Widgets.test', status: 'succeeded', error: null }]);
    expect(run).toMatchObject({ status: 'completed', error: null });
    [email] = (await mailbox.waitFor(1)) as [ReceivedEmail];
    expect(email.envelope.to.map((a) => a.toLowerCase())).toEqual(['founder@acme-widgets.test']);
    expect(email.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
    const header = email.headers['list-unsubscribe']!;
    const match = /^<(http:\/\/[^>]+\/u\/([A-Za-z0-9_-]+))>, <mailto:unsubscribe@intel-mail-one\.example\?subject=unsubscribe%20([A-Za-z0-9_-]+)>$/.exec(header);
    expect(match, header).not.toBeNull();
    [, link, token] = match as unknown as [string, string, string];
    expect(link.startsWith(`${daemon.url}/u/`)).toBe(true);
    expect(match![3]).toBe(token);
    expect(readLink(SECRET, token)?.kind).toBe('u');
    expect(token.toLowerCase()).not.toContain('acme');
    expect(Buffer.from(token, 'base64url').toString('latin1').toLowerCase()).not.toContain('acme');
  }, 60_000);

  it('shows a confirmation page on GET and suppresses nothing', async () => {
    for (let i = 0; i < 2; i++) {
      const page = await fetch(link);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      const html = await page.text();
      expect(html).toMatch(new RegExp(`<form method="post" action="/u/${token}">`));
      expect(html).toContain('<button type="submit"');
      expect(html).not.toMatch(/<script/i);
    }
    expect(await suppressions()).toEqual([]);
    expect(await unsubscribeEvents()).toEqual([]);
  });

  it('answers a tampered or unknown token with a plain 404 and records nothing', async () => {
    const tampered = `${token.slice(0, 10)}${token[10] === 'A' ? 'B' : 'A'}${token.slice(11)}`;
    const unknown = signLink(SECRET, { kind: 'u', id: ID, issuedAt: new Date() });
    const clickKind = signLink(SECRET, { kind: 'c', id: readLink(SECRET, token)!.id, issuedAt: new Date() });
    for (const wrong of [tampered, unknown, clickKind, token.slice(0, -1), 'x']) {
      const get = await fetch(`${daemon.url}/u/${wrong}`);
      expect(get.status, wrong).toBe(404);
      expect(get.headers.get('content-type')).toContain('text/plain');
      const post = await fetch(`${daemon.url}/u/${wrong}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      expect(post.status, wrong).toBe(404);
    }
    expect(await suppressions()).toEqual([]);
    expect(await unsubscribeEvents()).toEqual([]);
  });

  it('suppresses the address at once on a one-click POST, records the event once, and answers 200', async () => {
    for (let i = 0; i < 2; i++) {
      const answer = await fetch(link, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(await answer.text()).toContain('unsubscribed');
    }
    expect(await suppressions()).toEqual([{ address: 'founder@acme-widgets.test', reason: 'unsubscribed', source: 'one-click' }]);
    expect(await unsubscribeEvents()).toEqual([{ key: 'founder@acme-widgets.test' }]);
  });

  it('skips the next marketing email to that address with the reason, and still sends a transactional one', async () => {
    mailbox.clear();
    const run = await mail([{ to: 'founder@acme-widgets.test' }, { to: 'FOUNDER@acme-widgets.test', transactional: true }, { to: 'other@globex.test' }, { to: 'third@initech.test' }]);
    expect(run.status).toBe('completed');
    expect(await itemsOf(run.run_id)).toEqual([
      { item_key: 'FOUNDER@acme-widgets.test', status: 'succeeded', error: null },
      { item_key: 'founder@acme-widgets.test', status: 'skipped', error: 'suppressed (unsubscribed)' },
      { item_key: 'other@globex.test', status: 'succeeded', error: null },
      { item_key: 'third@initech.test', status: 'succeeded', error: null },
    ]);
    const arrived = await mailbox.waitFor(3);
    const transactional = arrived.find((m) => m.envelope.to[0] === 'FOUNDER@acme-widgets.test')!;
    expect(transactional.headers['list-unsubscribe']).toBeUndefined();
    expect(arrived.find((m) => m.envelope.to[0] === 'other@globex.test')!.headers['list-unsubscribe']).toMatch(/^<http:\/\/.+\/u\//);
    expect(arrived).toHaveLength(3);
  }, 60_000);

  it('skips the suppressed address in a dry run too, and plans the others with the unsubscribe headers', async () => {
    const recipients = [{ to: 'founder@acme-widgets.test', transactional: false }, { to: 'fresh@hooli.test', transactional: false }];
    const outDir = join(state, 'dry');
    const dry = await executeRun({ pipeline: mailing, config, store: new RunStore(db), clock: systemClock, resources, inputs: { recipients }, dryRun: true, outDir });
    expect(dry.skipped).toEqual([{ step: 'send', reason: 'suppressed (unsubscribed)', n: 1 }]);
    expect(dry.effects.map((e) => e.item)).toEqual(['fresh@hooli.test']);
    expect(JSON.stringify(readdirRecursive(outDir).map((f) => readFileSync(f, 'utf8')))).toContain('List-Unsubscribe-Post: List-Unsubscribe=One-Click');
  });

  it('suppresses from the confirmation button too, recorded as such', async () => {
    const other = mailbox.messages.find((m) => m.envelope.to[0] === 'other@globex.test')!;
    const otherLink = /^<([^>]+)>/.exec(other.headers['list-unsubscribe']!)![1]!;
    const answer = await fetch(otherLink, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'confirm=yes' });
    expect(answer.status).toBe(200);
    expect(await suppressions()).toContainEqual({ address: 'other@globex.test', reason: 'unsubscribed', source: 'confirmation page' });
  });

  it('takes the one-click POST as multipart form data too', async () => {
    const third = mailbox.messages.find((m) => m.envelope.to[0] === 'third@initech.test')!;
    const thirdLink = /^<([^>]+)>/.exec(third.headers['list-unsubscribe']!)![1]!;
    const form = new FormData();
    form.set('List-Unsubscribe', 'One-Click');
    expect((await fetch(thirdLink, { method: 'POST', body: form })).status).toBe(200);
    expect(await suppressions()).toContainEqual({ address: 'third@initech.test', reason: 'unsubscribed', source: 'one-click' });
  });
});

/** The mailing pipeline on a fresh database and SMTP sandbox, run in-process (no daemon); closed after the suite. */
function mailingSetup(open: () => Promise<Database>, env: Record<string, string>, smtp: Parameters<typeof startSmtpSandbox>[0] = {}) {
  const t = {} as { db: Database; resources: Resources; mailbox: SmtpSandbox; state: string; mailing: Pipeline; config: EngineConfig };
  beforeAll(async () => {
    t.db = await open();
    t.state = mkdtempSync(join(tmpdir(), 'flows-mailing-'));
    const registry = createRegistry();
    const loaded = loadConfig(readFileSync('pipelines/flows.config.yaml', 'utf8'), 'flows.config.yaml', env, registry);
    t.mailbox = await startSmtpSandbox(smtp);
    // The loaded object itself, not a copy: it knows which variables were unset.
    t.config = loaded.config!;
    t.config.connectors = { ...t.config.connectors, smtp: { host: t.mailbox.host, port: t.mailbox.port } };
    t.mailing = loadPipeline(MAILING, 'mailing.yaml', { registry, config: t.config }).pipeline!;
    t.resources = new Resources({ config: t.config, env, log: silentLogger, clock: systemClock, projectDir: 'pipelines', stateDir: t.state });
  });
  afterAll(async () => {
    await t.resources?.close();
    await t.mailbox?.close();
    await t.db?.close();
    if (t.state) rmSync(t.state, { recursive: true, force: true });
  });
  return t;
}

describe.each(testDatabases)('a marketing email with no link secret on $name', ({ open }) => {
  const t = mailingSetup(open, {});

  it('is not sent, in the run or the dry run, and the error names the variable to set; a transactional one goes', async () => {
    const recipients = [{ to: 'founder@acme-widgets.test', transactional: false }, { to: 'buyer@acme-widgets.test', transactional: true }];
    const expected = [
      { item_key: 'buyer@acme-widgets.test', status: 'succeeded' },
      { item_key: 'founder@acme-widgets.test', status: 'failed', error: expect.stringContaining('email.link_secret reads FLOWS_LINK_SECRET, which is not set') },
    ];
    const store = new RunStore(t.db);
    const itemsOf = (runId: string) => t.db.query('SELECT item_key, status, error FROM flow_items WHERE run_id = $1 ORDER BY item_key', [runId]);
    const dry = await executeRun({ pipeline: t.mailing, config: t.config, store, clock: systemClock, resources: t.resources, inputs: { recipients }, dryRun: true, outDir: join(t.state, 'dry') });
    expect(await itemsOf(dry.run_id)).toMatchObject(expected);
    const real = await executeRun({ pipeline: t.mailing, config: t.config, store, clock: systemClock, resources: t.resources, inputs: { recipients } });
    expect(await itemsOf(real.run_id)).toMatchObject(expected);
    expect(t.mailbox.messages.map((m) => m.envelope.to)).toEqual([['buyer@acme-widgets.test']]);
    expect(await t.db.query('SELECT address FROM email_addresses')).toEqual([]);
  }, 60_000);
});

describe.each(testDatabases)('a hard bounce on $name', ({ open }) => {
  // The receiving server refuses one recipient for good at RCPT TO (550 5.1.1, no such mailbox).
  const t = mailingSetup(open, { FLOWS_LINK_SECRET: SECRET }, { rejectRecipients: ['Gone@Acme-Widgets.test'] });

  it('suppresses the refused address with an email.bounced event, skips its item, and sends it no marketing email again', async () => {
    const store = new RunStore(t.db);
    const itemsOf = (runId: string) => t.db.query('SELECT item_key, status, error FROM flow_items WHERE run_id = $1 ORDER BY item_key', [runId]);
    const recipients = [{ to: 'gone@acme-widgets.test', transactional: false }, { to: 'ann@acme-widgets.test', transactional: false }];
    const first = await executeRun({ pipeline: t.mailing, config: t.config, store, clock: systemClock, resources: t.resources, inputs: { recipients } });
    expect(first.status).toBe('completed');
    expect(await itemsOf(first.run_id)).toEqual([
      { item_key: 'ann@acme-widgets.test', status: 'succeeded', error: null },
      { item_key: 'gone@acme-widgets.test', status: 'skipped', error: 'hard bounce (550): the address is suppressed' },
    ]);
    expect(await t.db.query('SELECT address, reason, source FROM email_suppressions')).toEqual([{ address: 'gone@acme-widgets.test', reason: 'hard_bounce', source: 'smtp 550' }]);
    const events = await t.db.query<{ key: string; payload: { kind: string; code: number; response: string } }>("SELECT key, payload FROM flow_events WHERE type = 'email.bounced'");
    expect(events).toMatchObject([{ key: 'gone@acme-widgets.test', payload: { kind: 'hard', code: 550 } }]);
    expect(events[0]!.payload.response).toContain('5.1.1');

    // The next marketing email is not even tried: the server sees no second RCPT TO for it.
    const again = await executeRun({ pipeline: t.mailing, config: t.config, store, clock: systemClock, resources: t.resources, inputs: { recipients: [{ to: 'gone@acme-widgets.test', transactional: false }] } });
    expect(await itemsOf(again.run_id)).toEqual([{ item_key: 'gone@acme-widgets.test', status: 'skipped', error: 'suppressed (hard_bounce)' }]);
    expect(await t.db.query("SELECT 1 FROM flow_events WHERE type = 'email.bounced'")).toHaveLength(1);
    expect(t.mailbox.messages.map((m) => m.envelope.to)).toEqual([['ann@acme-widgets.test']]);
  }, 60_000);
});
