import { createHmac, timingSafeEqual } from 'node:crypto';
import { type Page, type PageAnswer, type PageRequest, writableQueryable } from '../../engine/sdk.ts';
import { receiveInbound } from './replies.ts';
import { emailSettings, mailboxesOf } from './settings.ts';

/**
 * POST /hooks/inbound-mail: mail a provider (or a mail server's pipe) forwards as it arrived
 * at one of our mailboxes, for mailboxes not read over IMAP. The body is the raw RFC 5322
 * message (content-type message/rfc822); `x-flows-mailbox` names the mailbox it arrived at;
 * both are signed with email.inbound_secret as `x-flows-signature: sha256=<hex>`, the
 * HMAC-SHA256 of the mailbox address in lower case, a line feed, then the body's bytes
 * (`<mailbox>\n<body>`), so a signed message replayed under another mailbox is refused.
 * It is recorded as reading the mailbox would record it, and a message
 * forwarded twice is recorded once. Without a secret the route answers 404: no one can feed
 * it bounces that would suppress addresses.
 */

const json = (status: number, body: Record<string, unknown>): PageAnswer => ({ status, type: 'application/json; charset=utf-8', body: `${JSON.stringify(body)}\n`, headers: { 'cache-control': 'no-store' } });
const rejected = (status: number, error: string) => json(status, { status: 'rejected', error });

const header = (request: PageRequest, name: string): string | undefined => {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/**
 * The signature header holds the HMAC of the mailbox (lower case), a line feed and exactly the
 * body's bytes; compared in constant time.
 */
export function validInboundSignature(secret: string, mailbox: string, body: Buffer, signature: string | undefined): boolean {
  const hex = /^sha256=([0-9a-f]{64})$/i.exec(signature?.trim() ?? '')?.[1];
  if (!hex) return false;
  const expected = createHmac('sha256', secret).update(`${mailbox.toLowerCase()}\n`).update(body).digest();
  return timingSafeEqual(Buffer.from(hex, 'hex'), expected);
}

export const inboundMailPage: Page = {
  path: '/hooks/inbound-mail',
  methods: ['POST'],
  async handle(request, { db, config, clock, log }) {
    const secret = emailSettings(config)?.inbound_secret;
    if (!secret) return { status: 404, type: 'text/plain; charset=utf-8', body: 'Not found\n', headers: { 'cache-control': 'no-store' } };
    const named = header(request, 'x-flows-mailbox')?.trim();
    if (!named) return rejected(400, 'x-flows-mailbox: missing (the mailbox the message arrived at)');
    // The signature before anything else is looked up: an unsigned caller learns nothing of our mailboxes.
    if (!validInboundSignature(secret, named, request.body, header(request, 'x-flows-signature'))) {
      return rejected(401, 'x-flows-signature: not the HMAC-SHA256 of this mailbox and body with email.inbound_secret');
    }
    const type = header(request, 'content-type') ?? '';
    if (!/^message\/rfc822\s*(;|$)/i.test(type.trim())) return rejected(415, `content-type: expected message/rfc822 (the raw message), got ${type || 'none'}`);
    const mailbox = mailboxesOf(config).find((m) => m.address === named.toLowerCase());
    if (!mailbox) return rejected(400, `x-flows-mailbox: ${named} is not a mailbox under email.domains`);
    const received = await receiveInbound(writableQueryable(db), config, mailbox.address, request.body, clock.now());
    log.info({ mailbox: mailbox.address, kind: received.kind, status: received.status }, 'inbound mail received');
    return json(200, { status: received.status, kind: received.kind, message_id: received.messageId, paused: received.paused });
  },
};
