import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SemrushClient } from '../connectors/semrush/client.ts';
import { SANDBOX_KEY, type SemrushSandbox, startSemrushSandbox } from '../connectors/semrush/sandbox.ts';
import { domainStatsOf, type SpyfuSandbox, startSpyfuSandbox } from '../connectors/spyfu/sandbox.ts';
import { SpyfuClient } from '../connectors/spyfu/client.ts';
import { join } from 'node:path';
import { Liquid } from 'liquidjs';
import { createClaudeAnalyst } from '../connectors/claude/client.ts';
import { startClaudeSandbox } from '../connectors/claude/sandbox.ts';
import { collectIntel, DEFAULT_LIMITS } from '../steps/intel/collect.ts';
import { analyse, renderPrompt } from '../steps/report/analysis.ts';
import { AnalysisSchema } from '../steps/report/model.ts';
import { sandboxClaudeConfig } from './helpers/claude.ts';

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

describe('Claude sandbox analysis', () => {
  it('reads the search data of the prompt and writes sentences that cite its numbers', async () => {
    const semrush = await startSemrushSandbox();
    const spyfuSandbox = await startSpyfuSandbox();
    const claude = await startClaudeSandbox();
    try {
      const deps = { semrush: new SemrushClient({ baseUrl: semrush.url, key: SANDBOX_KEY }), spyfu: new SpyfuClient({ baseUrl: spyfuSandbox.url, apiKey: 'sandbox-key' }), now: () => new Date() };
      const intel = await collectIntel(deps, 'northwind.example', 'us', DEFAULT_LIMITS);
      const liquid = new Liquid({ root: join(import.meta.dirname, '..', 'pipelines', 'prompts'), extname: '.md' });
      const prompt = await renderPrompt(liquid, 'report-analysis', { company: 'Northwind Traders', intel });
      const { analysis } = await analyse(createClaudeAnalyst(sandboxClaudeConfig(claude.url)), prompt, undefined);
      // The analyst checks every answer against AnalysisSchema (an invalid one would have thrown).
      expect(Object.keys(analysis).sort()).toEqual(Object.keys(AnalysisSchema.properties).sort());

      const top = intel.organicKeywords[0]!;
      const nearest = intel.organicKeywords.filter((k) => k.position! >= 4 && k.position! <= 20).sort((a, b) => b.searchVolume! - a.searchVolume!)[0]!;
      expect(analysis.headline).toContain('Northwind Traders');
      expect(analysis.headline).toContain(`"${nearest.keyword}"`);
      expect(analysis.headline).toMatch(new RegExp(`ranks ${nearest.position}(st|nd|rd|th)`));
      expect(analysis.executive_summary).toContain(intel.competitors[0]!.domain);
      expect(analysis.competitor_commentary).toContain(intel.competitors[0]!.domain);
      expect(analysis.traffic_commentary).toContain(`"${top.keyword}"`);
      // Sentences, not the data's field names strung together.
      const text = JSON.stringify(analysis).toLowerCase();
      for (const field of ['averageorganicrank', 'traffic_percent', 'organickeywords', 'spyfu_stats', 'commentary landing']) expect(text).not.toContain(field);
      // The same data always gets the same analysis.
      const again = await analyse(createClaudeAnalyst(sandboxClaudeConfig(claude.url)), prompt, undefined);
      expect(again.analysis).toEqual(analysis);
    } finally {
      await Promise.all([semrush.close(), spyfuSandbox.close(), claude.close()]);
    }
  });
});
