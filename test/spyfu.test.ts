import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSpyfuClient, SpyfuClient, type SpyfuClientOptions } from '../connectors/spyfu/client.ts';
import { spyfuConnector } from '../connectors/spyfu/connector.ts';
import { keywordsOf, startSpyfuSandbox, type SpyfuSandbox, type SpyfuSandboxOptions } from '../connectors/spyfu/sandbox.ts';
import { connectorSettings } from '../engine/connector-settings.ts';
import { NonRetriableError, RetryAfterError } from '../engine/errors.ts';

const KEY = 'SANDBOXKEY42';

/** Whatever a call threw, or a failure when it did not throw. */
async function failure(call: Promise<unknown>): Promise<Error> {
  try {
    await call;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the call to fail');
}

describe('SpyFu client against the sandbox', () => {
  let sandbox: SpyfuSandbox;
  let client: SpyfuClient;
  beforeAll(async () => {
    sandbox = await startSpyfuSandbox({ apiKey: KEY, unknownDomains: ['nobody-knows.example'], now: () => new Date('2025-07-15T09:00:00Z') });
    client = new SpyfuClient({ baseUrl: sandbox.url, apiKey: KEY, timeoutMs: 5000 });
  });
  afterAll(() => sandbox.close());

  it('reads the latest domain stats: typed, one billed row, the same numbers for the same domain', async () => {
    const first = await client.latestDomainStats('acme.example');
    expect(first.rows).toBe(1);
    const stats = first.data!;
    expect(stats).toMatchObject({ searchYear: 2025, searchMonth: 6 });
    for (const field of ['averageOrganicRank', 'monthlyPaidClicks', 'averageAdRank', 'monthlyBudget', 'monthlyOrganicValue', 'monthlyOrganicClicks'] as const) {
      expect(typeof stats[field]).toBe('number');
    }
    expect(Number.isInteger(stats.totalOrganicResults)).toBe(true);
    expect(stats.strength).toBeGreaterThanOrEqual(1);
    expect(first.raw).toBeUndefined();

    expect((await client.latestDomainStats(' ACME.example ')).data).toEqual(stats);
    expect((await client.latestDomainStats('globex.example')).data).not.toEqual(stats);
    expect(sandbox.requests[0]).toMatchObject({ path: '/apis/domain_stats_api/v2/getLatestDomainStats', domain: 'acme.example', countryCode: 'US', status: 200, rows: 1 });
  });

  it('lists top competitors up to the limit, ranked, a longer page starting with the shorter one', async () => {
    const five = await client.topCompetitors('acme.example', { limit: 5 });
    const twenty = await client.topCompetitors('acme.example', { limit: 20 });
    expect(five.rows).toBe(5);
    expect(five.data).toEqual(twenty.data.slice(0, 5));
    expect(twenty.rows).toBe(twenty.data.length);
    for (const c of twenty.data) {
      expect(c.domain).toMatch(/^[a-z]+\.[a-z]+$/);
      expect(c.domain).not.toBe('acme.example');
      expect(Number.isInteger(c.commonTerms)).toBe(true);
    }
    const ranks = twenty.data.map((c) => c.rank!);
    expect(ranks).toEqual([...ranks].sort((a, b) => b - a));

    const paid = await client.topCompetitors('acme.example', { limit: 5, channel: 'ppc' });
    expect(paid.data).not.toEqual(five.data);
    expect(sandbox.requests.at(-1)).toMatchObject({ path: '/apis/competitors_api/v2/ppc/getTopCompetitors', pageSize: 5 });
  });

  it('lists the most valuable keywords up to the limit, by search volume, with only the typed fields', async () => {
    const result = await client.mostValuableKeywords('acme.example', { limit: 8, raw: true });
    expect(result.rows).toBe(8);
    expect(result.data).toEqual((await client.mostValuableKeywords('acme.example', { limit: 8 })).data);
    const volumes = result.data.map((k) => k.searchVolume ?? 0);
    expect(volumes).toEqual([...volumes].sort((a, b) => b - a));
    const top = result.data[0]!;
    expect(top).toMatchObject({ keyword: expect.any(String), rank: expect.any(Number), keywordDifficulty: expect.any(Number), seoClicks: expect.any(Number) });
    expect(top.topRankedUrl).toMatch(/^https:\/\/acme\.example\//);
    // The wire carries more than the typed data keeps; raw has all of it.
    expect(top).not.toHaveProperty('percentMobileSearches');
    expect((result.raw as { results: object[] }).results[0]).toHaveProperty('percentMobileSearches');
    expect(sandbox.requests.at(-1)).toMatchObject({ path: '/apis/serp_api/v2/seo/getMostValuableKeywords', domain: 'acme.example', pageSize: 8 });
  });

  it('answers unknown domains with empty data and no rows, not a failure', async () => {
    for (const domain of ['nobody-knows.example', 'shop.invalid']) {
      expect(await client.latestDomainStats(domain)).toEqual({ data: null, rows: 0 });
      expect(await client.topCompetitors(domain, { limit: 10 })).toEqual({ data: [], rows: 0 });
      expect(await client.mostValuableKeywords(domain, { limit: 10 })).toEqual({ data: [], rows: 0 });
    }
  });

  it('refuses a bad domain or limit before anything is spent', async () => {
    const before = sandbox.requests.length;
    const badDomain = await failure(client.latestDomainStats('https://acme.example/blog'));
    expect(badDomain).toBeInstanceOf(NonRetriableError);
    expect(badDomain.message).toBe('SpyFu: domain: expected a host name like "example.com" (no scheme, path or spaces), got "https://acme.example/blog"');
    const badLimit = await failure(client.topCompetitors('acme.example', { limit: 551 }));
    expect(badLimit).toBeInstanceOf(NonRetriableError);
    expect(badLimit.message).toBe('SpyFu seo/getTopCompetitors for acme.example: limit: expected an integer from 1 to 550, got 551');
    expect(sandbox.requests.length).toBe(before);
  });

  it('counts the rows it returns as the sandbox counts the rows it served', async () => {
    const counted = await startSpyfuSandbox({ apiKey: KEY });
    const c = new SpyfuClient({ baseUrl: counted.url, apiKey: KEY });
    const results = await Promise.all([c.latestDomainStats('a.example'), c.topCompetitors('a.example', { limit: 7 }), c.mostValuableKeywords('a.example', { limit: 11 })]);
    expect(results.map((r) => r.rows)).toEqual([1, 7, 11]);
    expect(counted.rowsServed).toBe(19);
    await counted.close();
  });
});

describe('SpyFu failures carry their retry behaviour', () => {
  let sandbox: SpyfuSandbox | undefined;
  const start = async (options: SpyfuSandboxOptions, client: Partial<SpyfuClientOptions> = {}) => {
    sandbox = await startSpyfuSandbox({ apiKey: KEY, ...options });
    return new SpyfuClient({ baseUrl: sandbox.url, apiKey: KEY, timeoutMs: 5000, ...client });
  };
  afterEach(async () => {
    await sandbox?.close();
    sandbox = undefined;
  });

  it('429 is a RetryAfterError waiting as long as Retry-After says', async () => {
    const client = await start({ faults: { throttle: { first: 1 }, retryAfterSeconds: 2 } });
    const err = await failure(client.latestDomainStats('acme.example'));
    expect(err).toBeInstanceOf(RetryAfterError);
    expect((err as RetryAfterError).afterMs).toBe(2000);
    expect(err.message).toBe("SpyFu getLatestDomainStats for acme.example: 429 Too Many Requests (SpyFu's per-endpoint rate limit); retry after 2000ms");
    expect((await client.latestDomainStats('acme.example')).rows).toBe(1);
  });

  it('reads a Retry-After date against the injected clock', async () => {
    const client = new SpyfuClient({
      apiKey: KEY,
      clock: { now: () => new Date('2025-06-01T12:00:00Z') },
      fetch: async () => new Response('{}', { status: 429, headers: { 'retry-after': 'Sun, 01 Jun 2025 12:00:03 GMT' } }),
    });
    expect(((await failure(client.latestDomainStats('acme.example'))) as RetryAfterError).afterMs).toBe(3000);
  });

  it('a 500 is a plain, retriable Error naming the endpoint and domain', async () => {
    const client = await start({ faults: { error: true } });
    const err = await failure(client.topCompetitors('site1.example'));
    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect(err).not.toBeInstanceOf(RetryAfterError);
    expect(err.message).toMatch(/^SpyFu seo\/getTopCompetitors for site1\.example: 500 from SpyFu: /);
  });

  it('a refused key is a NonRetriableError that never shows the key', async () => {
    const byQuery = await start({}, { apiKey: 'WRONGKEY99' });
    const err = await failure(byQuery.mostValuableKeywords('acme.example'));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toBe(
      'SpyFu seo/getMostValuableKeywords for acme.example: 401, SpyFu refused the credentials: check api_key (Account Settings -> API Usage) and that the plan includes API access',
    );

    const byBasic = new SpyfuClient({ baseUrl: sandbox!.url, apiKey: 'WRONGKEY99', apiId: '00000000-0000-0000-0000-000000000000' });
    const basicErr = await failure(byBasic.latestDomainStats('acme.example'));
    expect(basicErr).toBeInstanceOf(NonRetriableError);
    expect(basicErr.message).toContain('check api_id and api_key');
    for (const e of [err, basicErr]) expect(`${e.message} ${e.stack}`).not.toContain('WRONGKEY99');
  });

  it('Basic auth with the right id and key works and keeps the key out of the URL', async () => {
    const urls: string[] = [];
    const client = await start({ apiId: 'my-api-id' }, { apiId: 'my-api-id', fetch: (url, init) => (urls.push(String(url)), fetch(url, init)) });
    expect((await client.latestDomainStats('acme.example')).rows).toBe(1);
    expect(urls).toHaveLength(1);
    expect(urls[0]).not.toContain(KEY);
  });

  // Silence, aborts and latency are the connector suite's (test/connectors.test.ts); the message is SpyFu's.
  it('gives up within timeoutMs on a silent server, saying so', async () => {
    const client = await start({ faults: { hang: { keys: ['slow.example'] } } }, { timeoutMs: 200 });
    const err = await failure(client.latestDomainStats('slow.example'));
    expect(err.message).toBe('SpyFu getLatestDomainStats for slow.example: no answer within 200ms (timeout)');
  });

  it('garbled JSON is a NonRetriableError naming the endpoint and domain', async () => {
    const client = await start({ faults: { malformed: true } });
    const err = await failure(client.mostValuableKeywords('acme.example', { limit: 3 }));
    expect(err).toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/^SpyFu seo\/getMostValuableKeywords for acme\.example: the response is not JSON: \{"resultCount":3,/);
  });

  it('a body without the expected fields is a NonRetriableError saying where', async () => {
    const answer = (body: unknown) =>
      new SpyfuClient({ apiKey: KEY, fetch: async () => new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json' } }) });
    const noResults = await failure(answer({ resultCount: 1 }).topCompetitors('acme.example'));
    expect(noResults).toBeInstanceOf(NonRetriableError);
    expect(noResults.message).toMatch(/^SpyFu seo\/getTopCompetitors for acme\.example: unexpected response at \/results: /);
    const badRow = await failure(answer({ results: [{ ...keywordsOf('acme.example')[0], rank: '7' }] }).mostValuableKeywords('acme.example'));
    expect(badRow.message).toMatch(/^SpyFu seo\/getMostValuableKeywords for acme\.example: unexpected response at \/results\/0\/rank: Expected integer \(got "7"\)$/);
    expect(await answer({ resultCount: 0, results: null }).mostValuableKeywords('acme.example')).toEqual({ data: [], rows: 0 });
  });

  it('a network failure is retriable and does not show the key', async () => {
    const client = await start({});
    await sandbox!.close();
    sandbox = undefined;
    const err = await failure(client.latestDomainStats('acme.example'));
    expect(err).not.toBeInstanceOf(NonRetriableError);
    expect(err.message).toMatch(/^SpyFu getLatestDomainStats for acme\.example: request failed: /);
    expect(err.message).not.toContain(KEY);
  });
});

describe('SpyFu config', () => {
  const settings = (spyfu: Record<string, unknown>) => connectorSettings(spyfuConnector, { connectors: { spyfu } });

  it('builds a client from the checked config, sending its market and key', async () => {
    const config = settings({ base_url: 'http://spyfu.test/apis', api_key: KEY, country_code: 'UK', timeout: '1s' });
    const seen: string[] = [];
    const client = createSpyfuClient({ ...config, api_key: KEY }, {
      fetch: async (url) => {
        seen.push(String(url));
        return new Response('{"resultCount":0,"domain":"acme.example","results":[]}');
      },
    });
    await client.latestDomainStats('acme.example');
    expect(seen).toEqual([`http://spyfu.test/apis/domain_stats_api/v2/getLatestDomainStats?domain=acme.example&countryCode=UK&api_key=${KEY}`]);
  });

  it('fills defaults; rejects unknown keys and markets SpyFu does not have', () => {
    expect(settings({})).toEqual({ base_url: 'https://api.spyfu.com/apis/', country_code: 'US', timeout: '30s' });
    expect(() => settings({ api_key: KEY, country: 'US' })).toThrow('connectors.spyfu.country: unknown key "country"; allowed keys: base_url, api_key, api_id, country_code, timeout');
    expect(() => settings({ api_key: KEY, country_code: 'GB' })).toThrow('connectors.spyfu.country_code: expected one of "AR"');
  });
});
