import { Type } from '@sinclair/typebox';
import { configSection, type EngineConfig, NonRetriableError, type SectionCheck, type SectionProblem } from '../../engine/sdk.ts';

/**
 * The email section of the config: how links are signed, and the sending domains with their
 * mailboxes. A mailbox is what a receiving server judges (a From address with its history),
 * so the caps, the gap between sends, the window and the ramp hold per mailbox: they are a
 * quota whose keys are the mailboxes (`keys_from: email.mailboxes`), and rotation picks the
 * mailbox idle longest. Every later email to a prospect goes from the mailbox of the first.
 */

const DATE = '^\\d{4}-\\d{2}-\\d{2}$';

export const MailboxSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'The From name shown with the address, a person: "Ana Ruiz".' }),
    smtp: Type.Optional(
      Type.String({
        description:
          'The mailbox\'s own SMTP server and credentials as a URL, through ${{ env.NAME }}: smtps://user:password@host:465 or smtp://user:password@host:587 (STARTTLS, required with credentials; add ?require_tls=false for a local server without it). Unset: the mail goes through connectors.smtp (a relay, or the sandbox).',
      }),
    ),
    imap: Type.Optional(
      Type.String({ description: 'Where replies and bounces to this mailbox are read, as a URL through ${{ env.NAME }}: imaps://user:password@host:993. Unset: not read (an inbound webhook may bring them).' }),
    ),
    timezone: Type.Optional(Type.String({ description: 'IANA timezone of its days, window and calendar day (default: business.timezone).' })),
    ramp_from: Type.Optional(Type.String({ pattern: DATE, description: 'The first day it sent (YYYY-MM-DD): its quota ramps up from there. Without it the mailbox is taken as warmed up (no ramp).' })),
  },
  { additionalProperties: false },
);

export const DkimSchema = Type.Object(
  {
    selector: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$', description: 'The DNS selector: the public key is published at <selector>._domainkey.<domain>.', 'x-hint': 'a selector is letters, digits, dots, dashes and underscores, like s1 or mail-2026' }),
    private_key: Type.Optional(
      Type.String({ description: 'The PEM private key (RSA, 2048 bits), through ${{ env.NAME }}; a key that does not parse, or is not RSA, fails each send from the domain without sending it (nothing goes out unsigned). Unset with sandboxes: auto, a key is generated under .flows/dkim (the sandbox and the demo); with sandboxes: never, nothing is sent.' }),
    ),
  },
  { additionalProperties: false, description: 'DKIM signing of every email from this domain (List-Unsubscribe and List-Unsubscribe-Post are among the signed headers).' },
);

export const SendingDomainSchema = Type.Object(
  {
    dkim: Type.Optional(DkimSchema),
    mailboxes: Type.Record(Type.String({ format: 'email' }), MailboxSchema, {
      minProperties: 1,
      description: 'The mailboxes of this domain by address (on the domain).',
    }),
  },
  { additionalProperties: false },
);

export const ClicksSchema = Type.Object(
  {
    mode: Type.Optional(
      Type.Unsafe<'confirm' | 'direct'>({
        type: 'string',
        enum: ['confirm', 'direct'],
        description:
          'confirm (default): a click on the report link opens a page whose button asks for the report, and only that POST is email.clicked, so no scanner can ever start one. direct: a click the scanner rules call human is email.clicked at once (the page still asks the others).',
      }),
    ),
    burst_seconds: Type.Optional(
      Type.Number({ minimum: 0, maximum: 3600, description: 'A fetch within this many seconds of a fetch of another link of the same email is a scanner walking the links (default 10).' }),
    ),
    min_seconds_after_delivery: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 86400,
        description: 'A fetch this soon after the receiving server accepted the email (sent_at) is too soon to count as a person, when nothing else decides it (default 30).',
      }),
    ),
    scanner_networks: Type.Optional(
      Type.Array(Type.String({ pattern: '^[0-9A-Fa-f.:]+/[0-9]{1,3}$', 'x-hint': 'a CIDR, like 203.0.113.0/24 or 2001:db8::/32' }), {
        description:
          'Networks of link scanners (CIDRs, IPv4 or IPv6), added to the shipped list of mail-filtering networks (Microsoft 365 Exchange Online Protection, Barracuda Email Gateway Defense): a fetch from one is a machine.',
      }),
    ),
  },
  { additionalProperties: false, description: 'How fetches of the links in emails are told apart: a link scanner, or a person.' },
);

export const EmailSchema = Type.Object(
  {
    link_secret: Type.String({
      minLength: 1,
      description:
        'Signs the links in emails (unsubscribe, clicks), through ${{ env.FLOWS_LINK_SECRET }}: a long random string. Keep it: a new one makes every link already sent answer 404.',
    }),
    inbound_secret: Type.Optional(
      Type.String({
        description:
          'Signs mail forwarded to the daemon\'s POST /hooks/inbound-mail (x-flows-signature: sha256=<hex>, the HMAC-SHA256 of the x-flows-mailbox address in lower case, a line feed, then the raw message), through ${{ env.FLOWS_INBOUND_SECRET }}. Unset: the route answers 404 (mailboxes are read over IMAP only).',
      }),
    ),
    domains: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z0-9.-]+\\.[a-z]{2,}$' }), SendingDomainSchema, {
        description: 'The sending domains of cold email, each with its mailboxes; a quota with keys_from: email.mailboxes caps each mailbox.',
      }),
    ),
    clicks: Type.Optional(ClicksSchema),
  },
  { additionalProperties: false, description: 'The email channel: how its links are signed, and the domains and mailboxes it sends from.' },
);

export interface MailboxSettings {
  name: string;
  smtp?: string;
  imap?: string;
  timezone?: string;
  ramp_from?: string;
}

export interface DkimSettings {
  selector: string;
  private_key?: string;
}

export interface ClickSettings {
  mode?: 'confirm' | 'direct';
  burst_seconds?: number;
  min_seconds_after_delivery?: number;
  scanner_networks?: string[];
}

export interface EmailSettings {
  link_secret: string;
  inbound_secret?: string;
  domains?: Record<string, { dkim?: DkimSettings; mailboxes: Record<string, MailboxSettings> }>;
  clicks?: ClickSettings;
}

/** One mailbox with its domain: what a send needs. */
export interface Mailbox extends MailboxSettings {
  address: string;
  domain: string;
  dkim?: DkimSettings;
}

export const emailSettings = (config: EngineConfig): EmailSettings | undefined => configSection<EmailSettings>(config, 'email');

/** Every mailbox of the config, in the order written. */
export function mailboxesOf(config: EngineConfig): Mailbox[] {
  const out: Mailbox[] = [];
  for (const [domain, d] of Object.entries(emailSettings(config)?.domains ?? {})) {
    for (const [address, m] of Object.entries(d.mailboxes)) out.push({ ...m, address: address.toLowerCase(), domain, dkim: d.dkim });
  }
  return out;
}

/** Mailboxes by address, per config (every send looks its mailbox up). */
const byAddress = new WeakMap<EngineConfig, Map<string, Mailbox>>();

export function mailboxOf(config: EngineConfig, address: string): Mailbox {
  const wanted = address.toLowerCase();
  let known = byAddress.get(config);
  if (!known?.has(wanted)) byAddress.set(config, (known = new Map(mailboxesOf(config).map((m) => [m.address, m]))));
  const found = known.get(wanted);
  if (!found) throw new NonRetriableError(`no mailbox ${address} under email.domains in the config (a mailbox that sent earlier emails of a thread was removed?)`);
  return found;
}

/** The quota keys of `keys_from: email.mailboxes`: each mailbox, with its timezone, ramp start and domain. */
export function mailboxKeys(config: EngineConfig): Record<string, { timezone?: string; ramp_from?: string; group: string }> {
  return Object.fromEntries(
    mailboxesOf(config).map((m) => [m.address, { group: m.domain, ...(m.timezone ? { timezone: m.timezone } : {}), ...(m.ramp_from ? { ramp_from: m.ramp_from } : {}) }]),
  );
}

/**
 * What the schema cannot see, checked as the config loads: each mailbox is on the domain it
 * is listed under (its DKIM key and its quota group are that domain's).
 */
export const emailProblems: SectionCheck = (value) => {
  const problems: SectionProblem[] = [];
  for (const [domain, d] of Object.entries((value as EmailSettings).domains ?? {})) {
    for (const address of Object.keys(d.mailboxes)) {
      const own = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
      if (own === domain) continue;
      problems.push({
        path: ['domains', domain, 'mailboxes', address],
        key: true,
        message: `${address} is not on ${domain}: write an address @${domain}, or list it under a domain ${own} of its own`,
      });
    }
  }
  return problems;
};
