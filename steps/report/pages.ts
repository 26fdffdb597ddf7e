import { storageConnector } from '../../connectors/storage/connector.ts';
import { errorMessage, type Page, type PageAnswer } from '../../engine/sdk.ts';
import { eventStatement } from '../event/emit.ts';

/**
 * The report links the daemon serves: GET /reports/<token> (HTML) and
 * /reports/<token>.pdf. A token is 192 random bits; anything else, or a token we never
 * issued, is a plain 404 that tells nothing. Each view is recorded as a report.viewed event.
 */

const TOKEN = /^[A-Za-z0-9_-]{32}$/;

/** The report page is static: no script may run and nothing may load from elsewhere. */
const HTML_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-robots-tag': 'noindex, nofollow',
  'cache-control': 'private, max-age=300',
};

const notFound = (): PageAnswer => ({ status: 404, type: 'text/plain; charset=utf-8', body: 'Not found\n', headers: { 'cache-control': 'no-store' } });

interface Row {
  id: string;
  domain: string;
  html_path: string | null;
  pdf_path: string | null;
}

export const reportPage: Page = {
  path: '/reports/:file',
  async handle(request, { db, resources, log, clock }) {
    const file = request.params.file ?? '';
    const pdf = file.endsWith('.pdf');
    const token = pdf ? file.slice(0, -4) : file;
    if (!TOKEN.test(token)) return notFound();
    const [row] = await db.query<Row>('SELECT id, domain, html_path, pdf_path FROM generated_reports WHERE token = $1', [token]);
    const key = pdf ? row?.pdf_path : row?.html_path;
    if (!row || !key) return notFound();
    const content = await (await resources.use(storageConnector)).get(key);
    if (!content) {
      log.error({ report: row.id, key }, 'report file missing from storage');
      return notFound();
    }
    const view = eventStatement({ type: 'report.viewed', key: row.id, payload: { format: pdf ? 'pdf' : 'html' } }, null, clock.now());
    await db
      .query(view.sql, view.params)
      .catch((err) => log.warn({ report: row.id, err: errorMessage(err) }, 'could not record the report view'));
    if (pdf) {
      return {
        status: 200,
        type: 'application/pdf',
        body: content,
        headers: { 'content-disposition': `inline; filename="${row.domain.replace(/[^a-z0-9.-]/gi, '')}-report.pdf"`, 'x-robots-tag': 'noindex', 'cache-control': 'private, max-age=300', 'referrer-policy': 'no-referrer' },
      };
    }
    return { status: 200, type: 'text/html; charset=utf-8', body: content, headers: HTML_HEADERS };
  },
};

export const reportPages: readonly Page[] = [reportPage];
