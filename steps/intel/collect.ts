import { Type } from '@sinclair/typebox';
import type { SemrushClient } from '../../connectors/semrush/client.ts';
import { SEMRUSH_UNITS_PER_LINE } from '../../connectors/semrush/client.ts';
import { semrushConnector } from '../../connectors/semrush/connector.ts';
import type { SpyfuApi } from '../../connectors/spyfu/client.ts';
import { spyfuConnector } from '../../connectors/spyfu/connector.ts';
import { defineStep, NonRetriableError, sourceOf } from '../../engine/sdk.ts';
import { normalizeDomain } from '../domain.ts';
import type { SearchIntel } from '../report/model.ts';

/** How many lines of each list a report asks for. */
export interface CollectLimits {
  organic: number;
  competitors: number;
  paid: number;
  spyfu: number;
}

export const DEFAULT_LIMITS: CollectLimits = { organic: 50, competitors: 8, paid: 30, spyfu: 20 };

export interface CollectDeps {
  semrush: SemrushClient;
  spyfu: SpyfuApi;
  /** Wraps each call in the named rate limit ("semrush", "spyfu"). */
  limit?: <T>(name: string, call: () => Promise<T>) => Promise<T>;
  signal?: AbortSignal;
  now(): Date;
}

/** SEMrush (overview, organic keywords, competitors, paid keywords) and SpyFu (stats, competitors, valuable keywords) for one domain, at once. */
export async function collectIntel(deps: CollectDeps, domain: string, database: string | undefined, limits: CollectLimits): Promise<SearchIntel> {
  const limit = deps.limit ?? ((_name, call) => call());
  const { semrush, spyfu, signal } = deps;
  const sem = <T>(call: () => Promise<T>) => limit('semrush', call);
  const spy = <T>(call: () => Promise<T>) => limit('spyfu', call);
  const [rank, organic, competitors, paid, stats, spyCompetitors, valuable] = await Promise.all([
    sem(() => semrush.domainRank(domain, { signal, database })),
    sem(() => semrush.domainOrganic(domain, { signal, database, limit: limits.organic })),
    sem(() => semrush.domainCompetitors(domain, { signal, database, limit: limits.competitors })),
    sem(() => semrush.domainAdwords(domain, { signal, database, limit: limits.paid })),
    spy(() => spyfu.latestDomainStats(domain, { signal })),
    spy(() => spyfu.topCompetitors(domain, { signal, limit: limits.competitors })),
    spy(() => spyfu.mostValuableKeywords(domain, { signal, limit: limits.spyfu })),
  ]);
  const row = rank.rows[0];
  return {
    domain,
    database: database ?? 'us',
    fetchedAt: deps.now().toISOString(),
    overview: row
      ? {
          rank: row.rank,
          organicKeywords: row.organicKeywords,
          organicTraffic: row.organicTraffic,
          organicCost: row.organicCost,
          paidKeywords: row.adwordsKeywords,
          paidTraffic: row.adwordsTraffic,
          paidCost: row.adwordsCost,
        }
      : null,
    organicKeywords: organic.rows,
    competitors: competitors.rows.filter((c) => c.domain !== domain),
    paidKeywords: paid.rows,
    spyfu: { stats: stats.data, competitors: spyCompetitors.data, valuableKeywords: valuable.data },
    usage: {
      semrushUnits: rank.units + organic.units + competitors.units + paid.units,
      spyfuRows: stats.rows + spyCompetitors.rows + valuable.rows,
    },
    sources: { semrush: sourceOf(semrush), spyfu: sourceOf(spyfu) },
  };
}

/** The most a collection can cost: every list full (SEMrush bills per line returned). */
export function maxUsage(limits: CollectLimits): { semrush_units: number; spyfu_rows: number } {
  const u = SEMRUSH_UNITS_PER_LINE;
  return {
    semrush_units: u.domain_rank + limits.organic * u.domain_organic + limits.competitors * u.domain_organic_organic + limits.paid * u.domain_adwords,
    spyfu_rows: 1 + limits.competitors + limits.spyfu,
  };
}

const limitField = (description: string, max: number) => Type.Optional(Type.Integer({ minimum: 1, maximum: max, description }));

const Input = Type.Object(
  {
    domain: Type.String({ minLength: 1, description: 'The company\'s domain (a URL is reduced to its domain).' }),
    database: Type.Optional(Type.String({ description: 'SEMrush regional database (default: connectors.semrush.database).' })),
    organic_limit: limitField(`Organic keywords to fetch (default ${DEFAULT_LIMITS.organic}).`, 10_000),
    competitor_limit: limitField(`Competitors to fetch (default ${DEFAULT_LIMITS.competitors}).`, 100),
    paid_limit: limitField(`Paid keywords to fetch (default ${DEFAULT_LIMITS.paid}).`, 10_000),
    spyfu_limit: limitField(`SpyFu valuable keywords to fetch (default ${DEFAULT_LIMITS.spyfu}).`, 1000),
  },
  { additionalProperties: false },
);

const SourceSchema = Type.Unsafe<'live' | 'sandbox'>({ type: 'string', enum: ['live', 'sandbox'] });

const Output = Type.Object(
  {
    domain: Type.String(),
    database: Type.String(),
    fetchedAt: Type.String(),
    overview: Type.Unknown({ description: 'SEMrush domain overview (rank, organicTraffic, paidCost ...) or null.' }),
    organicKeywords: Type.Array(Type.Unknown()),
    competitors: Type.Array(Type.Unknown()),
    paidKeywords: Type.Array(Type.Unknown()),
    spyfu: Type.Object({ stats: Type.Unknown(), competitors: Type.Array(Type.Unknown()), valuableKeywords: Type.Array(Type.Unknown()) }),
    usage: Type.Object({ semrushUnits: Type.Number(), spyfuRows: Type.Number() }),
    sources: Type.Optional(
      Type.Object(
        { semrush: SourceSchema, spyfu: SourceSchema },
        { description: 'Who answered each service: "live", or "sandbox" (its local stand-in; a report made from it is marked as sample data).' },
      ),
    ),
  },
  { additionalProperties: false },
);

function limitsOf(input: { organic_limit?: number; competitor_limit?: number; paid_limit?: number; spyfu_limit?: number }): CollectLimits {
  return {
    organic: input.organic_limit ?? DEFAULT_LIMITS.organic,
    competitors: input.competitor_limit ?? DEFAULT_LIMITS.competitors,
    paid: input.paid_limit ?? DEFAULT_LIMITS.paid,
    spyfu: input.spyfu_limit ?? DEFAULT_LIMITS.spyfu,
  };
}

function domainOf(raw: string): string {
  const domain = normalizeDomain(raw);
  if (!domain) throw new NonRetriableError(`"${raw}" is not a domain name (write it like example.com)`);
  return domain;
}

export const intelCollect = defineStep({
  type: 'intel.collect',
  description:
    'Fetches a domain\'s search data: SEMrush overview, organic keywords, competitors and paid keywords, and SpyFu stats, competitors and valuable keywords (paid calls; rate limits "semrush" and "spyfu" from the config).',
  input: Input,
  output: Output,
  effect: {
    // A paid call: planned, not made, in a dry run. Repeating one after a crash costs units but
    // changes nothing: a pipeline may say so with in_doubt: repeat.
    kind: () => 'api',
    // 30-40 KiB of data a domain, stored by the pipeline where it belongs (prospect_intelligence).
    transientOutput: true,
    cost: (input) => maxUsage(limitsOf(input)),
    describe: (input) => ({ summary: `SEMrush and SpyFu data for ${input.domain}`, identity: { domain: input.domain } }),
    plan: (ctx, input) => {
      const domain = domainOf(input.domain);
      const empty: SearchIntel = {
        domain,
        database: input.database ?? 'us',
        fetchedAt: ctx.clock.now().toISOString(),
        overview: null,
        organicKeywords: [],
        competitors: [],
        paidKeywords: [],
        spyfu: { stats: null, competitors: [], valuableKeywords: [] },
        usage: { semrushUnits: 0, spyfuRows: 0 },
      };
      return { summary: `SEMrush and SpyFu data for ${domain} (at most)`, output: empty, cost: maxUsage(limitsOf(input)) };
    },
  },
  async run(ctx, input) {
    const domain = domainOf(input.domain);
    const [semrush, spyfu] = await Promise.all([ctx.use(semrushConnector), ctx.use(spyfuConnector)]);
    const intel = await collectIntel({ semrush, spyfu, limit: (name, call) => ctx.limit(name, call), signal: ctx.signal, now: () => ctx.clock.now() }, domain, input.database, limitsOf(input));
    ctx.spend({ semrush_units: intel.usage.semrushUnits, spyfu_rows: intel.usage.spyfuRows });
    return intel;
  },
});
