import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { EmailAttachment } from '../../connectors/smtp/client.ts';
import { smtpConnector } from '../../connectors/smtp/connector.ts';
import { storageConnector } from '../../connectors/storage/connector.ts';
import { defineStep, type EngineConfig, NonRetriableError, SkipItemError, type StepContext } from '../../engine/sdk.ts';
import { escapeXml } from '../report/charts.ts';
import { publicBase } from '../report/publish.ts';
import { addressId, hardBounceOf, recordHardBounce, signingSecret, suppressionOf, unsubscribeHeaders } from './consent.ts';
import { messageIdFor } from './message-id.ts';
import { emailTemplatesResource } from './templates.ts';

/**
 * `email.send`: one email from a template in pipelines/templates/emails/ — `<name>.html.liquid`
 * (every {{ }} HTML-escaped) and `<name>.txt.liquid` — through SMTP (the sandbox server when
 * no host is configured). Every email ends with the business's name and physical address;
 * a config without business.address cannot send. Attachments come from report storage.
 *
 * A marketing email (the default) is checked against the suppression list at the moment
 * it is sent, and carries List-Unsubscribe (https and mailto) with RFC 8058's one-click
 * List-Unsubscribe-Post. A transactional one (what a buyer paid for) is neither.
 */

const Input = Type.Object(
  {
    to: Type.String({ format: 'email', description: 'Recipient address.' }),
    to_name: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'Recipient name.' })),
    sender: Type.String({ minLength: 1, description: 'Id of a sender in the config (senders[].id): the From address.' }),
    subject: Type.String({ minLength: 1, maxLength: 250 }),
    template: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]*$', description: 'Template name in templates/emails/ (without .html.liquid / .txt.liquid).' }),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'Variables the template sees (besides business and subject).' })),
    transactional: Type.Optional(
      Type.Boolean({
        default: false,
      description:
        'An email the recipient asked for (a paid report): sent even to a suppressed address, with no unsubscribe link. Otherwise it is marketing: skipped as "suppressed (<reason>)" for an address on the suppression list.',
      }),
    ),
    attachments: Type.Optional(
      Type.Array(
        Type.Object(
          {
            key: Type.String({ minLength: 1, description: 'Storage key of the file (e.g. report.render\'s pdf_key).' }),
            filename: Type.String({ minLength: 1 }),
            content_type: Type.Optional(Type.String({ default: 'application/pdf' })),
          },
          { additionalProperties: false },
        ),
        { maxItems: 5 },
      ),
    ),
  },
  { additionalProperties: false },
);

interface Rendered {
  from: { name?: string; email: string };
  html: string;
  text: string;
}

type SendInput = typeof Input.static;

function senderOf(config: EngineConfig, id: string) {
  const sender = config.senders?.find((s) => s.id === id);
  if (!sender) {
    const ids = (config.senders ?? []).map((s) => s.id);
    throw new NonRetriableError(`unknown sender "${id}" (${ids.length ? `senders in the config: ${ids.join(', ')}` : 'declare senders in the config'})`);
  }
  return sender;
}

async function render(ctx: StepContext, input: SendInput): Promise<Rendered> {
  const templates = await ctx.use(emailTemplatesResource);
  const business = ctx.config.business;
  if (!business?.address) throw new NonRetriableError('every email carries a physical address: set business.address in the config');
  const sender = senderOf(ctx.config, input.sender);
  for (const ext of ['html', 'txt']) {
    const file = join(templates.dir, `${input.template}.${ext}.liquid`);
    if (!existsSync(file)) throw new NonRetriableError(`email template "${input.template}": no file ${file}`);
  }
  const scope = { ...input.data, subject: input.subject, business };
  const [html, text] = await Promise.all([
    templates.html.renderFile(`${input.template}.html.liquid`, scope),
    templates.text.renderFile(`${input.template}.txt.liquid`, scope),
  ]);
  const footer = `${business.name} · ${business.address}`;
  return {
    from: { name: sender.from_name, email: sender.from_email },
    html: withFooter(html, `<p style="color:#6b7280;font-size:12px;margin-top:24px">${escapeXml(footer)}</p>`),
    text: `${text.trimEnd()}\n\n--\n${footer}\n`,
  };
}

/** The footer goes before </body> when the template has one. */
function withFooter(html: string, footer: string): string {
  const at = html.search(/<\/body>/i);
  return at < 0 ? `${html}${footer}` : `${html.slice(0, at)}${footer}${html.slice(at)}`;
}

/** The send's Message-ID, from its effect key (none outside an effect). */
const messageIdOf = (effectKey: string | undefined, domain: string): string | undefined => (effectKey ? messageIdFor(effectKey, domain) : undefined);

/** A marketing email to a suppressed address is skipped, with the reason (a dry run skips it the same way). */
async function refuseSuppressed(ctx: StepContext, input: SendInput): Promise<void> {
  if (input.transactional) return;
  const suppressed = await suppressionOf(ctx.db, input.to);
  if (suppressed) throw new SkipItemError(`suppressed (${suppressed})`);
}

/** A marketing email's unsubscribe headers; checked here, just before the send, so a suppression that landed a moment ago still holds. */
async function consentHeaders(ctx: StepContext, input: SendInput): Promise<Record<string, string>> {
  await refuseSuppressed(ctx, input);
  signingSecret(ctx.config);
  const id = await addressId(ctx.db, input.to);
  return unsubscribeHeaders(ctx.config, senderOf(ctx.config, input.sender).domain, id, ctx.clock.now());
}

/** What a dry run shows of those headers: the token is signed at the send, for the address's row. */
function plannedConsentHeaders(config: EngineConfig, input: SendInput): string {
  if (input.transactional) return '';
  signingSecret(config);
  const domain = senderOf(config, input.sender).domain;
  return `List-Unsubscribe: <${publicBase(config)}/u/(token)>, <mailto:unsubscribe@${domain}?subject=unsubscribe%20(token)>\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n`;
}

/** The send; a recipient refused for good is suppressed and the item skipped as a hard bounce (the error stays the cause). */
async function sendOrBounce<T>(ctx: StepContext, input: SendInput, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (err) {
    const bounce = hardBounceOf(err, input.to);
    if (!bounce) throw err;
    await recordHardBounce(ctx.db, input.to, bounce, ctx.run.id, ctx.clock.now());
    throw new SkipItemError(`hard bounce (${bounce.code}): the address is suppressed`, { cause: err });
  }
}

export const emailSend = defineStep({
  type: 'email.send',
  description: 'Sends one email rendered from templates/emails/<template> through SMTP, with the business address appended and optional attachments from report storage.',
  input: Input,
  output: Type.Object(
    {
      message_id: Type.String(),
      accepted: Type.Array(Type.String()),
      response: Type.String({ description: 'The SMTP server\'s last reply.' }),
    },
    { additionalProperties: false },
  ),
  effect: {
    kind: () => 'email',
    // Known before sending, so an email left in doubt by a crash can be looked up in the mail logs.
    describe: (input, ctx) => {
      const messageId = messageIdOf(ctx.effectKey, senderOf(ctx.config, input.sender).domain);
      return { summary: `email to ${input.to}: ${input.subject}`, identity: { to: input.to, subject: input.subject, ...(messageId ? { message_id: messageId } : {}) } };
    },
    async plan(ctx, input) {
      await refuseSuppressed(ctx, input);
      const email = await render(ctx, input);
      const attached = (input.attachments ?? []).map((a) => a.filename).join(', ');
      return {
        summary: `email to ${input.to}: ${input.subject}${attached ? ` [${attached}]` : ''}`,
        output: { message_id: '(dry run)', accepted: [input.to], response: '(dry run)' },
        artifacts: [
          { name: 'email.html', content: email.html },
          { name: 'email.txt', content: `From: ${email.from.name ?? ''} <${email.from.email}>\nTo: ${input.to}\nSubject: ${input.subject}\n${plannedConsentHeaders(ctx.config, input)}\n${email.text}` },
        ],
      };
    },
  },
  async run(ctx, input) {
    const email = await render(ctx, input);
    const attachments: EmailAttachment[] = [];
    if (input.attachments?.length) {
      const storage = await ctx.use(storageConnector);
      for (const a of input.attachments) {
        const content = await storage.get(a.key, { signal: ctx.signal });
        if (!content) throw new NonRetriableError(`attachment ${a.filename}: nothing stored under ${a.key}`);
        attachments.push({ filename: a.filename, content, contentType: a.content_type ?? 'application/pdf' });
      }
    }
    const headers = input.transactional ? undefined : await consentHeaders(ctx, input);
    const sender = await ctx.use(smtpConnector);
    const domain = senderOf(ctx.config, input.sender).domain;
    const result = await sendOrBounce(ctx, input, () => sender.send(
      {
        from: email.from,
        to: input.to_name ? { name: input.to_name, email: input.to } : input.to,
        subject: input.subject,
        html: email.html,
        text: email.text,
        attachments,
        headers,
        messageId: messageIdOf(ctx.effectKey, domain),
      },
      { signal: ctx.signal },
    ));
    return { message_id: result.messageId, accepted: result.accepted, response: result.response };
  },
});
