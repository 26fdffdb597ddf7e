import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createSemrushClient,
  SEMRUSH_UNITS_PER_LINE,
  SemrushApiError,
  SemrushClient,
  type SemrushClientOptions,
  SemrushUnavailableError,
} from '../connectors/semrush/client.ts';
import { semrushConnector } from '../connectors/semrush/connector.ts';
import { parseCsv, parseErrorLine, parseReport } from '../connectors/semrush/parse.ts';
import { SANDBOX_KEY, type SemrushSandbox, type SemrushSandboxOptions, startSemrushSandbox } from '../connectors/semrush/sandbox.ts';
import { connectorSettings } from '../engine/connector-settings.ts';
import { NonRetriableError, RetryAfterError } from '../engine/errors.ts';

const fixture = (name: string) => readFileSync(new URL(`../connectors/semrush/fixtures/${name}`, import.meta.url), 'utf8');

/** Runs `fn` against a sandbox started with `options`, closing it afterwards. */
async function withSandbox<T>(options: SemrushSandboxOptions, fn: (sandbox: SemrushSandbox, client: SemrushClient) => Promise<T>, clientOptions: Partial<SemrushClientOptions> = {}): Promise<T> {
  const sandbox = await startSemrushSandbox(options);
  try {
    return await fn(sandbox, new SemrushClient({ baseUrl: sandbox.url, key: options.key ?? SANDBOX_KEY, timeoutMs: 2000, ...clientOptions }));
  } finally {
    await sandbox.close();
  }
}

const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (err: unknown) => err as Error,
  );

const nonIncreasing = (values: (number | null)[]) => values.every((v, i) => i === 0 || (v ?? 0) <= (values[i - 1] ?? 0));

describe('SEMrush client against the sandbox', () => {
  let sandbox: SemrushSandbox;
  let client: SemrushClient;
  beforeAll(async () => {
    sandbox = await startSemrushSandbox();
    client = new SemrushClient({ baseUrl: sandbox.url, key: SANDBOX_KEY, timeoutMs: 2000 });
  });
  afterAll(() => sandbox.close());

  it('domain overview: one typed row for 10 units', async () => {
    const { rows, units } = await client.domainRank('acme-widgets.com');
    expect(rows).toHaveLength(1);
    const [row] = rows;
    expect(row!.domain).toBe('acme-widgets.com');
    for (const value of [row!.rank, row!.organicKeywords, row!.organicTraffic, row!.organicCost, row!.adwordsKeywords, row!.adwordsTraffic, row!.adwordsCost]) {
      expect(value).toEqual(expect.any(Number));
    }
    expect(row!.adwordsKeywords).toBeGreaterThan(0);
    expect(units).toBe(10);
    expect(sandbox.requests.at(-1)).toMatchObject({ type: 'domain_rank', domain: 'acme-widgets.com', database: 'us', displayLimit: '1', keyAccepted: true });
  });

  it('organic keywords: numbers parsed, by traffic share, display_limit honoured, 10 units a line', async () => {
    const { rows, units } = await client.domainOrganic('acme-widgets.com', { limit: 8 });
    expect(rows).toHaveLength(8);
    expect(units).toBe(80);
    for (const row of rows) {
      expect(row.keyword).toEqual(expect.any(String));
      expect(row.url).toMatch(/^https:\/\/www\.acme-widgets\.com\//);
      for (const value of [row.position, row.previousPosition, row.searchVolume, row.cpc, row.trafficPercent, row.trafficCostPercent, row.competition, row.results]) {
        expect(value).toEqual(expect.any(Number));
      }
      expect(row.position).toBeGreaterThanOrEqual(1);
      expect(row.trends).toHaveLength(12);
    }
    expect(nonIncreasing(rows.map((r) => r.trafficPercent))).toBe(true);
    expect(rows[4]!.keyword).toBe('acme widgets pros; cons'); // a `;` inside a quoted field survives the wire
    expect(sandbox.requests.at(-1)).toMatchObject({ type: 'domain_organic', displayLimit: '8', exportColumns: 'Ph,Po,Pp,Nq,Cp,Ur,Tr,Tc,Co,Nr,Td', lines: 8, units: 80 });

    const fewer = await client.domainOrganic('acme-widgets.com', { limit: 3 });
    expect(fewer.rows).toEqual(rows.slice(0, 3));
    expect(fewer.units).toBe(30);
  });

  it('organic competitors: most relevant first, 40 units a line', async () => {
    const { rows, units } = await client.domainCompetitors('acme-widgets.com', { limit: 5 });
    expect(rows).toHaveLength(5);
    expect(units).toBe(5 * SEMRUSH_UNITS_PER_LINE.domain_organic_organic);
    expect(units).toBe(200);
    expect(nonIncreasing(rows.map((r) => r.relevance))).toBe(true);
    expect(new Set(rows.map((r) => r.domain)).size).toBe(5);
    expect(rows.map((r) => r.domain)).not.toContain('acme-widgets.com');
    for (const row of rows) {
      for (const value of [row.relevance, row.commonKeywords, row.organicKeywords, row.organicTraffic, row.organicCost, row.adwordsKeywords]) {
        expect(value).toEqual(expect.any(Number));
      }
      expect(row.commonKeywords!).toBeLessThanOrEqual(row.organicKeywords!);
    }
  });

  it('paid keywords: typed rows, 20 units a line', async () => {
    const { rows, units } = await client.domainAdwords('acme-widgets.com', { limit: 6 });
    expect(rows).toHaveLength(6);
    expect(units).toBe(120);
    for (const row of rows) {
      expect(row.visibleUrl).toEqual(expect.any(String));
      for (const value of [row.position, row.searchVolume, row.cpc, row.trafficPercent, row.trafficCost, row.competition, row.results]) {
        expect(value).toEqual(expect.any(Number));
      }
    }
    expect(nonIncreasing(rows.map((r) => r.trafficPercent))).toBe(true);
  });

  it('uses the configured limit when a call names none, and always sends display_limit', async () => {
    const configured = new SemrushClient({ baseUrl: sandbox.url, key: SANDBOX_KEY, displayLimits: { domain_organic_organic: 2, domain_adwords: undefined } });
    expect((await configured.domainAdwords('acme-widgets.com')).rows).toHaveLength(100);
    expect((await configured.domainCompetitors('acme-widgets.com')).rows).toHaveLength(2);
    expect(sandbox.requests.every((r) => r.displayLimit !== null)).toBe(true);
  });

  it('the same domain gives the same data twice; another domain differs', async () => {
    const first = await client.domainOrganic('northwind.io', { limit: 5 });
    const again = await client.domainOrganic('northwind.io', { limit: 5 });
    expect(again).toEqual(first);
    expect((await client.domainRank('northwind.io')).rows).toEqual((await client.domainRank('northwind.io')).rows);
    const other = await client.domainOrganic('globex.com', { limit: 5 });
    expect(other.rows.map((r) => r.keyword)).not.toEqual(first.rows.map((r) => r.keyword));
    expect((await client.domainRank('globex.com')).rows[0]!.organicTraffic).not.toBe((await client.domainRank('northwind.io')).rows[0]!.organicTraffic);
  });

  it('keeps the raw answer when asked', async () => {
    const keeping = new SemrushClient({ baseUrl: sandbox.url, key: SANDBOX_KEY, keepRaw: true });
    const { raw } = await keeping.domainRank('acme-widgets.com');
    expect(raw?.split('\r\n')[0]).toBe('"Domain";"Rank";"Organic Keywords";"Organic Traffic";"Organic Cost";"Adwords Keywords";"Adwords Traffic";"Adwords Cost"');
    expect((await client.domainRank('acme-widgets.com')).raw).toBeUndefined();
  });

  it('NOTHING FOUND is an empty result, not a failure', async () => {
    await withSandbox({ unknownDomains: ['ghost-company.com'] }, async (box, c) => {
      expect(await c.domainOrganic('ghost-company.com', { limit: 10 })).toEqual({ rows: [], units: 0 });
      expect(await c.domainRank('nobody.invalid')).toEqual({ rows: [], units: 0 });
      expect(box.requests.map((r) => r.answer)).toEqual(['ERROR 50 :: NOTHING FOUND', 'ERROR 50 :: NOTHING FOUND']);
      expect(box.unitsSpent).toBe(0);
    });
    expect((await client.domainRank('example.com')).rows[0]!.adwordsKeywords).toBe(0);
    expect(await client.domainAdwords('example.com', { limit: 5 })).toEqual({ rows: [], units: 0 });
  });

  it('the sandbox counts the units it charged', async () => {
    await withSandbox({}, async (box, c) => {
      const spent = [(await c.domainRank('acme-widgets.com')).units, (await c.domainOrganic('acme-widgets.com', { limit: 4 })).units, (await c.domainCompetitors('acme-widgets.com', { limit: 2 })).units];
      expect(spent).toEqual([10, 40, 80]);
      expect(box.unitsSpent).toBe(130);
    });
  });

  it('refuses a bad domain or limit before asking SEMrush', async () => {
    const before = sandbox.requests.length;
    expect(await failure(client.domainOrganic('https://acme-widgets.com/', { limit: 5 }))).toBeInstanceOf(NonRetriableError);
    const zero = await failure(client.domainOrganic('acme-widgets.com', { limit: 0 }));
    expect(zero).toBeInstanceOf(NonRetriableError);
    expect(zero.message).toMatch(/limit must be a whole number from 1 to 100000, got 0/);
    expect(sandbox.requests.length).toBe(before);
  });

  it('the sandbox answers like SEMrush to a request missing parameters', async () => {
    const ask = async (query: string) => (await fetch(`${sandbox.url}?${query}`)).text();
    const base = `key=${SANDBOX_KEY}&type=domain_organic&domain=acme-widgets.com&database=us`;
    expect(await ask(base)).toBe("ERROR 10013 :: Wrong parameter 'display_limit'. The required parameter is not specified.");
    expect(await ask(`key=${SANDBOX_KEY}&type=domain_organic&database=us&display_limit=5`)).toBe('ERROR 42 :: MANDATORY PARAMETER domain NOT SET OR EMPTY');
    expect(await ask(`key=${SANDBOX_KEY}&domain=acme-widgets.com&database=us&display_limit=5`)).toBe('ERROR 41 :: MANDATORY PARAMETER type NOT SET OR EMPTY');
    expect(await ask(`${base}&display_limit=2&export_columns=Nq,Ph`)).toBe(
      'Search Volume;Keyword\r\n200000;acme widgets\r\n270000;acme widgets download',
    );
  });
});

describe('SEMrush failures', () => {
  it('a spent unit balance is not retried; a small one buys fewer lines first', async () => {
    await withSandbox({ unitsBalance: 0 }, async (box, c) => {
      const err = await failure(c.domainOrganic('acme-widgets.com', { limit: 10 }));
      expect(err).toBeInstanceOf(NonRetriableError);
      expect(err).toBeInstanceOf(SemrushApiError);
      expect((err as SemrushApiError).code).toBe(132);
      expect(err.message).toMatch(/^SEMrush domain_organic for acme-widgets\.com \(us\): ERROR 132 :: API UNITS BALANCE IS ZERO: /);
      expect(box.requests[0]).toMatchObject({ status: 403, units: 0 });
    });
    await withSandbox({ unitsBalance: 35 }, async (box, c) => {
      const partial = await c.domainOrganic('acme-widgets.com', { limit: 10 });
      expect(partial.rows).toHaveLength(3);
      expect(partial.units).toBe(30);
      expect(await failure(c.domainRank('acme-widgets.com'))).toBeInstanceOf(NonRetriableError);
      expect(box.unitsSpent).toBe(30);
    });
  });

  it('a wrong key is not retried and never appears in the message', async () => {
    const key = 'live-key-6f1d2c9a7e3b4d58a0c1';
    await withSandbox({}, async (box, c) => {
      const err = await failure(c.domainRank('acme-widgets.com'));
      expect(err).toBeInstanceOf(NonRetriableError);
      expect((err as SemrushApiError).code).toBe(120);
      expect(err.message).toContain('ERROR 120 :: WRONG KEY - ID PAIR');
      expect(err.message).toContain('connectors.semrush.key');
      expect(err.message).not.toContain(key);
      expect(err.message).not.toContain(key.slice(0, 8));
      expect(JSON.stringify(box.requests)).not.toContain(key);
      expect(box.requests[0]).toMatchObject({ keyAccepted: false, status: 200 });
    }, { key });
  });

  it('a key echoed in an error page is masked', async () => {
    const key = 'live-key-6f1d2c9a7e3b4d58a0c1';
    const echo: typeof fetch = async (input) => new Response(`bad request ${String(input)}`, { status: 400 });
    const err = await failure(new SemrushClient({ key, fetch: echo }).domainRank('acme-widgets.com'));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toContain('HTTP 400 bad request');
    expect(err.message).not.toContain(key);
  });

  // 429, 5xx, silence, aborts and latency are the connector suite's (test/connectors.test.ts).
  it('503 with a Retry-After waits for it', async () => {
    const unavailable: typeof fetch = async () => new Response('busy', { status: 503, headers: { 'retry-after': '2' } });
    const err = await failure(new SemrushClient({ key: SANDBOX_KEY, fetch: unavailable }).domainRank('acme-widgets.com'));
    expect(err).toBeInstanceOf(RetryAfterError);
    expect((err as RetryAfterError).afterMs).toBe(2000);
  });

  it('gives up on a silent server within its timeout, saying so', async () => {
    await withSandbox({ faults: { hang: { keys: ['slow-corp.com'] } } }, async (box, c) => {
      const err = await failure(c.domainOrganic('slow-corp.com', { limit: 5 }));
      expect(err).toBeInstanceOf(SemrushUnavailableError);
      expect(err.message).toBe('SEMrush domain_organic for slow-corp.com (us): no answer within 150ms');
      expect(box.requests[0]!.answer).toBe('held');
      expect((await c.domainRank('acme-widgets.com')).rows).toHaveLength(1);
    }, { timeoutMs: 150 });
  });

  it('a malformed answer is not retried, and says which report and domain', async () => {
    await withSandbox({ faults: { malformed: true } }, async (_box, c) => {
      const err = await failure(c.domainOrganic('acme-widgets.com', { limit: 5 }));
      expect(err).toBeInstanceOf(NonRetriableError);
      expect(err.message).toMatch(/^SEMrush domain_organic for acme-widgets\.com: line 3 has 10 fields, expected 11/);
    });
  });

  it('a header with a column not asked for in place of an optional one still reads, that column null', async () => {
    await withSandbox({ faults: { malformed: true }, malformedAs: 'header' }, async (_box, c) => {
      const { rows } = await c.domainCompetitors('acme-widgets.com', { limit: 5 });
      expect(rows).toHaveLength(5);
      expect(rows.map((r) => r.adwordsKeywords)).toEqual([null, null, null, null, null]);
      expect(rows.every((r) => typeof r.commonKeywords === 'number')).toBe(true);
    });
  });

  it('a fault is decided after the key is checked: a wrong key still hears ERROR 120', async () => {
    await withSandbox({ faults: { throttle: true } }, async (box, c) => {
      expect(await failure(c.domainRank('acme-widgets.com'))).toBeInstanceOf(SemrushApiError);
      expect(box.requests[0]).toMatchObject({ keyAccepted: false, status: 200, answer: 'ERROR 120 :: WRONG KEY - ID PAIR' });
    }, { key: 'not-the-sandbox-key' });
  });
});

describe('SEMrush answers in the real format (fixtures)', () => {
  it('reads an escaped answer: a quoted `;`, a doubled quote, an empty number, CRLF', () => {
    const rows = parseReport('domain_organic', fixture('domain_organic.escaped.csv'), 'example.com');
    expect(rows.map((r) => r.keyword)).toEqual(['competitor analysis', 'seo; sem difference', '27" monitor review']);
    expect(rows[0]).toEqual({
      keyword: 'competitor analysis',
      position: 3,
      previousPosition: 4,
      searchVolume: 9900,
      cpc: 12.41,
      url: 'https://www.example.com/competitor-analysis/',
      trafficPercent: 21.37,
      trafficCostPercent: 33.1,
      competition: 0.61,
      results: 412000000,
      trends: [0.67, 0.82, 0.82, 1, 0.82, 0.82, 0.67, 0.67, 0.67, 0.67, 0.82, 0.82],
    });
    expect(rows[1]!.cpc).toBeNull();
    expect(rows[1]!.previousPosition).toBe(0);
  });

  it('reads a plain answer with empty fields', () => {
    const rows = parseReport('domain_organic', fixture('domain_organic.csv'), 'example.com');
    expect(rows).toHaveLength(3);
    expect(rows[0]!.results).toBeNull();
    expect(rows[0]!.searchVolume).toBe(165000);
    expect(rows[2]!.trends).toEqual([]);
  });

  it('reads the overview, competitors and paid keywords', () => {
    expect(parseReport('domain_rank', fixture('domain_rank.csv'), 'example.com')).toEqual([
      { domain: 'example.com', rank: 48213, organicKeywords: 1873, organicTraffic: 22940, organicCost: 31870, adwordsKeywords: 36, adwordsTraffic: 410, adwordsCost: 1288 },
    ]);
    const competitors = parseReport('domain_organic_organic', fixture('domain_organic_organic.csv'), 'example.com');
    expect(competitors.map((r) => [r.domain, r.relevance, r.commonKeywords])).toEqual([
      ['example.org', 0.31, 1204],
      ['example.net', 0.22, 880],
      ['iana.org', 0.09, 131],
    ]);
    const paid = parseReport('domain_adwords', fixture('domain_adwords.csv'), 'example.com');
    expect(paid[1]).toMatchObject({ keyword: 'example pricing', visibleUrl: '', trafficCost: 20, cpc: 6.02 });
  });

  it('recognises error lines, both spellings of the separator', () => {
    expect(parseErrorLine(fixture('error-nothing-found.txt'))).toEqual({ code: 50, message: 'NOTHING FOUND' });
    expect(parseErrorLine(fixture('error-units-balance-zero.txt'))).toEqual({ code: 132, message: 'API UNITS BALANCE IS ZERO' });
    expect(parseErrorLine(fixture('error-wrong-key.txt'))).toEqual({ code: 120, message: 'WRONG KEY - ID PAIR' });
    expect(parseErrorLine('ERROR 50:: NOTHING FOUND')).toEqual({ code: 50, message: 'NOTHING FOUND' });
    expect(parseErrorLine(fixture('domain_rank.csv'))).toBeUndefined();
  });

  it('refuses an answer to another question, naming the column it needs', () => {
    expect(() => parseReport('domain_organic', fixture('domain_organic_organic.csv'), 'example.com')).toThrow(
      /^SEMrush domain_organic for example\.com: the header has no "Keyword" column \(asked for Ph\), which this report needs; got "Domain;Competitor Relevance;/,
    );
    const text = fixture('domain_rank.csv').replace('48213', '48k');
    expect(() => parseReport('domain_rank', text, 'example.com')).toThrow('SEMrush domain_rank for example.com: line 2, column "Rank": expected a number, got "48k"');
    expect(() => parseReport('domain_rank', '', 'example.com')).toThrow(NonRetriableError);
    expect(() => parseReport('domain_rank', 'Domain;Rank\n"example.com;1\n', 'example.com')).toThrow(NonRetriableError);
  });

  it('maps columns by header name: an added column is ignored, a missing optional one is null', () => {
    const [head, ...lines] = fixture('domain_organic.csv').trimEnd().split('\n');
    const names = head!.split(';');
    const moved = (line: string) => {
      const f = line.split(';');
      // Url and Trends dropped, Keyword Difficulty added in front, Position moved to the end.
      return ['55', f[0], ...f.slice(2, 5), ...f.slice(6, 10), f[1]].join(';');
    };
    const reshaped = [moved(head!).replace('55', 'Keyword Difficulty'), ...lines.map(moved)].join('\n');
    expect(reshaped.split('\n')[0]).toBe(['Keyword Difficulty', names[0], ...names.slice(2, 5), ...names.slice(6, 10), names[1]].join(';'));
    const rows = parseReport('domain_organic', reshaped, 'example.com');
    const original = parseReport('domain_organic', fixture('domain_organic.csv'), 'example.com');
    expect(rows).toEqual(original.map((r) => ({ ...r, url: null, trends: [] })));
    expect(rows[0]).toMatchObject({ keyword: 'example', position: 1, searchVolume: 165000 });
  });

  it('reads LF, CRLF, a quoted `;` and no final line end alike', () => {
    const plain = fixture('domain_organic.escaped.csv');
    const expected = parseReport('domain_organic', plain, 'example.com');
    expect(expected).toHaveLength(3);
    for (const variant of [plain.replaceAll('\r\n', '\n'), plain.trimEnd(), plain.replaceAll('\r\n', '\n').trimEnd(), `\uFEFF${plain}\r\n\r\n`]) {
      expect(parseReport('domain_organic', variant, 'example.com')).toEqual(expected);
    }
    expect(expected[1]!.keyword).toBe('seo; sem difference');
  });

  it('splits CSV like SEMrush writes it', () => {
    expect(parseCsv('a;b\r\n"x;y";""\n\n"q""z";7"\n').map((r) => r.fields)).toEqual([
      ['a', 'b'],
      ['x;y', ''],
      ['q"z', '7"'],
    ]);
  });

  it('a fixture through the client: rows and units', async () => {
    const body = fixture('domain_organic.escaped.csv');
    const asked: URL[] = [];
    const fake: typeof fetch = async (input) => {
      asked.push(new URL(String(input)));
      return new Response(body, { status: 200 });
    };
    const result = await new SemrushClient({ key: SANDBOX_KEY, fetch: fake, database: 'uk' }).domainOrganic('Example.com', { limit: 3 });
    expect(result.rows).toHaveLength(3);
    expect(result.units).toBe(30);
    const params = Object.fromEntries(asked[0]!.searchParams);
    expect(asked[0]!.origin + asked[0]!.pathname).toBe('https://api.semrush.com/');
    expect(params).toEqual({
      type: 'domain_organic',
      key: SANDBOX_KEY,
      domain: 'example.com',
      database: 'uk',
      display_limit: '3',
      export_columns: 'Ph,Po,Pp,Nq,Cp,Ur,Tr,Tc,Co,Nr,Td',
      export_escape: '1',
    });
  });
});

describe('SEMrush config', () => {
  const settings = (semrush: Record<string, unknown>) => connectorSettings(semrushConnector, { connectors: { semrush } });

  it('fills defaults and builds a client', async () => {
    expect(settings({ key: 'k-1' })).toEqual({
      base_url: 'https://api.semrush.com/',
      key: 'k-1',
      database: 'us',
      display_limit: { domain_organic: 100, domain_organic_organic: 10, domain_adwords: 100 },
      timeout: '30s',
      units_per_line: SEMRUSH_UNITS_PER_LINE,
    });
    await withSandbox({}, async (box) => {
      const checked = settings({ base_url: box.url, key: SANDBOX_KEY, display_limit: { domain_organic: 4 }, timeout: '2s', units_per_line: { domain_organic: 12 } });
      const client = createSemrushClient({ ...checked, key: SANDBOX_KEY });
      expect((await client.domainOrganic('acme-widgets.com')).units).toBe(48);
    });
  });

  it('says which key is wrong, and never shows the API key', () => {
    expect(() => settings({ key: 'k-1', display_limit: { domain_organic: 0 } })).toThrow('connectors.semrush.display_limit.domain_organic: expected a positive integer, got 0');
    expect(() => settings({ key: 'k-1', databse: 'uk' })).toThrow('connectors.semrush.databse: unknown key "databse" (did you mean "database"?)');
    expect(() => settings({ key: 42 })).toThrow('connectors.semrush.key: expected a string (the value is not shown)');
    expect(() => settings({ key: 'k-1', timeout: 'soon' })).toThrow('connectors.semrush.timeout: "soon" is not a duration (write timeout: "30s")');
  });
});
