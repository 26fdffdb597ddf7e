import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { DURATION_PATTERN, NonRetriableError, parseDuration, RetryAfterError, retryAfterMs } from '../../engine/sdk.ts';

/**
 * SpyFu's v2 REST APIs: latest domain stats, top competitors, most valuable keywords.
 *
 * The wire format, as SpyFu documents it (OpenAPI files and reference pages behind
 * developer.spyfu.com, published in the spyfu/spyfu_api_docs repository):
 *
 * - Base: the OpenAPI `servers` are https://api.spyfu.com/apis/<api>, e.g.
 *   https://api.spyfu.com/apis/domain_stats_api. Older client code also calls
 *   https://www.spyfu.com/apis/; the documented host is the default here.
 * - Auth ("Authentication" section, same on every v2 API): the Secret Key as an `api_key`
 *   query parameter, or HTTP Basic over `SPYFU_API_ID:SECRET_KEY`, or an HMAC header (not
 *   used here). With `apiId` set this client sends Basic, keeping the key out of URLs.
 *   A bad key is answered 401 "User failed authorization"; 403 is not documented.
 * - "Latest Domain Stats": GET domain_stats_api/v2/getLatestDomainStats?domain=&countryCode=
 *   -> { resultCount, domain, results: [{ searchMonth, searchYear, averageOrganicRank,
 *   monthlyPaidClicks, averageAdRank, totalOrganicResults, monthlyBudget,
 *   monthlyOrganicValue, totalAdsPurchased, monthlyOrganicClicks, strength,
 *   totalInverseRank }] }. One row: the latest month.
 * - "Get Top SEO Competitors" / "Get Top PPC Competitors": GET
 *   competitors_api/v2/{seo|ppc}/getTopCompetitors?domain=&countryCode=&pageSize=&startingRow=
 *   (pageSize 1-550, default 5; sortBy Domain|CommonTerms|Rank, default Rank; sortOrder
 *   default Descending) -> { resultCount, totalMatchingResults, results: [{ domain,
 *   commonTerms, rank }] }. `rank` (an overlap score) is in the newer document only.
 * - "Get Most Valuable Keywords" (SEO Research API): GET
 *   serp_api/v2/seo/getMostValuableKeywords?query=<domain>&countryCode=&pageSize=&startingRow=
 *   (pageSize 1-10000, default 5; sortBy default SearchVolume, Descending) ->
 *   { resultCount, totalMatchingResults, results: [{ keyword, topRankedUrl, rank,
 *   rankChange, searchVolume, keywordDifficulty, broadCostPerClick, phraseCostPerClick,
 *   exactCostPerClick, seoClicks, seoClicksChange, totalMonthlyClicks, percent...,
 *   ...MonthlyCost, paidCompetitors, rankingHomepages }] }. The difficulty field is
 *   `keywordDifficulty` and the page is `topRankedUrl`.
 * - countryCode: AR AT AU BE BR CA CH DE DK ES FR IE IN IT JP MX NL NO NZ PL PT SE SG TR UA
 *   UK US ZA, default US (the 28 of the newer documents; UK, not GB).
 * - "Rate Limits": per-endpoint requests per second; over it, 429 with `Retry-After: 1` and
 *   {"error":"rate_limited","message":...}. 400, 401 and 500 are declared with no body.
 * - "API Pricing": billed per row returned ((rows / 1000) x the endpoint's CPM), not per
 *   request, so every call reports the rows it got.
 * - Unknown domains: not documented. `results` is typed "array or null"; both an empty
 *   array and null are read as no data (rows 0), not as a failure.
 */

export const SPYFU_BASE_URL = 'https://api.spyfu.com/apis/';

export const SPYFU_ENDPOINTS = {
  latestDomainStats: 'domain_stats_api/v2/getLatestDomainStats',
  seoCompetitors: 'competitors_api/v2/seo/getTopCompetitors',
  ppcCompetitors: 'competitors_api/v2/ppc/getTopCompetitors',
  mostValuableKeywords: 'serp_api/v2/seo/getMostValuableKeywords',
} as const;
export type SpyfuEndpoint = (typeof SPYFU_ENDPOINTS)[keyof typeof SPYFU_ENDPOINTS];

/** Largest pageSize each list endpoint takes. */
export const SPYFU_PAGE_SIZE_MAX = { competitors: 550, keywords: 10_000 } as const;

export const SPYFU_COUNTRY_CODES = [
  'AR', 'AT', 'AU', 'BE', 'BR', 'CA', 'CH', 'DE', 'DK', 'ES', 'FR', 'IE', 'IN', 'IT',
  'JP', 'MX', 'NL', 'NO', 'NZ', 'PL', 'PT', 'SE', 'SG', 'TR', 'UA', 'UK', 'US', 'ZA',
] as const;
export type SpyfuCountryCode = (typeof SPYFU_COUNTRY_CODES)[number];

/** `connectors.spyfu` in the engine config. */
export const SpyfuConfigSchema = Type.Object(
  {
    base_url: Type.String({ pattern: '^https?://', default: SPYFU_BASE_URL, description: "Root of SpyFu's APIs; the sandbox's url in tests." }),
    api_key: Type.Optional(
      Type.String({ minLength: 1, description: 'The Secret Key (Account Settings -> API Usage), through ${{ env.SPYFU_API_KEY }}; unset, the sandbox answers.' }),
    ),
    api_id: Type.Optional(
      Type.String({ minLength: 1, description: 'The API ID, through ${{ env.SPYFU_API_ID }}; when set, requests use HTTP Basic auth instead of the api_key query parameter.' }),
    ),
    country_code: Type.Unsafe<SpyfuCountryCode>({ type: 'string', enum: [...SPYFU_COUNTRY_CODES], default: 'US', description: 'Google market to read (UK, not GB).' }),
    timeout: Type.String({ pattern: DURATION_PATTERN, default: '30s', description: 'How long one request may take, like "30s".' }),
  },
  { additionalProperties: false },
);
export type SpyfuConfig = Static<typeof SpyfuConfigSchema>;

const nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** One month of a domain's search numbers. */
export const SpyfuDomainStatsSchema = Type.Object({
  searchMonth: Type.Integer({ minimum: 1, maximum: 12 }),
  searchYear: Type.Integer(),
  averageOrganicRank: Type.Number(),
  monthlyPaidClicks: Type.Number(),
  averageAdRank: Type.Number(),
  totalOrganicResults: Type.Integer(),
  monthlyBudget: Type.Number(),
  monthlyOrganicValue: Type.Number(),
  totalAdsPurchased: Type.Integer(),
  monthlyOrganicClicks: Type.Number(),
  strength: Type.Integer(),
  totalInverseRank: Type.Integer(),
});
export type SpyfuDomainStats = Static<typeof SpyfuDomainStatsSchema>;

export const SpyfuCompetitorSchema = Type.Object({
  domain: Type.String(),
  commonTerms: Type.Integer(),
  rank: Type.Optional(Type.Number()),
});
export type SpyfuCompetitor = Static<typeof SpyfuCompetitorSchema>;

export const SpyfuKeywordSchema = Type.Object({
  keyword: Type.String(),
  topRankedUrl: nullable(Type.String()),
  rank: Type.Integer(),
  rankChange: Type.Optional(nullable(Type.Integer())),
  searchVolume: nullable(Type.Integer()),
  keywordDifficulty: Type.Integer(),
  exactCostPerClick: nullable(Type.Number()),
  broadCostPerClick: Type.Optional(nullable(Type.Number())),
  phraseCostPerClick: Type.Optional(nullable(Type.Number())),
  seoClicks: Type.Integer(),
  seoClicksChange: Type.Optional(nullable(Type.Integer())),
  totalMonthlyClicks: Type.Optional(nullable(Type.Integer())),
});
export type SpyfuKeyword = Static<typeof SpyfuKeywordSchema>;

/** The envelope every endpoint answers with; `results` must be there, null meaning none. */
const EnvelopeSchema = Type.Object({
  resultCount: Type.Optional(Type.Integer()),
  totalMatchingResults: Type.Optional(Type.Integer()),
  results: nullable(Type.Array(Type.Unknown())),
});

export interface SpyfuResult<T> {
  data: T;
  /** Rows SpyFu returned: what the call is billed for. */
  rows: number;
  /** The whole parsed body, when asked for with `raw: true`. */
  raw?: unknown;
}

export interface SpyfuCallOptions {
  signal?: AbortSignal;
  /** This call's market instead of the client's. */
  countryCode?: SpyfuCountryCode;
  /** Keep the parsed body in the result. */
  raw?: boolean;
}

export interface SpyfuListOptions extends SpyfuCallOptions {
  /** Rows to ask for, and so at most to pay for (default 5, SpyFu's own). */
  limit?: number;
}

export interface SpyfuCompetitorOptions extends SpyfuListOptions {
  /** Organic competitors (default) or paid-search ones. */
  channel?: 'seo' | 'ppc';
}

/** What a step needs from SpyFu; a fake of it is a few lines. */
export interface SpyfuApi {
  /** The domain's latest month, or null when SpyFu has no data for it. */
  latestDomainStats(domain: string, options?: SpyfuCallOptions): Promise<SpyfuResult<SpyfuDomainStats | null>>;
  topCompetitors(domain: string, options?: SpyfuCompetitorOptions): Promise<SpyfuResult<SpyfuCompetitor[]>>;
  mostValuableKeywords(domain: string, options?: SpyfuListOptions): Promise<SpyfuResult<SpyfuKeyword[]>>;
}

export interface SpyfuClientOptions {
  /** Root of SpyFu's APIs (default SPYFU_BASE_URL). */
  baseUrl?: string;
  /** The Secret Key. */
  apiKey: string;
  /** The API ID; when set, the key goes in HTTP Basic auth rather than the URL. */
  apiId?: string;
  /** Default market (default US). */
  countryCode?: SpyfuCountryCode;
  /** Milliseconds one request may take, body included (default 30000). */
  timeoutMs?: number;
  fetch?: typeof fetch;
  /** Reads "now" for a Retry-After given as a date. */
  clock?: { now(): Date };
}

const DEFAULT_LIMIT = 5;
const HOST_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/;

export class SpyfuClient implements SpyfuApi {
  private readonly baseUrl: string;
  private readonly countryCode: SpyfuCountryCode;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly clock: { now(): Date };
  private readonly authorization?: string;
  private readonly secrets: string[];

  constructor(private readonly options: SpyfuClientOptions) {
    this.baseUrl = (options.baseUrl ?? SPYFU_BASE_URL).replace(/\/?$/, '/');
    this.countryCode = options.countryCode ?? 'US';
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetch = options.fetch ?? globalThis.fetch;
    this.clock = options.clock ?? { now: () => new Date() };
    if (options.apiId) this.authorization = Buffer.from(`${options.apiId}:${options.apiKey}`).toString('base64');
    this.secrets = [options.apiKey, this.authorization ?? ''].filter((s) => s.length > 0);
  }

  async latestDomainStats(domain: string, options: SpyfuCallOptions = {}): Promise<SpyfuResult<SpyfuDomainStats | null>> {
    const host = hostName(domain);
    const { rows, raw } = await this.get(SPYFU_ENDPOINTS.latestDomainStats, host, { domain: host }, SpyfuDomainStatsSchema, options);
    const latest = rows.reduce<SpyfuDomainStats | null>((best, row) => (!best || monthOf(row) > monthOf(best) ? row : best), null);
    return { data: latest, rows: rows.length, ...raw };
  }

  async topCompetitors(domain: string, options: SpyfuCompetitorOptions = {}): Promise<SpyfuResult<SpyfuCompetitor[]>> {
    const host = hostName(domain);
    const endpoint = options.channel === 'ppc' ? SPYFU_ENDPOINTS.ppcCompetitors : SPYFU_ENDPOINTS.seoCompetitors;
    const pageSize = limitOf(options.limit, SPYFU_PAGE_SIZE_MAX.competitors, endpoint, host);
    const params = { domain: host, pageSize: String(pageSize), startingRow: '1' };
    const { rows, raw } = await this.get(endpoint, host, params, SpyfuCompetitorSchema, options);
    return { data: rows, rows: rows.length, ...raw };
  }

  async mostValuableKeywords(domain: string, options: SpyfuListOptions = {}): Promise<SpyfuResult<SpyfuKeyword[]>> {
    const host = hostName(domain);
    const endpoint = SPYFU_ENDPOINTS.mostValuableKeywords;
    const pageSize = limitOf(options.limit, SPYFU_PAGE_SIZE_MAX.keywords, endpoint, host);
    const params = { query: host, pageSize: String(pageSize), startingRow: '1' };
    const { rows, raw } = await this.get(endpoint, host, params, SpyfuKeywordSchema, options);
    return { data: rows, rows: rows.length, ...raw };
  }

  /** One GET: status mapped to retry behaviour, body checked against `item`'s page. */
  private async get<T extends TSchema>(
    endpoint: SpyfuEndpoint,
    domain: string,
    params: Record<string, string>,
    item: T,
    options: SpyfuCallOptions,
  ): Promise<{ rows: Static<T>[]; raw: { raw?: unknown } }> {
    const where = `SpyFu ${endpointName(endpoint)} for ${domain}`;
    const url = new URL(endpoint, this.baseUrl);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
    url.searchParams.set('countryCode', options.countryCode ?? this.countryCode);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.authorization) headers.authorization = `Basic ${this.authorization}`;
    else url.searchParams.set('api_key', this.options.apiKey);

    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal;
    let response: Response;
    let text: string;
    try {
      response = await this.fetch(url, { headers, signal });
      text = await response.text();
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (timeout.signal.aborted) throw new Error(`${where}: no answer within ${this.timeoutMs}ms (timeout)`);
      throw new Error(`${where}: request failed: ${this.scrub(causeChain(err))}`);
    } finally {
      clearTimeout(timer);
    }

    const status = response.status;
    const snippet = this.scrub(text.slice(0, 200));
    if (status === 429) {
      // SpyFu documents 1 second when Retry-After is absent.
      const afterMs = retryAfterMs(response.headers.get('retry-after'), this.clock.now().getTime()) ?? 1000;
      throw new RetryAfterError(`${where}: 429 Too Many Requests (SpyFu's per-endpoint rate limit); retry after ${afterMs}ms`, afterMs);
    }
    if (status >= 500 || status === 408) throw new Error(`${where}: ${status} from SpyFu: ${snippet}`);
    if (status === 401 || status === 403) {
      const credentials = this.authorization ? 'api_id and api_key' : 'api_key';
      throw new NonRetriableError(
        `${where}: ${status}, SpyFu refused the credentials: check ${credentials} (Account Settings -> API Usage) and that the plan includes API access`,
      );
    }
    if (status >= 400) throw new NonRetriableError(`${where}: ${status} from SpyFu: ${snippet}`);

    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new NonRetriableError(`${where}: the response is not JSON: ${snippet}`);
    }
    const unexpected = (schema: TSchema, value: unknown, prefix = '') => {
      const error = Value.Errors(schema, value).First();
      const got = this.scrub(JSON.stringify(error?.value) ?? 'nothing').slice(0, 120);
      return new NonRetriableError(`${where}: unexpected response at ${prefix}${error?.path || '/'}: ${error?.message ?? 'does not match'} (got ${got})`);
    };
    if (!Value.Check(EnvelopeSchema, body)) throw unexpected(EnvelopeSchema, body);
    const rows = (body.results ?? []).map((row, i) => {
      if (!Value.Check(item, row)) throw unexpected(item, row, `/results/${i}`);
      return Value.Clean(item, structuredClone(row)) as Static<T>;
    });
    return { rows, raw: options.raw ? { raw: body } : {} };
  }

  private scrub(text: string): string {
    let out = text;
    for (const secret of this.secrets) out = out.split(secret).join('[redacted]');
    return out;
  }
}

/** A client from checked `connectors.spyfu` settings (defaults applied, the key set). */
export function createSpyfuClient(config: SpyfuConfig & { api_key: string }, deps: Pick<SpyfuClientOptions, 'fetch' | 'clock'> = {}): SpyfuClient {
  const timeoutMs = parseDuration(config.timeout);
  if (timeoutMs === undefined) throw new NonRetriableError(`connectors.spyfu.timeout: expected a duration like "30s", got "${config.timeout}"`);
  return new SpyfuClient({
    baseUrl: config.base_url,
    apiKey: config.api_key,
    apiId: config.api_id,
    countryCode: config.country_code,
    timeoutMs,
    ...deps,
  });
}

function hostName(domain: string): string {
  const host = domain.trim().toLowerCase();
  if (!HOST_NAME.test(host)) {
    throw new NonRetriableError(`SpyFu: domain: expected a host name like "example.com" (no scheme, path or spaces), got ${JSON.stringify(domain)}`);
  }
  return host;
}

function limitOf(limit: number | undefined, max: number, endpoint: SpyfuEndpoint, domain: string): number {
  const n = limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new NonRetriableError(`SpyFu ${endpointName(endpoint)} for ${domain}: limit: expected an integer from 1 to ${max}, got ${limit}`);
  }
  return n;
}

const endpointName = (endpoint: SpyfuEndpoint) => endpoint.split('/').slice(2).join('/');
const monthOf = (row: SpyfuDomainStats) => row.searchYear * 12 + row.searchMonth;

function causeChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 3; e = e.cause) parts.push(e.message);
  return parts.length ? parts.join(': ') : String(err);
}
