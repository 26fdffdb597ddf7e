import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SemrushClient } from '../connectors/semrush/client.ts';
import { SANDBOX_KEY, type SemrushSandbox, startSemrushSandbox } from '../connectors/semrush/sandbox.ts';
import { domainStatsOf, type SpyfuSandbox, startSpyfuSandbox } from '../connectors/spyfu/sandbox.ts';
import { SpyfuClient } from '../connectors/spyfu/client.ts';

/**
 * The sandboxes' numbers read like one real company's: derived from the domain (the same
 * every time) and consistent with each other, with dates that follow the clock.
 */
const DOMAINS = ['acme-widgets.com', 'northwind.example', 'globex.io', 'initech.co.uk'];

describe('SEMrush sandbox data', () => {
  let sandbox: SemrushSandbox;
  let client: SemrushClient;
  beforeAll(async () => {
    sandbox = await startSemrushSandbox();
    client = new SemrushClient({ baseUrl: sandbox.url, key: SANDBOX_KEY });
  });
  afterAll(() => sandbox.close());

  it('gives each keyword no more visits than it has searches, and shares of the domain\'s traffic that add up', async () => {
    for (const domain of DOMAINS) {
      const overview = (await client.domainRank(domain)).rows[0]!;
      for (const [rows, traffic] of [
        [(await client.domainOrganic(domain, { limit: 30 })).rows, overview.organicTraffic!],
        [(await client.domainAdwords(domain, { limit: 30 })).rows, overview.adwordsTraffic!],
      ] as const) {
        const shares = rows.map((r) => r.trafficPercent!);
        expect(shares.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(100);
        for (const row of rows) {
          const visits = (row.trafficPercent! / 100) * traffic;
          // Rounding of the share to two decimals leaves half a hundredth of a per cent.
          expect(visits - 0.00005 * traffic, `${domain} "${row.keyword}": ${row.trafficPercent}% of ${traffic} visits, ${row.searchVolume} searches`).toBeLessThanOrEqual(row.searchVolume!);
        }
      }
    }
  });

  it('gives each domain its own traffic-share series', async () => {
    const series = await Promise.all(DOMAINS.map(async (d) => (await client.domainOrganic(d, { limit: 8 })).rows.map((r) => r.trafficPercent).join(',')));
    expect(new Set(series).size).toBe(DOMAINS.length);
    expect((await client.domainOrganic(DOMAINS[0]!, { limit: 8 })).rows.map((r) => r.trafficPercent).join(',')).toBe(series[0]);
  });
});

describe('SpyFu sandbox data', () => {
  let sandbox: SpyfuSandbox;
  afterAll(() => sandbox?.close());

  it('has the latest month before the clock\'s, not a fixed one', async () => {
    sandbox = await startSpyfuSandbox({ now: () => new Date('2027-01-20T10:00:00Z') });
    const client = new SpyfuClient({ baseUrl: sandbox.url, apiKey: 'sandbox-key' });
    expect((await client.latestDomainStats('acme-widgets.com')).data).toMatchObject({ searchYear: 2026, searchMonth: 12 });
    expect(domainStatsOf('acme-widgets.com', 'US', { searchYear: 2026, searchMonth: 12 })).toEqual((await client.latestDomainStats('acme-widgets.com')).data);
  });
});
