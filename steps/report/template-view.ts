import type { AdwordsKeywordRow, CompetitorRow, OrganicKeywordRow } from '../../connectors/semrush/client.ts';
import { competitorTrafficChart, keywordShareChart, organicVsPaidCharts, sparkline } from './charts.ts';
import type { Analysis, ReportView } from './model.ts';

/**
 * What `report.liquid` sees: the report's data in snake_case, tables cut to a readable
 * length, and the charts as ready SVG. Pure. Every field is present (null where there is no
 * number), so a template typo fails under strictVariables instead of printing nothing.
 */

/** How many rows each table shows; the rest stays in the stored data. */
export const TABLE_LIMITS = { keywords: 15, keywordChart: 10, competitors: 8, paidKeywords: 15 } as const;

type Num = number | null;

/** How a keyword's position moved since SEMrush's previous check (lower is better). */
export type Movement = 'up' | 'down' | 'same' | 'new' | 'unknown';

export interface TemplateKeyword {
  keyword: string;
  position: Num;
  previous_position: Num;
  movement: Movement;
  /** Places gained or lost; 0 unless `movement` is up or down. */
  moved_by: number;
  volume: Num;
  cpc: Num;
  traffic_percent: Num;
  /** Inline SVG sparkline of the last 12 months, or "" without a trend. */
  trend_svg: string;
}

export interface TemplateCompetitor {
  domain: string;
  /** Keyword overlap with the company, as a percentage 0..100. */
  relevance_percent: Num;
  common_keywords: Num;
  organic_keywords: Num;
  organic_traffic: Num;
  traffic_value: Num;
  paid_keywords: Num;
}

export interface TemplatePaidKeyword {
  keyword: string;
  position: Num;
  volume: Num;
  cpc: Num;
  traffic_percent: Num;
}

export interface TemplateView {
  company: string;
  domain: string;
  /** SEMrush database, e.g. "us". */
  database: string;
  generated_at: string;
  fetched_at: string;
  /** False when SEMrush has no overview of the domain (every SEMrush KPI is then null). */
  overview_found: boolean;
  /** False when neither SEMrush nor SpyFu sees the domain buy ads (the paid section says so). */
  paid_found: boolean;
  business: { name: string; address: string | null };
  /** The services whose answers came from a sandbox; the report says it is sample data unless this is empty. */
  sample_services: string[];
  analysis: Analysis;
  kpis: {
    organic_traffic: Num;
    organic_keywords: Num;
    traffic_value: Num;
    semrush_rank: Num;
    paid_traffic: Num;
    paid_keywords: Num;
    paid_spend: Num;
    spyfu_organic_clicks: Num;
    spyfu_paid_clicks: Num;
    spyfu_ad_budget: Num;
    /** The month of SpyFu's numbers as "YYYY-MM-01" (for the date filter), or null. */
    spyfu_month: string | null;
  };
  top_keywords: TemplateKeyword[];
  competitors: TemplateCompetitor[];
  paid_keywords: TemplatePaidKeyword[];
  /** Inline SVG strings; "" when a chart has no data. */
  charts: { competitors: string; keywords: string; organic_vs_paid_traffic: string; organic_vs_paid_value: string };
}

export function templateView(view: ReportView): TemplateView {
  const { intel } = view;
  const overview = intel.overview;
  const stats = intel.spyfu.stats;
  const competitors = intel.competitors.slice(0, TABLE_LIMITS.competitors);
  const split = organicVsPaidCharts(overview);
  return {
    company: view.company,
    domain: intel.domain,
    database: intel.database,
    generated_at: view.generatedAt,
    fetched_at: intel.fetchedAt,
    overview_found: overview !== null,
    paid_found: [overview?.paidKeywords, overview?.paidTraffic, overview?.paidCost, stats?.monthlyBudget, stats?.totalAdsPurchased, intel.paidKeywords.length].some((n) => typeof n === 'number' && n > 0),
    business: { name: view.business.name, address: view.business.address ?? null },
    sample_services: view.sampleServices,
    analysis: view.analysis,
    kpis: {
      organic_traffic: overview?.organicTraffic ?? null,
      organic_keywords: overview?.organicKeywords ?? null,
      traffic_value: overview?.organicCost ?? null,
      semrush_rank: overview?.rank ?? null,
      paid_traffic: overview?.paidTraffic ?? null,
      paid_keywords: overview?.paidKeywords ?? null,
      paid_spend: overview?.paidCost ?? null,
      spyfu_organic_clicks: stats?.monthlyOrganicClicks ?? null,
      spyfu_paid_clicks: stats?.monthlyPaidClicks ?? null,
      spyfu_ad_budget: stats?.monthlyBudget ?? null,
      spyfu_month: stats ? `${stats.searchYear}-${String(stats.searchMonth).padStart(2, '0')}-01` : null,
    },
    top_keywords: intel.organicKeywords.slice(0, TABLE_LIMITS.keywords).map(keywordRow),
    competitors: competitors.map(competitorRow),
    paid_keywords: intel.paidKeywords.slice(0, TABLE_LIMITS.paidKeywords).map(paidRow),
    charts: {
      competitors: competitorTrafficChart(view.company, overview, competitors),
      keywords: keywordShareChart(intel.organicKeywords.slice(0, TABLE_LIMITS.keywordChart)),
      organic_vs_paid_traffic: split.traffic,
      organic_vs_paid_value: split.value,
    },
  };
}

/** SEMrush gives 0 as the previous position of a keyword the domain did not rank for. */
function movement(position: Num, previous: Num): { movement: Movement; moved_by: number } {
  if (position === null || previous === null) return { movement: 'unknown', moved_by: 0 };
  if (previous === 0) return { movement: 'new', moved_by: 0 };
  if (position < previous) return { movement: 'up', moved_by: previous - position };
  if (position > previous) return { movement: 'down', moved_by: position - previous };
  return { movement: 'same', moved_by: 0 };
}

const keywordRow = (k: OrganicKeywordRow): TemplateKeyword => ({
  keyword: k.keyword,
  position: k.position,
  previous_position: k.previousPosition,
  ...movement(k.position, k.previousPosition),
  volume: k.searchVolume,
  cpc: k.cpc,
  traffic_percent: k.trafficPercent,
  trend_svg: sparkline(k.trends),
});

const competitorRow = (c: CompetitorRow): TemplateCompetitor => ({
  domain: c.domain,
  relevance_percent: c.relevance === null ? null : c.relevance * 100,
  common_keywords: c.commonKeywords,
  organic_keywords: c.organicKeywords,
  organic_traffic: c.organicTraffic,
  traffic_value: c.organicCost,
  paid_keywords: c.adwordsKeywords,
});

const paidRow = (k: AdwordsKeywordRow): TemplatePaidKeyword => ({
  keyword: k.keyword,
  position: k.position,
  volume: k.searchVolume,
  cpc: k.cpc,
  traffic_percent: k.trafficPercent,
});
