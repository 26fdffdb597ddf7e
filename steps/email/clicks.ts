import { CompiledQuery, type Transaction } from 'kysely';
import type { EngineConfig, Page, PageAnswer, PageContext, PageRequest } from '../../engine/sdk.ts';
import { eventStatement } from '../event/emit.ts';
import { escapeXml } from '../report/charts.ts';
import { reportLinks } from '../report/publish.ts';
import { linkSecret } from './consent.ts';
import { notFound, page } from './pages.ts';
import { type ClickClass, type ClickRules, classifyClick, clickMode, clickRules } from './scanner.ts';
import { type LinkKind, readLink } from './tokens.ts';

/**
 * The pages behind the links of a cold email.
 *
 * - GET|HEAD /c/<token> (a kind 'c' token naming an email_links row): every fetch is recorded
 *   in email_click_observations with the class the scanner rules gave it, and an
 *   email.click_observed event, in one transaction; then a 302 to the link's target. In
 *   direct mode a human one is also email.clicked (how: direct), once per email.
 * - GET /r/<token> (kind 'r', naming the email_outbox row): the landing page of the report
 *   link, the prospect's company and one "Get my report" button.
 * - POST /r/<token>: the button. email.clicked (how: confirmed), once per email (the daemon
 *   hands it to click-report at once, not at its next tick), then a 303
 *   to the status page. Scanners fetch links; they do not press buttons, so in confirm mode
 *   (the default) only a person ever starts a report.
 * - GET /r/<token>/status: refreshes itself every 5 seconds until a report of the prospect
 *   exists that was made after the click (or within the last 30 days), then a 303 to it.
 *
 * A token that is not ours, or names no row, is a plain 404 and records nothing.
 * email.clicked's key is the prospect id, as is email.click_observed's.
 */

const FRESH_DAYS = 30;
const DAY_MS = 86_400_000;
/** Enough earlier fetches to see a burst; an email fetched more often than this is no person's anyway. */
const EARLIER_LIMIT = 200;

type Trx = Transaction<any>;

async function rowsOf<R>(trx: Trx, sql: string, params: readonly unknown[]): Promise<R[]> {
  return (await trx.executeQuery(CompiledQuery.raw(sql, [...params]))).rows as R[];
}

/** The email a link or landing page belongs to, as its events carry it. */
interface EmailRow {
  outbox_id: string;
  prospect_id: string;
  campaign: string;
  variant: string | null;
  mailbox: string | null;
  domain: string | null;
}

const EMAIL_COLUMNS = 'o.id AS outbox_id, o.prospect_id, o.campaign, o.variant, o.mailbox, o.domain';

function eventPayload(email: EmailRow, cls: ClickClass): Record<string, unknown> {
  return {
    class: cls,
    prospect_id: email.prospect_id,
    outbox_id: email.outbox_id,
    campaign: email.campaign,
    variant: email.variant,
    mailbox: email.mailbox,
    domain: email.domain,
    channel: 'email',
  };
}

/** The row id of a token of this kind; undefined for any other token. */
function claimed(context: PageContext, token: string, kind: LinkKind): string | undefined {
  const claim = readLink(linkSecret(context.config), token);
  return claim?.kind === kind ? claim.id : undefined;
}

/** When the email's report was asked for: its email.clicked event. */
const CLICKED_AT = "SELECT occurred_at FROM flow_events WHERE type = 'email.clicked' AND key = $1 AND payload->>'outbox_id' = $2 ORDER BY occurred_at LIMIT 1";

async function clickedAt(context: PageContext, email: EmailRow): Promise<Date | undefined> {
  const [row] = await context.db.query<{ occurred_at: Date | string }>(CLICKED_AT, [email.prospect_id, email.outbox_id]);
  return row ? new Date(row.occurred_at) : undefined;
}

/** email.clicked for the email unless it has one already; the caller holds the email_outbox row's lock, so two at once make one. */
async function clickOnce(trx: Trx, email: EmailRow, how: 'confirmed' | 'direct', now: Date): Promise<boolean> {
  if ((await rowsOf(trx, CLICKED_AT, [email.prospect_id, email.outbox_id])).length) return false;
  const event = eventStatement({ type: 'email.clicked', key: email.prospect_id, payload: { ...eventPayload(email, 'human'), how } }, null, now);
  await rowsOf(trx, event.sql, event.params);
  return true;
}

const rulesByConfig = new WeakMap<EngineConfig, Promise<ClickRules>>();

/** The scanner rules of this config, built once; entries that are no network are logged then. */
function rulesOf({ config, log }: PageContext): Promise<ClickRules> {
  let rules = rulesByConfig.get(config);
  if (!rules) {
    rules = clickRules(config).then((built) => {
      if (built.skipped.length) log.warn({ skipped: built.skipped }, 'email.clicks.scanner_networks: entries that are no network (a CIDR like 203.0.113.0/24) match nothing');
      return built;
    });
    rulesByConfig.set(config, rules);
  }
  return rules;
}

const headerText = (value: string | string[] | undefined): string | null => (Array.isArray(value) ? value.join(', ') : value) ?? null;

interface LinkRow extends EmailRow {
  link_id: string;
  purpose: string;
  target: string;
  sent_at: Date | string | null;
}

/**
 * One fetch of a link: classified against the email's earlier fetches and recorded with its
 * event, under the email_outbox row's lock so that the fetches of one scan are judged one
 * after another (each sees the ones before it). Undefined when the row does not exist.
 */
async function observe(linkId: string, request: PageRequest, context: PageContext): Promise<{ class: ClickClass; target: string; clicked: boolean } | undefined> {
  const now = context.clock.now();
  const rules = await rulesOf(context);
  const direct = clickMode(context.config) === 'direct';
  return context.db.kysely.transaction().execute(async (trx) => {
    const [link] = await rowsOf<LinkRow>(
      trx,
      `SELECT l.id AS link_id, l.purpose, l.target, o.sent_at, ${EMAIL_COLUMNS} FROM email_links l JOIN email_outbox o ON o.id = l.outbox_id WHERE l.id = $1 FOR UPDATE OF o`,
      [linkId],
    );
    if (!link) return undefined;
    const earlier = await rowsOf<{ link_id: string; ip: string | null; observed_at: Date | string }>(
      trx,
      `SELECT link_id, ip, observed_at FROM email_click_observations WHERE outbox_id = $1 ORDER BY observed_at DESC LIMIT ${EARLIER_LIMIT}`,
      [link.outbox_id],
    );
    const userAgent = headerText(request.headers['user-agent'])?.slice(0, 512) ?? null;
    const verdict = classifyClick(
      { method: request.method, ip: request.ip || null, userAgent, headers: request.headers, at: now },
      {
        purpose: link.purpose,
        linkId: String(link.link_id),
        sentAt: link.sent_at ? new Date(link.sent_at) : null,
        earlier: earlier.map((e) => ({ at: new Date(e.observed_at), linkId: String(e.link_id), ip: e.ip })),
      },
      rules,
    );
    await rowsOf(
      trx,
      `INSERT INTO email_click_observations (link_id, outbox_id, prospect_id, method, ip, user_agent, class, signals, observed_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [link.link_id, link.outbox_id, link.prospect_id, request.method, request.ip || null, userAgent, verdict.class, JSON.stringify(verdict.signals), now],
    );
    const observed = eventStatement({ type: 'email.click_observed', key: link.prospect_id, payload: { ...eventPayload(link, verdict.class), purpose: link.purpose } }, null, now);
    await rowsOf(trx, observed.sql, observed.params);
    const clicked = direct && verdict.class === 'human' && (await clickOnce(trx, link, 'direct', now));
    return { class: verdict.class, target: link.target, clicked };
  });
}

const redirect = (status: 302 | 303, location: string): PageAnswer => ({
  status,
  type: 'text/plain; charset=utf-8',
  body: '',
  headers: { location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'x-robots-tag': 'noindex, nofollow' },
});

export const clickPage: Page = {
  path: '/c/:token',
  methods: ['GET'],
  async handle(request, context) {
    const linkId = claimed(context, request.params.token ?? '', 'c');
    const seen = linkId ? await observe(linkId, request, context) : undefined;
    if (!seen) return notFound();
    if (seen.clicked) context.eventsRecorded();
    context
      .counter('flows_email_click_observations_total', 'Fetches of the links in emails, by the class the scanner rules gave them (human, or what gave a machine away).', ['class'])
      .inc({ class: seen.class });
    return redirect(302, seen.target);
  },
};

interface LandingRow extends EmailRow {
  company: string;
}

/** The email a landing token names, with the prospect's company (its domain when it has no name). */
async function landingOf(request: PageRequest, context: PageContext): Promise<LandingRow | undefined> {
  const outboxId = claimed(context, request.params.token ?? '', 'r');
  if (!outboxId) return undefined;
  const [row] = await context.db.query<LandingRow>(
    `SELECT ${EMAIL_COLUMNS}, coalesce(nullif(trim(p.company_name), ''), p.domain, 'your company') AS company
     FROM email_outbox o JOIN prospects p ON p.id = o.prospect_id WHERE o.id = $1`,
    [outboxId],
  );
  return row;
}

/** The button's POST: email.clicked once, in one transaction with the email's lock. */
async function confirm(email: EmailRow, context: PageContext): Promise<boolean> {
  const now = context.clock.now();
  return context.db.kysely.transaction().execute(async (trx) => {
    await rowsOf(trx, 'SELECT id FROM email_outbox WHERE id = $1 FOR UPDATE', [email.outbox_id]);
    return clickOnce(trx, email, 'confirmed', now);
  });
}

export const landingPage: Page = {
  path: '/r/:token',
  methods: ['GET', 'POST'],
  async handle(request, context) {
    const email = await landingOf(request, context);
    if (!email) return notFound();
    const token = request.params.token!;
    const status = `/r/${token}/status`;
    if (request.method === 'POST') {
      if (await confirm(email, context)) {
        context.log.info({ outbox: email.outbox_id, campaign: email.campaign }, 'a report was asked for from its landing page');
        // The person is on the status page, waiting: their report starts now, not at the next tick.
        context.eventsRecorded();
      }
      return redirect(303, status);
    }
    if (await clickedAt(context, email)) return redirect(303, status);
    const company = escapeXml(email.company);
    const business = escapeXml(context.config.business?.name ?? 'us');
    return page(
      `Your report for ${email.company}`,
      `<p>${business} has looked at how ${company} shows up in search. Press the button and we prepare your report: it takes a few minutes.</p><form method="post" action="/r/${escapeXml(token)}"><input type="hidden" name="confirm" value="yes"><button type="submit">Get my report</button></form>`,
    );
  },
};

/** The prospect's report made since `since`, the newest, if there is one. */
async function reportSince(context: PageContext, prospectId: string, since: Date): Promise<string | undefined> {
  const [row] = await context.db.query<{ token: string }>('SELECT token FROM generated_reports WHERE prospect_id = $1 AND created_at >= $2 ORDER BY created_at DESC LIMIT 1', [prospectId, since]);
  return row?.token;
}

export const reportStatusPage: Page = {
  path: '/r/:token/status',
  async handle(request, context) {
    const email = await landingOf(request, context);
    if (!email) return notFound();
    const asked = await clickedAt(context, email);
    const fresh = new Date(context.clock.now().getTime() - FRESH_DAYS * DAY_MS);
    const since = asked && asked < fresh ? asked : fresh;
    const report = await reportSince(context, email.prospect_id, since);
    if (report) return redirect(303, reportLinks(context.config, report).url);
    if (!asked) return redirect(303, `/r/${request.params.token}`);
    return page(
      'Your report is being prepared',
      `<p>We are preparing the report for ${escapeXml(email.company)}. This page looks again every few seconds and opens the report as soon as it is ready; you will get it by email too.</p>`,
      '<meta http-equiv="refresh" content="5">',
    );
  },
};

export const clickPages: readonly Page[] = [clickPage, landingPage, reportStatusPage];
