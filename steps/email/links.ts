import { type EngineConfig, NonRetriableError, type Queryable } from '../../engine/sdk.ts';
import { publicBase } from '../report/publish.ts';
import { signingSecret } from './consent.ts';
import { signLink } from './tokens.ts';

/**
 * The links of a cold email. Each is a row of email_links (one per email and purpose) behind
 * a signed /c/<token> that names the row and nothing else; the click page records every
 * fetch of it and redirects to the row's target. The purposes an email carries:
 *
 * - report: the call to action; its target is the landing page (landingPageUrl), whose
 *   button is what asks for the report, so a scanner's fetch never makes one.
 * - honeypot: a link hidden from people (the business's home page, or the landing page):
 *   whoever fetches it is a machine.
 */

const PURPOSE = /^[a-z][a-z0-9_-]*$/;

/**
 * The click URL of each purpose, `${public_url}/c/<token>`, making the email_links rows on
 * first use. A repeat (a retried send) finds the same rows and gives the same URLs: the
 * token is signed with the row's own creation time, and the first target stays.
 */
export async function signedLinks(
  db: Pick<Queryable, 'query'>,
  config: EngineConfig,
  outboxId: string,
  targets: { purpose: string; target: string }[],
  now: Date,
): Promise<Record<string, string>> {
  const secret = signingSecret(config);
  const base = publicBase(config);
  const out: Record<string, string> = {};
  for (const { purpose, target } of targets) {
    if (!PURPOSE.test(purpose)) throw new NonRetriableError(`a link's purpose is a lower-case word like report or honeypot, got "${purpose}"`);
    if (!/^https?:\/\//.test(target)) throw new NonRetriableError(`the ${purpose} link leads to an http(s) URL, got "${target}"`);
    const [row] = await db.query<{ id: string; created_at: Date | string }>(
      `INSERT INTO email_links (outbox_id, purpose, target, created_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (outbox_id, purpose) DO UPDATE SET purpose = EXCLUDED.purpose
       RETURNING id, created_at`,
      [outboxId, purpose, target, now],
    );
    out[purpose] = `${base}/c/${signLink(secret, { kind: 'c', id: String(row!.id), issuedAt: new Date(row!.created_at) })}`;
  }
  return out;
}

/** The landing page of an email's report link, `${public_url}/r/<token>`: the token names the email_outbox row. */
export function landingPageUrl(config: EngineConfig, outboxId: string, issuedAt: Date): string {
  return `${publicBase(config)}/r/${signLink(signingSecret(config), { kind: 'r', id: outboxId, issuedAt })}`;
}
