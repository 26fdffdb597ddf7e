import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type DkimKey, type EmailSender, SmtpMailer, smtpSettingsFromUrl } from '../../connectors/smtp/client.ts';
import { defineResource, type EngineConfig, type Logger, NonRetriableError, unsetVariable } from '../../engine/sdk.ts';
import type { Mailbox } from './settings.ts';

/**
 * How each mailbox sends: its own SMTP server when the config gives it one (a URL with the
 * mailbox's credentials), otherwise connectors.smtp (a relay, or the sandbox); and the DKIM
 * key of its domain. A domain's key comes from the config; when it is not set and sandboxes
 * are allowed, one is generated under .flows/dkim (kept, with the DNS record to publish
 * beside it), so the sandbox and the demo send exactly what production sends.
 */
export class Mailers {
  private readonly own = new Map<string, SmtpMailer>();
  private readonly keys = new Map<string, DkimKey | null>();

  constructor(
    private readonly config: EngineConfig,
    private readonly stateDir: string,
    private readonly log: Logger,
  ) {}

  /** The mailbox's own server, or undefined: the step then sends through connectors.smtp. */
  ownServer(mailbox: Mailbox): EmailSender | undefined {
    if (!mailbox.smtp) return undefined;
    let mailer = this.own.get(mailbox.address);
    if (!mailer) {
      const where = `email.domains.${mailbox.domain}.mailboxes.${mailbox.address}.smtp`;
      mailer = new SmtpMailer(smtpSettingsFromUrl(mailbox.smtp, where), where);
      this.own.set(mailbox.address, mailer);
    }
    return mailer;
  }

  /** The DKIM key of the mailbox's domain; null when the domain declares no dkim. */
  dkim(mailbox: Mailbox): DkimKey | null {
    if (this.keys.has(mailbox.domain)) return this.keys.get(mailbox.domain)!;
    const key = this.loadKey(mailbox);
    this.keys.set(mailbox.domain, key);
    return key;
  }

  private loadKey(mailbox: Mailbox): DkimKey | null {
    const dkim = mailbox.dkim;
    if (!dkim) return null;
    if (dkim.private_key) return { domain: mailbox.domain, selector: dkim.selector, privateKey: dkim.private_key.replaceAll('\\n', '\n') };
    const variable = unsetVariable(this.config, ['email', 'domains', mailbox.domain, 'dkim', 'private_key']);
    const what = `email.domains.${mailbox.domain}.dkim.private_key${variable ? ` (${variable})` : ''} is not set`;
    if (this.config.sandboxes === 'never') throw new NonRetriableError(`${what}; the config says sandboxes: never, so nothing is sent unsigned or with a made-up key`);
    const generated = generatedKey(this.stateDir, mailbox.domain, dkim.selector);
    this.log.warn({ domain: mailbox.domain, record: generated.recordFile }, `${what}: signing with a key generated for the sandbox`);
    return generated.key;
  }

  async close(): Promise<void> {
    await Promise.all([...this.own.values()].map((m) => m.close()));
  }
}

/** The TXT record that publishes a public key (RFC 6376 section 3.6.1). */
export function dkimRecord(publicKeyPem: string): string {
  const der = publicKeyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return `v=DKIM1; k=rsa; p=${der}`;
}

/** A key kept under .flows/dkim/<domain>.pem, made on first use; <domain>.txt holds its DNS record. */
export function generatedKey(stateDir: string, domain: string, selector: string): { key: DkimKey; recordFile: string; record: string } {
  const dir = join(stateDir, 'dkim');
  const pem = join(dir, `${domain}.pem`);
  const recordFile = join(dir, `${domain}.txt`);
  if (!existsSync(pem)) {
    mkdirSync(dir, { recursive: true });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    writeFileSync(pem, privateKey, { mode: 0o600 });
    writeFileSync(recordFile, `${selector}._domainkey.${domain} TXT "${dkimRecord(publicKey)}"\n`);
  }
  const record = readFileSync(recordFile, 'utf8').match(/"(.*)"/)?.[1] ?? '';
  return { key: { domain, selector, privateKey: readFileSync(pem, 'utf8') }, recordFile, record };
}

export const mailersResource = defineResource<Mailers>({
  name: 'email-mailers',
  create: (env) => new Mailers(env.config, env.stateDir, env.log),
  close: (mailers) => mailers.close(),
});
