import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { inspect, promisify } from 'node:util';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type EmailMessage, parseSmtpConfig, RecipientRefusedError, SmtpMailer, smtpSettingsFromUrl } from '../connectors/smtp/client.ts';
import { composer } from '../connectors/smtp/composer.ts';
import { type SmtpSandbox, type SmtpSandboxOptions, startSmtpSandbox } from '../connectors/smtp/sandbox.ts';
import { NonRetriableError } from '../engine/errors.ts';
import { dkimRecord } from '../steps/email/mailers.ts';

const PDF = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.from([0x25, 0xe2, 0xe3, 0xcf, 0xd3, 0x0a, 0x00, 0xff]), Buffer.from('\n%%EOF\n')]);

const UNSUBSCRIBE = '<https://reports.example/unsubscribe/tok_8f3a>, <mailto:unsubscribe@intel-mail-one.example?subject=unsubscribe%20tok_8f3a>';

function report(overrides: Partial<EmailMessage> = {}): EmailMessage {
  return {
    from: { name: 'Search Intel', email: 'reports@intel-mail-one.example' },
    to: 'buyer@acme.example',
    subject: 'Acme vs. Rivals — your Q3 visibility report',
    html: '<h1>Acme</h1><p>Visibility rose <b>12%</b> this quarter.</p>',
    text: 'Acme\n\nVisibility rose 12% this quarter.',
    headers: { 'List-Unsubscribe': UNSUBSCRIBE, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
    attachments: [{ filename: 'acme-q3.pdf', content: PDF, contentType: 'application/pdf' }],
    ...overrides,
  };
}

const run = promisify(execFile);
const opened: { close(): Promise<void> }[] = [];

async function sandbox(options: SmtpSandboxOptions = {}): Promise<SmtpSandbox> {
  const sb = await startSmtpSandbox(options);
  opened.push(sb);
  return sb;
}

function mailer(sb: SmtpSandbox, extra: Partial<ConstructorParameters<typeof SmtpMailer>[0]> = {}): SmtpMailer {
  const m = new SmtpMailer({ host: sb.host, port: sb.port, ...extra });
  opened.unshift(m); // mailers close before the sandboxes they talk to
  return m;
}

afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
});

describe('SmtpMailer against the sandbox', () => {
  it('delivers html, text, a PDF and the one-click unsubscribe headers intact', async () => {
    const outDir = await mkdtemp(join(tmpdir(), 'flows-smtp-'));
    try {
      const sb = await sandbox({ outDir });
      const result = await mailer(sb).send(report({ messageId: '<report-acme-q3@intel-mail-one.example>' }));
      expect(result).toEqual({
        messageId: '<report-acme-q3@intel-mail-one.example>',
        accepted: ['buyer@acme.example'],
        rejected: [],
        response: expect.stringMatching(/^250 /),
      });

      const [got] = await sb.waitFor(1, 2000);
      expect(got!.envelope).toEqual({ from: 'reports@intel-mail-one.example', to: ['buyer@acme.example'] });
      expect(got!.messageId).toBe('<report-acme-q3@intel-mail-one.example>');
      expect(got!.subject).toBe('Acme vs. Rivals — your Q3 visibility report');
      expect(got!.from).toEqual({ name: 'Search Intel', email: 'reports@intel-mail-one.example' });
      expect(got!.to).toEqual([{ name: '', email: 'buyer@acme.example' }]);
      expect(got!.html).toBe('<h1>Acme</h1><p>Visibility rose <b>12%</b> this quarter.</p>');
      expect(got!.text).toBe('Acme\n\nVisibility rose 12% this quarter.');
      expect(got!.headers['list-unsubscribe']).toBe(UNSUBSCRIBE);
      expect(got!.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
      expect(got!.attachments).toHaveLength(1);
      expect(got!.attachments[0]).toMatchObject({ filename: 'acme-q3.pdf', contentType: 'application/pdf', size: PDF.length });
      expect(got!.attachments[0]!.content.equals(PDF)).toBe(true);
      expect(await readFile(got!.file!)).toEqual(got!.raw);
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  });

  it('names its .eml files so that sandboxes sharing one outbox (one per process) never overwrite each other', async () => {
    const outDir = await mkdtemp(join(tmpdir(), 'flows-smtp-'));
    try {
      const [first, second] = [await sandbox({ outDir }), await sandbox({ outDir })];
      await mailer(first).send(report({ subject: 'from the demo' }));
      await mailer(second).send(report({ subject: 'from the daemon' }));
      await mailer(second).send(report({ subject: 'from the daemon, again' }));
      const files = [...(await first.waitFor(1, 2000)), ...(await second.waitFor(2, 2000))].map((m) => m.file!);
      expect(new Set(files).size).toBe(3);
      expect((await readdir(outDir)).sort()).toEqual(files.map((f) => basename(f)).sort());
      for (const m of [...first.messages, ...second.messages]) expect(await readFile(m.file!)).toEqual(m.raw);
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  });

  it('sends 5 messages at once through a pool of 2 connections, and all arrive', async () => {
    const sb = await sandbox({ faults: { latencyMs: 20 } });
    const m = mailer(sb, { pool_size: 2 });
    const buyers = ['a', 'b', 'c', 'd', 'e'].map((x) => `buyer-${x}@acme.example`);
    const results = await Promise.all(buyers.map((to) => m.send(report({ to, subject: `Report for ${to}` }))));
    expect(results.map((r) => r.accepted)).toEqual(buyers.map((b) => [b]));

    const got = await sb.waitFor(5, 2000);
    expect(got.map((g) => g.envelope.to[0]).sort()).toEqual(buyers);
    expect(got.every((g) => g.attachments[0]!.content.equals(PDF))).toBe(true);
    expect(new Set(got.map((g) => g.sessionId)).size).toBeLessThanOrEqual(2);
  });

  it('a refused recipient is a NonRetriableError naming the reply; a partly refused message is sent to the rest', async () => {
    const sb = await sandbox({ rejectRecipients: ['Gone@Acme.example'] });
    const m = mailer(sb);
    const err = await m.send(report({ to: 'gone@acme.example' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetriableError);
    // A hard bounce, told apart from refusals that say nothing about the address.
    expect(err).toBeInstanceOf(RecipientRefusedError);
    expect(err).toMatchObject({ code: 550, recipients: ['gone@acme.example'] });
    expect((err as Error).message).toMatch(/^smtp 127\.0\.0\.1:\d+: .*550 5\.1\.1 <gone@acme\.example>: mailbox unavailable \(the server will refuse this message again\)$/);
    expect(sb.messages).toHaveLength(0);

    const partly = await m.send(report({ to: ['gone@acme.example', { name: 'Ann Buyer', email: 'ann@acme.example' }] }));
    expect(partly).toMatchObject({ accepted: ['ann@acme.example'], rejected: ['gone@acme.example'] });
    expect(sb.messages.map((g) => g.envelope.to)).toEqual([['ann@acme.example']]);
  });

  // 451, 421, 554, a dropped line, a server that never replies and latency are the connector suite's (test/connectors.test.ts).
  it('a temporary reply says so in the message', async () => {
    const sb = await sandbox({ faults: { error: { first: 1 } } });
    const err = await mailer(sb).send(report()).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toMatch(/451 4\.3\.0 local error in processing, try again later \(temporary, try again later\)$/);
  });

  it('a refused connection is retryable', async () => {
    const sb = await startSmtpSandbox();
    await sb.close();
    const err = await mailer(sb).send(report()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toContain('ECONNREFUSED');
  });

  describe('with sign-in required', () => {
    const auth = { user: 'reports', pass: 'Tr0ub4dor&3-smtp' };

    it('sends with the right credentials', async () => {
      const sb = await sandbox({ auth });
      await mailer(sb, { auth }).send(report());
      expect(sb.messages[0]!.user).toBe('reports');
    });

    it('a wrong password is a NonRetriableError; neither it nor the mailer shows the password', async () => {
      const sb = await sandbox({ auth });
      const wrong = { user: 'reports', pass: 'wrong-Pa55word!' };
      const m = mailer(sb, { auth: wrong });
      const err = await m.send(report()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NonRetriableError);
      expect((err as Error).message).toMatch(/535 Authentication credentials invalid \(check auth\.user and auth\.pass\)$/);
      const everything = `${(err as Error).message} ${(err as Error).stack} ${JSON.stringify((err as Error).cause)} ${inspect(m)} ${JSON.stringify(m)}`;
      for (const secret of [wrong.pass, Buffer.from(wrong.pass).toString('base64'), Buffer.from(`\0reports\0${wrong.pass}`).toString('base64')]) {
        expect(everything).not.toContain(secret);
      }
      expect(sb.messages).toHaveLength(0);
    });

    it('no credentials at all is a NonRetriableError saying what to set', async () => {
      const sb = await sandbox({ auth });
      const err = await mailer(sb).send(report()).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NonRetriableError);
      expect((err as Error).message).toMatch(/530 .*\(the server requires sign-in: set auth\.user and auth\.pass\)$/);
    });
  });

  it('an aborted send rejects with the abort reason and sends nothing', async () => {
    const sb = await sandbox();
    const reason = new Error('run cancelled');
    const err = await mailer(sb).send(report(), { signal: AbortSignal.abort(reason) }).catch((e: unknown) => e);
    expect(err).toBe(reason);
    expect(sb.messages).toHaveLength(0);
  });

  it('refuses a header value with a line break before connecting', async () => {
    const sb = await sandbox();
    const err = await mailer(sb).send(report({ headers: { 'X-Report': 'acme\r\nBcc: everyone@example.com' } })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toBe('email header X-Report: the value contains a line break, which would start a new header; remove it');
  });
});

describe('the message composer (a worker thread builds and signs)', () => {
  it('a worker that dies fails the send it was building as retriable, and the next send gets a new one', async () => {
    const sb = await sandbox();
    const m = mailer(sb);
    await m.send(report());
    // A large attachment keeps the worker busy long enough to be stopped mid-build.
    const big = { filename: 'big.pdf', content: Buffer.alloc(40 * 1024 * 1024, 1), contentType: 'application/pdf' };
    const sending = m.send(report({ messageId: '<lost@intel-mail-one.example>', attachments: [big] })).catch((e: unknown) => e);
    await vi.waitFor(() => expect(composer.building).toBe(1), { interval: 1 });
    await composer.stop();
    const err = await sending;
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toMatch(/^smtp 127\.0\.0\.1:\d+: the message composer exited/);
    await m.send(report({ messageId: '<next@intel-mail-one.example>' }));
    expect(sb.messages.map((x) => x.messageId)).toEqual([expect.any(String), '<next@intel-mail-one.example>']);
  });

  it('a DKIM key that does not parse fails the send as non-retriable, naming the domain; nothing goes out unsigned', async () => {
    const sb = await sandbox();
    const m = mailer(sb);
    const dkim = { domain: 'intel-mail-one.example', selector: 's1', privateKey: '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n' };
    const err = await m.send(report({ dkim })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonRetriableError);
    expect((err as Error).message).toMatch(/^smtp 127\.0\.0\.1:\d+: the DKIM private key of intel-mail-one\.example \(selector s1\) is not a PEM private key: /);
    const ed = generateKeyPairSync('ed25519', { publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const notRsa = await m.send(report({ dkim: { ...dkim, privateKey: ed.privateKey } })).catch((e: unknown) => e);
    expect(notRsa).toBeInstanceOf(NonRetriableError);
    expect((notRsa as Error).message).toMatch(/is an ed25519 key; messages are signed with rsa-sha256/);
    expect(sb.messages).toHaveLength(0);
  });

  it('signs with the parsed key: several sends at once, each signature verified by an independent verifier', async () => {
    const sb = await sandbox();
    const m = mailer(sb);
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const dkim = { domain: 'intel-mail-one.example', selector: 's1', privateKey };
    const record = dkimRecord(publicKey);
    const resolver = async (name: string, type: string) => {
      if (type === 'TXT' && name === 's1._domainkey.intel-mail-one.example') return [[record]];
      throw Object.assign(new Error(`no ${type} record for ${name}`), { code: 'ENOTFOUND' });
    };
    await Promise.all(['a', 'b', 'c'].map((x) => m.send(report({ to: `buyer-${x}@acme.example`, dkim }))));
    const got = await sb.waitFor(3, 2000);
    for (const g of got) {
      const verified = await dkimVerify(g.raw, { resolver });
      expect(verified.results.map((r: { status: { result: string } }) => r.status.result)).toEqual(['pass']);
    }
  });

  it('an idle worker never keeps the process alive: a script that sends and never closes its mailer exits', async () => {
    const sb = await sandbox();
    const script = `
      import { SmtpMailer } from ${JSON.stringify(join(process.cwd(), 'connectors/smtp/client.ts'))};
      const m = new SmtpMailer({ host: '127.0.0.1', port: ${sb.port}, socket_timeout: '1s' });
      await m.send({ from: { email: 'reports@intel-mail-one.example' }, to: 'buyer@acme.example', subject: 's', html: '<p>h</p>', text: 'h' });
      console.log('sent');`;
    const dir = await mkdtemp(join(tmpdir(), 'flows-composer-'));
    try {
      await writeFile(join(dir, 'send.mts'), script);
      // The pool's idle connection ends after its 1 s socket timeout; then only the worker could
      // keep the process alive, and a process kept alive is killed at the timeout (the run rejects).
      const { stdout } = await run(process.execPath, ['--import', 'tsx', join(dir, 'send.mts')], { timeout: 20_000 });
      expect(stdout.trim()).toBe('sent');
      expect(sb.messages).toHaveLength(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('SMTP settings', () => {
  it('fill in defaults', () => {
    expect(parseSmtpConfig({ host: 'smtp.example.com', secure: true })).toMatchObject({ port: 465, pool_size: 5, require_tls: false });
    expect(parseSmtpConfig({ host: 'smtp.example.com' }).port).toBe(587);
  });

  it('list every problem, without the password', () => {
    const bad = { host: '', port: 'abc', auth: { user: 'reports', pass: 42 }, pool: 3 };
    expect(() => parseSmtpConfig(bad, 'connectors.smtp')).toThrow(NonRetriableError);
    expect(() => parseSmtpConfig(bad, 'connectors.smtp')).toThrow(
      'connectors.smtp: pool: unknown key (allowed: host, port, secure, require_tls, auth, pool_size, messages_per_connection, connect_timeout, greeting_timeout, socket_timeout); ' +
        'host: expected string length greater or equal to 1, got ""; port: expected integer, got "abc"; auth.pass: expected string (value not shown)',
    );
  });
});

describe("a mailbox's SMTP URL", () => {
  const where = 'email.domains.one.example.mailboxes.ana@one.example.smtp';
  const settings = (url: string) => smtpSettingsFromUrl(url, where);

  it('requires STARTTLS for credentials over smtp://, whatever the host, unless the URL says require_tls=false', () => {
    for (const host of ['localhost', '127.0.0.1', 'smtp.example.com']) {
      expect(settings(`smtp://ana:pw@${host}:2525`)).toMatchObject({ host, port: 2525, secure: false, require_tls: true, auth: { user: 'ana', pass: 'pw' } });
      expect(settings(`smtp://ana:pw@${host}:2525?require_tls=false`)).toMatchObject({ host, secure: false, require_tls: false });
    }
    expect(settings('smtps://ana:pw@smtp.example.com')).toMatchObject({ port: 465, secure: true, require_tls: false });
    expect(settings('smtp://relay.example.com')).toMatchObject({ port: 587, require_tls: false });
    expect(settings('smtp://relay.example.com?require_tls=true')).toMatchObject({ require_tls: true });
  });

  it('names a parameter it does not know, or a value that is not true or false, without the password', () => {
    expect(() => settings('smtp://ana:s3cret@localhost?require_tls=no')).toThrow(`${where}: require_tls=no in the URL: write require_tls=true or require_tls=false`);
    expect(() => settings('smtp://ana:s3cret@localhost?pool=3')).toThrow(`${where}: unknown URL parameter "pool" (the one there is: require_tls=false)`);
    expect(() => settings('smtp://ana:s3cret@localhost?pool=3')).not.toThrow(/s3cret/);
  });

  it('sends to a local server without STARTTLS only when the URL says require_tls=false', async () => {
    const auth = { user: 'ana', pass: 'pw-local' };
    const sb = await sandbox({ auth });
    const url = `smtp://${auth.user}:${auth.pass}@${sb.host}:${sb.port}`;
    const strict = new SmtpMailer(settings(url), where);
    opened.unshift(strict);
    await expect(strict.send(report())).rejects.toThrow(/STARTTLS/i);
    expect(sb.messages).toHaveLength(0);
    const local = new SmtpMailer(settings(`${url}?require_tls=false`), where);
    opened.unshift(local);
    await local.send(report());
    expect(sb.messages[0]!.user).toBe('ana');
  });
});
