import { CompiledQuery } from 'kysely';
import type { Page, PageAnswer, PageContext, PageRequest } from '../../engine/sdk.ts';
import { eventStatement } from '../event/emit.ts';
import { escapeXml } from '../report/charts.ts';
import { linkSecret } from './consent.ts';
import { readLink } from './tokens.ts';

/**
 * The unsubscribe link of every marketing email, /u/<token>. A POST unsubscribes at once:
 * the one-click POST a mail client sends for List-Unsubscribe-Post (RFC 8058), or the
 * button of the confirmation page. A GET only shows that page, since link scanners fetch
 * every link of an email and must not unsubscribe anyone. A token that is not ours is a
 * plain 404 and records nothing.
 */

/** Static pages: no script, nothing loaded from elsewhere; the one form posts back here. */
const HTML_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'referrer-policy': 'no-referrer',
  'x-robots-tag': 'noindex, nofollow',
  'cache-control': 'no-store',
};

export const notFound = (): PageAnswer => ({ status: 404, type: 'text/plain; charset=utf-8', body: 'Not found\n', headers: { 'cache-control': 'no-store' } });

/** A static page with its title as heading; `head` adds to its head (a meta refresh). */
export function page(title: string, body: string, head = ''): PageAnswer {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">${head}<title>${escapeXml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#111827}button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#1f4e79;color:#fff;cursor:pointer}</style>
</head><body><h1>${escapeXml(title)}</h1>${body}</body></html>
`;
  return { status: 200, type: 'text/html; charset=utf-8', body: html, headers: HTML_HEADERS };
}

/** The address a valid unsubscribe token names, with whether it is suppressed already. */
async function recipientOf(token: string, { db, config }: PageContext): Promise<{ address: string; suppressed: boolean } | undefined> {
  const claim = readLink(linkSecret(config), token);
  if (claim?.kind !== 'u') return undefined;
  const [row] = await db.query<{ address: string; suppressed: boolean }>(
    'SELECT a.address, EXISTS (SELECT 1 FROM email_suppressions s WHERE s.address = a.address) AS suppressed FROM email_addresses a WHERE a.id = $1',
    [claim.id],
  );
  return row;
}

/** RFC 8058's body, form-encoded or multipart; anything else posted here came from the confirmation button. */
function isOneClick(request: PageRequest): boolean {
  const body = request.body.toString('utf8');
  if (new URLSearchParams(body).get('List-Unsubscribe') === 'One-Click') return true;
  return /name="List-Unsubscribe"\r?\n\r?\nOne-Click\r?\n/.test(body);
}

/** The suppression and its event, in one transaction; a second unsubscribe changes nothing. */
async function unsubscribe(address: string, source: string, { db, clock }: PageContext): Promise<void> {
  const now = clock.now();
  await db.kysely.transaction().execute(async (trx) => {
    const inserted = await trx.executeQuery(
      CompiledQuery.raw(
        "INSERT INTO email_suppressions (address, reason, source, created_at) VALUES ($1, 'unsubscribed', $2, $3) ON CONFLICT (address) DO NOTHING RETURNING address",
        [address, source, now],
      ),
    );
    if (!inserted.rows.length) return;
    const event = eventStatement({ type: 'email.unsubscribed', key: address, payload: { source } }, null, now);
    await trx.executeQuery(CompiledQuery.raw(event.sql, [...event.params]));
  });
}

export const unsubscribePage: Page = {
  path: '/u/:token',
  methods: ['GET', 'POST'],
  async handle(request, context) {
    const token = request.params.token ?? '';
    const recipient = await recipientOf(token, context);
    if (!recipient) return notFound();
    const business = escapeXml(context.config.business?.name ?? 'us');
    if (request.method === 'POST') {
      const source = isOneClick(request) ? 'one-click' : 'confirmation page';
      await unsubscribe(recipient.address, source, context);
      context.log.info({ source }, 'an address unsubscribed');
    } else if (!recipient.suppressed) {
      return page(
        'Unsubscribe?',
        `<p>Stop receiving emails from ${business}?</p><form method="post" action="/u/${escapeXml(token)}"><input type="hidden" name="confirm" value="yes"><button type="submit">Unsubscribe</button></form>`,
      );
    }
    return page('You are unsubscribed', `<p>You will get no more emails from ${business}. Emails about something you bought still reach you.</p>`);
  },
};

export const emailPages: readonly Page[] = [unsubscribePage];
