import { type Static, Type } from '@sinclair/typebox';
import type { AdwordsKeywordRow, CompetitorRow, OrganicKeywordRow } from '../../connectors/semrush/client.ts';
import type { SpyfuCompetitor, SpyfuDomainStats, SpyfuKeyword } from '../../connectors/spyfu/client.ts';
import type { DataSource } from '../../engine/sdk.ts';

/**
 * What a report is made of: the search data of one domain (SEMrush and SpyFu), gathered by
 * `intel.collect`, and Claude's analysis of it, written by `report.analyse`. Both are plain
 * JSON so they can be stored (prospect_intelligence, step outputs) and rendered later.
 */

/** SEMrush's Domain Overview of one database; null where SEMrush has no number. */
export interface DomainOverview {
  rank: number | null;
  organicKeywords: number | null;
  organicTraffic: number | null;
  /** USD a month the organic traffic would cost in Google Ads. */
  organicCost: number | null;
  paidKeywords: number | null;
  paidTraffic: number | null;
  /** Estimated USD a month spent on Google Ads. */
  paidCost: number | null;
}

export interface SearchIntel {
  domain: string;
  /** SEMrush regional database the numbers come from (us, uk ...). */
  database: string;
  /** When the data was fetched (ISO 8601). */
  fetchedAt: string;
  /** Null when SEMrush knows nothing of the domain (ERROR 50). */
  overview: DomainOverview | null;
  /** Organic keywords, by share of the domain's traffic. */
  organicKeywords: OrganicKeywordRow[];
  /** Organic competitors, most relevant first. */
  competitors: CompetitorRow[];
  /** Keywords bought in Google Ads. */
  paidKeywords: AdwordsKeywordRow[];
  spyfu: {
    /** The latest month SpyFu has, or null when it has none. */
    stats: SpyfuDomainStats | null;
    competitors: SpyfuCompetitor[];
    /** Most valuable keywords (organic clicks times cost per click). */
    valuableKeywords: SpyfuKeyword[];
  };
  /** What fetching it cost. */
  usage: { semrushUnits: number; spyfuRows: number };
  /** Who answered: the service or its local sandbox (absent from data stored before this was recorded, and then taken as live). */
  sources?: { semrush: DataSource; spyfu: DataSource };
}

const text = (description: string, maxLength = 1200) => Type.String({ minLength: 1, maxLength, description });
const level = (description: string) => Type.Unsafe<'high' | 'medium' | 'low'>({ type: 'string', enum: ['high', 'medium', 'low'], description });

/**
 * The analysis Claude records through a forced tool: its input_schema. Every field is
 * rendered into the report as text (escaped), never as markup.
 */
export const AnalysisSchema = Type.Object(
  {
    headline: text('One sentence, at most 25 words: the single most useful finding for this company, with a number from the data.', 300),
    executive_summary: text('Three to five sentences for a busy founder: where the company stands in search, what it costs them, what to do first.', 1500),
    traffic_commentary: text('Two or three sentences on organic traffic and keywords: what the numbers mean.'),
    competitor_commentary: text('Two or three sentences comparing the company with its closest competitors, by name.'),
    paid_search_commentary: text('Two or three sentences on paid search: estimated spend, which keywords, whether it is well spent.'),
    opportunities: Type.Array(
      Type.Object(
        {
          title: text('A short name for the opportunity.', 120),
          detail: text('Why it is an opportunity, with the keyword or competitor it concerns and a number.', 600),
          impact: level('Expected effect on traffic or spend.'),
        },
        { additionalProperties: false },
      ),
      { minItems: 3, maxItems: 6, description: 'The biggest opportunities, largest first.' },
    ),
    actions: Type.Array(
      Type.Object(
        {
          action: text('What to do, starting with a verb.', 200),
          why: text('What it brings, in one sentence.', 400),
          effort: level('How much work it is.'),
        },
        { additionalProperties: false },
      ),
      { minItems: 3, maxItems: 8, description: 'Recommended actions, in the order to do them.' },
    ),
  },
  { additionalProperties: false },
);
export type Analysis = Static<typeof AnalysisSchema>;

/** What one report cost to make, stored with it in generated_reports. */
export interface ReportCost {
  semrush_units: number;
  spyfu_rows: number;
  claude_input_tokens: number;
  claude_output_tokens: number;
  /** All of the above at the configured prices. */
  usd: number;
}

/** Everything the report template sees. */
export interface ReportView {
  company: string;
  intel: SearchIntel;
  analysis: Analysis;
  /** When the report was made (ISO 8601). */
  generatedAt: string;
  /** The business that sells the report (config business). */
  business: { name: string; address?: string };
  /** The services whose answers came from their local sandbox ("SEMrush", "SpyFu", "Claude"): the report is then marked as sample data. */
  sampleServices: string[];
}

/** The services of a report whose answers came from a sandbox, by the sources its data carries. */
export function sampleServicesOf(intel: SearchIntel, analysisSource: DataSource): string[] {
  const sources = { SEMrush: intel.sources?.semrush, SpyFu: intel.sources?.spyfu, Claude: analysisSource };
  return Object.entries(sources)
    .filter(([, source]) => source === 'sandbox')
    .map(([service]) => service);
}
