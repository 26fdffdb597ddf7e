import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseInbound } from '../steps/email/inbound.ts';

/**
 * Mail that comes back to a mailbox, told apart as receiving servers and people send it:
 * delivery status notifications (RFC 3464) as Postfix, Exim, Exchange, Gmail and a
 * sendmail-style relay write them, a complaint (ARF, RFC 5965), auto-replies (RFC 3834 and
 * what Exchange and others add), and human replies with or without In-Reply-To.
 */

const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', 'mail', name));
/** As an IMAP server hands a message over: CRLF line ends. */
const crlf = (raw: Buffer) => Buffer.from(raw.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');

function message(headers: Record<string, string>, body = 'Thanks, let us talk next week.\n'): string {
  const base = { From: 'Sam Lopez <sam@northwind-tea.test>', To: 'ana.ruiz@intel-mail-one.example', Subject: 'Re: Northwind Tea', Date: 'Wed, 4 Nov 2026 16:42:07 +0100', 'Message-ID': '<m1@northwind-tea.test>' };
  const all = { ...base, ...headers };
  return `${Object.entries(all)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}`;
}

describe('delivery status notifications', () => {
  it('reads a Postfix hard bounce: the recipient, 5.1.1, the remote MTA, the unfolded diagnostic and our Message-ID from the returned headers', async () => {
    const msg = await parseInbound(fixture('postfix-hard-bounce.eml'));
    expect(msg).toMatchObject({
      kind: 'bounce',
      messageId: '<20261103101502.4Yx2Kq0bQzz9sWQ@mail.intel-mail-one.example>',
      from: 'mailer-daemon@mail.intel-mail-one.example',
      subject: 'Undelivered Mail Returned to Sender',
      originalMessageId: '<7c1e9a2b4d6f8a0c2e4b6d8f0a1c3e5b@intel-mail-one.example>',
      references: [],
    });
    expect(msg.inReplyTo).toBeUndefined();
    expect(msg.date?.toISOString()).toBe('2026-11-03T10:15:02.000Z');
    expect(msg.recipients).toEqual([
      {
        address: 'founder@acme-widgets.test',
        originalRecipient: 'founder@acme-widgets.test',
        action: 'failed',
        status: '5.1.1',
        remoteMta: 'mx1.acme-widgets.test',
        diagnostic: '550 5.1.1 <founder@acme-widgets.test>: Recipient address rejected: User unknown in virtual mailbox table',
      },
    ]);
  });

  it('reads the same bounce with the CRLF line ends an IMAP server hands over', async () => {
    const lf = await parseInbound(fixture('postfix-hard-bounce.eml'));
    const crlfParsed = await parseInbound(crlf(fixture('postfix-hard-bounce.eml')));
    expect(crlfParsed).toEqual(lf);
  });

  it('reads an Exim delay (Action before Final-Recipient, lowercase content-type) as a delay, not a bounce', async () => {
    const msg = await parseInbound(fixture('exim-delay.eml'));
    expect(msg.kind).toBe('delay');
    expect(msg.originalMessageId).toBe('<9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b@intel-mail-one.example>');
    expect(msg.references).toEqual(['<9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b@intel-mail-one.example>']);
    expect(msg.recipients).toEqual([
      { address: 'owner@slow-greenhouse.test', action: 'delayed', status: '4.0.0', remoteMta: 'mx.slow-greenhouse.test', diagnostic: '451 4.7.1 Greylisted, please try again later' },
    ]);
  });

  it('reads an Exchange Online NDR (5.1.10, folded From and Message-ID, text/rfc822-headers)', async () => {
    const msg = await parseInbound(fixture('exchange-ndr.eml'));
    expect(msg).toMatchObject({
      kind: 'bounce',
      messageId: '<4c3b2a19-8f7e-4d6c-b5a4-9e8d7c6b5a41@AM9P195MB1234.EURP195.PROD.OUTLOOK.COM>',
      from: 'postmaster@intel-mail-two.example',
      inReplyTo: '<0a1b2c3d4e5f60718293a4b5c6d7e8f9@intel-mail-two.example>',
      originalMessageId: '<0a1b2c3d4e5f60718293a4b5c6d7e8f9@intel-mail-two.example>',
    });
    expect(msg.recipients).toEqual([
      {
        address: 'jane.doe@contoso-bikes.test',
        originalRecipient: 'jane.doe@contoso-bikes.test',
        action: 'failed',
        status: '5.1.10',
        diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
      },
    ]);
  });

  it("reads Gmail's DSN: folded Remote-MTA and Diagnostic-Code, the original as message/rfc822 beside an inline image", async () => {
    const msg = await parseInbound(fixture('gmail-bounce.eml'));
    expect(msg.kind).toBe('bounce');
    expect(msg.originalMessageId).toBe('<5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a@intel-mail-one.example>');
    expect(msg.recipients).toHaveLength(1);
    expect(msg.recipients[0]).toMatchObject({
      address: 'nobody.here.anymore@gmail.com',
      action: 'failed',
      status: '5.1.1',
      remoteMta: 'gmail-smtp-in.l.google.com. (2607:f8b0:4864:20::52b, the server for the domain gmail.com.)',
    });
    expect(msg.recipients[0]!.diagnostic).toMatch(/^550-5\.1\.1 The email account that you tried to reach does not exist\. Please try 550-5\.1\.1 double-checking .* - gsmtp$/);
  });

  it('reads every recipient of one DSN, with lowercase field names, RFC822 in capitals and a quoted report-type', async () => {
    const msg = await parseInbound(fixture('dsn-two-recipients.eml'));
    expect(msg.kind).toBe('bounce');
    expect(msg.originalMessageId).toBe('<8a7b6c5d4e3f20112233445566778899@intel-mail-three.example>');
    expect(msg.recipients).toEqual([
      { address: 'sales@partner-host.test', action: 'failed', status: '5.1.1', remoteMta: 'mail.partner-host.test', diagnostic: '550 5.1.1 <sales@partner-host.test>... User unknown' },
      { address: 'info@partner-host.test', originalRecipient: 'info@partner-host.test', action: 'failed', status: '5.2.2', remoteMta: 'mail.partner-host.test', diagnostic: '552 5.2.2 Mailbox full' },
    ]);
  });

  it('takes a relayed (or delivered) report for what it is: other', async () => {
    const msg = await parseInbound(fixture('postfix-relayed.eml'));
    expect(msg.kind).toBe('other');
    expect(msg.recipients).toEqual([expect.objectContaining({ address: 'hello@tailspin-toys.test', action: 'relayed', status: '2.0.0' })]);
    expect(msg.originalMessageId).toBe('<2b3c4d5e6f708192a3b4c5d6e7f80912@intel-mail-one.example>');
  });

  it('takes a failure with a 4.x.x status (given up after retrying) as a delay: the address itself was not refused', async () => {
    const raw = fixture('postfix-hard-bounce.eml').toString('utf8').replace('Status: 5.1.1', 'Status: 4.4.1').replace('Diagnostic-Code: smtp; 550 5.1.1', 'Diagnostic-Code: X-Postfix; connect to mx1.acme-widgets.test[192.0.2.10]:25: Connection timed out');
    const msg = await parseInbound(raw);
    expect(msg.kind).toBe('delay');
    expect(msg.recipients[0]).toMatchObject({ action: 'failed', status: '4.4.1' });
  });

  it('splits recipients an MTA wrote in one block, without the blank line between them', async () => {
    const raw = fixture('dsn-two-recipients.eml').toString('utf8').replace('last-attempt-date: Fri, 6 Nov 2026 09:00:04 GMT\n\nfinal-recipient', 'final-recipient');
    const msg = await parseInbound(raw);
    expect(msg.recipients.map((r) => [r.address, r.status])).toEqual([
      ['sales@partner-host.test', '5.1.1'],
      ['info@partner-host.test', '5.2.2'],
    ]);
  });

  it('refuses a message whose header block passes 1 MiB, the one thing no parser reads', async () => {
    const junk = Array.from({ length: 20_000 }, () => 'a'.repeat(60)).join('\r\n ');
    await expect(parseInbound(message({ 'X-Junk': junk }))).rejects.toThrow(/header size/);
  });

  it('does not take a plain-text notice from a mailer daemon for a reply', async () => {
    const msg = await parseInbound(
      message({ From: 'MAILER-DAEMON@old-relay.test', Subject: 'failure notice', 'Return-Path': '<>' }, "Hi. This is the qmail-send program at old-relay.test.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n"),
    );
    expect(msg.kind).toBe('other');
  });
});

describe('complaints', () => {
  it('reads an ARF abuse report: the original Message-ID from the inline message/rfc822 and the complaining recipient', async () => {
    const msg = await parseInbound(fixture('arf-complaint.eml'));
    expect(msg).toMatchObject({
      kind: 'complaint',
      originalMessageId: '<1f2e3d4c5b6a79881726354a5b6c7d8e@intel-mail-two.example>',
      feedback: { type: 'abuse', recipient: 'buyer@fabrikam-shop.test' },
      recipients: [],
    });
  });

  it('takes another feedback type (not-spam) for other', async () => {
    const raw = fixture('arf-complaint.eml').toString('utf8').replace('Feedback-Type: abuse', 'Feedback-Type: not-spam');
    expect((await parseInbound(raw)).kind).toBe('other');
  });

  it('takes the recipient from the returned message when the report redacts Original-Rcpt-To', async () => {
    const raw = fixture('arf-complaint.eml').toString('utf8').replace('Original-Rcpt-To: <buyer@fabrikam-shop.test>\n', '');
    expect((await parseInbound(raw)).feedback).toEqual({ type: 'abuse', recipient: 'buyer@fabrikam-shop.test' });
  });
});

describe('auto-replies', () => {
  it("takes Exchange's out-of-office for an auto-reply although it answers our email", async () => {
    const msg = await parseInbound(fixture('exchange-out-of-office.eml'));
    expect(msg).toMatchObject({
      kind: 'auto_reply',
      from: 'pat.kim@woodgrove-bank.test',
      inReplyTo: '<aa11bb22cc33dd44ee55ff6677889900@intel-mail-one.example>',
      references: ['<aa11bb22cc33dd44ee55ff6677889900@intel-mail-one.example>'],
    });
  });

  it.each([
    ['Auto-Submitted: auto-replied', { 'Auto-Submitted': 'auto-replied' }],
    ['Auto-Submitted: auto-generated with a comment', { 'Auto-Submitted': 'auto-generated (vacation)' }],
    ['X-Autoreply', { 'X-Autoreply': 'yes' }],
    ['X-Autorespond', { 'X-Autorespond': 'Re: Northwind Tea' }],
    ['Precedence: auto_reply', { Precedence: 'auto_reply' }],
    ['Precedence: bulk', { Precedence: 'bulk' }],
    ['Precedence: junk', { Precedence: 'junk' }],
    ['Precedence: list', { Precedence: 'list' }],
    ['subject Out of Office', { Subject: 'Out of Office: Northwind Tea' }],
    ['subject Automatic reply', { Subject: 'Automatic reply: Northwind Tea: organic interest down 14%' }],
    ['subject Autoreply', { Subject: 'Autoreply: Re: Northwind Tea' }],
    ['subject Abwesend', { Subject: 'Abwesend: Northwind Tea' }],
    ['subject Absence', { Subject: 'Absence du bureau' }],
    ['subject [Auto-Reply]', { Subject: '[Auto-Reply] Northwind Tea' }],
  ])('%s', async (_label, headers) => {
    expect((await parseInbound(message(headers))).kind).toBe('auto_reply');
  });

  it('takes X-Auto-Response-Suppress with an out-of-office text for an auto-reply, and with a plain answer for a reply', async () => {
    const away = await parseInbound(message({ 'X-Auto-Response-Suppress': 'All' }, 'I am out of the office until 9 November with limited access to email.\n'));
    expect(away.kind).toBe('auto_reply');
    const answer = await parseInbound(message({ 'X-Auto-Response-Suppress': 'All' }, 'Yes, send the report please.\n'));
    expect(answer.kind).toBe('reply');
  });

  it('takes Auto-Submitted: no for what it says: written by a person', async () => {
    expect((await parseInbound(message({ 'Auto-Submitted': 'no' }))).kind).toBe('reply');
  });
});

describe('replies', () => {
  it('reads a Gmail reply: In-Reply-To our follow-up, References the whole thread, the sender and the date', async () => {
    const msg = await parseInbound(fixture('gmail-reply.eml'));
    expect(msg).toMatchObject({
      kind: 'reply',
      messageId: '<CAHx7Kp3mQ9vZt2Lw0n8YbE5sR1cF6gJ4aD2hU7kN0oP3qW9xTg@mail.gmail.com>',
      inReplyTo: '<f0e1d2c3b4a5968778695a4b3c2d1e0f@intel-mail-one.example>',
      references: ['<0f1e2d3c4b5a69788796a5b4c3d2e1f0@intel-mail-one.example>', '<f0e1d2c3b4a5968778695a4b3c2d1e0f@intel-mail-one.example>'],
      from: 'sam@northwind-tea.test',
      subject: 'Re: Northwind Tea: organic interest down 14%',
      recipients: [],
    });
    expect(msg.date?.toISOString()).toBe('2026-11-04T15:42:07.000Z');
    expect(msg.originalMessageId).toBeUndefined();
  });

  it('reads a reply with no In-Reply-To or References (the sender lower-cased, for matching by address)', async () => {
    const msg = await parseInbound(fixture('reply-no-in-reply-to.eml'));
    expect(msg).toMatchObject({ kind: 'reply', from: 'owner@litware-labs.test', references: [], subject: 'RE: Litware Labs: 7 keywords one push from page one' });
    expect(msg.inReplyTo).toBeUndefined();
  });

  it('names a message without a Message-ID by a hash of its bytes: the same message twice has the same name', async () => {
    const raw = message({ 'Message-ID': '' });
    const [a, b, c] = await Promise.all([parseInbound(raw), parseInbound(raw), parseInbound(`${raw}P.S.\n`)]);
    expect(a.messageId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b.messageId).toBe(a.messageId);
    expect(c.messageId).not.toBe(a.messageId);
  });

  it('keeps every id of an In-Reply-To that carries more than one, or a comment', async () => {
    const msg = await parseInbound(message({ 'In-Reply-To': '<a1@intel-mail-one.example> (Ana Ruiz\'s message of "Tue, 3 Nov 2026")' }));
    expect(msg.inReplyTo).toBe('<a1@intel-mail-one.example>');
  });
});
