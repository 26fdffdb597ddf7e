import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  SPYFU_COUNTRY_CODES,
  SPYFU_ENDPOINTS,
  SPYFU_PAGE_SIZE_MAX,
  type SpyfuCompetitor,
  type SpyfuDomainStats,
  type SpyfuKeyword,
} from './client.ts';
import type { Fault, FaultControl } from '../sandbox/faults.ts';
import { type HttpFaultOptions, httpFaults } from '../sandbox/http-faults.ts';

/**
 * SpyFu's v2 API on loopback, for the demo and the tests: the paths, parameters, auth,
 * status codes and JSON shapes of client.ts's notes. Every number is derived from a sha256
 * of the domain (and market), so the same domain always gives the same answer, and a
 * longer page starts with the shorter one. `faults` inject latency, 429s, 500s, silence and
 * garbled bodies (connectors/sandbox/faults.ts), decided once a request is authorised and
 * valid; `{ keys }` are domains.
 *
 *   GET /apis/domain_stats_api/v2/getLatestDomainStats?domain=&countryCode=
 *   GET /apis/competitors_api/v2/{seo,ppc}/getTopCompetitors?domain=&pageSize=&startingRow=&sortBy=&sortOrder=
 *   GET /apis/serp_api/v2/seo/getMostValuableKeywords?query=&pageSize=&startingRow=&sortBy=&sortOrder=
 */
export interface SpyfuSandboxOptions {
  /** The Secret Key accepted, as api_key or in Basic auth (default "sandbox-key"). */
  apiKey?: string;
  /** The API ID Basic auth must carry; any ID is accepted when unset. */
  apiId?: string;
  /** Latency, 429s (Retry-After 1 unless set, as SpyFu sends), 500s, silence, bodies cut in half; changeable later with `faults.set()`. */
  faults?: HttpFaultOptions;
  /** Domains SpyFu has no data for (as is any domain ending in .invalid). */
  unknownDomains?: string[];
  /** The month the latest stats are for (default: the month before the clock's, as SpyFu's data lags a month). */
  latestMonth?: { searchYear: number; searchMonth: number };
  /** The clock that default follows (default the system's), read for each request. */
  now?: () => Date;
}

export interface SpyfuSandboxRequest {
  path: string;
  domain: string | null;
  countryCode: string | null;
  pageSize: number | null;
  /** null while unanswered (a timeout domain). */
  status: number | null;
  rows: number;
}

export interface SpyfuSandbox {
  /** Base URL for the client, ending in /apis/. */
  url: string;
  readonly requests: readonly SpyfuSandboxRequest[];
  /** Rows returned in 200 answers: what SpyFu would bill. */
  readonly rowsServed: number;
  /** The faults it injects, changeable while it runs. */
  readonly faults: FaultControl<HttpFaultOptions>;
  close(): Promise<void>;
}

/** The Secret Key the sandbox accepts unless told another. */
export const SANDBOX_API_KEY = 'sandbox-key';

type Row = Record<string, string | number | null>;

const digest = (...parts: (string | number)[]) => createHash('sha256').update(parts.join('\0')).digest();
/** A fraction in [0, 1) from four bytes of a digest. */
const unit = (h: Buffer, at: number) => h.readUInt32BE(at) / 2 ** 32;
const round2 = (n: number) => Math.round(n * 100) / 100;

export function domainStatsOf(domain: string, countryCode = 'US', month = { searchYear: 2025, searchMonth: 6 }): SpyfuDomainStats {
  const h = digest('stats', domain, countryCode);
  const keywords = 40 + (h.readUInt32BE(0) % 250_000);
  const clicks = Math.round(keywords * (0.5 + unit(h, 4) * 4));
  const advertises = h[8]! % 4 !== 0;
  const ads = advertises ? 1 + (h.readUInt16BE(9) % 3000) : 0;
  const paidClicks = advertises ? round2(ads * (5 + unit(h, 11) * 200)) : 0;
  return {
    ...month,
    averageOrganicRank: round2(8 + unit(h, 15) * 50),
    monthlyPaidClicks: paidClicks,
    averageAdRank: advertises ? round2(1 + unit(h, 19) * 3) : 0,
    totalOrganicResults: keywords,
    monthlyBudget: round2(paidClicks * (0.5 + unit(h, 23) * 8)),
    monthlyOrganicValue: round2(clicks * (0.4 + unit(h, 27) * 6)),
    totalAdsPurchased: ads,
    monthlyOrganicClicks: clicks,
    strength: 1 + (h[31]! % 99),
    totalInverseRank: keywords * (10 + (h[30]! % 40)),
  };
}

const SYLLABLES = ['ac', 'me', 'lo', 'ra', 'vi', 'ten', 'sol', 'gr', 'ix', 'on', 'pa', 'ly', 'nor', 'qu', 'est', 'zen'];
const TLDS = ['com', 'com', 'com', 'io', 'net', 'co'];

export function competitorsOf(domain: string, countryCode = 'US', channel: 'seo' | 'ppc' = 'seo'): SpyfuCompetitor[] {
  const h = digest('competitors', channel, domain, countryCode);
  const total = 8 + (h.readUInt16BE(0) % 120);
  const seen = new Set([domain]);
  const out: SpyfuCompetitor[] = [];
  for (let i = 0; out.length < total && i < total * 10; i++) {
    const c = digest('competitor', channel, domain, countryCode, i);
    const name = [0, 1, 2].slice(0, 2 + (c[0]! % 2)).map((k) => SYLLABLES[c[1 + k]! % SYLLABLES.length]).join('');
    const competitor = `${name}.${TLDS[c[4]! % TLDS.length]}`;
    if (seen.has(competitor)) continue;
    seen.add(competitor);
    const commonTerms = 5 + (c.readUInt32BE(5) % 20_000);
    out.push({ domain: competitor, commonTerms, rank: round2(commonTerms / 200 + unit(c, 9) * 20) });
  }
  return out;
}

const MODIFIERS = ['', '', 'best', 'cheap', 'top', 'online', 'free', 'local', 'enterprise', 'small business', 'open source', 'managed'];
const TOPICS = [
  'crm', 'seo tools', 'keyword research', 'rank tracker', 'backlink checker', 'ppc software', 'email marketing', 'web hosting',
  'analytics', 'site audit', 'competitor analysis', 'ad spend', 'landing pages', 'content marketing', 'lead generation', 'serp checker',
];
const SUFFIXES = ['', '', '', 'pricing', 'reviews', 'alternatives', 'for agencies', 'near me', 'comparison', 'login', 'tutorial'];

/** A keyword row as SpyFu sends it: the client's fields and the ones it leaves out. */
export interface SpyfuWireKeyword extends SpyfuKeyword {
  percentMobileSearches: number;
  percentDesktopSearches: number;
  percentNotClicked: number;
  percentPaidClicks: number;
  percentOrganicClicks: number;
  broadMonthlyCost: number | null;
  paidCompetitors: number;
  rankingHomepages: number;
}

export function keywordsOf(domain: string, countryCode = 'US'): SpyfuWireKeyword[] {
  const h = digest('keywords', domain, countryCode);
  const total = 12 + (h.readUInt16BE(0) % 300);
  const brand = domain.split('.')[0]!;
  const seen = new Set<string>();
  const out: SpyfuWireKeyword[] = [];
  for (let i = 0; out.length < total && i < total * 10; i++) {
    const k = digest('keyword', domain, countryCode, i);
    const words = k[0]! % 7 === 0 ? [brand, SUFFIXES[k[1]! % SUFFIXES.length]] : [MODIFIERS[k[2]! % MODIFIERS.length], TOPICS[k[3]! % TOPICS.length], SUFFIXES[k[1]! % SUFFIXES.length]];
    const keyword = words.filter(Boolean).join(' ');
    if (seen.has(keyword)) continue;
    seen.add(keyword);
    const searchVolume = niceVolume(Math.round(10 * 10 ** (unit(k, 4) * 4.5)));
    const rank = 1 + (k[8]! % 100);
    const seoClicks = Math.round(searchVolume * clickShare(rank));
    const cpc = k[9]! % 9 === 0 ? null : round2(0.2 + unit(k, 10) * 25);
    const broad = cpc === null ? null : round2(cpc * 0.9);
    const mobile = round2(0.2 + unit(k, 14) * 0.6);
    const paidShare = round2(unit(k, 18) * 0.3);
    out.push({
      keyword,
      topRankedUrl: `https://${domain}/${keyword.replaceAll(' ', '-')}`,
      rank,
      rankChange: k[22]! % 5 === 0 ? null : (k[23]! % 21) - 10,
      searchVolume,
      keywordDifficulty: 1 + (k[24]! % 100),
      broadCostPerClick: broad,
      phraseCostPerClick: cpc === null ? null : round2(cpc * 0.95),
      exactCostPerClick: cpc,
      seoClicks,
      seoClicksChange: (k[25]! % 41) - 20,
      totalMonthlyClicks: Math.round(searchVolume * 0.92),
      percentMobileSearches: mobile,
      percentDesktopSearches: round2(1 - mobile),
      percentNotClicked: round2(unit(k, 26) * 0.3),
      percentPaidClicks: paidShare,
      percentOrganicClicks: round2(1 - paidShare),
      broadMonthlyCost: broad === null ? null : round2(broad * searchVolume * 0.05),
      paidCompetitors: k[30]! % 40,
      rankingHomepages: k[31]! % 12,
    });
  }
  return out;
}

/** The calendar month before `date`'s (UTC), as SpyFu names it. */
function monthBefore(date: Date): { searchYear: number; searchMonth: number } {
  const month = date.getUTCMonth(); // 0-based: the previous month, 1-based
  return month === 0 ? { searchYear: date.getUTCFullYear() - 1, searchMonth: 12 } : { searchYear: date.getUTCFullYear(), searchMonth: month };
}

/** SpyFu rounds volumes: two significant figures. */
function niceVolume(n: number): number {
  const step = 10 ** Math.max(0, Math.floor(Math.log10(n)) - 1);
  return Math.max(10, Math.round(n / step) * step);
}

const clickShare = (rank: number) => (rank <= 10 ? 0.3 / rank : 0.002);

export async function startSpyfuSandbox(options: SpyfuSandboxOptions = {}): Promise<SpyfuSandbox> {
  const apiKey = options.apiKey ?? SANDBOX_API_KEY;
  const unknown = new Set(options.unknownDomains ?? []);
  const requests: SpyfuSandboxRequest[] = [];
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) => ({
    status,
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
  const faults = httpFaults(options.faults, {
    throttled: (seconds) => json(429, { error: 'rate_limited', message: `Too many requests. Please retry after ${seconds} second.` }, { 'retry-after': String(seconds) }),
    failed: (status) => json(status, { error: 'internal_server_error', message: 'Internal Server Error' }),
  });
  let rowsServed = 0;

  const isAuthorised = (req: IncomingMessage, url: URL) => {
    const key = url.searchParams.get('api_key');
    if (key !== null) return key === apiKey;
    const header = req.headers.authorization ?? '';
    if (!header.startsWith('Basic ')) return false;
    const decoded = Buffer.from(header.slice(6), 'base64').toString();
    const colon = decoded.indexOf(':');
    const [id, secret] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
    return colon > 0 && secret === apiKey && (options.apiId === undefined || id === options.apiId);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://sandbox');
    const route = url.pathname.replace(/^\/apis\//, '');
    const list = LISTS[route];
    const domainParam = list?.domainParam ?? 'domain';
    const domain = (url.searchParams.get(domainParam) ?? '').trim().toLowerCase() || null;
    const countryCode = url.searchParams.get('countryCode') ?? 'US';
    const pageSize = Number(url.searchParams.get('pageSize') ?? 5);
    const startingRow = Number(url.searchParams.get('startingRow') ?? 1);
    const record: SpyfuSandboxRequest = {
      path: url.pathname,
      domain,
      countryCode: url.searchParams.get('countryCode'),
      pageSize: url.searchParams.has('pageSize') ? pageSize : null,
      status: null,
      rows: 0,
    };
    requests.push(record);

    const reply = (status: number, body: unknown, rows = 0, fault?: Fault) => {
      record.status = status;
      if (status === 200) {
        record.rows = rows;
        rowsServed += rows;
      }
      faults.send(res, json(status, body), fault);
    };
    const fail = (status: number, error: string, message: string) => reply(status, { error, message });

    if (!isAuthorised(req, url)) return fail(401, 'unauthorized', 'User failed authorization');
    const stats = route === SPYFU_ENDPOINTS.latestDomainStats;
    if (!stats && !list) return fail(404, 'not_found', `No endpoint at ${url.pathname}`);
    if (!domain) return fail(400, 'bad_request', `${domainParam} is required`);
    if (!(SPYFU_COUNTRY_CODES as readonly string[]).includes(countryCode)) return fail(400, 'bad_request', `countryCode ${countryCode} is not supported`);
    if (list && !(Number.isInteger(pageSize) && pageSize >= 1 && pageSize <= list.maxPageSize)) {
      return fail(400, 'bad_request', `pageSize must be from 1 to ${list.maxPageSize}`);
    }
    if (!(Number.isInteger(startingRow) && startingRow >= 1)) return fail(400, 'bad_request', 'startingRow must be 1 or more');

    const fault = faults.decide({ key: domain, identity: `${route}|${domain}` });
    const injected = faults.intercept(res, fault);
    if (injected) {
      record.status = Number(injected) || null;
      return;
    }

    const known = !unknown.has(domain) && !domain.endsWith('.invalid');
    if (!list) {
      const results = known ? [domainStatsOf(domain, countryCode, options.latestMonth ?? monthBefore((options.now ?? (() => new Date()))()))] : [];
      return reply(200, { resultCount: results.length, domain, results }, results.length, fault);
    }
    const sortBy = url.searchParams.get('sortBy') ?? list.sortBy;
    const field = sortBy.charAt(0).toLowerCase() + sortBy.slice(1);
    const all = known ? (list.rows(domain, countryCode) as Row[]) : [];
    if (all.length > 0 && !(field in all[0]!)) return fail(400, 'bad_request', `sortBy ${sortBy} is not supported`);
    const descending = (url.searchParams.get('sortOrder') ?? 'Descending') !== 'Ascending';
    const sorted = [...all].sort((a, b) => compare(a[field], b[field]) * (descending ? -1 : 1));
    const results = sorted.slice(startingRow - 1, startingRow - 1 + pageSize);
    return reply(200, { resultCount: results.length, totalMatchingResults: all.length, results }, results.length, fault);
  };

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/apis/`,
    requests,
    faults: faults.control,
    get rowsServed() {
      return rowsServed;
    },
    close: () =>
      new Promise<void>((resolve) => {
        faults.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface ListEndpoint {
  domainParam: 'domain' | 'query';
  maxPageSize: number;
  /** SpyFu's default sortBy. */
  sortBy: string;
  rows: (domain: string, countryCode: string) => object[];
}

const LISTS: Record<string, ListEndpoint> = {
  [SPYFU_ENDPOINTS.seoCompetitors]: { domainParam: 'domain', maxPageSize: SPYFU_PAGE_SIZE_MAX.competitors, sortBy: 'Rank', rows: (d, c) => competitorsOf(d, c, 'seo') },
  [SPYFU_ENDPOINTS.ppcCompetitors]: { domainParam: 'domain', maxPageSize: SPYFU_PAGE_SIZE_MAX.competitors, sortBy: 'Rank', rows: (d, c) => competitorsOf(d, c, 'ppc') },
  [SPYFU_ENDPOINTS.mostValuableKeywords]: { domainParam: 'query', maxPageSize: SPYFU_PAGE_SIZE_MAX.keywords, sortBy: 'SearchVolume', rows: keywordsOf },
};

/** Nulls (a missing CPC) sort lowest. */
function compare(a: string | number | null | undefined, b: string | number | null | undefined): number {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  return a < b ? -1 : 1;
}
