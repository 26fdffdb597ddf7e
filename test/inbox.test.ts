import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseImapUrl } from '../connectors/imap/client.ts';
import { type EngineConfig, loadConfig } from '../engine/config.ts';
import type { Database } from '../engine/db/connect.ts';
import { loadPipeline } from '../engine/pipeline/load.ts';
import type { Pipeline } from '../engine/pipeline/types.ts';
import { executeRun } from '../engine/executor/run.ts';
import { RunStore } from '../engine/store/index.ts';
import { createRegistry } from '../steps/index.ts';
import { first, testDatabases } from './helpers/db.ts';
import { type Dovecot, type DovecotUser, startDovecot } from './helpers/dovecot.ts';

/**
 * email.inbox against a real IMAP server on loopback (dovecot): the fixtures are appended to
 * INBOX, the step reads and records each, the cursor remembers the last UID (a second run
 * reads nothing new), a UIDVALIDITY change starts over without recording anything twice,
 * one unreadable message does not stop the rest, and a dry run reads nothing.
 */

const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', 'mail', name));
const ANA: DovecotUser = { user: 'ana.ruiz@intel-mail-one.example', pass: 'pw-ana-0b4f' };
const BEN: DovecotUser = { user: 'ben.carter@intel-mail-one.example', pass: 'pw-ben-9c2e' };

const PIPELINE = `
name: inbox
trigger: { schedule: { cron: "*/10 * * * *" } }
steps:
  - id: inbox
    uses: email.inbox
`;

async function append(dovecot: Dovecot, who: DovecotUser, messages: Buffer[]): Promise<void> {
  const s = parseImapUrl(dovecot.url(who));
  const client = new ImapFlow({ host: s.host, port: s.port, secure: false, auth: { user: s.user, pass: s.pass }, logger: false });
  await client.connect();
  for (const m of messages) await client.append('INBOX', m);
  await client.logout();
}

describe('imap URLs', () => {
  it('reads host, port (993 and 143 by default), TLS and the decoded credentials', () => {
    expect(parseImapUrl('imaps://ana.ruiz%40intel-mail-one.example:p%2Fw%3Ad@imap.example.test')).toEqual({ host: 'imap.example.test', port: 993, secure: true, user: 'ana.ruiz@intel-mail-one.example', pass: 'p/w:d' });
    expect(parseImapUrl('imap://ana:pw@127.0.0.1:1143')).toEqual({ host: '127.0.0.1', port: 1143, secure: false, user: 'ana', pass: 'pw' });
    expect(parseImapUrl('imap://ana:pw@mail.test').port).toBe(143);
  });

  it('says what is wrong and how to write it, never the password', () => {
    expect(() => parseImapUrl('smtps://ana:secret@mail.test', 'mailboxes.ana.imap')).toThrow('mailboxes.ana.imap: expected an imaps:// or imap:// URL, got smtps:// (write imaps://user:password@host:993)');
    expect(() => parseImapUrl('imaps://mail.test', 'x')).toThrow('x: the URL names no user to sign in as (write imaps://user:password@mail.test)');
    expect(() => parseImapUrl('not a url', 'x')).toThrow('x: not a URL');
  });
});

describe.each(testDatabases)('email.inbox over IMAP on $name', ({ open }) => {
  let dovecot: Dovecot;
  let db: Database;
  let config: EngineConfig;
  let pipeline: Pipeline;
  let state: string;

  beforeAll(async () => {
    [dovecot, db] = await Promise.all([startDovecot([ANA, BEN]), open()]);
    state = mkdtempSync(join(tmpdir(), 'flows-inbox-'));
    const registry = createRegistry();
    const env = { FLOWS_LINK_SECRET: 'link-secret-for-tests-0123456789abcdef', IMAP_URL_ANA: dovecot.url(ANA), IMAP_URL_BEN: dovecot.url(BEN) };
    const text = readFileSync('pipelines/flows.config.yaml', 'utf8')
      .replace('ana.ruiz@intel-mail-one.example: { name: Ana Ruiz,', 'ana.ruiz@intel-mail-one.example: { name: Ana Ruiz, imap: "${{ env.IMAP_URL_ANA }}",')
      .replace('ben.carter@intel-mail-one.example: { name: Ben Carter,', 'ben.carter@intel-mail-one.example: { name: Ben Carter, imap: "${{ env.IMAP_URL_BEN }}",');
    const loaded = loadConfig(text, 'flows.config.yaml', env, registry);
    expect(loaded.diagnostics).toEqual([]);
    config = loaded.config!;
    const loadedPipeline = loadPipeline(PIPELINE, 'inbox.yaml', { registry, config });
    expect(loadedPipeline.diagnostics).toEqual([]);
    pipeline = loadedPipeline.pipeline!;
  }, 60_000);

  afterAll(async () => {
    await db?.close();
    await dovecot?.stop();
    if (state) rmSync(state, { recursive: true, force: true });
  });

  const run = async (dryRun = false) => {
    const result = await executeRun({ pipeline, config, store: new RunStore(db), dryRun, ...(dryRun ? { outDir: join(state, `dry-${Date.now()}`) } : {}) });
    expect(result.status, JSON.stringify(result)).toBe('completed');
    return result;
  };
  const outputOf = async (runId: string) => (await first(db.query<{ output: Record<string, unknown> }>("SELECT output FROM flow_effects WHERE run_id = $1 AND kind = 'email.inbox'", [runId]))).output;
  const cursors = () => db.query<{ mailbox: string; uid_validity: string; last_uid: string }>('SELECT mailbox, uid_validity, last_uid FROM email_inbox_cursors ORDER BY mailbox');

  it('plans in a dry run which mailboxes it would read, and reads nothing', async () => {
    await append(dovecot, ANA, [fixture('gmail-reply.eml')]);
    const dry = await run(true);
    expect(dry.effects).toEqual([expect.objectContaining({ kind: 'email.inbox', summary: 'read the INBOX of 2 mailboxes: ana.ruiz@intel-mail-one.example, ben.carter@intel-mail-one.example' })]);
    expect(await db.query('SELECT 1 FROM email_inbound')).toEqual([]);
    expect(await cursors()).toEqual([]);
  });

  it('reads and classifies every new message, one unreadable among them, and moves each cursor to the last UID', async () => {
    const junk = Array.from({ length: 20_000 }, () => 'a'.repeat(60)).join('\r\n ');
    await append(dovecot, ANA, [
      fixture('exchange-out-of-office.eml'),
      fixture('postfix-hard-bounce.eml'),
      Buffer.from(`From: x@y.test\r\nSubject: hi\r\nX-Junk: ${junk}\r\n\r\nbody\r\n`),
      fixture('exim-delay.eml'),
      fixture('reply-no-in-reply-to.eml'),
    ]);
    await append(dovecot, BEN, [fixture('gmail-bounce.eml'), fixture('arf-complaint.eml')]);
    const result = await run();
    expect(await outputOf(result.run_id)).toEqual({
      kinds: { reply: 2, auto_reply: 1, bounce: 2, delay: 1, complaint: 1, other: 1 },
      seen: 0,
      paused: [],
      mailboxes: [
        { mailbox: ANA.user, read: 6, reset: false },
        { mailbox: BEN.user, read: 2, reset: false },
      ],
    });
    expect(result.notes).toEqual([{ step: 'inbox', text: '8 new messages (2 reply, 1 auto_reply, 2 bounce, 1 delay, 1 complaint, 1 other)' }]);
    const inbound = await db.query<{ mailbox: string; kind: string }>('SELECT mailbox, kind FROM email_inbound ORDER BY mailbox, kind');
    expect(inbound.map((r) => `${r.mailbox.split('@')[0]} ${r.kind}`)).toEqual([
      'ana.ruiz auto_reply',
      'ana.ruiz bounce',
      'ana.ruiz delay',
      'ana.ruiz other',
      'ana.ruiz reply',
      'ana.ruiz reply',
      'ben.carter bounce',
      'ben.carter complaint',
    ]);
    expect(await first(db.query("SELECT detail->>'problem' AS problem FROM email_inbound WHERE kind = 'other'"))).toEqual({ problem: 'unreadable: Max header size for a MIME node exceeded' });
    expect((await cursors()).map((c) => [c.mailbox, Number(c.last_uid)])).toEqual([
      [ANA.user, 6],
      [BEN.user, 2],
    ]);
    expect(await db.query("SELECT address, reason FROM email_suppressions WHERE address = 'founder@acme-widgets.test'")).toEqual([{ address: 'founder@acme-widgets.test', reason: 'hard_bounce' }]);
  });

  it('reads nothing new on a second run, and only the newer message after one more arrives', async () => {
    const again = await run();
    expect(await outputOf(again.run_id)).toMatchObject({ kinds: { reply: 0, auto_reply: 0, bounce: 0, delay: 0, complaint: 0, other: 0 }, seen: 0, mailboxes: [{ read: 0 }, { read: 0 }] });
    await append(dovecot, BEN, [fixture('dsn-two-recipients.eml')]);
    const third = await run();
    expect(await outputOf(third.run_id)).toMatchObject({ kinds: { bounce: 1 }, mailboxes: [{ mailbox: ANA.user, read: 0 }, { mailbox: BEN.user, read: 1 }] });
    expect((await cursors()).map((c) => Number(c.last_uid))).toEqual([6, 3]);
  });

  it('starts over when the UIDVALIDITY changed, recording nothing twice', async () => {
    await db.query("UPDATE email_inbox_cursors SET uid_validity = '1' WHERE mailbox = $1", [BEN.user]);
    const result = await run();
    expect(await outputOf(result.run_id)).toMatchObject({ seen: 3, kinds: { bounce: 0, complaint: 0 }, mailboxes: [{ read: 0, reset: false }, { mailbox: BEN.user, read: 3, reset: true }] });
    const [, ben] = await cursors();
    expect(ben!.uid_validity).not.toBe('1');
    expect(Number(ben!.last_uid)).toBe(3);
    expect(await db.query('SELECT 1 FROM email_inbound WHERE mailbox = $1', [BEN.user])).toHaveLength(3);
  });

  it('reports a mailbox it cannot sign in to and reads the others', async () => {
    const wrong = structuredClone(config) as EngineConfig & { email: { domains: Record<string, { mailboxes: Record<string, { imap?: string }> }> } };
    wrong.email.domains['intel-mail-one.example']!.mailboxes[BEN.user]!.imap = dovecot.url({ ...BEN, pass: 'not-the-password' });
    const result = await executeRun({ pipeline, config: wrong, store: new RunStore(db) });
    expect(result.status).toBe('completed');
    const output = (await outputOf(result.run_id)) as { mailboxes: { mailbox: string; error?: string }[] };
    expect(output.mailboxes[0]).toEqual({ mailbox: ANA.user, read: 0, reset: false });
    expect(output.mailboxes[1]!.error).toMatch(/^IMAP ben\.carter@intel-mail-one\.example at 127\.0\.0\.1:\d+: sign-in refused/);
    expect(output.mailboxes[1]!.error).not.toContain('not-the-password');
  });
});
