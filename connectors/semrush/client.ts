/**
 * The SEMrush Analytics API v3 client: domain overview, organic keywords, organic
 * competitors and paid keywords of a domain, with the API units each answer spent.
 *
 * The wire protocol, as documented by SEMrush (developer.semrush.com, "Domain reports",
 * "Overview reports", "Basic docs" of Analytics API v3, and "API unit balance"):
 *
 * - Request: GET https://api.semrush.com/?type=<report>&key=<key>&domain=<domain>
 *   &database=<db>&display_limit=<n>&export_columns=<codes>[&export_escape=1].
 *   `type`, `key`, `domain` and `database` are required. Without `display_limit` (or with 0)
 *   a report returns up to 10,000 lines, so this client always sends it. `export_columns`
 *   picks and orders the columns by code (Dn domain, Rk rank, Or/Ot/Oc organic keywords,
 *   traffic, cost, Ad/At/Ac the same for Google Ads, Ph keyword, Po position, Pp previous
 *   position, Nq search volume, Cp CPC, Ur URL, Vu visible URL, Tr traffic %, Tc traffic
 *   cost, Co competition, Nr number of results, Td trends, Cr competitor relevance, Np
 *   common keywords). `export_escape=1` wraps every field in double quotes.
 * - Answer: `;`-separated CSV whose header line holds human names, not codes, e.g.
 *   "Keyword;Position;Previous Position;Search Volume;CPC;Url;Traffic (%);Traffic Cost (%);
 *   Competition;Number of Results;Trends" (domain_organic), "Domain;Competitor Relevance;
 *   Common Keywords;Organic Keywords;Organic Traffic;Organic Cost;Adwords Keywords"
 *   (domain_organic_organic), "Domain;Rank;Organic Keywords;Organic Traffic;Organic Cost;
 *   Adwords Keywords;Adwords Traffic;Adwords Cost" (domain_rank). In domain_adwords the Tc
 *   column is headed "Traffic Cost" and an empty Visible Url is common. Trends are 12
 *   comma-separated values.
 * - Errors are a plain-text line "ERROR <code> :: <MESSAGE>", usually with HTTP 200 (an
 *   observed `ERROR 132` came with HTTP 403, so the body is read whatever the status):
 *   40-46 a mandatory parameter is missing, 50 NOTHING FOUND, 70/110/120/121/122 a bad key
 *   (120 :: WRONG KEY - ID PAIR), 130 API DISABLED, 131 LIMIT EXCEEDED, 132 API UNITS
 *   BALANCE IS ZERO, 133 DB ACCESS DENIED, 134 TOTAL LIMIT EXCEEDED, 135 API REPORT TYPE
 *   DISABLED, 500 Internal Error, 100xx a wrong parameter value.
 * - Price: per line returned (table below). A per-line report with too few units left
 *   returns only the lines the balance pays for; with none left, ERROR 132.
 */
import { type Static, Type } from '@sinclair/typebox';
import { DURATION_PATTERN, NonRetriableError, parseDuration, RetryAfterError, retryAfterMs } from '../../engine/sdk.ts';
import {
  type AdwordsKeywordRow,
  type CompetitorRow,
  type DomainRankRow,
  exportColumns,
  type OrganicKeywordRow,
  parseErrorLine,
  parseReport,
  type SemrushErrorLine,
  type SemrushReportType,
  type SemrushRows,
} from './parse.ts';

export type { AdwordsKeywordRow, CompetitorRow, DomainRankRow, OrganicKeywordRow, SemrushReportType } from './parse.ts';

export const SEMRUSH_API_URL = 'https://api.semrush.com/';

/**
 * API units one returned line costs, from the report pages of the SEMrush developer docs
 * (current data; historical data costs more). The USD price of a unit is config
 * `prices.semrush_unit`; when config sets `connectors.semrush.units_per_line`, those win.
 */
export const SEMRUSH_UNITS_PER_LINE: Readonly<Record<SemrushReportType, number>> = {
  domain_rank: 10,
  domain_organic: 10,
  domain_organic_organic: 40,
  domain_adwords: 20,
};

/** Lines asked for when a call names no limit; config `display_limit` overrides. */
export const DEFAULT_DISPLAY_LIMITS = { domain_organic: 100, domain_organic_organic: 10, domain_adwords: 100 } as const;

/** SEMrush returns at most this many lines to one request. */
export const MAX_DISPLAY_LIMIT = 100_000;

const limit = (report: keyof typeof DEFAULT_DISPLAY_LIMITS, what: string) =>
  Type.Integer({ minimum: 1, maximum: MAX_DISPLAY_LIMIT, default: DEFAULT_DISPLAY_LIMITS[report], description: `Lines of ${what} asked for by default.` });
const units = (report: SemrushReportType) =>
  Type.Integer({ minimum: 0, default: SEMRUSH_UNITS_PER_LINE[report], description: `API units one line of ${report} costs.` });

/** `connectors.semrush` in the engine config. */
export const SemrushConfigSchema = Type.Object(
  {
    base_url: Type.String({ pattern: '^https?://', default: SEMRUSH_API_URL, description: 'The Analytics API; a sandbox URL in tests.' }),
    key: Type.Optional(
      Type.String({ minLength: 1, description: 'The API key, through ${{ env.SEMRUSH_API_KEY }}; unset, the sandbox answers.', 'x-hint': 'write key: "${{ env.SEMRUSH_API_KEY }}"' }),
    ),
    database: Type.String({
      pattern: '^(mobile-)?[a-z]{2}(-ext)?$',
      default: 'us',
      description: 'Regional database: us, uk, de, mobile-us ...',
      'x-hint': 'write database: us',
    }),
    display_limit: Type.Object(
      {
        domain_organic: limit('domain_organic', 'organic keywords'),
        domain_organic_organic: limit('domain_organic_organic', 'organic competitors'),
        domain_adwords: limit('domain_adwords', 'paid keywords'),
      },
      { additionalProperties: false, default: {}, description: 'Lines asked for per report when a step names no limit.' },
    ),
    timeout: Type.String({ pattern: DURATION_PATTERN, default: '30s', description: 'How long one request may take, like "30s".' }),
    units_per_line: Type.Object(
      { domain_rank: units('domain_rank'), domain_organic: units('domain_organic'), domain_organic_organic: units('domain_organic_organic'), domain_adwords: units('domain_adwords') },
      { additionalProperties: false, default: {}, description: 'API units per returned line, when SEMrush changes its prices.' },
    ),
  },
  { additionalProperties: false },
);

export type SemrushConfig = Static<typeof SemrushConfigSchema>;

export interface SemrushClientOptions {
  /** The Analytics API root (default https://api.semrush.com/). */
  baseUrl?: string;
  key: string;
  /** Regional database (default "us"). */
  database?: string;
  /** How long one request may take before it is abandoned as retryable (default 30 s). */
  timeoutMs?: number;
  /** Lines asked for when a call names no limit. */
  displayLimits?: Partial<Record<keyof typeof DEFAULT_DISPLAY_LIMITS, number>>;
  /** Overrides of SEMRUSH_UNITS_PER_LINE. */
  unitsPerLine?: Partial<Record<SemrushReportType, number>>;
  /** Keep the answer's text on each result (for debugging and fixtures). */
  keepRaw?: boolean;
  fetch?: typeof fetch;
  /** Milliseconds since the epoch, for Retry-After dates. */
  now?: () => number;
}

/** What `createSemrushClient` needs besides the config. */
export interface SemrushDeps {
  fetch?: typeof fetch;
  /** Milliseconds since the epoch, for Retry-After dates. */
  now?: () => number;
}

/** The factory: checked `connectors.semrush` settings (defaults applied, the key set) to a client. */
export function createSemrushClient(config: SemrushConfig & { key: string }, deps: SemrushDeps = {}): SemrushClient {
  const timeoutMs = parseDuration(config.timeout);
  if (timeoutMs === undefined) throw new NonRetriableError(`connectors.semrush.timeout: expected a duration like "30s", got "${config.timeout}"`);
  return new SemrushClient({
    baseUrl: config.base_url,
    key: config.key,
    database: config.database,
    timeoutMs,
    displayLimits: config.display_limit,
    unitsPerLine: config.units_per_line,
    fetch: deps.fetch,
    now: deps.now,
  });
}

export interface SemrushResult<R> {
  rows: R[];
  /** API units this answer spent: lines returned x units per line of the report. */
  units: number;
  /** The answer's text, when the client keeps it. */
  raw?: string;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Regional database for this call (default: the client's). */
  database?: string;
}

export interface ListOptions extends CallOptions {
  /** Lines to ask for (sent as display_limit). */
  limit?: number;
}

/** An ERROR line that no retry can fix (bad key, no units, no access). */
export class SemrushApiError extends NonRetriableError {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

/** SEMrush did not answer in time, answered 5xx or `ERROR 500`: retry with backoff. */
export class SemrushUnavailableError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

const KEY_CODES = new Set([70, 110, 120, 121, 122, 402]);

/** What to do about each ERROR code; the text says how to fix it. */
function hintFor(code: number): string {
  if (KEY_CODES.has(code)) return 'check connectors.semrush.key (SEMrush: Subscription info > API units)';
  if (code === 132) return 'the API unit balance is spent; top it up in SEMrush before running again';
  if (code === 130 || code === 135) return 'the subscription does not include this API report';
  if (code === 133) return 'the subscription has no access to this database; pick another database';
  if (code === 131 || code === 134) return 'SEMrush request limit reached; contact SEMrush support';
  if ((code >= 40 && code < 50) || code >= 10000) return 'the request is wrong; this is a bug in the SEMrush connector';
  return 'see the SEMrush API error list';
}

const DOMAIN = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$/;

export class SemrushClient {
  readonly #key: string;
  readonly #baseUrl: URL;
  readonly #database: string;
  readonly #timeoutMs: number;
  readonly #limits: Record<keyof typeof DEFAULT_DISPLAY_LIMITS, number>;
  readonly #unitsPerLine: Record<SemrushReportType, number>;
  readonly #keepRaw: boolean;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;

  constructor(options: SemrushClientOptions) {
    if (!options.key) throw new NonRetriableError('SEMrush client: no API key (set connectors.semrush.key to ${{ env.SEMRUSH_KEY }})');
    this.#key = options.key;
    this.#baseUrl = new URL(options.baseUrl ?? SEMRUSH_API_URL);
    this.#database = options.database ?? 'us';
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#limits = { ...DEFAULT_DISPLAY_LIMITS, ...defined(options.displayLimits) };
    this.#unitsPerLine = { ...SEMRUSH_UNITS_PER_LINE, ...defined(options.unitsPerLine) };
    this.#keepRaw = options.keepRaw ?? false;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#now = options.now ?? Date.now;
  }

  /** Rank, organic and paid keywords, traffic and cost of a domain in one database. */
  domainRank(domain: string, options: CallOptions = {}): Promise<SemrushResult<DomainRankRow>> {
    return this.#report('domain_rank', domain, 1, options);
  }

  /** Keywords that bring the domain organic traffic, by traffic share. */
  domainOrganic(domain: string, options: ListOptions = {}): Promise<SemrushResult<OrganicKeywordRow>> {
    return this.#report('domain_organic', domain, options.limit ?? this.#limits.domain_organic, options);
  }

  /** The domain's competitors in organic search, most relevant first. */
  domainCompetitors(domain: string, options: ListOptions = {}): Promise<SemrushResult<CompetitorRow>> {
    return this.#report('domain_organic_organic', domain, options.limit ?? this.#limits.domain_organic_organic, options);
  }

  /** Keywords the domain buys in Google Ads. */
  domainAdwords(domain: string, options: ListOptions = {}): Promise<SemrushResult<AdwordsKeywordRow>> {
    return this.#report('domain_adwords', domain, options.limit ?? this.#limits.domain_adwords, options);
  }

  async #report<T extends SemrushReportType>(type: T, rawDomain: string, limit: number, options: CallOptions): Promise<SemrushResult<SemrushRows[T]>> {
    const domain = rawDomain.trim().toLowerCase();
    const database = options.database ?? this.#database;
    if (!DOMAIN.test(domain)) {
      throw new NonRetriableError(`SEMrush ${type}: "${rawDomain}" is not a domain name (write it like example.com, without https:// or a path)`);
    }
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_DISPLAY_LIMIT) {
      throw new NonRetriableError(`SEMrush ${type} for ${domain}: limit must be a whole number from 1 to ${MAX_DISPLAY_LIMIT}, got ${limit} (0 would ask for 10,000 lines)`);
    }
    const where = `SEMrush ${type} for ${domain} (${database})`;
    const url = new URL(this.#baseUrl);
    url.searchParams.set('type', type);
    url.searchParams.set('key', this.#key);
    url.searchParams.set('domain', domain);
    url.searchParams.set('database', database);
    url.searchParams.set('display_limit', String(limit));
    url.searchParams.set('export_columns', exportColumns(type));
    url.searchParams.set('export_escape', '1');

    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    let response: Response;
    let body: string;
    try {
      response = await this.#fetch(url, { signal, headers: { accept: 'text/csv, text/plain' } });
      body = await response.text();
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (timeout.aborted) throw new SemrushUnavailableError(`${where}: no answer within ${this.#timeoutMs}ms`);
      throw new SemrushUnavailableError(`${where}: ${this.#mask(describe(err))}`);
    }

    const status = response.status;
    if (status === 429) {
      throw new RetryAfterError(`${where}: 429 Too Many Requests`, retryAfterMs(response.headers.get('retry-after'), this.#now()) ?? 1000);
    }
    if (status >= 500 || status === 408) {
      const after = retryAfterMs(response.headers.get('retry-after'), this.#now());
      const message = `${where}: HTTP ${status} ${this.#mask(body.trim().slice(0, 120))}`.trim();
      throw after === undefined ? new SemrushUnavailableError(message, status) : new RetryAfterError(message, after);
    }
    const error = parseErrorLine(body);
    if (error?.code === 50) return { rows: [], units: 0, ...this.#raw(body) };
    if (error) throw this.#errorFor(error, where, status);
    if (status >= 400) throw new NonRetriableError(`${where}: HTTP ${status} ${this.#mask(body.trim().slice(0, 120))}`.trim());

    const rows = parseReport(type, body, domain);
    return { rows, units: rows.length * this.#unitsPerLine[type], ...this.#raw(body) };
  }

  #errorFor(error: SemrushErrorLine, where: string, status: number): Error {
    const line = `ERROR ${error.code} :: ${this.#mask(error.message)}`;
    if (error.code === 500) return new SemrushUnavailableError(`${where}: ${line}`, status);
    const key = KEY_CODES.has(error.code) ? ` with the key ${maskKey(this.#key)}` : '';
    return new SemrushApiError(`${where}: ${line}${key}: ${hintFor(error.code)}`, error.code);
  }

  #raw(body: string): { raw?: string } {
    return this.#keepRaw ? { raw: body } : {};
  }

  /** Text from outside may echo the request URL; the key never leaves in a message. */
  #mask(text: string): string {
    return text.split(this.#key).join(maskKey(this.#key)).split(encodeURIComponent(this.#key)).join(maskKey(this.#key));
  }
}

/** "…9f3a" for a key long enough to show its last four characters safely, else "…". */
export function maskKey(key: string): string {
  return key.length >= 16 ? `…${key.slice(-4)}` : '…';
}

/** The entries that are set: an override left undefined keeps the default. */
function defined<T extends object>(values: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(values ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message} (${cause.message})` : err.message;
}
