import { RecipientRefusedError } from '../../connectors/smtp/client.ts';
import { type EngineConfig, findCause, NonRetriableError, type Queryable, unsetVariable } from '../../engine/sdk.ts';
import { publicBase } from '../report/publish.ts';
import type { SuppressionReason } from '../tables.ts';
import { emailSettings } from './settings.ts';
import { signLink } from './tokens.ts';

/**
 * Consent in the email channel: the suppression list (email_suppressions) that every
 * marketing email is checked against at the moment it is sent, and the unsubscribe link
 * each one carries. Links name the recipient by its row in email_addresses, never by the
 * address, so a link passed around or logged tells nothing about whom it was sent to.
 */

/** The signing secret; empty when the config has none (or its variable is unset): then no link is made or accepted. */
export function linkSecret(config: EngineConfig): string {
  return emailSettings(config)?.link_secret ?? '';
}

/** The secret to sign with; a marketing email cannot go without it, since it must carry a working unsubscribe link. */
export function signingSecret(config: EngineConfig): string {
  const secret = linkSecret(config);
  if (secret) return secret;
  const variable = unsetVariable(config, ['email', 'link_secret']);
  throw new NonRetriableError(
    variable
      ? `email.link_secret reads ${variable}, which is not set: set it to a long random string (marketing emails carry an unsubscribe link signed with it)`
      : 'marketing emails carry a signed unsubscribe link: set email.link_secret in the config, through ${{ env.FLOWS_LINK_SECRET }} (a long random string)',
  );
}

export const normalAddress = (address: string): string => address.trim().toLowerCase();

/** Why the address gets no marketing email, if it does not. */
export async function suppressionOf(db: Queryable, address: string): Promise<SuppressionReason | undefined> {
  const [row] = await db.query<{ reason: SuppressionReason }>('SELECT reason FROM email_suppressions WHERE address = $1', [normalAddress(address)]);
  return row?.reason;
}

/** The id links carry for this address, made on its first email. */
export async function addressId(db: Queryable, address: string): Promise<string> {
  const [row] = await db.query<{ id: string }>(
    'INSERT INTO email_addresses (address) VALUES ($1) ON CONFLICT (address) DO UPDATE SET address = EXCLUDED.address RETURNING id',
    [normalAddress(address)],
  );
  return String(row!.id);
}

/** RFC 2369 and RFC 8058 headers: an https link that unsubscribes on one POST, and a mailto on the sending domain. */
export function unsubscribeHeaders(config: EngineConfig, senderDomain: string, addressRowId: string, now: Date): Record<string, string> {
  const token = signLink(signingSecret(config), { kind: 'u', id: addressRowId, issuedAt: now });
  return {
    'List-Unsubscribe': `<${publicBase(config)}/u/${token}>, <mailto:unsubscribe@${senderDomain}?subject=unsubscribe%20${token}>`,
    'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
  };
}

/**
 * A hard bounce: the SMTP connector says the receiving server refused this recipient for good
 * at RCPT TO. Refusals of the message itself or of our credentials are not bounces.
 */
export function hardBounceOf(err: unknown, address: string): { code: number; response: string } | undefined {
  const refused = findCause(err, RecipientRefusedError);
  if (!refused) return undefined;
  const recipients = refused.recipients.map(normalAddress);
  if (recipients.length && !recipients.includes(normalAddress(address))) return undefined;
  return { code: refused.code, response: refused.response };
}

export async function recordHardBounce(db: Queryable, address: string, bounce: { code: number; response: string }, runId: string | null, now: Date): Promise<void> {
  await db.query(
    `WITH suppressed AS (
       INSERT INTO email_suppressions (address, reason, source, created_at) VALUES ($1, 'hard_bounce', $2, $3)
       ON CONFLICT (address) DO NOTHING RETURNING address
     )
     INSERT INTO flow_events (type, key, payload, run_id, occurred_at)
     SELECT 'email.bounced', address, $4, $5, $3 FROM suppressed`,
    [normalAddress(address), `smtp ${bounce.code}`, now, JSON.stringify({ kind: 'hard', code: bounce.code, response: bounce.response }), runId],
  );
}
