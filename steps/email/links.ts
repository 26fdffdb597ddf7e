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

export interface LinkTarget {
  purpose: string;
  target: string;
}

/** An email_links row as the insert returns it. */
export interface LinkRow {
  purpose: string;
  id: string | number;
  created_at: Date | string;
}

/** Refuses a purpose that is not a word, or a target that is not an http(s) URL. */
export function checkLinkTargets(targets: readonly LinkTarget[]): void {
  for (const { purpose, target } of targets) {
    if (!PURPOSE.test(purpose)) throw new NonRetriableError(`a link's purpose is a lower-case word like report or honeypot, got "${purpose}"`);
    if (!/^https?:\/\//.test(target)) throw new NonRetriableError(`the ${purpose} link leads to an http(s) URL, got "${target}"`);
  }
}

/**
 * The statement part that makes emails' link rows on first use and finds them after: one row
 * per purpose for each outbox id that `source` (a CTE with columns `id`, `n` and `now`, the
 * email's number in the statement and the time its rows are made at) gives, none for an email it
 * gives no row. Its parameters, numbered from `first`, are linkRowsParams'. It returns
 * outbox_id, purpose, id and created_at.
 */
export function linkRowsInsert(source: string, first: number): string {
  return `INSERT INTO email_links (outbox_id, purpose, target, created_at)
          SELECT s.id, t.purpose, t.target, s.now FROM ${source} s JOIN unnest($${first}::int[], $${first + 1}::text[], $${first + 2}::text[]) AS t(n, purpose, target) ON t.n = s.n
          ON CONFLICT (outbox_id, purpose) DO UPDATE SET purpose = EXCLUDED.purpose
          RETURNING outbox_id, purpose, id, created_at`;
}

/** The parameters linkRowsInsert numbers: each email's targets, the emails numbered from 1 in the order given. */
export function linkRowsParams(emails: readonly (readonly LinkTarget[])[]): unknown[] {
  const rows = emails.flatMap((targets, i) => targets.map((t) => ({ n: i + 1, ...t })));
  return [rows.map((r) => r.n), rows.map((r) => r.purpose), rows.map((r) => r.target)];
}

/**
 * The click URL of each link row, `${public_url}/c/<token>`. The token is signed with the row's
 * own creation time, so a repeat (a retried send) finds the same rows and gives the same URLs,
 * and the first target stays.
 */
export function linkUrls(config: EngineConfig, rows: readonly LinkRow[]): Record<string, string> {
  const secret = signingSecret(config);
  const base = publicBase(config);
  const out: Record<string, string> = {};
  for (const row of rows) out[row.purpose] = `${base}/c/${signLink(secret, { kind: 'c', id: String(row.id), issuedAt: new Date(row.created_at) })}`;
  return out;
}

/** The click URL of each purpose for one email, making the email_links rows on first use (one statement). */
export async function signedLinks(
  db: Pick<Queryable, 'query'>,
  config: EngineConfig,
  outboxId: string,
  targets: LinkTarget[],
  now: Date,
): Promise<Record<string, string>> {
  checkLinkTargets(targets);
  signingSecret(config);
  const rows = await db.query<LinkRow>(`WITH source AS (SELECT $1::uuid AS id, 1 AS n, $2::timestamptz AS now) ${linkRowsInsert('source', 3)}`, [outboxId, now, ...linkRowsParams([targets])]);
  return linkUrls(config, rows);
}

/** The landing page of an email's report link, `${public_url}/r/<token>`: the token names the email_outbox row. */
export function landingPageUrl(config: EngineConfig, outboxId: string, issuedAt: Date): string {
  return `${publicBase(config)}/r/${signLink(signingSecret(config), { kind: 'r', id: outboxId, issuedAt })}`;
}
