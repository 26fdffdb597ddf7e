import { createHash } from 'node:crypto';
import { finished } from 'node:stream/promises';
import type { MimeNode, SplitterChunk } from '@zone-eu/mailsplit';
import type { ParsedMail } from 'mailparser';
import type { EmailInboundTable } from '../tables.ts';

/**
 * Mail that comes back to a mailbox, told apart: a delivery status notification (RFC 3464),
 * a complaint (an ARF feedback report, RFC 5965), an auto-reply (RFC 3834 and what mail
 * systems add instead), or what a person wrote. Pure: bytes in, a parsed message out.
 *
 * Receiving servers bend the formats: field names in any case, `rfc822;` with or without a
 * space, folded values, Action before Final-Recipient, several recipients in one report, the
 * returned message as full message/rfc822 (inline or not) or its headers alone. The report's
 * parts are read structurally (mailsplit, the splitter mailparser itself uses), never by
 * searching the human-readable text, which every MTA words its own way.
 */

export type InboundKind = EmailInboundTable['kind'];

/** One recipient of a delivery status notification. */
export interface DsnRecipient {
  /** Final-Recipient, lower-cased, without its `rfc822;` type. */
  address: string;
  /** Original-Recipient (the address as we sent it), when the report gives it. */
  originalRecipient?: string;
  /** failed, delayed, delivered, relayed or expanded. */
  action: string;
  /** The enhanced status code (RFC 3463), like 5.1.1; from Diagnostic-Code when Status is missing. */
  status?: string;
  /** Remote-MTA without its `dns;` type. */
  remoteMta?: string;
  /** Diagnostic-Code without its `smtp;` type, unfolded. */
  diagnostic?: string;
}

export interface InboundMessage {
  kind: InboundKind;
  /** Its own Message-ID; `sha256:<hex of the bytes>` when it has none, so a message read twice has one name. */
  messageId: string;
  /** The first id of In-Reply-To. */
  inReplyTo?: string;
  /** Every id of References, oldest first. */
  references: string[];
  /** The From address, lower-cased. */
  from?: string;
  subject?: string;
  date?: Date;
  /** Each recipient a delivery report is about (none for other kinds). */
  recipients: DsnRecipient[];
  /** The Message-ID of the message a report is about: ours, when it is about an email we sent. */
  originalMessageId?: string;
  /** A feedback report's type (abuse, fraud, not-spam ...) and the recipient who complained, when not redacted. */
  feedback?: { type: string; recipient?: string };
  /** What made it an auto-reply or other, in a few words: shown with the recorded message. */
  reason?: string;
  /** Why it could not be read at all (then it is kind other). */
  problem?: string;
}

/** Parses and classifies one raw RFC 5322 message. Throws only on a message no parser can read (a header block over 1 MiB). */
export async function parseInbound(raw: Buffer | string): Promise<InboundMessage> {
  const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw, 'utf8');
  // Loaded on the first message: the CLI and the daemon start without the MIME parsers.
  const { simpleParser } = await import('mailparser');
  const [mail, parts] = await Promise.all([simpleParser(bytes, { keepDeliveryStatus: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true }), reportParts(bytes)]);
  const headers = headerValues(mail);
  const base = {
    messageId: mail.messageId ?? `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
    inReplyTo: messageIds(headers.get('in-reply-to'))[0],
    references: messageIds(headers.get('references')),
    from: mail.from?.value[0]?.address?.toLowerCase() || undefined,
    subject: mail.subject,
    date: mail.date && !Number.isNaN(mail.date.getTime()) ? mail.date : undefined,
    recipients: [] as DsnRecipient[],
  };
  const returned = await returnedMessage(parts);
  const feedback = parts.find((p) => p.type === 'message/feedback-report');
  if (feedback) {
    const fields = Object.fromEntries(fieldBlocks(feedback.text).flat());
    const type = (fields['feedback-type'] ?? '').toLowerCase().split(/[\s;]/)[0] ?? '';
    const recipient = address(fields['original-rcpt-to'] ?? fields['removal-recipient'] ?? '') ?? returned?.to;
    return clean({ ...base, kind: type === 'abuse' ? 'complaint' : 'other', originalMessageId: returned?.messageId, feedback: { type, ...(recipient ? { recipient } : {}) }, reason: `feedback report: ${type || 'no type'}` });
  }
  const status = parts.find((p) => p.type === 'message/delivery-status' || p.type === 'message/global-delivery-status');
  if (status) {
    const report = deliveryReport(status.text);
    const kind = dsnKind(report.recipients);
    return clean({
      ...base,
      kind,
      recipients: report.recipients,
      originalMessageId: returned?.messageId ?? report.originalMessageId,
      ...(kind === 'other' ? { reason: report.recipients.length ? `delivery report: ${[...new Set(report.recipients.map((r) => r.action))].join(', ')}` : 'delivery report with no recipient' } : {}),
    });
  }
  const auto = autoReplyReason(headers, mail);
  if (auto) return clean({ ...base, kind: 'auto_reply', reason: auto });
  const daemon = mailDaemonReason(headers, base.from);
  if (daemon) return clean({ ...base, kind: 'other', reason: daemon });
  return clean({ ...base, kind: 'reply' });
}

/** Drops the keys left undefined, so a parsed message compares and serialises as what it holds. */
function clean<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

// ---- the message's own headers

/** Every header by lower-cased name, unfolded and as written (first occurrence kept). */
function headerValues(mail: ParsedMail): Map<string, string> {
  const out = new Map<string, string>();
  for (const { key, line } of mail.headerLines) {
    if (out.has(key)) continue;
    const unfolded = line.replace(/\r?\n[ \t]+/g, ' ');
    out.set(key, unfolded.slice(unfolded.indexOf(':') + 1).trim());
  }
  return out;
}

/** The <ids> of an In-Reply-To or References value; comments and stray words around them are dropped. */
function messageIds(value: string | undefined): string[] {
  return value?.match(/<[^<>\s]+>/g) ?? [];
}

const AWAY_SUBJECT =
  /^\s*(?:(?:re|aw|sv|antw|fw|fwd)\s*:\s*)*[[(]?\s*(?:out of (?:the )?office|automatic reply|auto(?:matic)?[ -]?(?:reply|response|answer)|autoreply|autoresponse|abwesend|abwesenheit|absence|absent|r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica|automatisch antwoord|on vacation|vacation reply)\b/i;
const AWAY_TEXT = /\b(?:out of (?:the )?office|on (?:vacation|holiday|leave|annual leave|parental leave)|away from (?:the office|my desk|email)|limited access to (?:e-?mail|my e-?mail)|abwesend|nicht im b[üu]ro|absent du bureau|fuera de la oficina)\b/i;
const AUTO_PRECEDENCE = new Set(['auto_reply', 'bulk', 'junk', 'list']);

/** Why this is an auto-reply, or undefined when a person wrote it. */
function autoReplyReason(headers: Map<string, string>, mail: ParsedMail): string | undefined {
  const submitted = headers.get('auto-submitted');
  // RFC 3834: any value but "no" (comments allowed after it) marks a message no person wrote.
  if (submitted !== undefined && !/^no\b/i.test(submitted.trim())) return `Auto-Submitted: ${submitted}`;
  for (const name of ['x-autoreply', 'x-autorespond', 'x-autoresponder']) if (headers.has(name)) return `${name} header`;
  const precedence = headers.get('precedence')?.trim().toLowerCase();
  if (precedence && AUTO_PRECEDENCE.has(precedence)) return `Precedence: ${precedence}`;
  if (mail.subject && AWAY_SUBJECT.test(mail.subject)) return `subject "${mail.subject}"`;
  // Exchange and Outlook rules set it on what they generate; alone it also marks mail from many tools, so the text must read as an absence too.
  const suppress = headers.get('x-auto-response-suppress');
  if (suppress !== undefined && AWAY_TEXT.test((mail.text ?? '').slice(0, 2000))) return `X-Auto-Response-Suppress: ${suppress} with an out-of-office text`;
  return undefined;
}

/** A notice from a mail system that is no delivery report (an old qmail or Exim text bounce): never a person's reply. */
function mailDaemonReason(headers: Map<string, string>, from: string | undefined): string | undefined {
  if (headers.get('return-path')?.replace(/\s/g, '') === '<>') return 'sent with a null return path (a mail system)';
  const local = from?.split('@')[0];
  if (local && /^(?:mailer-daemon|postmaster|mail-daemon|mailer_daemon)$/.test(local)) return `from ${from} (a mail system), not a delivery report`;
  return undefined;
}

// ---- the parts of a report

interface ReportPart {
  /** Content type, lower-cased. */
  type: string;
  body: Buffer;
  text: string;
}

const REPORT_PART_TYPES = new Set([
  'message/delivery-status',
  'message/global-delivery-status',
  'message/feedback-report',
  'text/rfc822-headers',
  'message/global-headers',
  'message/rfc822',
  'message/global',
]);

/** The machine-readable parts and the returned message of every multipart/report in the message, decoded. */
async function reportParts(raw: Buffer): Promise<ReportPart[]> {
  const { Splitter } = await import('@zone-eu/mailsplit');
  // ignoreEmbedded: a returned message/rfc822 stays one part, its bytes as they are.
  const splitter = new Splitter({ ignoreEmbedded: true });
  const bodies = new Map<MimeNode, Buffer[]>();
  splitter.on('data', (chunk: SplitterChunk) => {
    if (chunk.type === 'node') {
      const parent = chunk.parentNode;
      if (parent && parent.multipart === 'report' && chunk.contentType && REPORT_PART_TYPES.has(chunk.contentType.toLowerCase())) bodies.set(chunk as MimeNode, []);
    } else if (chunk.type === 'body') {
      bodies.get(chunk.node as MimeNode)?.push(chunk.value);
    }
  });
  splitter.end(raw);
  await finished(splitter);
  return Promise.all(
    [...bodies].map(async ([node, chunks]) => {
      const body = await decoded(node, Buffer.concat(chunks));
      return { type: String(node.contentType).toLowerCase(), body, text: body.toString('utf8') };
    }),
  );
}

/** A part's bytes without their transfer encoding (base64 and quoted-printable reports exist). */
function decoded(node: MimeNode, body: Buffer): Promise<Buffer> {
  const decoder = node.getDecoder();
  const out: Buffer[] = [];
  return new Promise((resolve, reject) => {
    decoder.on('data', (chunk: Buffer) => out.push(chunk));
    decoder.on('end', () => resolve(Buffer.concat(out)));
    decoder.on('error', reject);
    decoder.end(body);
  });
}

/** The Message-ID and first To of the returned message (full message or headers alone). */
async function returnedMessage(parts: ReportPart[]): Promise<{ messageId?: string; to?: string } | undefined> {
  const part = parts.find((p) => p.type !== 'message/delivery-status' && p.type !== 'message/global-delivery-status' && p.type !== 'message/feedback-report');
  if (!part) return undefined;
  // Headers alone may lack the blank line that ends them.
  const source = part.type.endsWith('headers') ? Buffer.concat([part.body, Buffer.from('\r\n\r\n')]) : part.body;
  const { simpleParser } = await import('mailparser');
  const mail = await simpleParser(source, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true });
  const to = Array.isArray(mail.to) ? mail.to[0] : mail.to;
  return { messageId: mail.messageId, to: to?.value[0]?.address?.toLowerCase() || undefined };
}

// ---- RFC 3464 fields

/** Header-like fields in blocks separated by blank lines, names lower-cased, folded lines joined. */
function fieldBlocks(text: string): [string, string][][] {
  const blocks: [string, string][][] = [];
  let block: [string, string][] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim()) {
      if (block.length) blocks.push(block);
      block = [];
    } else if (/^[ \t]/.test(line) && block.length) {
      block[block.length - 1]![1] += ` ${line.trim()}`;
    } else {
      const field = /^([A-Za-z0-9-]+)[ \t]*:[ \t]*(.*)$/.exec(line);
      if (field) block.push([field[1]!.toLowerCase(), field[2]!.trim()]);
    }
  }
  if (block.length) blocks.push(block);
  return blocks;
}

const RECIPIENT_FIELDS = new Set(['final-recipient', 'original-recipient', 'action', 'status', 'remote-mta', 'diagnostic-code']);

/** The per-recipient records of a message/delivery-status body, and the per-message X-Original-Message-ID some MTAs add. */
function deliveryReport(text: string): { recipients: DsnRecipient[]; originalMessageId?: string } {
  const records: Map<string, string>[] = [];
  let originalMessageId: string | undefined;
  for (const block of fieldBlocks(text)) {
    let record = new Map<string, string>();
    for (const [name, value] of block) {
      if (name === 'x-original-message-id') originalMessageId ??= messageIds(value)[0];
      if (!RECIPIENT_FIELDS.has(name)) continue;
      // A recipient field seen twice in one block: the MTA left out the blank line between recipients.
      if (record.has(name)) {
        records.push(record);
        record = new Map();
      }
      record.set(name, value);
    }
    if (record.size) records.push(record);
  }
  const recipients = records.flatMap((r) => {
    const final = address(r.get('final-recipient') ?? r.get('original-recipient') ?? '');
    if (!final) return [];
    const original = address(r.get('original-recipient') ?? '');
    const diagnostic = untyped(r.get('diagnostic-code'));
    const status = statusCode(r.get('status')) ?? statusCode(diagnostic);
    const remoteMta = untyped(r.get('remote-mta'));
    const action = (r.get('action') ?? '').toLowerCase().split(/[\s(;]/)[0] || actionOf(status);
    return [clean({ address: final, originalRecipient: original, action, status, remoteMta, diagnostic })];
  });
  return { recipients, originalMessageId };
}

/** A bounce when a recipient failed for good (5.x.x); a delay when one is delayed, or failed on a transient (4.x.x) error after retrying. */
function dsnKind(recipients: DsnRecipient[]): InboundKind {
  if (recipients.some((r) => r.action === 'failed' && !r.status?.startsWith('4'))) return 'bounce';
  if (recipients.some((r) => r.action === 'delayed' || (r.action === 'failed' && r.status?.startsWith('4')))) return 'delay';
  return 'other';
}

const actionOf = (status: string | undefined): string => (status?.startsWith('5') ? 'failed' : status?.startsWith('4') ? 'delayed' : status?.startsWith('2') ? 'delivered' : 'unknown');

/** `smtp; 550 ...` → `550 ...`, whitespace of folded lines collapsed. */
function untyped(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const typed = /^[A-Za-z0-9-]+[ \t]*;(.*)$/s.exec(value);
  return (typed ? typed[1]! : value).replace(/\s+/g, ' ').trim() || undefined;
}

/** `rfc822; <Info@Host.test>` → `info@host.test`; undefined when no address is there. */
function address(value: string): string | undefined {
  const bare = (untyped(value) ?? '').replace(/^<|>$/g, '').trim().toLowerCase();
  return bare.includes('@') ? bare : undefined;
}

function statusCode(value: string | undefined): string | undefined {
  return value?.match(/\b([245]\.\d{1,3}\.\d{1,3})\b/)?.[1];
}
