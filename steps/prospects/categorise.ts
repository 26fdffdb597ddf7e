import { type Static, Type } from '@sinclair/typebox';
import { compileCondition, configSection, type DatabaseStatement, defineStep, NonRetriableError, renderDeep } from '../../engine/sdk.ts';
import type { SearchIntel } from '../report/model.ts';

/**
 * The numbers teaser emails are chosen by, computed from a prospect's search data, and the
 * category rules of the config (`categories`): the first rule whose `when` holds names the
 * category, and its `reason` (a template over the metrics) is stored with it. Same data,
 * same category: nothing random, nothing from the clock.
 */

export interface Metrics {
  organic_traffic: number;
  organic_keywords: number;
  organic_value: number;
  paid_traffic: number;
  paid_keywords: number;
  paid_spend: number;
  /** Paid clicks as a share of all search clicks, 0..1. */
  paid_share: number;
  /** Change of traffic-weighted keyword interest, last 3 months against the 3 before (-0.2: down 20%). */
  traffic_trend: number;
  /** The competitor with the most organic traffic, and how many times ours it is. */
  top_competitor: string | null;
  competitor_gap: number;
  /** Keywords in positions 1-3, and in 11-20 ("striking distance"). */
  top3_keywords: number;
  page2_keywords: number;
  /** SpyFu's estimate of the monthly Google Ads budget (USD). */
  ads_budget: number;
  /** SEMrush knew the domain. */
  known: boolean;
}

const n = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;

export function metricsOf(intel: SearchIntel): Metrics {
  const o = intel.overview;
  const organic = n(o?.organicTraffic);
  const paid = n(o?.paidTraffic);
  // Each keyword's 12-month interest, weighted by its share of the traffic.
  let before = 0;
  let recent = 0;
  for (const k of intel.organicKeywords) {
    if (k.trends.length < 6) continue;
    const w = n(k.trafficPercent) || 0.01;
    before += w * mean(k.trends.slice(-6, -3));
    recent += w * mean(k.trends.slice(-3));
  }
  const top = [...intel.competitors].sort((a, b) => n(b.organicTraffic) - n(a.organicTraffic))[0];
  const topTraffic = n(top?.organicTraffic);
  return {
    organic_traffic: organic,
    organic_keywords: n(o?.organicKeywords),
    organic_value: n(o?.organicCost),
    paid_traffic: paid,
    paid_keywords: n(o?.paidKeywords),
    paid_spend: n(o?.paidCost),
    paid_share: organic + paid > 0 ? round(paid / (organic + paid)) : 0,
    traffic_trend: before > 0 ? round(recent / before - 1) : 0,
    top_competitor: top?.domain ?? null,
    competitor_gap: topTraffic === 0 ? 0 : organic > 0 ? round(topTraffic / organic, 2) : 999,
    top3_keywords: intel.organicKeywords.filter((k) => n(k.position) >= 1 && n(k.position) <= 3).length,
    page2_keywords: intel.organicKeywords.filter((k) => n(k.position) >= 11 && n(k.position) <= 20).length,
    ads_budget: n(intel.spyfu.stats?.monthlyBudget),
    known: o !== null,
  };
}

const Rule = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z][a-z0-9_-]*$', description: 'The category, e.g. traffic-falling (email templates are chosen by it).' }),
    when: Type.String({
      pattern: '^\\$\\{\\{.*\\}\\}$',
      description: 'A condition over metrics (and intel), one ${{ }} expression like every when: "${{ metrics.traffic_trend <= -0.1 }}".',
      'x-hint': 'write the condition inside ${{ }}, like when: "${{ metrics.paid_share >= 0.4 }}"',
      'x-deferred': true,
    }),
    reason: Type.String({ minLength: 1, description: 'Why, stored with the category: text with ${{ }} over metrics.', 'x-deferred': true }),
  },
  { additionalProperties: false },
);
export const CategoriesSchema = Type.Object(
  {
    rules: Type.Array(Rule, { minItems: 1, description: 'Tried in order; the first whose when holds wins.' }),
    default: Type.Object(
      {
        name: Type.String({ pattern: '^[a-z][a-z0-9_-]*$', description: 'The category of a prospect no rule fits.' }),
        reason: Type.String({ 'x-deferred': true, description: 'Why, stored with the category: text with ${{ }} over metrics.' }),
      },
      { additionalProperties: false, description: 'When no rule holds.' },
    ),
  },
  { additionalProperties: false, description: 'Teaser email categories, assigned from each prospect\'s search data.' },
);
export type Categories = Static<typeof CategoriesSchema>;

export function categorise(categories: Categories, intel: SearchIntel): { category: string; reason: string; metrics: Metrics } {
  const metrics = metricsOf(intel);
  const scope = { metrics, intel: { domain: intel.domain, database: intel.database } };
  for (const rule of categories.rules) {
    let holds: boolean;
    try {
      holds = compileCondition(rule.when).holds(scope, { now: () => new Date(0) });
    } catch (err) {
      throw new NonRetriableError(`categories rule "${rule.name}": when: ${(err as Error).message}`);
    }
    if (holds) return { category: rule.name, reason: String(renderDeep(rule.reason, scope)), metrics };
  }
  return { category: categories.default.name, reason: String(renderDeep(categories.default.reason, scope)), metrics };
}

function updateStatement(domain: string, category: string, reason: string, metrics: Metrics): DatabaseStatement {
  return {
    sql: 'UPDATE prospects SET category = $2, category_reason = $3, metrics = $4, updated_at = now() WHERE domain = $1 RETURNING id',
    params: [domain, category, reason, JSON.stringify(metrics)],
    output: () => ({}),
  };
}

export const prospectsCategorise = defineStep({
  type: 'prospects.categorise',
  description: 'Computes a prospect\'s metrics from its search data and stores the category of the first matching rule (config categories), with the reason.',
  input: Type.Object(
    { intel: Type.Record(Type.String(), Type.Unknown(), { description: 'The output of intel.collect (its domain names the prospect).' }) },
    { additionalProperties: false },
  ),
  output: Type.Object(
    { category: Type.String(), reason: Type.String(), metrics: Type.Record(Type.String(), Type.Unknown()) },
    { additionalProperties: false },
  ),
  effect: {
    kind: () => 'db.write',
    transactional: true,
    plan: (ctx, input) => {
      const result = categorise(categoriesOf(ctx.config), input.intel as unknown as SearchIntel);
      return { summary: `${(input.intel as { domain?: string }).domain}: ${result.category} (${result.reason})`, output: result };
    },
  },
  async run(ctx, input) {
    const result = categorise(categoriesOf(ctx.config), input.intel as unknown as SearchIntel);
    const statement = updateStatement((input.intel as unknown as SearchIntel).domain, result.category, result.reason, result.metrics);
    await ctx.db.query(statement.sql, statement.params);
    return result as unknown as { category: string; reason: string; metrics: Record<string, unknown> };
  },
});

function categoriesOf(config: Parameters<typeof configSection>[0]): Categories {
  const categories = configSection<Categories>(config, 'categories');
  if (!categories) throw new NonRetriableError('no categories in the config: declare categories.rules and categories.default');
  return categories;
}
